"""PostgreSQL: this app's own hot statements, planned once per connection.

For the one-row ``UPDATE ... FROM (SELECT ... FOR UPDATE)`` of a save,
PostgreSQL spends more time planning than running it (about 100 of 150 µs
on the benchmark machine), and the event ``INSERT`` is planned again in
every transaction. Django binds parameters on the client (psycopg2 always,
psycopg 3 unless ``server_side_binding`` is on), so nothing is ever
prepared. This module prepares those two statements with SQL ``PREPARE`` on
their first use on a connection and runs ``EXECUTE`` after. The first use
sends both in one string, so it costs no extra round trip, and the query
count stays the same.

Off, so that every statement is sent as it is, where a connection may not
keep its session from one transaction to the next, or where psycopg
prepares by itself:

* ``AUDIT_EVENTS["PREPARE_STATEMENTS"] = False``;
* ``DISABLE_SERVER_SIDE_CURSORS`` set for the database: Django asks it of
  PgBouncer's transaction pooling, which would run an ``EXECUTE`` on a
  server connection that never saw the ``PREPARE``;
* psycopg 3 with ``server_side_binding``: psycopg prepares what it runs
  often (its ``prepare_threshold``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from typing import Any

from django.db import connections

from . import conf

_MOST = 200  # statements prepared per connection at most; past that, sent as they are
_REGISTRY = "_audit_events_prepared"
_names = itertools.count(1)
_PLACEHOLDER = re.compile(r"%%|%s")
_SOURCES: dict[str, str] = {}  # name -> the SQL it was prepared from, for :func:`statement`


def execute(cursor: Any, sql: str, params: Sequence[Any]) -> None:
    """``cursor.execute(sql, params)``, as the ``EXECUTE`` of a prepared statement where that is on.

    ``cursor`` is a Django cursor of ``connection``; ``sql`` uses ``%s``
    placeholders, each in a place that gives its type (``col = %s``,
    ``%s::json``), as ``PREPARE`` infers parameter types from there.
    """
    connection = cursor.db
    statements = _statements(connection)
    if statements is None:
        cursor.execute(sql, params)
        return
    arguments = f"({', '.join(['%s'] * len(params))})" if params else ""
    name = statements.get(sql)
    if name is not None:
        cursor.execute(f"EXECUTE {name}{arguments}", params)
        return
    if len(statements) >= _MOST:
        cursor.execute(sql, params)
        return
    # A fresh name on each attempt: PREPARE is not undone by a rollback, so a
    # failed first use may leave its statement behind, under a name never reused.
    name = f"audit_events_{next(_names)}"
    cursor.execute(f"PREPARE {name} AS {_numbered(sql)}; EXECUTE {name}{arguments}", params)
    if _is_psycopg3(connection):
        cursor.nextset()  # psycopg 3 stays on the first result, PREPARE's; psycopg2 keeps the last
    statements[sql] = name
    if len(_SOURCES) >= 1000:  # names are not reused: forget the old ones, this is for reading logs only
        _SOURCES.clear()
    _SOURCES[name] = sql


def cursor(connection: Any) -> Any:
    """A Django cursor over one DB-API cursor kept per connection session, for the save's UPDATE.

    psycopg 3 looks up a loader for each result column once per cursor: a
    fresh cursor per save paid that for every column of the old row it
    returns (about 20 µs a save on the benchmark machine). The Django wrapper
    is made anew each time, so query logging (``CaptureQueriesContext``,
    ``DEBUG``) sees the statement as it would any other.
    """
    connection.ensure_connection()  # also Django's guard against use from async code
    # A new session, or a new time zone (Django gives the cursor the zone its datetimes are read in).
    key = (connection.connection, connection.timezone)
    kept: tuple[tuple[Any, Any], Any] | None = connection.__dict__.get(_CURSOR)
    if kept is None or kept[0][0] is not key[0] or kept[0][1] != key[1]:
        kept = connection.__dict__[_CURSOR] = (key, connection.create_cursor())
    return connection._prepare_cursor(kept[1])


_CURSOR = "_audit_events_cursor"


def statement(sql: str) -> str:
    """The statement a logged ``PREPARE``/``EXECUTE`` of this app stands for; ``sql`` itself otherwise.

    On PostgreSQL, a save's ``UPDATE`` and the event ``INSERT`` appear in
    query logs (``connection.queries``, ``CaptureQueriesContext``, the debug
    toolbar) as ``EXECUTE audit_events_7(...)`` once prepared (see
    :ref:`PREPARE_STATEMENTS <setting-prepare-statements>`)::

        [prepared.statement(q["sql"]) for q in connection.queries]
    """
    match = _LOGGED.match(sql)
    if match is None:
        return sql
    if match["body"] is not None:
        return match["body"]
    return _SOURCES.get(match["name"], sql)


_LOGGED = re.compile(r"(?:PREPARE audit_events_\d+ AS (?P<body>.*); )?EXECUTE (?P<name>audit_events_\d+)\b", re.DOTALL)


def forget() -> None:
    """Start each connection's registry afresh (the setting changed): statements are prepared again by new names."""
    for connection in connections.all(initialized_only=True):
        connection.__dict__.pop(_REGISTRY, None)


def _numbered(sql: str) -> str:
    """``%s`` placeholders as ``$1``, ``$2``... (``%%`` stays: the driver still reads the whole string)."""
    numbers = itertools.count(1)
    return _PLACEHOLDER.sub(lambda match: "%%" if match.group() == "%%" else f"${next(numbers)}", sql)


def _statements(connection: Any) -> dict[str, str] | None:
    """The statements prepared on the connection's current session, by SQL; ``None`` where this is off."""
    registry: tuple[Any, dict[str, str]] | None = connection.__dict__.get(_REGISTRY)
    if registry is not None and registry[0] is connection.connection:
        return registry[1]
    if not _enabled(connection):
        return None
    # A new session (the connection was closed and opened again) has none.
    statements: dict[str, str] = {}
    connection.__dict__[_REGISTRY] = (connection.connection, statements)
    return statements


def _enabled(connection: Any) -> bool:
    if connection.vendor != "postgresql" or not conf.get_config().prepare_statements:
        return False
    settings = connection.settings_dict
    if settings.get("DISABLE_SERVER_SIDE_CURSORS"):
        return False
    return not (_is_psycopg3(connection) and settings.get("OPTIONS", {}).get("server_side_binding"))


def _is_psycopg3(connection: Any) -> bool:
    return bool(connection.Database.__name__ == "psycopg")
