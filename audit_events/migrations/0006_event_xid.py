"""PostgreSQL: each event carries the id of the transaction that wrote it (``xid``), for ``audit_events.stream``.

The column is filled by the database (``DEFAULT pg_current_xact_id()``, the
writing transaction's top-level ``xid8``), so the INSERT that writes events
does not name it and no code sets it. It is not part of the model, nor of the
hashed content: it says *when the event became visible* (with the reader's
snapshots), not what it records, and the hash chain stays what it was.

* The column is added without a default first, then given one: adding it
  with a volatile default would rewrite the table (every existing event would
  get this migration's transaction id) under an exclusive lock. Events written
  before this migration keep ``NULL``: the stream reads them in its first
  window, which holds everything committed before it (see ``stream``).
* The index is built ``CONCURRENTLY`` (this migration is not atomic), so
  writers are not blocked while it builds on a large table.
* ``ADD COLUMN`` and ``SET DEFAULT`` are DDL: they fire none of the
  append-only triggers of ``0002``, which stay in place.

SQLite needs nothing: its writers are serialized, so the stream reads it by
``id``. Other backends get nothing (not supported by the stream yet).

The SQL is written out here so this migration keeps doing what it did when it
was applied.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

TABLE = "audit_events_event"
INDEX = "audit_events_event_xid"

POSTGRESQL_INSTALL = [
    f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS xid xid8 NULL",
    f"ALTER TABLE {TABLE} ALTER COLUMN xid SET DEFAULT pg_current_xact_id()",
    f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} ON {TABLE} (xid)",
]
POSTGRESQL_REMOVE = [
    f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}",
    f"ALTER TABLE {TABLE} DROP COLUMN IF EXISTS xid",
]


def install(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for sql in POSTGRESQL_INSTALL:
            schema_editor.execute(sql, params=None)


def remove(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for sql in POSTGRESQL_REMOVE:
            schema_editor.execute(sql, params=None)


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run inside a transaction

    dependencies = [
        ("audit_events", "0005_event_object_pk_any_length"),
    ]

    operations = [
        migrations.RunPython(install, remove, elidable=False),
    ]
