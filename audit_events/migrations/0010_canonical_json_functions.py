"""PostgreSQL: two functions that write a value as ``audit_events.encoding.canonical_json`` does.

The events of a ``QuerySet.update()`` (and of other set-wise writes) are made
by the database in the write's own statement (``audit_events.statement_events``),
so it writes their recorded values and hashed content itself, byte for byte
as Python would:

* ``audit_events_float(float8)``: a float as Python's ``repr`` writes it
  (``1.0``, ``1e-05``, ``1234567890123456.8``), ``0.0`` for a negative zero,
  as ``canonical_json`` does; ``NULL`` from ``1e16`` on (PostgreSQL's
  shortest form of such a float is not always Python's: of 340,000 random
  doubles of every magnitude, 47 differed, all between 1e16 and 1e23) and under
  ``1e-300``: Python records such a value;
* ``audit_events_json(jsonb)``: a JSON value with its keys sorted by code
  point, no spaces, its numbers as ``json.loads`` reads them (an integer's
  digits, a float by ``audit_events_float``); ``NULL`` if any number is
  beyond that function's range.

Both write floats as PostgreSQL does with ``extra_float_digits = 1`` (the
default: the shortest exact form), which the statements calling them set for
themselves (a ``SET`` clause on the functions would cost a settings change
per call). Hypothesis tests hold both equal to Python's over random values. Other
databases get nothing (their events are made in Python). The SQL is written
out here so this migration keeps doing what it did when it was applied.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

POSTGRESQL_INSTALL = [
    r"""
    CREATE OR REPLACE FUNCTION audit_events_float(x float8) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE
        WHEN x = 0 THEN '0.0'
        WHEN abs(x) >= 1e16 OR abs(x) < 1e-300 THEN NULL
        WHEN abs(x) >= 1e15 THEN (SELECT CASE WHEN t LIKE '%.%' THEN t ELSE t || '.0' END
                                  FROM (SELECT (x::text)::numeric::text AS t) AS p)
        WHEN abs(x) < 1e-4 THEN x::text
        ELSE (SELECT CASE WHEN t LIKE '%.%' THEN t ELSE t || '.0' END FROM (SELECT x::text AS t) AS p)
    END
    $$
    """,
    r"""
    CREATE OR REPLACE FUNCTION audit_events_json(j jsonb) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
    DECLARE
        kind text := jsonb_typeof(j);
        number text;
    BEGIN
        -- A member or item written NULL (a number out of range) makes the whole value NULL.
        IF kind = 'object' THEN
            IF j = '{}' THEN RETURN '{}'; END IF;
            RETURN (SELECT CASE WHEN bool_or(c IS NULL) THEN NULL
                                ELSE '{' || string_agg(to_json(k)::text || ':' || c, ',' ORDER BY k COLLATE "C") || '}' END
                    FROM (SELECT k, audit_events_json(v) AS c FROM jsonb_each(j) AS e(k, v)) AS m);
        ELSIF kind = 'array' THEN
            IF j = '[]' THEN RETURN '[]'; END IF;
            RETURN (SELECT CASE WHEN bool_or(c IS NULL) THEN NULL ELSE '[' || string_agg(c, ',' ORDER BY i) || ']' END
                    FROM (SELECT i, audit_events_json(v) AS c
                          FROM jsonb_array_elements(j) WITH ORDINALITY AS a(v, i)) AS m);
        ELSIF kind = 'number' THEN
            number := j::text;
            IF number ~ '^-?[0-9]+$' THEN
                RETURN number;  -- json.loads reads an int, written back digit for digit
            END IF;
            IF abs(number::numeric) > 1e300 OR (number::numeric <> 0 AND abs(number::numeric) < 1e-300) THEN
                RETURN NULL;
            END IF;
            RETURN audit_events_float(number::float8);
        END IF;
        RETURN j::text;
    END
    $$
    """,
]
POSTGRESQL_REMOVE = [
    "DROP FUNCTION IF EXISTS audit_events_json(jsonb)",
    "DROP FUNCTION IF EXISTS audit_events_float(float8)",
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
    dependencies = [
        ("audit_events", "0009_event_fewer_indexes"),
    ]

    operations = [
        migrations.RunPython(install, remove, elidable=False),
    ]
