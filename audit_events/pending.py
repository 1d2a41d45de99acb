"""The events of a connection's open transaction, waiting for their INSERT.

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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib.contenttypes.models import ContentType
from django.db import DatabaseError, Error

from . import backends, conf, inserts, prepared
from .models import Event

if TYPE_CHECKING:
    from .journal import Draft

_PENDING = "_audit_events_pending"
_EVENT_TABLE = Event._meta.db_table


def _unmigrated(error: DatabaseError) -> bool:
    """Whether ``error`` says the event table, or one of its columns, does not exist: its migrations
    are not applied. PostgreSQL: undefined_table, undefined_column; SQLite, MySQL and MariaDB say so in
    words (MySQL: 1146 "Table ... doesn't exist", 1054 "Unknown column")."""
    text = str(error)
    if _EVENT_TABLE not in text:
        return False
    words = ("no such table", "no such column", "has no column named", "doesn't exist", "Unknown column")
    return prepared.sqlstate(error) in ("42P01", "42703") or any(w in text for w in words)


def _unmigrated_message(error: DatabaseError, alias: str) -> str:
    command = "manage.py migrate audit_events" + ("" if alias == "default" else f" --database {alias}")
    cause = str(error).splitlines()[0]
    return f"The event table is missing or out of date ({cause}): run `{command}`. Nothing was written."


@dataclass(frozen=True)
class Row:
    """One waiting event: the row it is about, and its values as the INSERT takes them."""

    key: tuple[str, str]  # (content type label, object pk): one row's events keep their order
    record: dict[str, Any]  # by column name (``inserts._COLUMNS``), made by ``journal``


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


@dataclass(frozen=True)
class Hooks:
    """How a :class:`Pending` takes the place of its connection's transaction methods (``install``
    returns what it replaced) and gives them back (``remove``): ``wiring.connections`` sets them when
    the app is ready, the one package that patches Django."""

    install: Callable[[Any, Pending], dict[str, Any]]
    remove: Callable[[Any, dict[str, Any]], None]


hooks: Hooks | None = None


class Pending:
    """The events of a connection's open transaction that are not inserted yet.

    Created on a connection's first event in a transaction, it takes the place of
    that connection's transaction methods (:data:`WRAPPED`, through :data:`hooks`;
    on the instance: other connections are untouched) until the transaction ends,
    and, while events wait, puts an execute wrapper first in ``execute_wrappers``
    that inserts them before any statement naming the event table.
    """

    WRAPPED = ("commit", "rollback", "savepoint", "savepoint_rollback", "close", "set_autocommit")

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.rows: list[Row] = []
        # What waits for this transaction's later creates and its COMMIT (:class:`Awaiting`), in the
        # order written: a rollback to a savepoint drops those written after it.
        self.awaiting: list[Awaiting] = []
        self.created: set[tuple[str, str]] = set()  # (label, object_pk) created while something awaits
        # Per savepoint: what awaited and what was created when it was taken. A savepoint taken
        # before this object existed (before the connection's first event) has no mark: nothing then.
        self._marks: dict[Any, tuple[int, frozenset[tuple[str, str]]]] = {}
        # The connection's own methods, called by the wrappers below.
        self.original = {name: getattr(connection, name) for name in self.WRAPPED}
        if hooks is None:
            raise RuntimeError("audit_events recorded a write before its app was ready (INSTALLED_APPS).")
        self._replaced = hooks.install(connection, self)

    @classmethod
    def of(cls, connection: Any) -> Pending:
        pending: Pending | None = connection.__dict__.get(_PENDING)
        if pending is None:
            pending = connection.__dict__[_PENDING] = cls(connection)
        return pending

    @classmethod
    def on(cls, connection: Any) -> Pending | None:
        """The connection's, if it has had events (:meth:`of` makes it on the first)."""
        pending: Pending | None = connection.__dict__.get(_PENDING)
        return pending

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, rows: list[Row]) -> None:
        if rows and not self.rows:
            self.connection.execute_wrappers.insert(0, self._before_event_reads)
        self.rows.extend(rows)

    def complete_creates(self, drafts: Sequence[Draft]) -> None:
        """Hand a write's drafts to what awaits this transaction's creates (:class:`Awaiting`)."""
        if self.awaiting:
            self.created.update((d.content_type_label, d.object_pk) for d in drafts if d.action == "create")
            for complete in dict.fromkeys(entry.complete for entry in self.awaiting):
                complete(drafts, self.awaiting)

    def flush(self) -> None:
        if not self.rows:
            return
        rows = self._drop()
        every = conf.get_config().snapshot_every
        try:
            _resolve_content_types(rows, self.connection.alias)
            with self.connection.cursor() as cursor:
                for batch in _batches(rows, inserts.batch_size(self.connection)):
                    inserts.insert(cursor, self.connection, [row.record for row in batch], every)
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
        """The transaction ended: what waited for its rows' creation or its COMMIT is void, and the
        connection gets its own methods back (its next transaction's first event makes a new one)."""
        self.awaiting.clear()
        self.created.clear()
        self._marks.clear()
        self.detach()

    def detach(self) -> None:
        if self.connection.__dict__.get(_PENDING) is self:
            del self.connection.__dict__[_PENDING]
            assert hooks is not None
            hooks.remove(self.connection, self._replaced)

    def _still_open(self) -> bool:
        """After a failed COMMIT: SQLite keeps the transaction open (PostgreSQL ends it)."""
        return bool(getattr(self.connection.connection, "in_transaction", False))

    def _drop(self) -> list[Row]:
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
            # Django ignores close() of an in-memory SQLite database (closing would destroy it): the
            # transaction goes on, and its events wait with it.
            if self.connection.connection is None or self.connection.closed_in_transaction:
                self._drop()
                self._forget()

    def set_autocommit(self, autocommit: bool, *args: Any, **kwargs: Any) -> None:
        # SQLite and MySQL commit what is open without a commit() call; PostgreSQL's drivers refuse
        # to turn autocommit on inside a transaction, which goes on.
        if autocommit and backends.of(self.connection).autocommit_commits:
            self._before_commit()
            self._forget()
        elif autocommit:
            self.flush()
        self.original["set_autocommit"](autocommit, *args, **kwargs)


def _resolve_content_types(rows: list[Row], using: str) -> None:
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


def _batches(rows: Sequence[Row], size: int) -> Iterable[list[Row]]:
    """Batches of at most ``size`` in which no row appears twice (versions are computed per statement)."""
    if len({row.key for row in rows}) == len(rows):  # the common case: each row once
        for start in range(0, len(rows), size):
            yield list(rows[start : start + size])
        return
    pending = list(rows)
    while pending:
        batch: list[Row] = []
        seen: set[tuple[str, str]] = set()
        rest: list[Row] = []
        for row in pending:
            if row.key in seen or len(batch) >= size:
                rest.append(row)
            else:
                seen.add(row.key)
                batch.append(row)
        yield batch
        pending = rest
