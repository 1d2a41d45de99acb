"""A gap-free cursor over committed events: read the next batch after a position.

The rule (docs/relay.rst, "The cursor"): a reader never skips an event and
never sees an uncommitted one, whatever the concurrency of writers, and it
reads each row's events in the order of their versions.

Reading by ``id`` alone loses events: an id is taken at INSERT, before COMMIT,
so a transaction holding id 10 may commit after another committed id 11, and a
reader that saw 11 and moved past it never sees 10.

* **PostgreSQL.** Each event carries its writing transaction's id (the
  ``xid`` column, filled by the column default ``pg_current_xact_id()``,
  migration 0006). A position is a pair of snapshots (``pg_current_snapshot()``,
  kept as text): ``snapshot``, every transaction visible in it has been read,
  and ``window``, the snapshot being read. A window holds the events of the
  transactions visible in ``window`` and not in ``snapshot``
  (``pg_visible_in_snapshot``), read by ``id``. Every transaction that commits
  becomes visible in exactly one window, after it has committed, so no event
  is skipped, read twice, or read before its COMMIT. Per row, versions come in
  order: a row's next event is written by an INSERT that saw the previous one
  committed, so it has a larger id (same window) or belongs to a later window
  (it committed later), never an earlier one. Ordering by transaction id
  instead would not keep that: a transaction that took its id early, then
  waited for a row lock, writes the row's next version with a smaller xid.
* **SQLite.** One writer at a time: a transaction takes ids only while it
  holds the database's write lock, until COMMIT or ROLLBACK, and ids only grow.
  Once a reader sees id N, every smaller id that will ever commit has
  committed, so ``id > position`` is the whole rule.
* **Other backends** (MariaDB, MySQL): refused. InnoDB takes auto-increment
  ids at INSERT and commits in any order, and exposes no snapshot a reader
  could compare a transaction id to; see docs/relay.rst.

Queries (docs/relay.rst, "What a read costs"): on SQLite one per read; on
PostgreSQL two per page (the largest id, then the events, one query per
10,000 ids walked), plus two when a window opens (its snapshot, and its first
event's id through the ``xid`` index): four for a batch that opens one. An
idle read is one query (the snapshot), two when any transaction committed
since the last read, in any database of the server (the snapshot moved; a
relay's own position UPDATE does).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from django.db import DEFAULT_DB_ALIAS, NotSupportedError, connections

from . import backends
from .models import Event

DEFAULT_LIMIT = 500
_RANGE = 10_000  # PostgreSQL: ids per range of the primary key a page reads (see ``_PostgreSQL._page``)
_TABLE = Event._meta.db_table
_COLUMNS = ", ".join(str(f.column) for f in Event._meta.concrete_fields)


@dataclass(frozen=True)
class Position:
    """Where a reader stands; ``Position.start()`` is before the first event.

    ``snapshot``: every event of a transaction visible in this PostgreSQL
    snapshot has been read ("": none). ``window``: the snapshot being read
    ("": none open). ``after_id``: the events of the window up to this id have
    been read; on SQLite, every event up to this id.
    """

    snapshot: str = ""
    window: str = ""
    after_id: int = 0

    @classmethod
    def start(cls) -> Position:
        return cls()


@dataclass(frozen=True)
class Batch:
    """Events in the order to read them, and the position after the last one."""

    events: list[Event] = field(default_factory=list)
    position: Position = field(default_factory=Position)


def read(
    position: Position,
    limit: int = DEFAULT_LIMIT,
    using: str = DEFAULT_DB_ALIAS,
    *,
    content_types: Collection[int] | None = None,
    exclude: bool = False,
) -> Batch:
    """The next committed events after ``position``, at most ``limit`` of them.

    An empty batch means that every event committed when the call began has
    been read; read again later from the batch's position (which may have
    moved on even so: always keep the latest).

    ``content_types`` (ids), if given, reads only the events of those content
    types, or, with ``exclude``, only those of the others: a partition of the
    stream. Readers of complementary partitions, each from its own position,
    read every event once between them, each row's versions in order (a row's
    events are all in one partition). A position belongs to its partition:
    read it with the same ``content_types`` each time.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit!r}")
    if content_types is None:
        where = ""
    elif not content_types:
        raise ValueError("content_types must name at least one content type (None: all of them)")
    else:
        ids = ", ".join(str(int(pk)) for pk in sorted(content_types))  # integers only: inlined safely
        where = f" AND e.content_type_id {'NOT IN' if exclude else 'IN'} ({ids})"
    return _reader(using).read(position, limit, where)


def now(using: str = DEFAULT_DB_ALIAS) -> Position:
    """A position after every event committed so far (to start reading from now on)."""
    return _reader(using).now()


def _reader(using: str) -> _PostgreSQL | _SQLite:
    connection = connections[using]
    order = backends.of(connection).commit_order
    reader = None if order is None else _READERS[order]
    if reader is None:
        raise NotSupportedError(
            f"audit_events.stream does not support {connection.display_name} (database {using!r}): "
            "it has no gap-free order of committed events; see docs/relay.rst."
        )
    return reader(using)


def _events(using: str, sql: str, params: Any) -> list[Event]:
    return list(Event.objects.using(using).raw(sql, params))


class _PostgreSQL:
    """Windows between snapshots (see the module docstring)."""

    def __init__(self, using: str) -> None:
        self.using = using

    def _snapshot(self) -> str:
        with connections[self.using].cursor() as cursor:
            cursor.execute("SELECT pg_current_snapshot()::text")
            return str(cursor.fetchone()[0])

    def now(self) -> Position:
        return Position(snapshot=self._snapshot())

    def read(self, position: Position, limit: int, where: str = "") -> Batch:
        if position.window:
            batch = self._page(position, limit, where)
            if batch.events:
                return batch
            position = batch.position  # the open window was read to its end: open the next one
        window = self._snapshot()
        if window == position.snapshot:  # the same snapshot: nothing has committed since
            return Batch([], position)
        # Every statement from here on runs in a snapshot taken after ``window``: it sees all its events.
        first = self._first_id(position.snapshot, window) if position.snapshot else 1
        if first is None:
            return Batch([], Position(snapshot=window))
        return self._page(Position(position.snapshot, window, first - 1), limit, where)

    def _first_id(self, snapshot: str, window: str) -> int | None:
        """The smallest id of the window's events, found through the ``xid`` index, once per window.

        The pages then walk the primary key from there: a page costs its own
        rows, not a sort of the whole window (which a backlog of 100,000
        events made quadratic).
        """
        with connections[self.using].cursor() as cursor:
            cursor.execute(
                # Transactions below the old snapshot's xmin were all visible in it: the index's range.
                f"WITH candidates AS MATERIALIZED (SELECT id, xid FROM {_TABLE} "
                "WHERE xid >= pg_snapshot_xmin(%(snapshot)s::pg_snapshot) "
                "AND xid < pg_snapshot_xmax(%(window)s::pg_snapshot)) "
                "SELECT MIN(id) FROM candidates "
                "WHERE pg_visible_in_snapshot(xid, %(window)s::pg_snapshot) "
                "AND NOT pg_visible_in_snapshot(xid, %(snapshot)s::pg_snapshot)",
                {"snapshot": snapshot, "window": window},
            )
            first = cursor.fetchone()[0]
        return None if first is None else int(first)

    def _page(self, position: Position, limit: int, where: str) -> Batch:
        """The window's next events: its transactions, minus those already read, by id.

        The primary key is read in ranges of ``_RANGE`` ids up to the largest id
        now (every event of the window is below it: all were inserted before the
        window's snapshot was taken), so that a page costs a bounded index range
        whatever the plan the table's statistics suggest (a sequential scan and a
        sort of the whole table, on a table grown since it was last analyzed).
        """
        if position.snapshot:
            newly = (
                "pg_visible_in_snapshot(e.xid, %(window)s::pg_snapshot) "
                "AND NOT pg_visible_in_snapshot(e.xid, %(snapshot)s::pg_snapshot)"
            )
        else:  # the first window: everything committed, events from before migration 0006 (NULL) too
            newly = "(e.xid IS NULL OR pg_visible_in_snapshot(e.xid, %(window)s::pg_snapshot))"
        sql = (
            f"SELECT {_COLUMNS} FROM {_TABLE} AS e WHERE e.id > %(after)s AND e.id <= %(upto)s AND {newly}{where} "
            "ORDER BY e.id LIMIT %(limit)s"
        )
        with connections[self.using].cursor() as cursor:
            cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {_TABLE}")
            top = int(cursor.fetchone()[0])
        events: list[Event] = []
        after = position.after_id
        while True:
            upto = min(after + _RANGE, top)
            params = {"window": position.window, "snapshot": position.snapshot, "after": after, "upto": upto}
            events += _events(self.using, sql, params | {"limit": limit - len(events)})
            if len(events) == limit:  # perhaps more in this window
                return Batch(events, Position(position.snapshot, position.window, events[-1].id))
            if upto >= top:  # the window is read: the next read opens another
                return Batch(events, Position(snapshot=position.window))
            after = upto


class _SQLite:
    """By id: one writer at a time (see the module docstring)."""

    def __init__(self, using: str) -> None:
        self.using = using

    def now(self) -> Position:
        with connections[self.using].cursor() as cursor:
            cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {_TABLE}")
            return Position(after_id=int(cursor.fetchone()[0]))

    def read(self, position: Position, limit: int, where: str = "") -> Batch:
        sql = f"SELECT {_COLUMNS} FROM {_TABLE} AS e WHERE e.id > %s{where} ORDER BY e.id LIMIT %s"
        events = _events(self.using, sql, [position.after_id, limit])
        return Batch(events, Position(after_id=events[-1].id) if events else position)


_READERS: dict[str, type[_PostgreSQL] | type[_SQLite]] = {"snapshots": _PostgreSQL, "single writer": _SQLite}
