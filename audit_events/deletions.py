"""Reading deletions: a model's deleted rows, an operation's events, and what undoing one deletion would write.

Everything here only reads. ``undo_plan`` answers, before anything is
written, the questions the admin's undo preview and its permission check ask:
which rows come back (parents first), which rows get a foreign key back that
the deletion set to NULL, and what stands in the way.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Exists, OuterRef

from . import registry
from .encoding import decode
from .models import Action, Event, EventQuerySet
from .replay import instance_from_state


def deleted(model: type[models.Model]) -> EventQuerySet:
    """The deletions of ``model``'s rows that are deleted now (their latest event), newest first.

    Each event's ``state`` is the row as it was deleted and its ``operation``
    names what was deleted together with it (:func:`operation_events`).
    """
    spec = registry.spec_for(model)
    if spec is None:
        return Event.objects.none()
    later = Event.objects.filter(
        content_type_id=OuterRef("content_type_id"), object_pk=OuterRef("object_pk"), version__gt=OuterRef("version")
    )
    return (
        Event.objects.filter(content_type_id=spec.content_type_id(), action=Action.DELETE)
        .filter(~Exists(later))
        .order_by("-id")
    )


def operation_events(operation: uuid.UUID | str) -> EventQuerySet:
    """Every event of one operation (one cascade delete, one bulk call, one restore), in the order written."""
    return Event.objects.filter(operation=operation).select_related("content_type").order_by("id")


@dataclass(frozen=True)
class PlannedRow:
    """One row an undo writes: recreated from its recorded state, or a live row given back ``fields``."""

    pk: Any
    instance: models.Model
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelRows:
    """The rows of one model an undo writes."""

    model: type[models.Model]
    rows: tuple[PlannedRow, ...]

    @property
    def name(self) -> str:
        opts = self.model._meta
        return str(opts.verbose_name if len(self.rows) == 1 else opts.verbose_name_plural)


@dataclass(frozen=True)
class Conflict:
    """Something in the way of an undo: ``message`` names the row it is about (``row``, when one is), ``masked``
    says the same without naming it, for a user who may not view that row."""

    message: str
    row: PlannedRow | None = None
    masked: str = ""

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class UndoPlan:
    """What undoing the deletion ``event`` would write, and what would stop it."""

    event: Event
    recreated: tuple[ModelRows, ...]  # parents first
    reattached: tuple[ModelRows, ...]
    conflicts: tuple[Conflict, ...]


def undo_plan(event: Event) -> UndoPlan:
    """Read what ``restore(model, pk)`` would write for the deletion ``event``; writes nothing.

    Queries: the operation's events, the later events of its rows, and per
    model one query for the rows that exist now; uniqueness is checked per
    recreated row.
    """
    group = list(operation_events(event.operation))
    deletions = [e for e in reversed(group) if e.action == Action.DELETE]  # parents first
    candidates, conflicts = _candidates(event, deletions)
    recreated: dict[type[models.Model], list[PlannedRow]] = {}
    for model, rows in candidates.items():
        taken = set(model._base_manager.filter(pk__in=[row.pk for row, _ in rows]).values_list("pk", flat=True))
        # A row deleted again since belongs to that later deletion; one written since and alive is in the way.
        recreated[model] = [row for row, since in rows if row.pk in taken or not since]
        conflicts += _conflicts(model, recreated[model], taken)
    return UndoPlan(
        event=event,
        recreated=tuple(ModelRows(m, tuple(rows)) for m, rows in recreated.items()),
        reattached=_reattached(group),
        conflicts=tuple(conflicts),
    )


# Per model, each row its deletion would bring back, and whether the row was written since that deletion.
_Candidates = dict[type[models.Model], list[tuple[PlannedRow, bool]]]


def _candidates(event: Event, deletions: list[Event]) -> tuple[_Candidates, list[Conflict]]:
    """The rows ``deletions`` (parents first) would bring back, and what stops one for good: a model no longer
    recorded, the deletion ``event`` itself written over since. One query (:func:`_later_events`)."""
    later = _later_events(deletions)
    conflicts: list[Conflict] = []
    candidates: _Candidates = defaultdict(list)
    for deletion in deletions:
        model = deletion.content_type.model_class()
        spec = registry.spec_for(model) if model is not None else None
        if model is None or spec is None or deletion.state is None:
            label = f"{deletion.content_type.app_label}.{deletion.content_type.model}"
            conflicts.append(Conflict(f"{label} is no longer recorded."))
            continue
        written_since = later.get((deletion.content_type_id, deletion.object_pk), 0) > deletion.version
        if written_since and deletion.pk == event.pk:
            conflicts.append(Conflict(f"{model._meta.verbose_name} pk={deletion.object_pk} was written again since."))
            continue
        pk = decode(spec.pk_field, deletion.state[spec.pk_field.name])
        candidates[model].append((PlannedRow(pk, instance_from_state(model, spec, deletion.state)), written_since))
    return candidates, conflicts


def _later_events(deletions: list[Event]) -> dict[tuple[int, str], int]:
    """The latest version of each deleted row (one query)."""
    rows = Event.objects.filter(
        content_type_id__in={e.content_type_id for e in deletions}, object_pk__in={e.object_pk for e in deletions}
    ).values_list("content_type_id", "object_pk", "version")
    latest: dict[tuple[int, str], int] = {}
    for content_type_id, object_pk, version in rows:
        key = (content_type_id, object_pk)
        latest[key] = max(version, latest.get(key, 0))
    return latest


def _conflicts(model: type[models.Model], rows: list[PlannedRow], taken: set[Any]) -> list[Conflict]:
    name = model._meta.verbose_name
    unseen = f"{name} (a row you may not view)"
    found = [
        Conflict(f"{name} pk={row.pk} exists already.", row, f"{unseen} exists already.")
        for row in rows
        if row.pk in taken
    ]
    for row in rows:
        if row.pk in taken:
            continue
        try:
            row.instance.validate_unique(exclude={model._meta.pk.name})
        except ValidationError as error:
            reason = " ".join(error.messages)
            found.append(Conflict(f"{name} “{row.instance}”: {reason}", row, f"{unseen}: {reason}"))
    return found


def _reattached(group: list[Event]) -> tuple[ModelRows, ...]:
    """The live rows the deletion's operation updated (a SET_NULL or SET_DEFAULT, or any other update made in
    it), with every field those updates wrote: an undo writes them back. One query per model."""
    changed: dict[type[models.Model], dict[Any, dict[str, None]]] = defaultdict(dict)
    for event in group:
        model = event.content_type.model_class()
        spec = registry.spec_for(model) if model is not None else None
        if event.action == Action.UPDATE and model is not None and spec is not None:
            pk = spec.pk_field.to_python(event.object_pk)
            changed[model].setdefault(pk, {}).update(dict.fromkeys(event.changes))  # ordered, each once
    found = []
    for model, fields in changed.items():
        live = model._base_manager.in_bulk(list(fields))
        rows = tuple(PlannedRow(pk, live[pk], tuple(fields[pk])) for pk in fields if pk in live)
        if rows:
            found.append(ModelRows(model, rows))
    return tuple(found)
