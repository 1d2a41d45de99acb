"""Writing events: the only code that inserts into the event table.

An event's ``version`` and ``hash`` are computed by the database inside the
INSERT itself, from the row's latest event. That keeps capture to one
statement per batch of events, and it stays right under concurrency: a writer
that waited for another's row lock runs its INSERT in a fresh snapshot
(READ COMMITTED), so it sees the event the other writer committed.

Hash format (documented in docs/integrity.rst)::

    hash = sha256_hex(previous_hash_of_the_same_row + canonical_json(content))

with ``previous_hash`` empty for a row's first event, and ``content`` the
event's fields as in :func:`hash_content`.
"""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections, models
from django.db.models import Case, Func, Subquery, Value, When
from django.db.models.functions import Coalesce, Concat, Mod
from django.db.models.lookups import Exact
from django.utils import timezone

from . import conf
from .context import current_context
from .encoding import JSONValue, canonical_json
from .models import Event
from .operations import current_operation

BATCH_SIZE = 500
State = dict[str, JSONValue]
_PARAMS_PER_EVENT = 20


class Sha256Hex(Func):
    """Lower-case hex SHA-256 of a text, on every backend the app supports.

    Django's own ``SHA256`` needs pgcrypto on PostgreSQL; the built-in
    ``sha256()`` (PostgreSQL 11+) does not.
    """

    function = "SHA256"  # SQLite: registered by Django's backend on each connection
    arity = 1
    output_field = models.CharField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(
            compiler, connection, template="encode(sha256(convert_to(%(expressions)s, 'UTF8')), 'hex')", **extra
        )

    def as_mysql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, template="SHA2(%(expressions)s, 256)", **extra)


@dataclass(frozen=True)
class Draft:
    """An event about to be written; version and hash are left to the database."""

    content_type_id: int
    content_type_label: str
    object_pk: str
    action: str
    changes: dict[str, Any] = field(default_factory=dict)
    state: State | None = None
    # A full state to store only if the event's version falls on a snapshot.
    snapshot: State | None = None
    operation: uuid.UUID = field(default_factory=current_operation)
    created_at: datetime.datetime = field(default_factory=timezone.now)


def hash_content(
    *,
    content_type: str,
    object_pk: str,
    action: str,
    changes: Any,
    state: Any,
    created_at: datetime.datetime,
    operation: uuid.UUID | str,
    actor_id: str | None,
    actor_repr: str,
    context: Any,
) -> str:
    """The canonical text of an event's content, which the hash chain covers."""
    return canonical_json(
        {
            "action": action,
            "actor_id": actor_id,
            "actor_repr": actor_repr,
            "changes": changes,
            "content_type": content_type,
            "context": context,
            "created_at": _canonical_time(created_at),
            "object_pk": object_pk,
            "operation": str(operation),
            "state": state,
        }
    )


def event_hash_content(event: Event) -> str:
    """Recompute :func:`hash_content` from a stored event (used by verification)."""
    ct = event.content_type
    return hash_content(
        content_type=f"{ct.app_label}.{ct.model}",
        object_pk=event.object_pk,
        action=event.action,
        changes=event.changes,
        state=event.state,
        created_at=event.created_at,
        operation=event.operation,
        actor_id=event.actor_id,
        actor_repr=event.actor_repr,
        context=event.context,
    )


def _canonical_time(moment: datetime.datetime) -> str:
    if timezone.is_aware(moment):
        moment = moment.astimezone(datetime.timezone.utc)
    return moment.isoformat(timespec="microseconds")


def _latest(draft: Draft, column: str) -> Subquery:
    return Subquery(
        Event.objects.filter(content_type_id=draft.content_type_id, object_pk=draft.object_pk)
        .order_by("-version")
        .values(column)[:1]
    )


def _event(draft: Draft, actor_fields: dict[str, Any]) -> Event:
    def content(state: State | None) -> str:
        return hash_content(
            content_type=draft.content_type_label,
            object_pk=draft.object_pk,
            action=draft.action,
            changes=draft.changes,
            state=state,
            created_at=draft.created_at,
            operation=draft.operation,
            **actor_fields,
        )

    version = Coalesce(_latest(draft, "version"), 0) + 1
    # A missing state is SQL NULL (Value(None, JSONField()) would be JSON null).
    state: Any = draft.state
    hashed: Any = Value(content(draft.state))
    if draft.state is None and draft.snapshot is not None:
        # Only the database knows this event's version (a writer that waited for
        # the row lock may be further on than it read), so it decides whether the
        # event lands on a snapshot: the row's first event, or every N-th.
        every = conf.get_config().snapshot_every
        due = [Exact(version, 1), Exact(Mod(version, every), 0)]
        snapshot = Value(draft.snapshot, models.JSONField())
        state = Case(*(When(condition, then=snapshot) for condition in due))
        with_state = Value(content(draft.snapshot))
        hashed = Case(*(When(condition, then=with_state) for condition in due), default=Value(content(None)))
    return Event(
        content_type_id=draft.content_type_id,
        object_pk=draft.object_pk,
        version=version,
        action=draft.action,
        changes=draft.changes,
        state=state,
        created_at=draft.created_at,
        operation=draft.operation,
        hash=Sha256Hex(Concat(Coalesce(_latest(draft, "hash"), Value("")), hashed)),
        **actor_fields,
    )


def _batch_size(using: str) -> int:
    """Events per INSERT: ``BATCH_SIZE``, or fewer where the backend caps query parameters.

    Each event binds about ``_PARAMS_PER_EVENT`` parameters (its columns and
    the row key twice more for the version and hash subqueries); Django sizes
    batches by columns only, which would overshoot SQLite's 999.
    """
    limit = connections[using].features.max_query_params
    return BATCH_SIZE if limit is None else max(1, min(BATCH_SIZE, limit // _PARAMS_PER_EVENT))


def _batches(drafts: Sequence[Draft], size: int) -> Iterable[list[Draft]]:
    """Batches of at most ``size`` in which no row appears twice (versions are computed per statement)."""
    pending = list(drafts)
    while pending:
        batch: list[Draft] = []
        seen: set[tuple[int, str]] = set()
        rest: list[Draft] = []
        for draft in pending:
            key = (draft.content_type_id, draft.object_pk)
            if key in seen or len(batch) >= size:
                rest.append(draft)
            else:
                seen.add(key)
                batch.append(draft)
        yield batch
        pending = rest


def write(drafts: Sequence[Draft], using: str) -> None:
    """Insert the drafts as events.

    Queries: one INSERT per batch of up to ``BATCH_SIZE`` events (fewer on
    SQLite, see :func:`_batch_size`); a row appearing twice goes to a later
    batch, to keep its versions in order.
    """
    if not drafts:
        return
    fields = current_context().event_fields()
    fields["context"] = json.loads(json.dumps(fields["context"], cls=DjangoJSONEncoder))
    for batch in _batches(drafts, _batch_size(using)):
        Event.objects.using(using).bulk_create([_event(d, fields) for d in batch])
