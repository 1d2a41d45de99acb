"""The benchmarked models (as in the peer harness).

``Account`` is built from the abstract ``AccountFields`` plus whatever class
attributes the active adapter asks for (e.g. HistoricalRecords), then handed to
the adapter's ``register()``. ``Project`` (a many-to-many field to ``Tag``) is
built and registered the same way: the ``QuerySet.update()`` of a model with
many-to-many links.
"""

from django.conf import settings
from django.db import models
from django.db.models.base import ModelBase
from django.utils import timezone

ADAPTER = settings.ADAPTER


class Owner(models.Model):  # noqa: DJ008
    name = models.CharField(max_length=100)


class Tag(models.Model):  # noqa: DJ008
    name = models.CharField(max_length=50)


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


class ProjectFields(models.Model):
    code = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    status = models.IntegerField(default=0)
    owner = models.ForeignKey(Owner, on_delete=models.PROTECT, related_name="projects")
    tags = models.ManyToManyField(Tag, related_name="projects")

    class Meta:
        abstract = True


def _build(name: str, base: type) -> type:
    attrs = {"__module__": __name__, "__qualname__": name, **ADAPTER.model_attrs(name)}
    model = ModelBase(name, (base,), attrs)
    ADAPTER.register(model)
    return model


Account = _build("Account", AccountFields)
Project = _build("Project", ProjectFields)
