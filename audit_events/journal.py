"""Writing events: the only code that inserts into the event table.

An event's ``version`` and ``hash`` are computed by the database inside the
INSERT itself, from the row's latest event. That keeps capture to one
statement per batch of events, and it stays right under concurrency: a writer
that waited for another's row lock runs its INSERT in a fresh snapshot
(READ COMMITTED), so it sees the event the other writer committed.

Inside a transaction, events wait on the connection (:class:`Pending`) and
are inserted together just before COMMIT: one INSERT for up to
``BATCH_SIZE`` events, however many writes made them. They are inserted
earlier whenever something could see them missing: before any statement that
names the event table (history, restore, the admin, raw SQL), before a
savepoint is created, and when ``BATCH_SIZE`` of them are waiting. A
rollback, or a rollback to a savepoint, drops the ones waiting, which were
all made after the savepoint. If the INSERT fails at COMMIT, the transaction
is rolled back and the error raised: the writes and their events commit
together or not at all. A connection that cannot even roll back (its server
process was killed) is closed, as Django's ``atomic()`` closes it, so the
next query opens a new one.

Hash format (documented in docs/integrity.rst)::

    hash = sha256_hex(previous_hash_of_the_same_row + canonical_json(content))

with ``previous_hash`` empty for a row's first event, and ``content`` the
event's fields as in :func:`hash_content`.
"""

from __future__ import annotations

import datetime
import functools
import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.contrib.contenttypes.models import ContentType
from django.db import DatabaseError, Error, connections
from django.utils import timezone

from . import conf, prepared
from .context import current_context
from .encoding import JSONValue, State, canonical_json
from .models import Event
from .operations import current_operation

if TYPE_CHECKING:
    from .registry import ModelSpec

_CREATED_AT = Event._meta.get_field("created_at")
_OPERATION = Event._meta.get_field("operation")

BATCH_SIZE = 500
_PARAMS_PER_EVENT = 20


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs several times more, per event
class Draft:
    """An event about to be written; version and hash are left to the database.

    ``content_type_id`` ``None`` (what capture gives) means the content type of
    ``content_type_label`` on the database the event is written to, looked up
    when the event is inserted (:meth:`Pending.flush`): a write's own
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
        moment = moment.astimezone(datetime.UTC)
    return moment.isoformat(timespec="microseconds")


# One row of the derived table the INSERT reads: the draft's values, then its
# version and the hash of the row's previous event, looked up by the database.
_COLUMNS = (
    "content_type_id",
    "object_pk",
    "action",
    "changes",
    "state",  # always stored (create, delete, restore...), or NULL
    "snapshot",  # stored only if the version falls on a snapshot, or NULL
    "created_at",
    "operation",
    "actor_id",
    "actor_repr",
    "context",
    # The hashed content up to its state, which comes last: the database appends
    # the state's canonical text (the one stored) or null, and the closing brace.
    "content_head",
)
_JSON = {"changes", "state", "snapshot", "context"}
_PG_TYPES = dict.fromkeys(_COLUMNS, "text") | {
    "content_type_id": "integer",
    "created_at": "timestamptz",
    "operation": "uuid",
}


@functools.lru_cache(maxsize=64)
def _sql(alias: str, rows: int, every: int) -> str:
    """``INSERT INTO event ... SELECT ...`` for ``rows`` drafts.

    The statement is plain SQL, built once per batch shape: compiling ORM
    expressions per event cost far more than the round trip it saves. On
    PostgreSQL and SQLite the drafts come as one JSON document, a list of
    records by ``_COLUMNS`` name (``json_to_recordset``, ``json_each``): the
    statement is the same whatever the batch size, and short, where a
    ``VALUES`` list of 500 rows was 6,500 parameters for the driver to parse
    and quote (and SQLite's 999 parameters held a batch to 49 events).
    Elsewhere they come as ``VALUES`` rows (``rows`` of them). The database
    computes each event's version (the row's latest + 1), whether it stores a
    state (always, or when the version is 1 or a multiple of SNAPSHOT_EVERY)
    and its hash (SHA-256 of the previous hash + the content).
    """
    connection = connections[alias]
    quote = connection.ops.quote_name
    table = quote(Event._meta.db_table)
    postgres = connection.vendor == "postgresql"

    def cast(column: str, value: str) -> str:
        if not postgres:
            return value
        kind = {"created_at": "timestamptz", "operation": "uuid"}.get(column, "jsonb" if column in _JSON else None)
        return f"CAST({value} AS {kind})" if kind else value

    def sha256(value: str) -> str:
        return f"encode(sha256(convert_to({value}, 'UTF8')), 'hex')" if postgres else f"SHA256({value})"

    n = len(_COLUMNS)
    values = ", ".join("(" + ", ".join(["%s"] * n) + ")" for _ in range(rows))
    named = ", ".join(f"v.column{i + 1} AS {name}" for i, name in enumerate(_COLUMNS))
    latest = (
        f"SELECT {{column}} FROM {table} AS e WHERE e.content_type_id = d.content_type_id "
        "AND e.object_pk = d.object_pk ORDER BY e.version DESC LIMIT 1"
    )
    if postgres:
        record = ", ".join(f"{column} {kind}" for column, kind in _PG_TYPES.items())
        drafts = f"json_to_recordset(%s::json) AS d({record})"
    elif connection.vendor == "sqlite":  # the values a VALUES row would bind: a JSON string gives TEXT
        extracted = ", ".join(f"json_extract(j.value, '$.{name}') AS {name}" for name in _COLUMNS)
        drafts = f"(SELECT {extracted} FROM json_each(%s) AS j ORDER BY j.key) AS d"
    else:
        drafts = f"(SELECT {named} FROM (VALUES {values}) AS v) AS d"
    if postgres:
        # One index lookup per event for both the version and the previous hash.
        last = f"LEFT JOIN LATERAL ({latest.format(column='e.version, e.hash')}) AS last ON true"
        numbered = (
            "SELECT d.*, COALESCE(last.version, 0) + 1 AS version, COALESCE(last.hash, '') AS previous "
            f"FROM {drafts} {last} OFFSET 0"
        )
    else:
        numbered = (
            f"SELECT d.*, COALESCE(({latest.format(column='e.version')}), 0) + 1 AS version, "
            f"COALESCE(({latest.format(column='e.hash')}), '') AS previous FROM {drafts} LIMIT -1 OFFSET 0"
        )
    # OFFSET 0: w is computed once per event, not once per use of w.version below.
    # "%%": a literal % for the drivers' parameter style (SQLite's too, through Django).
    keeps = f"(w.state IS NOT NULL OR (w.snapshot IS NOT NULL AND (w.version = 1 OR w.version %% {int(every)} = 0)))"
    hashed_state = f"CASE WHEN {keeps} THEN COALESCE(w.state, w.snapshot) ELSE 'null' END"
    columns = [
        "content_type_id", "object_pk", "version", "action", "changes", "state",
        "created_at", "operation", "actor_id", "actor_repr", "context", "hash",
    ]  # fmt: skip
    select = [
        "w.content_type_id",
        "w.object_pk",
        "w.version",
        "w.action",
        cast("changes", "w.changes"),
        f"CASE WHEN w.state IS NOT NULL THEN {cast('state', 'w.state')} WHEN {keeps} "
        f"THEN {cast('state', 'w.snapshot')} ELSE NULL END",
        cast("created_at", "w.created_at"),
        cast("operation", "w.operation"),
        "w.actor_id",
        "w.actor_repr",
        cast("context", "w.context"),
        sha256(f"w.previous || w.content_head || {hashed_state} || '}}'"),
    ]
    into = f"INSERT INTO {table} ({', '.join(quote(c) for c in columns)})"
    return f"{into} SELECT {', '.join(select)} FROM ({numbered}) AS w"


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
        head_id = "null" if actor_id is None else _text(actor_id)
        return cls(
            actor_id=actor_id,
            actor_repr=actor_repr,
            context=context,
            head_actor=f',"actor_id":{head_id},"actor_repr":{_text(actor_repr)}',
            head_context=f',"context":{canonical_json(plain)}',
        )


_text = json.encoder.encode_basestring  # a str as canonical_json writes it
_DOCUMENT = json.JSONEncoder(ensure_ascii=False)  # made once: json.dumps(..., ensure_ascii=False) makes one per call


def _record(draft: Draft, author: Author, connection: Any) -> dict[str, Any]:
    """The draft's values by ``_COLUMNS`` name, as the connection's INSERT takes them.

    The hashed content is :func:`hash_content`'s text, written here member by
    member in its key order, so that the canonical JSON of the changes is made
    once, both stored and hashed (a test holds the two equal). Its state comes
    last and is left out: a state is written once, as canonical JSON, both the
    text stored and the text hashed, and the database appends it (or ``null``)
    and the closing brace.
    """
    changes = canonical_json(draft.changes) if draft.changes else "{}"
    created_at, operation = _canonical_time(draft.created_at), str(draft.operation)
    head = (
        f'{{"action":{_text(draft.action)}{author.head_actor},"changes":{changes},'
        f'"content_type":{_text(draft.content_type_label)}{author.head_context},"created_at":{_text(created_at)},'
        f'"object_pk":{_text(draft.object_pk)},"operation":{_text(operation)},"state":'
    )
    postgres = connection.vendor == "postgresql"  # the record goes as JSON: times and UUIDs as text
    return {
        "content_type_id": draft.content_type_id,
        "object_pk": draft.object_pk,
        "action": draft.action,
        "changes": changes,
        "state": None if draft.state is None else canonical_json(draft.state),
        "snapshot": None if draft.state is not None or draft.snapshot is None else canonical_json(draft.snapshot),
        "created_at": created_at if postgres else _CREATED_AT.get_db_prep_save(draft.created_at, connection),
        "operation": operation if postgres else _OPERATION.get_db_prep_save(draft.operation, connection),
        "actor_id": author.actor_id,
        "actor_repr": author.actor_repr,
        "context": author.context,
        "content_head": head,
    }


def _one_document(connection: Any) -> bool:
    """Whether the INSERT takes its drafts as one JSON document (:func:`_sql`)."""
    return connection.vendor in ("postgresql", "sqlite")


def _batch_size(connection: Any) -> int:
    """Events per INSERT: ``BATCH_SIZE``, or fewer where each draft is parameters of its own
    (``VALUES`` rows) and the backend caps them.

    Such an event binds about ``_PARAMS_PER_EVENT`` parameters (its columns and
    the row key twice more for the version and hash subqueries); Django sizes
    batches by columns only, which would overshoot a cap.
    """
    limit = None if _one_document(connection) else connection.features.max_query_params
    return BATCH_SIZE if limit is None else max(1, min(BATCH_SIZE, limit // _PARAMS_PER_EVENT))


def _batches(rows: Sequence[_Row], size: int) -> Iterable[list[_Row]]:
    """Batches of at most ``size`` in which no row appears twice (versions are computed per statement)."""
    if len({row.key for row in rows}) == len(rows):  # the common case: each row once
        for start in range(0, len(rows), size):
            yield list(rows[start : start + size])
        return
    pending = list(rows)
    while pending:
        batch: list[_Row] = []
        seen: set[tuple[str, str]] = set()
        rest: list[_Row] = []
        for row in pending:
            if row.key in seen or len(batch) >= size:
                rest.append(row)
            else:
                seen.add(row.key)
                batch.append(row)
        yield batch
        pending = rest


# Told the drafts of every write() while set: capture's, while a save or delete holds an old row
# read before its statement, which a write of the same row in between (a receiver) makes stale.
written: ContextVar[Callable[[Sequence[Draft], str], None] | None] = ContextVar("audit_events_written", default=None)


def write(drafts: Sequence[Draft], using: str, *, by: Author | None = None) -> None:
    """Record the drafts as events of the current transaction.

    The actor and context are taken now (``by``, when given, names them); the INSERT waits for COMMIT (or an
    earlier flush, see :class:`Pending`). Outside ``atomic()``, and in an
    atomic block of a transaction managed by hand, it is immediate. Queries:
    one INSERT per batch of up to ``BATCH_SIZE`` events (:func:`_batch_size`);
    a row appearing twice goes to a later batch, to keep
    its versions in order.
    """
    if not drafts:
        return
    connection = connections[using]
    author = Author.now() if by is None else by
    pending = Pending.of(connection)
    if pending.awaiting:
        pending.created.update((d.content_type_label, d.object_pk) for d in drafts if d.action == "create")
        for complete in dict.fromkeys(entry.complete for entry in pending.awaiting):
            complete(drafts, pending.awaiting)
    pending.add([_Row((d.content_type_label, d.object_pk), _record(d, author, connection)) for d in drafts])
    # An atomic block inside a transaction managed by hand (set_autocommit(False))
    # ends without COMMIT: its events cannot wait for one.
    if not connection.in_atomic_block or not connection.commit_on_exit or len(pending) >= BATCH_SIZE:
        pending.flush()
    if (told := written.get()) is not None:
        told(drafts, using)


def flush(using: str) -> None:
    """Insert the events waiting on connection ``using`` now (a no-op if none are)."""
    pending: Pending | None = connections[using].__dict__.get(_PENDING)
    if pending is not None:
        pending.flush()


def _resolve_content_types(rows: list[_Row], using: str) -> None:
    """Fill in the content type of the rows whose draft left it to the insert (``Draft``).

    The content type of database ``using``, the one the events are inserted
    into: ids may differ between databases. Looked up once per model and
    database (Django's cache); only a model's first event on a database costs
    a SELECT, run here, just before the INSERT, never among the write's own
    statements. Like ``get_for_model()``, a content type not there yet is created.
    """
    manager = ContentType.objects.db_manager(using)
    ids: dict[str, int] = {}
    for row in rows:
        if row.record["content_type_id"] is None:
            label = row.key[0]
            found = ids.get(label)
            if found is None:
                app_label, model = label.split(".")
                try:
                    found = ids[label] = manager.get_by_natural_key(app_label, model).pk
                except ContentType.DoesNotExist:
                    found = ids[label] = manager.get_or_create(app_label=app_label, model=model)[0].pk
            row.record["content_type_id"] = found


_PENDING = "_audit_events_pending"
_EVENT_TABLE = Event._meta.db_table


def _unmigrated(error: DatabaseError) -> bool:
    """Whether ``error`` says the event table, or one of its columns, does not exist: its migrations
    are not applied. PostgreSQL: undefined_table, undefined_column; SQLite says so in words."""
    text = str(error)
    if _EVENT_TABLE not in text:
        return False
    words = ("no such table", "no such column", "has no column named")
    return prepared.sqlstate(error) in ("42P01", "42703") or any(w in text for w in words)


def _unmigrated_message(error: DatabaseError, alias: str) -> str:
    command = "manage.py migrate audit_events" + ("" if alias == "default" else f" --database {alias}")
    cause = str(error).splitlines()[0]
    return f"The event table is missing or out of date ({cause}): run `{command}`. Nothing was written."


@dataclass(frozen=True)
class _Row:
    key: tuple[str, str]  # (content type label, object pk): one row's events keep their order
    record: dict[str, Any]  # by _COLUMNS name


@dataclass(frozen=True, eq=False)
class Awaiting:
    """Something a write left for its transaction's later creates and its COMMIT.

    ``m2m`` leaves one for links written to rows that do not exist yet (a
    deferred foreign key): ``complete(drafts, awaiting)`` adds to the create
    events of such rows the links they have, ``at_commit(awaiting, created)``
    records the links of those rows created by another transaction meanwhile.
    Each function is called once for all the entries that name it.
    """

    complete: Callable[[Sequence[Draft], list[Awaiting]], None]
    at_commit: Callable[[list[Awaiting], set[tuple[str, str]]], None]
    data: Any


class Pending:
    """The events of a connection's open transaction that are not inserted yet.

    Created on a connection's first event, it wraps that connection's
    transaction methods (``_WRAPPED``; on the instance: other connections are
    untouched), and, while events wait, puts an execute wrapper first in
    ``execute_wrappers`` that inserts them before any statement naming the
    event table.
    """

    _WRAPPED = ("commit", "rollback", "savepoint", "savepoint_rollback", "close", "set_autocommit")

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.rows: list[_Row] = []
        # What waits for this transaction's later creates and its COMMIT (:class:`Awaiting`), in the
        # order written: a rollback to a savepoint drops those written after it.
        self.awaiting: list[Awaiting] = []
        self.created: set[tuple[str, str]] = set()  # (label, object_pk) created while something awaits
        # Per savepoint: what awaited and what was created when it was taken. A savepoint taken
        # before this object existed (before the connection's first event) has no mark: nothing then.
        self._marks: dict[Any, tuple[int, frozenset[tuple[str, str]]]] = {}
        # The connection's own methods, called by the wrappers below.
        self.original = {name: getattr(connection, name) for name in self._WRAPPED}
        for name in self._WRAPPED:
            setattr(connection, name, getattr(self, name))

    @classmethod
    def of(cls, connection: Any) -> Pending:
        pending: Pending | None = connection.__dict__.get(_PENDING)
        if pending is None:
            pending = connection.__dict__[_PENDING] = cls(connection)
        return pending

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, rows: list[_Row]) -> None:
        if rows and not self.rows:
            self.connection.execute_wrappers.insert(0, self._before_event_reads)
        self.rows.extend(rows)

    def flush(self) -> None:
        if not self.rows:
            return
        rows = self._drop()
        every = conf.get_config().snapshot_every
        try:
            _resolve_content_types(rows, self.connection.alias)
            with self.connection.cursor() as cursor:
                for batch in _batches(rows, _batch_size(self.connection)):
                    if _one_document(self.connection):  # a list of rows
                        document = _DOCUMENT.encode([row.record for row in batch])
                        prepared.execute(cursor, _sql(self.connection.alias, 0, every), [document])
                    else:
                        values = [row.record[column] for row in batch for column in _COLUMNS]
                        cursor.execute(_sql(self.connection.alias, len(batch), every), values)
        except BaseException as error:
            # The events are lost with this error: the writes they record must not commit
            # without them, even if the caller catches it.
            if self.connection.in_atomic_block:
                self.connection.needs_rollback = True
            if isinstance(error, DatabaseError) and _unmigrated(error):
                raise type(error)(_unmigrated_message(error, self.connection.alias)) from error
            raise

    def _before_commit(self) -> None:
        if self.awaiting:
            awaiting, created = list(self.awaiting), set(self.created)
            for at_commit in dict.fromkeys(entry.at_commit for entry in awaiting):
                at_commit(awaiting, created)
        self.flush()

    def _forget(self) -> None:
        """The transaction ended: what waited for its rows' creation or its COMMIT is void."""
        self.awaiting.clear()
        self.created.clear()
        self._marks.clear()

    def _still_open(self) -> bool:
        """After a failed COMMIT: SQLite keeps the transaction open (PostgreSQL ends it)."""
        return bool(getattr(self.connection.connection, "in_transaction", False))

    def _drop(self) -> list[_Row]:
        rows, self.rows = self.rows, []
        if rows and self._before_event_reads in self.connection.execute_wrappers:
            self.connection.execute_wrappers.remove(self._before_event_reads)
        return rows

    def _before_event_reads(self, execute: Any, sql: Any, params: Any, many: bool, context: Any) -> Any:
        if not isinstance(sql, str) or _EVENT_TABLE in sql:
            self.flush()
        return execute(sql, params, many, context)

    # The connection's transaction methods, wrapped.

    def commit(self) -> None:
        self.connection.validate_no_atomic_block()
        try:
            self._before_commit()
        except BaseException:
            try:
                self.rollback()  # the writes go with their events
            except Error:
                # The connection is broken (its server process was killed...): drop it, as
                # Django's atomic() does when a rollback fails, so the next query opens a new
                # one, and raise the error that broke it, as a COMMIT there would have.
                self.connection.close()
            raise
        try:
            self.original["commit"]()
        except BaseException:
            if not self._still_open():
                self._forget()
            raise
        self._forget()

    def rollback(self) -> None:
        self.connection.validate_no_atomic_block()  # refused inside atomic(): nothing is rolled back
        try:
            self.original["rollback"]()
        finally:
            self._drop()
            self._forget()

    def savepoint(self) -> Any:
        self.flush()  # what waits now was made before the savepoint: a rollback to it must keep it
        sid = self.original["savepoint"]()
        self._marks[sid] = (len(self.awaiting), frozenset(self.created))
        return sid

    def savepoint_rollback(self, sid: Any) -> None:
        try:
            self.original["savepoint_rollback"](sid)
        finally:
            self._drop()  # everything waiting was made after the latest savepoint, so after this one
            awaited, created = self._marks.get(sid, (0, frozenset()))
            del self.awaiting[awaited:]
            self.created = set(created)

    def close(self) -> None:
        try:
            self.original["close"]()
        finally:
            self._drop()
            self._forget()

    def set_autocommit(self, autocommit: bool, *args: Any, **kwargs: Any) -> None:
        # SQLite and MySQL commit what is open without a commit() call; PostgreSQL's drivers refuse
        # to turn autocommit on inside a transaction, which goes on.
        if autocommit and self.connection.vendor != "postgresql":
            self._before_commit()
            self._forget()
        elif autocommit:
            self.flush()
        self.original["set_autocommit"](autocommit, *args, **kwargs)
