from __future__ import annotations

import pghistory
import reversion
from auditlog.registry import auditlog
from django.conf import settings
from django.db import models
from simple_history.models import HistoricalRecords


class Ledger(models.Model):
    """History kept by django-simple-history: a full copy per save and delete."""

    name = models.CharField(max_length=50)
    balance = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    opened = models.DateField(null=True, blank=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    history = HistoricalRecords()

    def __str__(self) -> str:
        return self.name


@reversion.register()
class Memo(models.Model):
    """History kept by django-reversion: a serialized copy per save inside a revision; no deletes."""

    title = models.CharField(max_length=50)
    body = models.TextField(blank=True, default="")
    amount = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    due = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.title


class Entry(models.Model):
    """History kept by django-auditlog: the changed fields as text, per create, update and delete."""

    title = models.CharField(max_length=50)
    amount = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    flag = models.BooleanField(default=False)
    due = models.DateTimeField(null=True, blank=True)
    data = models.JSONField(default=dict, blank=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    def __str__(self) -> str:
        return self.title


auditlog.register(Entry)


@pghistory.track(pghistory.InsertEvent(), pghistory.UpdateEvent(), pghistory.DeleteEvent(), model_name="CardEvent")
class Card(models.Model):
    """History kept by django-pghistory (PostgreSQL triggers): a copy of every field per insert, update and delete."""

    title = models.CharField(max_length=50)
    amount = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    due = models.DateTimeField(null=True, blank=True)
    data = models.JSONField(default=dict, blank=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    def __str__(self) -> str:
        return self.title


# Two event models, each tracking some fields; ``views`` is tracked by neither, and no tracker records deletes.
@pghistory.track(
    pghistory.InsertEvent(),
    pghistory.UpdateEvent(),
    pghistory.UpdateEvent("before_update", row=pghistory.Old),  # the values before: not imported
    fields=["title", "amount"],
    model_name="NoteEvent",
)
@pghistory.track(
    pghistory.UpdateEvent("body_changed", condition=pghistory.AnyChange("body")),
    fields=["body"],
    model_name="NoteBodyEvent",
)
class Note(models.Model):
    """History kept by django-pghistory for a subset of its fields, in two event tables, without deletes."""

    title = models.CharField(max_length=50)
    amount = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    body = models.TextField(blank=True, default="")
    views = models.IntegerField(default=0)

    def __str__(self) -> str:
        return self.title
