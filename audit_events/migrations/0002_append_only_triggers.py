"""Database triggers that make the event table append-only.

The database itself refuses ``UPDATE`` and ``DELETE`` on the event table (and
``TRUNCATE`` on PostgreSQL), whoever issues them: the ORM, raw SQL, another
program. Every backend raises an integrity error whose message says the table
is append-only.

Django's ``flush`` (run between transactional tests) still empties the table:
the app's ``flush`` command lifts these triggers inside the flush's own
transaction and puts them back before it commits (see
``audit_events.protection``; MySQL and MariaDB drop and make them again
around it). Other backends get no triggers (the ORM guard in
``Event`` still applies).

``atomic=False``: MySQL cannot run DDL in a transaction (the other databases run this
migration in one all the same).

The SQL is written out here, not imported, so this migration keeps doing what
it did when it was applied.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

TABLE = "audit_events_event"

SQLITE_INSTALL = [
    f"""
    CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON {TABLE}
    BEGIN
        SELECT RAISE(ABORT, '{TABLE} is append-only: UPDATE refused (record a correction as a new event)');
    END
    """,
    f"""
    CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON {TABLE}
    BEGIN
        SELECT RAISE(ABORT, '{TABLE} is append-only: DELETE refused (record a correction as a new event)');
    END
    """,
]
SQLITE_REMOVE = [
    "DROP TRIGGER IF EXISTS audit_events_no_update",
    "DROP TRIGGER IF EXISTS audit_events_no_delete",
]

# Statement-level triggers: even an UPDATE or DELETE that matches no row is
# refused, and TRUNCATE (which fires no row trigger) is covered too.
# restrict_violation (SQLSTATE 23001) makes psycopg raise an IntegrityError,
# as SQLite's RAISE(ABORT) does.
POSTGRESQL_INSTALL = [
    """
    CREATE OR REPLACE FUNCTION audit_events_refuse_change() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '% is append-only: % refused (record a correction as a new event)', TG_TABLE_NAME, TG_OP
            USING ERRCODE = 'restrict_violation';
    END
    $$
    """,
    f"""
    CREATE TRIGGER audit_events_no_update_delete BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change()
    """,
    f"""
    CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON {TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change()
    """,
]
POSTGRESQL_REMOVE = [
    f"DROP TRIGGER IF EXISTS audit_events_no_truncate ON {TABLE}",
    f"DROP TRIGGER IF EXISTS audit_events_no_update_delete ON {TABLE}",
    "DROP FUNCTION IF EXISTS audit_events_refuse_change()",
]

# MySQL and MariaDB: row triggers (no statement triggers there: an UPDATE or DELETE that matches no
# row changes nothing and is let be). SQLSTATE 23000 with MariaDB's ER_CONSTRAINT_FAILED (4025),
# which Django's backend raises as an IntegrityError, as on the others. TRUNCATE fires no trigger
# there: it needs the DROP privilege, which the application's database user should not hold.
# ``REPLACE`` and ``INSERT ... ON DUPLICATE KEY UPDATE`` fire the DELETE and UPDATE triggers.
MYSQL_INSTALL = [
    f"""
    CREATE TRIGGER audit_events_no_{operation.lower()} BEFORE {operation} ON {TABLE} FOR EACH ROW
    SIGNAL SQLSTATE '23000' SET MYSQL_ERRNO = 4025,
        MESSAGE_TEXT = '{TABLE} is append-only: {operation} refused (record a correction as a new event)'
    """
    for operation in ("UPDATE", "DELETE")
]
MYSQL_REMOVE = [
    "DROP TRIGGER IF EXISTS audit_events_no_update",
    "DROP TRIGGER IF EXISTS audit_events_no_delete",
]

STATEMENTS = {
    "sqlite": (SQLITE_INSTALL, SQLITE_REMOVE),
    "mysql": (MYSQL_INSTALL, MYSQL_REMOVE),
    "postgresql": (POSTGRESQL_INSTALL, POSTGRESQL_REMOVE),
}


def install(apps: Any, schema_editor: Any) -> None:
    statements = STATEMENTS.get(schema_editor.connection.vendor)
    if statements:
        for sql in statements[0]:
            schema_editor.execute(sql, params=None)


def remove(apps: Any, schema_editor: Any) -> None:
    statements = STATEMENTS.get(schema_editor.connection.vendor)
    if statements:
        for sql in statements[1]:
            schema_editor.execute(sql, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("audit_events", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(install, remove, elidable=False, atomic=False),
    ]
