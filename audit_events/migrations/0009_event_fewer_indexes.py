"""Keep only the event table's indexes that a reader needs: 9 index entries per event become 6 on PostgreSQL.

Every event INSERT writes one entry in each index of the table, so each
index costs every write; these had no reader that needed them:

* ``audit_events_row_time`` (content_type, object_pk, created_at): the reads
  of one row up to a time (``state_at``, ``restore(at=...)``) take the row's
  few events by the unique (content_type, object_pk, version) index, in
  version order, and filter the time on them.
* ``audit_events_action`` (action, id): ``create`` and ``update`` are most
  events, and the Event admin's newest-first page of them is a walk down the
  primary key. The other actions (delete, restore, snapshot, sync) are few
  and read by action (the admin's action and deletion filters,
  ``deleted()``): a partial index of their ids, ``audit_events_rare_action``,
  holds only them.
* ``audit_events_created`` (created_at) becomes, on PostgreSQL, a BRIN index
  of the same name: events are written in time order, so the minimum and
  maximum time of each range of 128 table pages find a time range (the
  admin's date filters, ``audit_verify --since``) for a few bytes per range,
  instead of a B-tree entry per event. With ``autosummarize``, autovacuum
  summarizes a range once the table grows past it (a range not summarized
  yet is read whole, never skipped: answers are right either way). Other
  databases keep the B-tree (no BRIN; Django's state is that B-tree, so its
  migrations do not see the swap).

The migration runs in one transaction: the event table is locked (reads and
writes wait) until the partial and the BRIN index are built, a sequential
scan each (under a second for 1.5 million events). The SQL of the swap is
written out here so this migration keeps doing what it did when it was
applied.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations, models

TABLE = "audit_events_event"
CREATED = "audit_events_created"


def created_as_brin(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {CREATED}")
        schema_editor.execute(f"CREATE INDEX {CREATED} ON {TABLE} USING brin (created_at) WITH (autosummarize = on)")


def created_as_btree(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {CREATED}")
        schema_editor.execute(f"CREATE INDEX {CREATED} ON {TABLE} (created_at)")


class Migration(migrations.Migration):
    dependencies = [
        ("audit_events", "0008_unrecordedwrite"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="event", name="audit_events_row_time"),
        migrations.RemoveIndex(model_name="event", name="audit_events_action"),
        migrations.AddIndex(
            model_name="event",
            index=models.Index(
                condition=models.Q(("action__in", ["create", "update"]), _negated=True),
                fields=["id"],
                name="audit_events_rare_action",
            ),
        ),
        migrations.RunPython(created_as_brin, created_as_btree, elidable=False),
    ]
