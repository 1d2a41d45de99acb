"""The benchmarked models (as in the peer harness).

``Account`` is built from the abstract ``AccountFields`` plus whatever class
attributes the active adapter asks for (e.g. HistoricalRecords), then handed to
the adapter's ``register()``.
"""

from django.conf import settings
from django.db import models
from django.db.models.base import ModelBase
from django.utils import timezone

ADAPTER = settings.ADAPTER


class Owner(models.Model):  # noqa: DJ008
    name = models.CharField(max_length=100)


class AccountFields(models.Model):
    code = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    balance = models.DecimalField(max_digits=14, decimal_places=2)
    status = models.IntegerField(default=0)
    is_active = models.BooleanField(default=True)
    opened_at = models.DateTimeField(default=timezone.now)
    owner = models.ForeignKey(Owner, on_delete=models.PROTECT, related_name="accounts")
    notes = models.TextField(blank=True, default="")
    meta = models.JSONField(default=dict)

    class Meta:
        abstract = True


Account = ModelBase(
    "Account",
    (AccountFields,),
    {"__module__": __name__, "__qualname__": "Account", **ADAPTER.model_attrs()},
)
ADAPTER.register(Account)
