"""MySQL and MariaDB: the event INSERT, the triggers, and the old rows read under lock.

* the event INSERT reads its drafts from one JSON document (``JSON_TABLE``,
  MariaDB 10.6+, MySQL 8.0+) and decides each event's version and hash in
  the statement, from the row's latest event (correlated subqueries: no
  ``LATERAL`` on MariaDB); an ``INSERT ... SELECT`` may read its own table
  (the SELECT is read whole, into a temporary table, before any row goes in);
  ``SHA2(..., 256)`` of the UTF-8 text (utf8mb4);
* no ``UPDATE ... RETURNING`` (neither has one): a save, an update, a delete
  read the rows they change by a locking ``SELECT ... FOR UPDATE`` first and,
  where needed, after (:class:`.base.Backend`), in the same InnoDB transaction;
* the event table's append-only row triggers (migration 0002), dropped and made
  again around a flush's ``DELETE`` (MySQL has no disabled trigger; its
  ``DROP TRIGGER`` and ``CREATE TRIGGER`` commit, so a flush is not atomic
  there, as its ``TRUNCATE`` never is); ``TRUNCATE`` fires no trigger:
  it needs the ``DROP`` privilege, which the application's user should not
  hold (docs/limits.rst).

No gap-free order of committed events can be read (no transaction snapshots to
compare, ids taken at INSERT and committed in another order): ``commit_order``
is ``None`` and ``stream`` and the relay say they cannot run here.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

from .base import DELETE, Backend

# JSON_TABLE's column types for the drafts: text is utf8mb4, compared byte for byte like object_pk
# (migration 0005); the rest are text the INSERT converts to its columns' types.
_TEXT = "LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
_KINDS = {"content_type_id": "INT", "object_pk": "VARCHAR(760) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"}
# No LIMIT: a derived table with one is not merged into the query reading it (its subqueries run once).
_UNMERGED = "LIMIT 18446744073709551615"


class MySQL(Backend):
    expected_triggers = ("audit_events_no_delete", "audit_events_no_update")
    events_in_one_document = True

    def event_drafts(self, columns: tuple[str, ...], rows: int) -> str:
        """``JSON_TABLE`` of one JSON document, whatever the number of drafts (a JSON null gives NULL)."""
        typed = ", ".join(f"{column} {_KINDS.get(column, _TEXT)} PATH '$.{column}'" for column in columns)
        return f"JSON_TABLE(%s, '$[*]' COLUMNS ({typed})) AS d"

    def event_numbered(self, drafts: str, latest: str) -> str:
        return (
            f"SELECT d.*, COALESCE(({latest.format(column='e.version')}), 0) + 1 AS version, "
            f"COALESCE(({latest.format(column='e.hash')}), '') AS previous FROM {drafts} {_UNMERGED}"
        )

    def concat(self, *parts: str) -> str:
        return f"CONCAT({', '.join(parts)})"

    def sha256(self, value: str) -> str:
        return f"SHA2({value}, 256)"

    def installed_triggers(self, connection: Any, cursor: Any, table: str) -> list[str]:
        cursor.execute(
            "SELECT trigger_name FROM information_schema.triggers "
            "WHERE event_object_schema = DATABASE() AND event_object_table = %s",
            [table],
        )
        return sorted(row[0] for row in cursor.fetchall())

    def erases_events(self, statement: str, names_events: bool) -> int:
        # TRUNCATE fires no trigger here: nothing to lift.
        return DELETE if statement.startswith("DELETE") and names_events else 0

    @contextlib.contextmanager
    def lifted(self, connection: Any, cursor: Any, table: str, events: int) -> Iterator[None]:
        """MySQL cannot disable a trigger: drop each, and make it again from its own definition."""
        names = self.installed_triggers(connection, cursor, table)
        definitions = []
        for name in names:
            cursor.execute(f"SHOW CREATE TRIGGER {connection.ops.quote_name(name)}")
            definitions.append(cursor.fetchone()[2])  # "SQL Original Statement"
        for name in names:
            cursor.execute(f"DROP TRIGGER {connection.ops.quote_name(name)}")
        try:
            yield
        finally:
            for sql in definitions:
                cursor.execute(without_definer(sql))


def without_definer(sql: str) -> str:
    """``CREATE DEFINER=`user`@`host` TRIGGER ...`` (``SHOW CREATE TRIGGER``) as ``CREATE TRIGGER ...``:
    made again by the current user."""
    return re.sub(r"^CREATE\s+DEFINER\s*=\s*\S+\s+TRIGGER\s", "CREATE TRIGGER ", sql, count=1, flags=re.IGNORECASE)
