"""The test framework's flush of every table, the event table included (``protection``)."""

from __future__ import annotations

from django.db.backends.base.operations import BaseDatabaseOperations

from ..protection import flush_allowed, history_of_emptied_tables

# Django's flush command (and any project's) empties the tables with this one method of the
# backend's operations; no built-in backend overrides it.
_execute_sql_flush = BaseDatabaseOperations.execute_sql_flush


def _execute_sql_flush_allowed(self: BaseDatabaseOperations, sql_list: list[str]) -> None:
    with flush_allowed(self.connection):
        _execute_sql_flush(self, [*sql_list, *history_of_emptied_tables(self.connection, sql_list)])


def allow() -> None:
    """Let every ``flush`` empty the event table, whatever is registered (idempotent): the triggers
    keep the table append-only while the app is installed, so this patch stays with them."""
    BaseDatabaseOperations.execute_sql_flush = _execute_sql_flush_allowed  # type: ignore[method-assign,assignment]
