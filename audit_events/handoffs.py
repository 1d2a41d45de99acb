"""What a write of a registered row hands from its ``pre_`` signal to its ``post_`` one.

Each save or delete puts one record on its instance in ``pre_save`` or
``pre_delete`` (:class:`SaveRecord`, :class:`DeleteRecord`; a bare
:class:`Record` for a write not recorded) and its ``post_`` signal takes it
back (``capture``). Records stack, innermost last: a receiver may save or
delete the same instance again between the two signals. While a record
travels, the context knows it in two more ways: the saves whose statement has
run (:func:`finish`), recorded first by a write that starts before their
``post_save`` (``recording.record_finished_saves``); and the records holding
an old row read before their statement (:func:`watch`), read again when a
write of the same row is recorded in between.

And the scope of one ``delete()`` call (:func:`deleting`), whose DELETE
statements may return the rows they delete (``backends``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from django.db import models

from . import backends, journal, registry
from .rows import live_state

if TYPE_CHECKING:
    from .backends.postgresql import ReturningDeletes
    from .encoding import State

# instance.__dict__ key: the records its writes in progress hand over, innermost last (:func:`handoffs`).
_HANDOFFS = "_audit_events_handoffs"


@dataclasses.dataclass(kw_only=True)
class Record:
    """What one write hands from its pre_ signal to its post_ one; this alone: a write not recorded
    (capture paused), whose post_ signal takes it back and records nothing."""

    recorded: bool = False  # its event is written (a write of the same instance came before its post_ signal)


@dataclasses.dataclass(kw_only=True)
class SaveRecord(Record):
    """What one save of a registered model hands from ``pre_save`` to ``post_save``.

    ``old`` is the row before (``None``: there was none), ``old_from_update``
    says the UPDATE will bring it back itself (PostgreSQL; SQLite for a composite
    key: ``capture.do_update``).
    ``new`` holds, field by field, the row as the database answered the save's
    INSERT or UPDATE (``RETURNING``); ``read_back`` says a statement did not
    answer (Django compiled it itself): ``post_save`` then reads the row.
    ``parents_old``: a multi-table child's row there was none of, the rows its
    registered parents had with its key, by parent model (a child row given to
    an existing parent row: the save updates the parent's, ``rows.parent_rows``).
    """

    old: State | None = None
    old_from_update: bool = False
    new: State = dataclasses.field(default_factory=dict)
    read_back: bool = False
    raw: bool = False
    written: bool = False  # its INSERT or UPDATE has run
    matched: bool = False  # Django's own UPDATE (not ours) matched a row
    parents_old: dict[type[models.Model], State] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(kw_only=True)
class DeleteRecord(Record):
    """What one delete of a registered row hands from ``pre_delete`` to ``post_delete``.

    ``state`` is the row as locked before the DELETE; ``None``: there was no
    row, or ``returned``: the DELETE returns it (:func:`deleting`).
    """

    state: State | None
    returned: bool = False
    operation: Any


def handoffs(instance: models.Model) -> list[Record]:
    """The records of ``instance``'s saves and deletes between their pre_ and post_ signals, innermost last."""
    found: list[Record] = instance.__dict__.setdefault(_HANDOFFS, [])
    return found


def handoff_depth(instance: models.Model) -> int:
    return len(instance.__dict__.get(_HANDOFFS, ()))


def innermost(instance: models.Model) -> Record | None:
    """The record of the innermost write of ``instance`` in progress."""
    found = instance.__dict__.get(_HANDOFFS)
    return found[-1] if found else None


def forget_handoffs(instance: models.Model, depth: int) -> None:
    """Drop what saves or deletes that failed before their post_ signal left above ``depth``."""
    found = instance.__dict__.get(_HANDOFFS)
    if found is not None and len(found) > depth:
        del found[depth:]
    if found is not None and not found:
        del instance.__dict__[_HANDOFFS]  # an instance no write is in progress on carries nothing
    forget_finished(instance)
    unwatch(instance)


def pop_handoff(instance: models.Model) -> Record | None:
    found = instance.__dict__.get(_HANDOFFS)
    if not found:
        return None
    record: Record = found.pop()
    if not found:
        del instance.__dict__[_HANDOFFS]
    return record


# Saves whose INSERT or UPDATE has run and whose post_save has not recorded them yet, in this
# context: a write of a registered row that starts meanwhile (a post_save receiver connected
# before this app's writing the same row) records them first (``recording.record_finished_saves``).
_finished: ContextVar[tuple[tuple[models.Model, SaveRecord, str], ...]] = ContextVar(
    "audit_events_finished", default=()
)


def finish(instance: models.Model, saving: SaveRecord, using: str) -> None:
    saving.written = True
    _finished.set((*_finished.get(), (instance, saving, using)))


def take_finished() -> tuple[tuple[models.Model, SaveRecord, str], ...]:
    """The finished saves not recorded yet, forgotten here: the caller records them."""
    finished = _finished.get()
    if finished:
        _finished.set(())
    return finished


def forget_finished(instance: models.Model) -> None:
    """Drop ``instance``'s saves from the finished ones once recorded, or failed (no longer handed over)."""
    kept = instance.__dict__.get(_HANDOFFS) or []
    finished = _finished.get()
    if any(entry[0] is instance for entry in finished):
        _finished.set(tuple(e for e in finished if e[0] is not instance or (e[1] in kept and not e[1].recorded)))


# Saves and deletes holding an old row read before their statement (no RETURNING of it): a
# write of the same row recorded in between (a receiver connected after this app's) makes it
# stale, so it is read again then (:func:`_read_again`, told by ``journal.write``).
_watched: ContextVar[tuple[tuple[models.Model, Record, registry.ModelSpec, str], ...]] = ContextVar(
    "audit_events_watched", default=()
)


def watch(instance: models.Model, record: Record, spec: registry.ModelSpec, using: str) -> None:
    _watched.set((*_watched.get(), (instance, record, spec, using)))
    journal.written.set(_read_again)


def unwatch(instance: models.Model) -> None:
    """Stop watching ``instance``'s records that are no longer handed over (done, or failed)."""
    watched = _watched.get()
    if any(entry[0] is instance for entry in watched):
        kept = instance.__dict__.get(_HANDOFFS) or []
        left = tuple(e for e in watched if e[0] is not instance or e[1] in kept)
        _watched.set(left)
        if not left:
            journal.written.set(None)


def _read_again(drafts: Sequence[journal.Draft], using: str) -> None:
    written = {(draft.content_type_label, draft.object_pk) for draft in drafts}
    for instance, record, spec, db in _watched.get():
        if db != using or (spec.model._meta.label_lower, spec.object_pk(instance.pk)) not in written:
            continue
        if isinstance(record, SaveRecord) and not record.written and not record.old_from_update:
            record.old = live_state(spec, db, instance.pk, no_key=True)
        elif isinstance(record, DeleteRecord) and record.state is not None and not record.recorded:
            record.state = live_state(spec, db, instance.pk)


class DeleteScope:
    """The deletes of one ``delete()`` or ``QuerySet.delete()`` call, per connection object."""

    def __init__(self) -> None:
        self.connections: dict[int, ReturningDeletes] = {}
        # The instances whose pre_delete handed a record over, and where in their handoffs():
        # a delete that fails before post_delete leaves it there, dropped when the call ends.
        self.pushed: list[tuple[models.Model, int]] = []

    def on(self, connection: Any) -> ReturningDeletes:
        """The connection's DELETE statements, returning rows (where ``delete_returns_rows``)."""
        returning = self.connections.get(id(connection))
        if returning is None or returning.connection is not connection:
            returning = self.connections[id(connection)] = backends.of(connection).returning_deletes(connection)
        return returning

    def made_again(self, connection: Any, spec: registry.ModelSpec, pk: Any) -> State | None:
        """``ReturningDeletes.made_again`` on ``connection``; ``None`` where its DELETEs return nothing."""
        returning = self.connections.get(id(connection))
        if returning is None or returning.connection is not connection:
            return None
        return returning.made_again(spec, pk)


_deleting: ContextVar[DeleteScope | None] = ContextVar("audit_events_deleting", default=None)


def delete_scope() -> DeleteScope | None:
    """The scope of the ``delete()`` call in progress, if any (:func:`deleting`)."""
    return _deleting.get()


@contextlib.contextmanager
def deleting() -> Iterator[None]:
    """Around a ``delete()``/``QuerySet.delete()``: on PostgreSQL the DELETE returns the rows.

    Django's Collector deletes rows with ``DELETE FROM t WHERE t.pk IN (...)``;
    for a registered one-table model without many-to-many fields, whose
    ``pre_delete`` read nothing, that statement gets ``RETURNING`` the
    columns the locking SELECT would have read, while this is active
    (``backends.postgresql.ReturningDeletes``): the old row costs no statement of its own.
    """
    if _deleting.get() is not None:
        yield  # the outer call's scope holds
        return
    scope = DeleteScope()
    token = _deleting.set(scope)
    try:
        yield
    finally:
        _deleting.reset(token)
        for returning in scope.connections.values():
            returning.remove()
        for instance, depth in scope.pushed:
            forget_handoffs(instance, depth)
