"""Writing events: the drafts a write makes, and the rows the event INSERT takes.

An event's ``version`` and ``hash`` are computed by the database inside the
INSERT itself, from the row's latest event (``inserts``). That keeps capture
to one statement per batch of events, and it stays right under concurrency:
a writer that waited for another's row lock runs its INSERT in a fresh
snapshot (READ COMMITTED), so it sees the event the other writer committed.

Inside a transaction, events wait on the connection until COMMIT, or until
something could see them missing (``pending``). What the hash covers is
``hashing``.
"""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.db import connections
from django.utils import timezone

from . import backends
from .context import current_context
from .encoding import JSONValue, State, canonical_json
from .hashing import canonical_time
from .inserts import BATCH_SIZE
from .models import Event
from .operations import current_operation
from .pending import Pending, Row

if TYPE_CHECKING:
    from .registry import ModelSpec

_CREATED_AT = Event._meta.get_field("created_at")
_OPERATION = Event._meta.get_field("operation")


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs several times more, per event
class Draft:
    """An event about to be written; version and hash are left to the database.

    ``content_type_id`` ``None`` (what capture gives) means the content type of
    ``content_type_label`` on the database the event is written to, looked up
    when the event is inserted (:meth:`.pending.Pending.flush`): a write's own
    statements never include that lookup. Made by :meth:`of`.
    """

    content_type_id: int | None
    content_type_label: str
    object_pk: str
    action: str
    changes: dict[str, Any] = field(default_factory=dict)
    state: State | None = None
    # A full state to store only if the event's version falls on a snapshot.
    snapshot: State | None = None
    operation: uuid.UUID = field(default_factory=current_operation)
    created_at: datetime.datetime = field(default_factory=timezone.now)

    @classmethod
    def of(
        cls,
        spec: ModelSpec,
        pk: Any,
        action: str,
        *,
        changes: dict[str, Any] | None = None,
        state: State | None = None,
        snapshot: State | None = None,
        operation: uuid.UUID | None = None,
        created_at: datetime.datetime | None = None,
        content_type_id: int | None = None,
        object_pk: str | None = None,
    ) -> Draft:
        """The event ``action`` of ``spec``'s row ``pk``: the one way the app makes a draft
        (capture, restore, snapshots, verify, the importers).

        ``object_pk`` is ``spec.object_pk(pk)`` unless given: a caller that holds the text
        already (read from events) passes it, kept as it is, and ``pk`` is not read. ``content_type_id``
        ``None`` leaves the lookup to the insert (what capture does: a write's own statements
        never include it); the others pass the id they looked up. The
        operation is the current one and ``created_at`` now unless given (the importers
        give the peer's).
        """
        return cls(
            content_type_id,
            spec.model._meta.label_lower,
            spec.object_pk(pk) if object_pk is None else object_pk,
            action,
            {} if changes is None else changes,
            state,
            snapshot,
            current_operation() if operation is None else operation,
            timezone.now() if created_at is None else created_at,
        )


@dataclass(frozen=True)
class Author:
    """What the events of one :func:`write` share: who wrote them, in what context.

    ``head_actor`` and ``head_context`` hold the same values as canonical JSON
    members, ready for :func:`_record`'s content head.
    """

    actor_id: str | None
    actor_repr: str
    context: str  # stored: plain JSON as the JSONField would write it
    head_actor: str  # ',"actor_id":...,"actor_repr":...'
    head_context: str  # ',"context":...'

    @classmethod
    def now(cls) -> Author:
        fields = current_context().event_fields()
        return cls.given(fields["actor_id"], fields["actor_repr"], fields["context"])

    @classmethod
    def given(cls, actor_id: str | None, actor_repr: str, plain: dict[str, JSONValue]) -> Author:
        """Named by the caller, not the current context: ``audit_import`` writes each imported event with the
        peer's actor and comment. ``plain`` is plain JSON, already :func:`~.context.storable`."""
        context = json.dumps(plain) if plain else "{}"
        head_id = "null" if actor_id is None else json_string(actor_id)
        return cls(
            actor_id=actor_id,
            actor_repr=actor_repr,
            context=context,
            head_actor=f',"actor_id":{head_id},"actor_repr":{json_string(actor_repr)}',
            head_context=f',"context":{canonical_json(plain)}',
        )


json_string = json.encoder.encode_basestring  # a str as canonical_json writes it


def content_pieces(action: str, author: Author, content_type: str, created_at: str, operation: str) -> list[str]:
    """The hashed content (``hashing.hash_content``) of an event the database writes, in pieces around
    what it encodes: an update's in three, around its changes and its object_pk; a delete's or create's in
    two, around its object_pk. Its state (or ``null``) and the closing brace follow."""
    head = f'{{"action":{json_string(action)}{author.head_actor},"changes":'
    middle = (
        f',"content_type":{json_string(content_type)}{author.head_context},"created_at":{json_string(created_at)},'
        '"object_pk":'
    )
    tail = f',"operation":{json_string(operation)},"state":'
    return [head, middle, tail] if action == "update" else [head + "{}" + middle, tail]


def _record(draft: Draft, author: Author, connection: Any) -> dict[str, Any]:
    """The draft's values by column name, as the connection's INSERT takes them (``inserts``).

    The hashed content is :func:`~.hashing.hash_content`'s text, written here member by
    member in its key order, so that the canonical JSON of the changes is made
    once, both stored and hashed (a test holds the two equal). Its state comes
    last and is left out: a state is written once, as canonical JSON, both the
    text stored and the text hashed, and the database appends it (or ``null``)
    and the closing brace.
    """
    changes = canonical_json(draft.changes) if draft.changes else "{}"
    created_at, operation = canonical_time(draft.created_at), str(draft.operation)
    head = (
        f'{{"action":{json_string(draft.action)}{author.head_actor},"changes":{changes},'
        f'"content_type":{json_string(draft.content_type_label)}{author.head_context},"created_at":{json_string(created_at)},'
        f'"object_pk":{json_string(draft.object_pk)},"operation":{json_string(operation)},"state":'
    )
    as_text = backends.of(connection).event_values_as_text  # the INSERT casts times and UUIDs itself
    return {
        "content_type_id": draft.content_type_id,
        "object_pk": draft.object_pk,
        "action": draft.action,
        "changes": changes,
        "state": None if draft.state is None else canonical_json(draft.state),
        "snapshot": None if draft.state is not None or draft.snapshot is None else canonical_json(draft.snapshot),
        "created_at": created_at if as_text else _CREATED_AT.get_db_prep_save(draft.created_at, connection),
        "operation": operation if as_text else _OPERATION.get_db_prep_save(draft.operation, connection),
        "actor_id": author.actor_id,
        "actor_repr": author.actor_repr,
        "context": author.context,
        "content_head": head,
    }


# Told the drafts of every write() while set: capture's, while a save or delete holds an old row
# read before its statement, which a write of the same row in between (a receiver) makes stale.
written: ContextVar[Callable[[Sequence[Draft], str], None] | None] = ContextVar("audit_events_written", default=None)


def write(drafts: Sequence[Draft], using: str, *, by: Author | None = None) -> None:
    """Record the drafts as events of the current transaction.

    The actor and context are taken now (``by``, when given, names them); the INSERT waits for COMMIT (or an
    earlier flush, see :class:`Pending`). Outside ``atomic()``, and in an
    atomic block of a transaction managed by hand, it is immediate. Queries:
    one INSERT per batch of up to ``BATCH_SIZE`` events (:func:`.inserts.batch_size`);
    a row appearing twice goes to a later batch, to keep
    its versions in order.
    """
    if not drafts:
        return
    connection = connections[using]
    author = Author.now() if by is None else by
    pending = Pending.of(connection)
    pending.complete_creates(drafts)
    pending.add([Row((d.content_type_label, d.object_pk), _record(d, author, connection)) for d in drafts])
    # An atomic block inside a transaction managed by hand (set_autocommit(False))
    # ends without COMMIT: its events cannot wait for one.
    if not connection.in_atomic_block or not connection.commit_on_exit or len(pending) >= BATCH_SIZE:
        pending.flush()
    if connection.get_autocommit():  # no transaction: nothing waits for a COMMIT
        pending.detach()
    if (told := written.get()) is not None:
        told(drafts, using)


def flush(using: str) -> None:
    """Insert the events waiting on connection ``using`` now (a no-op if none are)."""
    pending = Pending.on(connections[using])
    if pending is not None:
        pending.flush()
