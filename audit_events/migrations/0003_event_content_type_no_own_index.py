"""Drop the index Django gives the ``content_type`` foreign key by itself.

Every index of the event table leads with ``content_type`` already (the
unique row/version one, row/time, model/id), so the single-column index only
cost a write per event, and PostgreSQL's planner, with few rows known, chose
it over the row/version index to find a row's latest event: a scan of every
event of the model instead of one lookup.

Only the index goes (no table rebuild, which SQLite's AlterField would do and
which would lose the append-only triggers). The SQL is written out here so this
migration keeps doing what it did when it was applied.
"""

from __future__ import annotations

from typing import Any

import django.db.models.deletion
from django.db import migrations, models

TABLE = "audit_events_event"
INDEX = "audit_events_event_content_type_id_cf9d3db0"


def drop_index(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "mysql":
        # No such index there: InnoDB indexes a foreign key itself (under the constraint's name),
        # and Django adds none (MySQL 8 has no DROP INDEX IF EXISTS).
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(
                "SELECT 1 FROM information_schema.statistics WHERE table_schema = DATABASE() "
                "AND table_name = %s AND index_name = %s",
                [TABLE, INDEX],
            )
            if cursor.fetchone():
                schema_editor.execute(f"DROP INDEX {INDEX} ON {TABLE}")
    else:
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


def create_index(apps: Any, schema_editor: Any) -> None:
    schema_editor.execute(f"CREATE INDEX {INDEX} ON {TABLE} (content_type_id)")


class Migration(migrations.Migration):
    dependencies = [
        ("audit_events", "0002_append_only_triggers"),
        ("contenttypes", "__first__"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="event",
                    name="content_type",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="contenttypes.contenttype",
                        verbose_name="model",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(drop_index, create_index, atomic=False)],
        ),
    ]
