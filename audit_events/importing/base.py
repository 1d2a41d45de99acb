"""Writing a peer's history rows as events: ordering, skipping, resuming, batching.

A peer row becomes one event of the same row, in the peer's time order, with
the peer's timestamp, actor and comment, and the peer's own id in its
context (``{"imported_from": "simple_history", "simple_history_id": 123}``).
That id is what makes the import idempotent and resumable: every batch is
committed on its own, and a run first reads which peer ids are already
imported, skipping them. A row that already has events not imported from
this peer (recorded since the model was registered) is skipped whole: its
imported past would be numbered after its recorded present.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.db import models, router, transaction
from django.utils import timezone

from .. import journal, registry
from ..context import storable
from ..encoding import JSONValue, State
from ..models import Action, Event
from ..recording import diff
from ..replay import recorded_state, spec_or_error

DEFAULT_BATCH_SIZE = 1000
# Every imported event's operation is derived from the peer's own grouping (a history row, a revision),
# so that a second import of the same peer row, were it ever made, would carry the same one.
NAMESPACE = uuid.UUID("7c1f4a52-5a0e-4d55-9b3e-2f4f0e7d3a11")


@dataclass(frozen=True)
class PeerRow:
    """One history row of a peer, ready to become an event."""

    peer_id: int | str  # unique among the peer's rows of one model
    pk: Any  # the row's primary key
    at: datetime.datetime
    action: str  # Action.CREATE, UPDATE or DELETE
    # The fields the peer copied, encoded; None for a delete the peer kept no copy of. A copy without some
    # fields (the peer did not track them) keeps their previous values.
    state: State | None
    operation: uuid.UUID
    actor_id: str | None = None
    actor_repr: str = ""
    context: dict[str, JSONValue] = field(default_factory=dict)  # reason... (the peer's id is added)


class Peer(Protocol):
    name: str  # "simple_history": context["imported_from"]
    id_key: str  # "simple_history_id": the context key holding PeerRow.peer_id

    def tracked_models(self) -> list[type[models.Model]]:
        """The models registered here that the peer keeps history of."""

    def count(self, model: type[models.Model], using: str) -> int:
        """How many history rows the peer holds of ``model``."""

    def rows(self, spec: registry.ModelSpec, using: str, batch_size: int) -> Iterator[PeerRow]:
        """The peer's rows of ``spec.model``, oldest first (ties in the peer's own order)."""

    def finish(self, spec: registry.ModelSpec, using: str, dry_run: bool, planned: dict[str, State | None]) -> int:
        """Write (unless ``dry_run``) the events the peer's history implies but holds no row for (reversion's
        deletes); return how many. ``planned``: the state this run leaves each row it imported in."""


@dataclass
class ImportResult:
    imported: int = 0  # events written (or, with dry_run, that would be)
    already: int = 0  # peer rows imported by an earlier run
    skipped_rows: dict[str, int] = field(default_factory=dict)  # object_pk -> peer rows not imported
    finished: int = 0  # events of Peer.finish


def import_model(
    peer: Peer,
    model: type[models.Model],
    *,
    using: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Write the peer's history of ``model`` as events; return what was (or, ``dry_run``, would be) written.

    One transaction per ``batch_size`` peer rows. Queries: two SELECTs of the
    events already there (imported peer ids; rows with other events), then per
    batch the peer's SELECT and one INSERT per ``journal.BATCH_SIZE`` events,
    plus one ``recorded_state`` read per row continued from an earlier run.
    """
    spec = spec_or_error(model)
    db = using or router.db_for_write(model)
    content_type_id = spec.content_type_id(db)
    events = Event.objects.using(db).filter(content_type_id=content_type_id)
    imported_ids = {
        str(peer_id): object_pk
        for object_pk, peer_id in events.filter(context__imported_from=peer.name).values_list(
            "object_pk", f"context__{peer.id_key}"
        )
    }
    continued = set(imported_ids.values())
    foreign = set(events.exclude(context__has_key=peer.id_key).values_list("object_pk", flat=True).distinct())
    result = ImportResult()
    states: dict[str, State | None] = {}
    batch: list[tuple[journal.Draft, journal.Author]] = []
    seen = 0

    def flush() -> None:
        nonlocal seen
        if batch and not dry_run:
            with transaction.atomic(using=db):
                for draft, author in batch:
                    journal.write([draft], db, by=author)
        batch.clear()
        if progress and seen:
            progress(seen)
        seen = 0

    for row in peer.rows(spec, db, batch_size):
        seen += 1
        object_pk = spec.object_pk(row.pk)
        if str(row.peer_id) in imported_ids:
            result.already += 1
        elif object_pk in foreign:
            result.skipped_rows[object_pk] = result.skipped_rows.get(object_pk, 0) + 1
        else:
            if object_pk not in states:
                states[object_pk] = recorded_state(spec, row.pk, using=db) if object_pk in continued else None
            previous = states[object_pk]
            batch.append((_draft(spec, content_type_id, object_pk, row, previous), _author(peer, row)))
            states[object_pk] = None if row.action == Action.DELETE else _merged(previous, row.state)
            result.imported += 1
        if seen >= batch_size:
            flush()
    flush()
    result.finished = peer.finish(spec, db, dry_run, states)
    return result


def deletes_for_gone_rows(
    peer: Peer, spec: registry.ModelSpec, using: str, dry_run: bool, planned: dict[str, State | None], reason: str
) -> int:
    """A delete event for each row imported as existing whose table row is gone (a :meth:`Peer.finish`).

    For a peer whose history can lack a row's delete (django-reversion records none; django-pghistory none
    without a delete tracker): the event is written at the time of the import, the real one being unknown,
    with ``reason``. ``planned``: the state each row is left in by this run's import (not written, with
    ``dry_run``). Returns how many were (or would be) written.
    """
    content_type_id = spec.content_type_id(using)
    events = Event.objects.using(using).filter(content_type_id=content_type_id)
    imported = set(events.filter(context__imported_from=peer.name).values_list("object_pk", flat=True))
    candidates = sorted(imported | set(planned) if dry_run else imported)
    written = 0
    for start in range(0, len(candidates), 1000):
        chunk = {text: spec.pk_field.to_python(text) for text in candidates[start : start + 1000]}
        live = _live(spec, using, list(chunk.values()))
        for text, pk in chunk.items():
            if text in live:
                continue
            if dry_run and text in planned:
                written += planned[text] is not None
                continue
            last = events.filter(object_pk=text).order_by("-version").first()
            if last is None or last.action == Action.DELETE or last.context.get("imported_from") != peer.name:
                continue  # deleted already, or recorded since the import: not the import's to say
            written += 1
            if not dry_run:
                _write_gone(peer, spec, using, last, pk, reason)
    return written


def _live(spec: registry.ModelSpec, using: str, pks: list[Any]) -> set[str]:
    """The object_pk texts of the rows of ``pks`` still in the table (one query)."""
    rows = spec.model._base_manager.using(using).filter(pk__in=pks)
    return {spec.object_pk(pk) for pk in rows.values_list("pk", flat=True)}


def _write_gone(peer: Peer, spec: registry.ModelSpec, using: str, last: Event, pk: Any, reason: str) -> None:
    """The delete event of the row ``pk`` gone from the table, whose ``last`` event the import wrote."""
    text = last.object_pk
    draft = journal.Draft.of(
        spec,
        pk,
        Action.DELETE,
        state=recorded_state(spec, pk, using=using),
        operation=uuid.uuid5(NAMESPACE, f"{peer.name}:deleted:{spec.model._meta.label_lower}:{text}"),
        created_at=timezone.now(),
        content_type_id=last.content_type_id,
        object_pk=text,
    )
    # The peer id after which the row was deleted, as the event's peer id: its own, and a
    # second run finds it imported.
    after = last.context.get(peer.id_key)
    context = {"imported_from": peer.name, peer.id_key: f"deleted after {after}", "reason": reason}
    with transaction.atomic(using=using):
        journal.write([draft], using, by=journal.Author.given(None, "", context))


def _merged(previous: State | None, copy: State | None) -> State | None:
    if copy is None:
        return previous
    return copy if previous is None else {**previous, **copy}


def _draft(
    spec: registry.ModelSpec, content_type_id: int, object_pk: str, row: PeerRow, previous: State | None
) -> journal.Draft:
    state = _merged(previous, row.state)
    if row.action == Action.DELETE:
        changes: dict[str, Any] = {}
    elif row.action == Action.UPDATE and previous is not None:
        changes = diff(previous, state or {})
    else:
        changes = {}
    return journal.Draft.of(
        spec,
        row.pk,
        row.action,
        changes=changes,
        state=state,
        operation=row.operation,
        created_at=row.at,
        content_type_id=content_type_id,
        object_pk=object_pk,
    )


def _author(peer: Peer, row: PeerRow) -> journal.Author:
    context = storable({**row.context, "imported_from": peer.name, peer.id_key: row.peer_id})
    actor_id = None if row.actor_id is None else storable(row.actor_id)[:255]
    return journal.Author.given(actor_id, storable(row.actor_repr)[:255], context)
