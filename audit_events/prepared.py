"""PostgreSQL: this app's own hot statements, planned once per connection.

For the one-row ``UPDATE ... FROM (SELECT ... FOR NO KEY UPDATE)`` of a save,
PostgreSQL spends more time planning than running it (about 100 of 150 µs
on the benchmark machine), and the event ``INSERT`` is planned again in
every transaction. Django binds parameters on the client (psycopg2 always,
psycopg 3 unless ``server_side_binding`` is on), so nothing is ever
prepared. This module prepares those two statements with SQL ``PREPARE`` on
their first use on a connection and runs ``EXECUTE`` after. The first use
sends both in one string, so it costs no extra round trip, and the query
count stays the same.

Off, so that every statement is sent as it is, where a connection may not
keep its session from one transaction to the next, where psycopg
prepares by itself, or where queries are logged:

* ``AUDIT_EVENTS["PREPARE_STATEMENTS"] = False``;
* ``DISABLE_SERVER_SIDE_CURSORS`` set for the database: Django asks it of
  PgBouncer's transaction pooling, which would run an ``EXECUTE`` on a
  server connection that never saw the ``PREPARE``;
* psycopg 3 with ``server_side_binding``: psycopg prepares what it runs
  often (its ``prepare_threshold``);
* while Django logs queries (``DEBUG``, ``CaptureQueriesContext``,
  ``assertNumQueries``): what is logged, and what tests look for in it,
  reads as the statement itself. The statements prepared before stay
  prepared, for when logging stops.

What is prepared is kept per session (per DB-API connection, so a pool's
sessions each keep theirs), at most ``_MOST`` statements each. A name holds
a digest of its SQL, so an ``EXECUTE`` that reaches another session (a
pooler misconfigured) fails instead of running another statement. A
statement found gone (``DEALLOCATE``, ``DISCARD ALL``) or unusable (a column
type changed by a migration from another process) fails the write that
used it, and the next writes prepare every statement again.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import sys
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import conf

_MOST = 200  # PREPAREs sent per session at most (failed ones included); past that, statements go as they are
_PLACEHOLDER = re.compile(r"%%|%s")
_numbers = itertools.count(1)
_SOURCES: dict[str, str] = {}  # name -> the SQL it was prepared from, for :func:`statement`
# SQLSTATEs of an EXECUTE whose statement is gone (DEALLOCATE, DISCARD ALL) or whose plan
# cannot be used any more (a column's type changed: "cached plan must not change result type").
_STALE = {"26000", "0A000"}


@dataclass
class _Session:
    """What this app prepared on one database session (one DB-API connection)."""

    enabled: bool
    statements: dict[str, str] = field(default_factory=dict)  # SQL -> name
    attempts: int = 0  # PREPAREs sent; a failed one may still have left its statement


# By DB-API connection, not by Django connection: a connection pool (Django's
# OPTIONS["pool"]) hands one Django connection a different session on each checkout.
_sessions: weakref.WeakKeyDictionary[Any, _Session] = weakref.WeakKeyDictionary()


def execute(cursor: Any, sql: str, params: Sequence[Any]) -> None:
    """``cursor.execute(sql, params)``, as the ``EXECUTE`` of a prepared statement where that is on.

    ``cursor`` is a Django cursor; ``sql`` uses ``%s`` placeholders, each in a
    place that gives its type (``col = %s``, ``%s::json``), as ``PREPARE``
    infers parameter types from there.
    """
    connection = cursor.db
    # Where queries are logged (``DEBUG``, ``CaptureQueriesContext``, ``assertNumQueries``: Django's
    # ``queries_logged``), sent as it is: what is logged reads as the statement, as Django's own
    # SQL does (a test looking for the UPDATE of a save finds it), not as ``EXECUTE``.
    session = None if connection.queries_logged else _session(connection)
    if session is None:
        cursor.execute(sql, params)
        return
    arguments = f"({', '.join(['%s'] * len(params))})" if params else ""
    name = session.statements.get(sql)
    if name is not None:
        try:
            cursor.execute(f"EXECUTE {name}{arguments}", params)
        except Exception as error:
            if sqlstate(error) in _STALE:
                # This write fails (its transaction is aborted); the next ones prepare again,
                # every statement: DEALLOCATE ALL and DISCARD ALL take them all.
                session.statements.clear()
            raise
        return
    if session.attempts >= _MOST:
        cursor.execute(sql, params)
        return
    # A name says which SQL it runs (a digest of it), so that no EXECUTE can run
    # another statement, and is never reused in this process: PREPARE is not undone
    # by a rollback, so a failed first use may leave its statement behind, and a
    # forgotten record (the setting changed) leaves all of them.
    session.attempts += 1
    name = f"audit_events_{hashlib.blake2b(sql.encode(), digest_size=6).hexdigest()}_{next(_numbers)}"
    cursor.execute(f"PREPARE {name} AS {_numbered(sql)}; EXECUTE {name}{arguments}", params)
    if _is_psycopg3(connection):
        cursor.nextset()  # psycopg 3 stays on the first result, PREPARE's; psycopg2 keeps the last
    session.statements[sql] = name
    if len(_SOURCES) >= 1000:  # for reading logs only: forget the old ones
        _SOURCES.clear()
    _SOURCES[name] = sql


def execute_after(cursor: Any, first: str | None, sql: str, params: Sequence[Any]) -> None:
    """Run ``first`` (no parameters, no result wanted), then ``sql``, on a Django cursor: in one round
    trip where the driver sends several statements at once (psycopg 2; psycopg 3's client-side binding,
    Django's default), the cursor then on the last one's result; apart elsewhere."""
    if not first:
        cursor.execute(sql, params)
        return
    if sends_together(cursor):
        cursor.execute(f"{first}; {sql}", params)
        while _is_client_cursor(cursor.cursor) and cursor.cursor.nextset():  # psycopg 3 stays on the first
            pass  # result (psycopg 2 on the last)
        return
    cursor.execute(first)
    cursor.execute(sql, params)


def sends_together(cursor: Any) -> bool:
    """Whether a Django cursor sends several statements in one ``execute`` (:func:`execute_after`)."""
    raw = cursor.cursor
    return _is_client_cursor(raw) or type(raw).__module__.startswith("psycopg2")


def _is_client_cursor(raw: Any) -> bool:
    """psycopg 3's client-side binding cursor (Django's, unless ``server_side_binding``)."""
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(raw, psycopg.ClientCursor)


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a database error (Django's, wrapping the driver's), psycopg2 or psycopg 3."""
    for cause in (error, error.__cause__):
        code = getattr(cause, "pgcode", None) or getattr(cause, "sqlstate", None)
        if code:
            return str(code)
    return None


def cursor(connection: Any) -> Any:
    """A Django cursor over one DB-API cursor kept per connection session, for the save's UPDATE
    and the INSERT of a create (``returning``).

    psycopg 3 looks up a loader for each result column once per cursor: a
    fresh cursor per save paid that for every column of the old row it
    returns (about 20 µs a save on the benchmark machine; 30 µs a create for
    the 10 columns its INSERT returns). The Django wrapper
    is made anew each time, so query logging (``CaptureQueriesContext``,
    ``DEBUG``) sees the statement as it would any other.
    """
    connection.ensure_connection()  # also Django's guard against use from async code
    # A new session, or a new time zone (Django gives the cursor the zone its datetimes are read in).
    key = (connection.connection, connection.timezone)
    kept: tuple[tuple[Any, Any], Any] | None = connection.__dict__.get(_CURSOR)
    if kept is None or kept[0][0] is not key[0] or kept[0][1] != key[1]:
        with connection.wrap_database_errors:
            kept = connection.__dict__[_CURSOR] = (key, connection.create_cursor())
    return connection._prepare_cursor(kept[1])


_CURSOR = "_audit_events_cursor"


def statement(sql: str) -> str:
    """The statement a ``PREPARE``/``EXECUTE`` of this app stands for; ``sql`` itself otherwise.

    On PostgreSQL, a save's ``UPDATE`` and the event ``INSERT`` reach the
    database as ``EXECUTE audit_events_7(...)`` once prepared (see
    :ref:`PREPARE_STATEMENTS <setting-prepare-statements>`), and so appear to
    what observes the statements sent: ``connection.execute_wrapper()``, an
    APM agent, PostgreSQL's own log. Django's query log (``connection.queries``,
    ``CaptureQueriesContext``) shows the statements themselves: nothing is
    prepared while it logs. In an execute wrapper::

        def observe(execute, sql, params, many, context):
            print(prepared.statement(sql))
            return execute(sql, params, many, context)
    """
    match = _LOGGED.match(sql)
    if match is None:
        return sql
    if match["body"] is not None:
        return match["body"]
    return _SOURCES.get(match["name"], sql)


_LOGGED = re.compile(
    r"(?:PREPARE audit_events_\w+ AS (?P<body>.*); )?EXECUTE (?P<name>audit_events_[0-9a-f]+_\d+)\b", re.DOTALL
)


def forget() -> None:
    """Start every session's record afresh (the setting changed): statements are prepared again, by new names."""
    _sessions.clear()


def _numbered(sql: str) -> str:
    """``%s`` placeholders as ``$1``, ``$2``... (``%%`` stays: the driver still reads the whole string)."""
    numbers = itertools.count(1)
    return _PLACEHOLDER.sub(lambda match: "%%" if match.group() == "%%" else f"${next(numbers)}", sql)


def _session(connection: Any) -> _Session | None:
    """What is prepared on the connection's current session; ``None`` where preparing is off."""
    raw = connection.connection
    try:
        session = _sessions.get(raw)
        if session is None:
            session = _sessions[raw] = _Session(enabled=_enabled(connection))
    except TypeError:  # a DB-API connection that cannot be weakly referenced: send statements as they are
        return None
    return session if session.enabled else None


_DRIVERS = ("psycopg2", "psycopg")


def _enabled(connection: Any) -> bool:
    # PREPARE and EXECUTE are PostgreSQL's statements, sent through its drivers (psycopg 2 and 3).
    if connection.Database.__name__ not in _DRIVERS or not conf.get_config().prepare_statements:
        return False
    settings = connection.settings_dict
    if settings.get("DISABLE_SERVER_SIDE_CURSORS"):
        return False
    return not (_is_psycopg3(connection) and settings.get("OPTIONS", {}).get("server_side_binding"))


def _is_psycopg3(connection: Any) -> bool:
    return bool(connection.Database.__name__ == "psycopg")
