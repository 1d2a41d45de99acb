"""The event table has the indexes its readers need and no other (each costs every event INSERT an entry)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction

from audit_events import inserts
from tests.models import Author

TABLE = "audit_events_event"
KEPT = {
    "audit_events_row_version": ["content_type_id", "object_pk", "version"],
    "audit_events_operation": ["operation"],
    "audit_events_created": ["created_at"],
    "audit_events_rare_action": ["id"],
    "audit_events_model": ["content_type_id", "id"],
    "audit_events_actor": ["actor_id"],
}
BEFORE_0009 = {
    **{name: columns for name, columns in KEPT.items() if name != "audit_events_rare_action"},
    "audit_events_row_time": ["content_type_id", "object_pk", "created_at"],
    "audit_events_action": ["action", "id"],
}
POSTGRESQL = connection.vendor == "postgresql"


def indexes() -> dict[str, dict[str, Any]]:
    """The event table's indexes by name, but its primary key's and (PostgreSQL) the stream's ``xid``."""
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, TABLE)
    return {
        name: info
        for name, info in found.items()
        if (info["index"] or info["unique"])
        and not info["primary_key"]
        and info["columns"] != ["xid"]
        and name != "__primary__"
    }


def columns(found: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    return {name: info["columns"] for name, info in found.items()}


@pytest.mark.django_db
def test_the_event_table_keeps_only_the_indexes_a_reader_needs() -> None:
    found = indexes()
    assert columns(found) == KEPT
    # The time's index is BRIN where there is one: a few bytes per 128 pages, not an entry per event.
    assert found["audit_events_created"]["type"] == ("brin" if POSTGRESQL else "idx")
    if POSTGRESQL:  # each range summarized once the table grows past it, not only by a VACUUM
        with connection.cursor() as cursor:
            cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'audit_events_created'")
            assert cursor.fetchone()[0] == ["autosummarize=on"]


@pytest.mark.django_db(transaction=True)
def test_migration_0009_applies_and_reverses() -> None:
    try:
        call_command("migrate", "audit_events", "0008", verbosity=0)
        found = indexes()
        assert columns(found) == BEFORE_0009
        assert found["audit_events_created"]["type"] in {"btree", "idx"}
        call_command("migrate", "audit_events", "0009", verbosity=0)
        assert columns(indexes()) == KEPT
    finally:
        call_command("migrate", "audit_events", verbosity=0)
    Author.objects.create(name="Ada")  # events are still written
    assert columns(indexes()) == KEPT
    refused = pytest.raises(IntegrityError, match="append-only")  # the triggers are kept
    with refused, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"UPDATE {TABLE} SET version = version")


# The reads that matter name their index in the plan, on a table of 20,000 events whose statistics are
# known (ANALYZE): the INSERT's lookup of a row's latest event, an operation's events, the rarer actions'
# newest first (the admin's action and deletion filters, deleted()).
ROWS, VERSIONS = 5000, 4


def _fill(content_type_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {TABLE} (content_type_id, object_pk, version, action, changes, state, created_at,
                                 operation, actor_id, actor_repr, context, hash)
            SELECT %s, r::text, v,
                   CASE WHEN v = 1 THEN 'create' WHEN v = {VERSIONS} AND r %% 20 = 0 THEN 'delete' ELSE 'update' END,
                   '{{}}'::jsonb, NULL, timestamptz '2026-01-01' + i * interval '1 second',
                   md5((i / 3)::text)::uuid, (i %% 7)::text, '', '{{}}'::jsonb, md5(i::text) || md5(i::text)
            FROM (SELECT i, i %% {ROWS} AS r, i / {ROWS} + 1 AS v
                  FROM generate_series(0, {ROWS * VERSIONS - 1}) AS i) AS s
            """,
            [content_type_id],
        )
        cursor.execute(f"ANALYZE {TABLE}")


def _plan(sql: str, params: list[Any]) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.django_db
@pytest.mark.skipif(not POSTGRESQL, reason="PostgreSQL's plans")
def test_the_reads_that_matter_use_their_index_on_a_filled_table() -> None:
    content_type_id = ContentType.objects.get_for_model(Author).pk
    _fill(content_type_id)
    draft = {
        "content_type_id": content_type_id,
        "object_pk": "1234",
        "action": "update",
        "changes": "{}",
        "state": None,
        "snapshot": None,
        "created_at": "2026-03-01T00:00:00+00:00",
        "operation": str(uuid.uuid4()),
        "actor_id": None,
        "actor_repr": "",
        "context": "{}",
        "content_head": "{",
    }
    insert = _plan(inserts._sql(connection.alias, 1, 100), [json.dumps([draft])])
    assert "Index Scan Backward using audit_events_row_version" in insert, insert
    one_row = f"SELECT * FROM {TABLE} WHERE content_type_id = %s AND object_pk = %s ORDER BY version"
    assert "audit_events_row_version" in _plan(one_row, [content_type_id, "1234"])
    operation = f"SELECT * FROM {TABLE} WHERE operation = md5('1000')::uuid AND action = 'delete' ORDER BY id"
    assert "audit_events_operation" in _plan(operation, [])
    deletions = f"SELECT * FROM {TABLE} WHERE action = 'delete' ORDER BY id DESC LIMIT 51"
    assert "audit_events_rare_action" in _plan(deletions, [])
