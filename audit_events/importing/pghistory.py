"""django-pghistory: event tables written by PostgreSQL triggers, a copy of the tracked fields per event.

Each event model made by ``pghistory.track`` (or ``create_event_model``) for a
registered model is read, and the rows of all of them are merged in time order
(``pgh_created_at``, then, between two tables at the same moment, inserts
before updates before deletes; within one table, ``pgh_id``). What a row's
label means comes from the tracker that writes it: an insert is a create, an
update of the ``NEW`` row an update, a delete of the ``OLD`` row a delete; an
update of the ``OLD`` row (the values before an update, which the previous
event already holds) is not imported; a label of no row tracker (a manual
event, a tracker removed since) is read as its name says (``insert``,
``update``, ``delete``), else as a copy of the row (the row's create when it is
its first, else an update). ``pgh_created_at`` is the time; the context's
``metadata`` gives the actor (``user``, a user's key) and the event's context
(``url`` as ``path``, the other keys as they are), the context's id its
operation. Fields an event model does not copy (``fields=``, ``exclude=``) keep
their previous values, or are missing from a row's first state: never taken
from elsewhere. pghistory's default trackers record no deletes: a row imported
as existing whose table row is gone gets a delete event at the time of the
import, as for django-reversion.
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pghistory.core
from django.db import models

from .. import registry
from ..encoding import JSONValue, State, encode
from ..models import Action
from .base import NAMESPACE, PeerRow, deletes_for_gone_rows
from .users import Users

DELETED_REASON = (
    "deleted before the import from django-pghistory, whose events hold no delete of it (no DeleteEvent "
    "tracker, or a delete it did not track): the time of the delete is unknown"
)
_COPY = "copy"  # a copy of the row: its create when it is the row's first event, else an update
_SKIP = "skip"  # the OLD row of an update: not imported
_BY_LABEL = {"insert": Action.CREATE, "update": Action.UPDATE, "delete": Action.DELETE}
# At one moment in two event tables, what was inserted came before what was updated, then deleted.
_RANK = {Action.CREATE: 0, _COPY: 1, Action.UPDATE: 1, Action.DELETE: 2}


def event_models(model: type[models.Model]) -> list[type[models.Model]]:
    """The event models pghistory writes for ``model`` that name the row of each event (``pgh_obj``, or its key)."""
    found = pghistory.core.event_models(tracks_model=model, include_missing_pgh_obj=True)
    return sorted((m for m in found if _pk_attname(m, model) is not None), key=lambda m: m._meta.label)


def _pk_attname(event_model: type[models.Model], model: type[models.Model]) -> str | None:
    copied = {f.attname for f in event_model._meta.concrete_fields}
    if "pgh_obj_id" in copied:
        return "pgh_obj_id"
    pk = model._meta.pk
    return pk.attname if pk is not None and pk.attname in copied else None


def _kinds(event_model: type[models.Model]) -> dict[str, str]:
    """What each label of ``event_model``'s row trackers writes: an action, ``_COPY`` or ``_SKIP``."""
    kinds: dict[str, str] = {}
    for tracker in getattr(event_model, "pgh_trackers", None) or ():
        if not isinstance(tracker, pghistory.core.RowEvent) or not tracker.label:
            continue
        operations = {part.split()[0] for part in str(tracker.operation).split(" OR ")}  # "UPDATE OF a" too
        if tracker.row == "OLD":
            kinds[tracker.label] = Action.DELETE if operations == {"DELETE"} else _SKIP
        elif operations == {"INSERT"}:
            kinds[tracker.label] = Action.CREATE
        elif operations == {"UPDATE"}:
            kinds[tracker.label] = Action.UPDATE
        else:
            kinds[tracker.label] = _COPY
    return kinds


def _context_columns(event_model: type[models.Model]) -> tuple[str | None, str | None]:
    """Where ``event_model``'s rows hold their context's metadata and its id (``None``: not kept)."""
    names = {f.name: f for f in event_model._meta.concrete_fields}
    if isinstance(names.get("pgh_context"), models.ForeignKey):
        return "pgh_context__metadata", "pgh_context_id"
    if "pgh_context" in names:  # a ContextJSONField: the metadata in the row, and its id if kept
        return "pgh_context", "pgh_context_id" if "pgh_context_id" in names else None
    return None, None


@dataclass
class _Event:
    """One event row, as read: ordered by (at, rank, table) when the tables are merged."""

    at: Any
    rank: int
    table: int
    pgh_id: int
    kind: str
    pk: Any
    state: State
    metadata: Any
    context_id: Any


@dataclass(frozen=True)
class _Layout:
    """Where one event model's rows hold what an event needs, and what each of its labels writes."""

    spec: registry.ModelSpec
    table: int  # the event model's place among the row's: the last tie-break of the merge
    pk_attname: str
    fields: list[models.Field[Any, Any]]  # the row's fields the event model copies
    metadata_column: str | None
    id_column: str | None
    kinds: dict[str, str]

    @classmethod
    def of(cls, spec: registry.ModelSpec, event_model: type[models.Model], table: int) -> _Layout:
        pk_attname = _pk_attname(event_model, spec.model)
        assert pk_attname is not None
        copied = {f.attname for f in event_model._meta.concrete_fields}
        fields = [f for f in spec.fields if f.attname in copied and not f.attname.startswith("pgh_")]
        metadata_column, id_column = _context_columns(event_model)
        return cls(spec, table, pk_attname, fields, metadata_column, id_column, _kinds(event_model))

    def columns(self) -> list[str]:
        columns = ["pgh_id", "pgh_created_at", "pgh_label", self.pk_attname, *(f.attname for f in self.fields)]
        return columns + [c for c in (self.metadata_column, self.id_column) if c is not None and c not in columns]

    def event(self, by_column: dict[str, Any]) -> _Event:
        label = by_column["pgh_label"]
        kind: str = self.kinds.get(label) or _BY_LABEL.get(label) or _COPY
        pk = by_column[self.pk_attname]
        state = {f.name: encode(f, by_column[f.attname]) for f in self.fields}
        state[self.spec.pk_field.name] = encode(self.spec.pk_field, pk)
        metadata = None if self.metadata_column is None else by_column[self.metadata_column]
        context_id = None if self.id_column is None else by_column[self.id_column]
        at, pgh_id = by_column["pgh_created_at"], by_column["pgh_id"]
        return _Event(at, _RANK[kind], self.table, pgh_id, kind, pk, state, metadata, context_id)


class Pghistory:
    name = "pghistory"
    id_key = "pghistory_event"  # "app_label.EventModel:pgh_id": pgh_id is unique in its table only

    def tracked_models(self) -> list[type[models.Model]]:
        return [spec.model for spec in registry.registered_specs() if event_models(spec.model)]

    def _events(self, event_model: type[models.Model], using: str) -> Any:
        skipped = [label for label, kind in _kinds(event_model).items() if kind == _SKIP]
        return event_model._base_manager.using(using).exclude(pgh_label__in=skipped)

    def count(self, model: type[models.Model], using: str) -> int:
        return sum(self._events(event_model, using).count() for event_model in event_models(model))

    def _read(
        self, spec: registry.ModelSpec, event_model: type[models.Model], table: int, using: str, batch_size: int
    ) -> Iterator[_Event]:
        layout = _Layout.of(spec, event_model, table)
        columns = layout.columns()
        rows = self._events(event_model, using).order_by("pgh_created_at", "pgh_id").values_list(*columns)
        for values in rows.iterator(chunk_size=batch_size):
            yield layout.event(dict(zip(columns, values, strict=True)))

    def rows(self, spec: registry.ModelSpec, using: str, batch_size: int) -> Iterator[PeerRow]:
        tables = event_models(spec.model)
        streams = [self._read(spec, event_model, index, using, batch_size) for index, event_model in enumerate(tables)]
        users = Users(using)
        seen: set[Any] = set()
        for event in heapq.merge(*streams, key=lambda e: (e.at, e.rank, e.table)):
            peer_id = f"{tables[event.table]._meta.label}:{event.pgh_id}"
            kind = event.kind
            if kind == _COPY:
                kind = Action.UPDATE if event.pk in seen else Action.CREATE
            seen.add(event.pk)
            if kind == Action.DELETE:
                seen.discard(event.pk)
            actor, context = _context(event.metadata, event.context_id)
            operation = f"context:{event.context_id}" if event.context_id is not None else peer_id
            yield PeerRow(
                peer_id=peer_id,
                pk=event.pk,
                at=event.at,
                action=kind,
                state=event.state,
                operation=uuid.uuid5(NAMESPACE, f"pghistory:{operation}"),
                actor_id=actor,
                actor_repr=users.repr(actor),
                context=context,
            )

    def finish(self, spec: registry.ModelSpec, using: str, dry_run: bool, planned: dict[str, State | None]) -> int:
        return deletes_for_gone_rows(self, spec, using, dry_run, planned, DELETED_REASON)


def _context(metadata: Any, context_id: Any) -> tuple[str | None, dict[str, JSONValue]]:
    """The actor (the metadata's ``user``, a user's key) and the event's context from a pghistory context."""
    context: dict[str, JSONValue] = dict(metadata) if isinstance(metadata, dict) else {}
    user = context.pop("user", None)
    actor: str | None = None
    if isinstance(user, (int, str)) and not isinstance(user, bool):
        actor = str(user)
    elif user is not None:
        context["user"] = user
    if "url" in context:
        context["path"] = context.pop("url")
    if context_id is not None:
        context["pghistory_context_id"] = str(context_id)
    return actor, context
