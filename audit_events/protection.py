"""The database triggers that keep the event table append-only, and their one exception.

Migration ``0002`` installs triggers that refuse ``UPDATE`` and ``DELETE`` on
the event table (and ``TRUNCATE`` on PostgreSQL); ``0004`` refuses SQLite's
``REPLACE``, which deletes the events it conflicts with without firing DELETE
triggers. The one sanctioned way to
empty the table is Django's ``flush``, which the test framework runs between
transactional tests (``TransactionTestCase``, pytest-django's
``transactional_db`` and ``live_server``). ``wiring.flush`` wraps the method
every ``flush`` ends in, ``DatabaseOperations.execute_sql_flush()``, in
:func:`flush_allowed`: when the flush statement that erases the event table
runs, the triggers are taken off and put back around that one statement,
inside the flush's own transaction, so no other connection ever sees the
table unprotected and a failed flush restores them. The method, not the
``flush`` command: a ``TransactionTestCase`` whose ``available_apps`` leave
this app out runs Django's own command (management commands are looked up
among the available apps only), and its ``TRUNCATE ... CASCADE`` (on SQLite,
a ``DELETE`` of every referencing table) reaches the event table through its
foreign key to the content types.

A flush that empties only some tables (``available_apps`` naming neither
this app nor the content types) leaves the event table alone, so the
history of the rows it erased would outlive them: a later test deleting
content types failed on the events' foreign key, and a row made again with
an erased row's key continued its history. ``wiring.flush`` adds to such a
flush one ``DELETE`` of the events of the models whose tables it empties
(:func:`history_of_emptied_tables`).

Taking a trigger off needs the privileges that dropping it needs (table
ownership), so this opens no door that was not already open to that role. A
session setting the trigger consults (a GUC) was rejected: any role allowed to
write events could set it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from . import backends
from .models import Event


def missing_triggers(connection: BaseDatabaseWrapper) -> list[str]:
    """The append-only triggers this backend should have and does not (dropped, disabled, lost in a rebuild)."""
    present = set(installed_triggers(connection))
    return [name for name in backends.of(connection).expected_triggers if name not in present]


def installed_triggers(connection: BaseDatabaseWrapper) -> list[str]:
    """Names of the enabled triggers on the event table (empty on other backends)."""
    with connection.cursor() as cursor:
        return backends.of(connection).installed_triggers(connection, cursor, Event._meta.db_table)


@contextlib.contextmanager
def _lifted(connection: BaseDatabaseWrapper, events: int) -> Iterator[None]:
    """Take the event table's triggers that ``events`` fires off, then put them back (call inside a transaction)."""
    with (
        connection.cursor() as cursor,
        backends.of(connection).lifted(connection, cursor, Event._meta.db_table, events),
    ):
        yield


def _erases_events(connection: BaseDatabaseWrapper, sql: str) -> int:
    """The triggers (``_lifted``'s ``events``) a flush statement that erases events fires; 0 for another."""
    statement = sql.lstrip().upper()
    names_events = connection.ops.quote_name(Event._meta.db_table).upper() in statement
    return backends.of(connection).erases_events(statement, names_events)


@contextlib.contextmanager
def flush_allowed(connection: BaseDatabaseWrapper) -> Iterator[None]:
    """Let the flush statements run inside this block erase the event table.

    Only ``TRUNCATE`` statements (PostgreSQL) and ``DELETE`` statements that
    name the event table are let through; each runs inside the transaction
    Django's ``execute_sql_flush`` opens.
    """

    def wrapper(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        events = _erases_events(connection, sql)
        if not events:
            return execute(sql, params, many, context)
        with _lifted(connection, events):
            return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield


def history_of_emptied_tables(connection: BaseDatabaseWrapper, sql_list: list[str]) -> list[str]:
    """The ``DELETE`` of the events of the models whose tables a flush empties, where it leaves
    the event table itself alone (``available_apps`` without this app nor the content types);
    nothing otherwise.

    The models are those of the app registry (the available apps, as for the
    flush's own tables), proxies included (they share their model's table).
    Names are written into the statement: ``execute_sql_flush`` runs its
    statements without parameters.
    """
    from django.apps import apps
    from django.contrib.contenttypes.models import ContentType

    quote = connection.ops.quote_name
    flushed = " ".join(sql_list)
    if not flushed or quote(Event._meta.db_table) in flushed or quote(ContentType._meta.db_table) in flushed:
        return []  # nothing emptied, or the flush erases the event table itself (directly or by CASCADE)
    models = {
        (model._meta.app_label, str(model._meta.model_name))
        for model in apps.get_models(include_auto_created=True)
        if quote(model._meta.db_table) in flushed
    }
    if not models or Event._meta.db_table not in connection.introspection.table_names():
        return []  # (the event table is absent where a router keeps this app out of the database)
    keys = ", ".join(f"({_literal(app_label)}, {_literal(name)})" for app_label, name in sorted(models))
    column = quote(str(Event._meta.get_field("content_type").column))
    return [
        f"DELETE FROM {quote(Event._meta.db_table)} WHERE {column} IN "
        f"(SELECT {quote('id')} FROM {quote(ContentType._meta.db_table)} "
        f"WHERE ({quote('app_label')}, {quote('model')}) IN ({keys}))"
    ]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
