"""SQLite: refuse ``REPLACE`` (``INSERT OR REPLACE``, ``REPLACE INTO``) on the event table.

SQLite's REPLACE conflict resolution deletes the rows an INSERT conflicts with
(same ``id``, or same row and version) without firing DELETE triggers (unless
the connection set ``PRAGMA recursive_triggers``, which other programs need
not do), so the triggers of ``0002`` let it rewrite or delete events. A
BEFORE INSERT trigger fires before any conflict is resolved: it refuses an
INSERT that meets an existing event, whatever conflict clause it carries.
``UPDATE OR REPLACE`` and upserts fire the UPDATE trigger already.

PostgreSQL needs nothing: it has no REPLACE, and ``INSERT ... ON CONFLICT DO
UPDATE`` fires the statement-level UPDATE trigger of ``0002``.

The SQL is written out here, not imported, so this migration keeps doing what
it did when it was applied.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

TABLE = "audit_events_event"

SQLITE_INSTALL = f"""
    CREATE TRIGGER audit_events_no_replace BEFORE INSERT ON {TABLE}
    WHEN EXISTS (SELECT 1 FROM {TABLE} WHERE id = NEW.id)
      OR EXISTS (
        SELECT 1 FROM {TABLE}
        WHERE content_type_id = NEW.content_type_id AND object_pk = NEW.object_pk AND version = NEW.version
      )
    BEGIN
        SELECT RAISE(ABORT, '{TABLE} is append-only: INSERT over an existing event refused (REPLACE would delete it)');
    END
"""
SQLITE_REMOVE = "DROP TRIGGER IF EXISTS audit_events_no_replace"


def install(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(SQLITE_INSTALL, params=None)


def remove(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(SQLITE_REMOVE, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("audit_events", "0003_event_content_type_no_own_index"),
    ]

    operations = [
        migrations.RunPython(install, remove, elidable=False),
    ]
