"""``Event.object_pk`` holds a primary key of any length (it was ``varchar(255)``).

A model whose key is a ``TextField``, a ``CharField`` longer than 255, or a
composite key whose text is longer, could not be written at all on
PostgreSQL once registered. The column becomes ``text``:

* PostgreSQL: ``ALTER COLUMN ... TYPE text``, which rewrites neither the table
  nor its indexes (``varchar`` to ``text`` needs no conversion);
* SQLite: nothing to do in the database, which never enforced the length
  (and Django's AlterField would rebuild the table, losing its append-only
  triggers);
* other backends: nothing either (they get no triggers and are not
  supported yet).

The SQL is written out here so this migration keeps doing what it did when
it was applied.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations, models

TABLE = "audit_events_event"


def widen(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE {TABLE} ALTER COLUMN object_pk TYPE text", params=None)


def narrow(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE {TABLE} ALTER COLUMN object_pk TYPE varchar(255)", params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("audit_events", "0004_no_replace_trigger"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="event",
                    name="object_pk",
                    field=models.TextField(verbose_name="object pk"),
                ),
            ],
            database_operations=[migrations.RunPython(widen, narrow, elidable=False)],
        ),
    ]
