"""``Event.object_pk`` holds a primary key of any length (it was ``varchar(255)``).

A model whose key is a ``TextField``, a ``CharField`` longer than 255, or a
composite key whose text is longer, could not be written at all on
PostgreSQL once registered. The column becomes ``text``:

* PostgreSQL: ``ALTER COLUMN ... TYPE text``, which rewrites neither the table
  nor its indexes (``varchar`` to ``text`` needs no conversion);
* SQLite: nothing to do in the database, which never enforced the length
  (and Django's AlterField would rebuild the table, losing its append-only
  triggers);
* MySQL and MariaDB: an index cannot cover a ``text`` column, and one holds at
  most 3072 bytes: ``varchar(760)`` (utf8mb4, 4 bytes a character, with the
  content type and version in the same unique index), compared byte for byte
  (``utf8mb4_bin``: keys differing in case are different rows' keys); the
  table itself in utf8mb4, whatever the database's default, for the whole of
  Unicode;
* other backends: nothing.

The SQL is written out here so this migration keeps doing what it did when
it was applied.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations, models

TABLE = "audit_events_event"


MYSQL_LENGTH = 760


def widen(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE {TABLE} ALTER COLUMN object_pk TYPE text", params=None)
    elif schema_editor.connection.vendor == "mysql":
        schema_editor.execute(f"ALTER TABLE {TABLE} CONVERT TO CHARACTER SET utf8mb4", params=None)
        schema_editor.execute(
            f"ALTER TABLE {TABLE} MODIFY object_pk varchar({MYSQL_LENGTH}) "
            "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL",
            params=None,
        )


def narrow(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE {TABLE} ALTER COLUMN object_pk TYPE varchar(255)", params=None)
    elif schema_editor.connection.vendor == "mysql":
        schema_editor.execute(f"ALTER TABLE {TABLE} MODIFY object_pk varchar(255) NOT NULL", params=None)


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
            database_operations=[migrations.RunPython(widen, narrow, elidable=False, atomic=False)],
        ),
    ]
