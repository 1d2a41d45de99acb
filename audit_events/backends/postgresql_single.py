"""PostgreSQL: one row written and its event inserted by one statement, in autocommit mode.

A save's UPDATE, a create's INSERT, a delete's DELETE of a registered row
(``single_statement`` says which), and its event, as one data-modifying
statement::

    WITH w AS (UPDATE t SET ... FROM (SELECT ... FOR NO KEY UPDATE) AS old ... RETURNING old.*, t.<written>),
         ct AS (<the model's content type>),
         s0 AS (SELECT w.*, <each value as canonical JSON text>, <the key's text> FROM w),
         s1 AS (SELECT s0.*, <the changes, or the state> FROM s0),
         n AS (SELECT s1.*, <version and previous hash: the row's latest event> FROM s1 ...),
         ins AS (INSERT INTO event ... SELECT ... FROM n)
    SELECT <what Django asked for> FROM w

A statement is atomic on its own: with no BEGIN and COMMIT around it, the row
and its event commit together or not at all, in one round trip where plain
Django sends one. Every value recorded is the statement's own answer (the
old row as the locking subquery read it, the new one as the write returned
it), encoded by ``postgresql_events.json_text``; the hashed content is
``hashing.hash_content``'s text.

Unlike the statements of ``postgresql_events``, whose rows Python may still
record in the same transaction, this one has no later statement to leave a
row to: whatever it cannot record makes the whole statement fail, and so
write nothing (``single_statement`` then saves the row as inside a
transaction):

* a value it cannot write exactly, or a snapshot due with such a value (the
  JSON text, so the hash, is NULL: the event's NOT NULL ``hash`` refuses it),
  as does a session whose ``extra_float_digits`` is not the default 1 (floats
  are written as PostgreSQL writes them with 1: migration 0010);
* a version taken while the write waited for the row's lock (another
  transaction committed an event this statement's snapshot cannot see): the
  unique ``(content_type, object_pk, version)`` refuses it;
* a model without a content type yet (``content_type_id`` NULL).
"""

from __future__ import annotations

from typing import Any

from django.db import models

from ..encoding import value_field
from ..models import Event
from .postgresql_events import _CONTENT_TYPES, _EVENT_COLUMNS, _literal, _object

# The event's hash is NULL (the statement fails) in a session that writes floats otherwise.
_DIGITS = "current_setting('extra_float_digits') = '1'"


def update(
    write: str,
    width: int,
    written: list[tuple[str, str, str, str]],
    state: list[tuple[str, str]],
    object_pk: str,
    every: int,
) -> str:
    """The statement around ``write`` (an UPDATE returning ``width`` columns: the old row, the key, the
    columns written) that inserts the row's ``update`` event, a snapshot when its version is due one.

    ``written``: per field written, in the canonical order of its name, its JSON key, the SQL of its
    old and new values' canonical text over ``w.c<i>`` (``postgresql_events.json_text``) and the SQL
    saying the two values are the same (:func:`same`); ``state``: per field, its JSON key and the SQL of
    its value's canonical text as the UPDATE left it, over ``m.c<i>`` (written only when a snapshot is
    due); ``object_pk``: the SQL of the row's ``Event.object_pk`` over ``w.c<i>``. Answer: the number of
    rows written. Parameters after the UPDATE's: as ``postgresql_events.update_with_events``.
    """
    # Each field's member of the changes: NULL if the value is the same (not encoded at all), '' if a value
    # cannot be written (then no changes, so no hash: the statement fails).
    members = ", ".join(
        f"CASE WHEN {unchanged} THEN NULL ELSE COALESCE({_literal(name + ':[')} || {old} || ',' || {new} || ']', '') "
        f"END AS d{i}"
        for i, (name, old, new, unchanged) in enumerate(written)
    )
    named = ", ".join(f"d{i}" for i in range(len(written)))
    due = f"(m.version = 1 OR m.version %% {int(every)} = 0)"
    return _statement(
        write,
        width,
        [
            f"{members}, {object_pk} AS object_pk",
            f"CASE WHEN '' = ANY(ARRAY[{named}]) THEN NULL ELSE '{{' || concat_ws(',', {named}) || '}}' END AS changes",
        ],
        where="s1.changes IS DISTINCT FROM '{}'",  # a save that changes nothing records nothing
        snapshot=(due, _object(state)),
        event=("'update'", "CAST(n.changes AS jsonb)", "CAST(n.snapshot AS jsonb)"),
        hashed="n.previous || %s || n.changes || %s || to_json(n.object_pk)::text || %s "
        "|| CASE WHEN n.due THEN n.snapshot ELSE 'null' END || '}'",
        answer="(SELECT count(*) FROM w)",
    )


def same(field: Any, old: str, new: str) -> str:
    """SQL saying the columns ``old`` and ``new`` of ``field`` have the same canonical JSON text, without
    writing it: equal values, where a column's type makes equal values one text (a decimal's scale is the
    field's, equal times are one instant); text compared byte for byte (a column's collation may make
    ``'a'`` equal ``'A'``); JSON by its text, as ``1`` and ``1.0`` are equal ``jsonb`` but not the same JSON."""
    if isinstance(field, models.JSONField) or isinstance(value_field(field), _TEXTS):
        return f'({old})::text COLLATE "C" IS NOT DISTINCT FROM ({new})::text COLLATE "C"'
    return f"{old} IS NOT DISTINCT FROM {new}"


_TEXTS = (models.CharField, models.TextField, models.FileField)


def delete(write: str, width: int, state: list[tuple[str, str]], object_pk: str) -> str:
    """The statement around ``write`` (a DELETE returning ``width`` columns of the row it deleted) that
    inserts its ``delete`` event, the state written by the database. Answer: the number of rows deleted.
    Parameters after the DELETE's: as ``postgresql_events.delete_with_events``."""
    return _state_event(write, width, state, object_pk, "delete", "(SELECT count(*) FROM w)")


def insert(write: str, width: int, state: list[tuple[str, str]], object_pk: str) -> str:
    """As :func:`delete`, around an INSERT of one row: its ``create`` event. Answer: the columns the
    INSERT returned (none if it inserted nothing)."""
    columns = ", ".join(f"w.c{i}" for i in range(width))
    return _state_event(write, width, state, object_pk, "create", f"{columns} FROM w")


def _state_event(write: str, width: int, state: list[tuple[str, str]], object_pk: str, action: str, answer: str) -> str:
    return _statement(
        write,
        width,
        [f"{_object(state)} AS state, {object_pk} AS object_pk"],
        where=None,
        event=(f"'{action}'", "'{}'::jsonb", "CAST(n.state AS jsonb)"),
        hashed="n.previous || %s || to_json(n.object_pk)::text || %s || n.state || '}'",
        answer=answer,
    )


def _statement(
    write: str,
    width: int,
    stages: list[str],
    *,
    where: str | None,
    snapshot: tuple[str, str] | None = None,
    event: tuple[str, str, str],
    hashed: str,
    answer: str,
) -> str:
    """``write`` (returning ``width`` columns, ``w.c0``...), its row through ``stages`` (columns each adds,
    over the previous ones; the first adds ``object_pk``), numbered from its latest event where ``where``
    holds (``m``), with its ``snapshot`` if any (``n``: when it is due, the state), and the INSERT of its
    event; answering ``answer``."""
    names = ", ".join(f"c{i}" for i in range(width))
    ctes = [f"w({names}) AS ({write})", f"ct AS (SELECT id FROM {_CONTENT_TYPES} WHERE app_label = %s AND model = %s)"]
    source = "w"
    for i, columns in enumerate(stages):
        # MATERIALIZED: computed once. Inlined (PostgreSQL inlines a CTE read once), a stage's columns are
        # computed again in each expression of the next that names them: each value encoded two or three times.
        ctes.append(f"s{i} AS MATERIALIZED (SELECT {source}.*, {columns} FROM {source})")
        source = f"s{i}"
    ctes.append(
        f"m AS (SELECT {source}.*, COALESCE(last.version, 0) + 1 AS version, COALESCE(last.hash, '') AS previous "
        f"FROM {source} LEFT JOIN LATERAL (SELECT e.version, e.hash FROM {_EVENT_TABLE} AS e "
        f"WHERE e.content_type_id = (SELECT id FROM ct) AND e.object_pk = {source}.object_pk "
        f"ORDER BY e.version DESC LIMIT 1) AS last ON true{f' WHERE {where}' if where else ''})"
    )
    # The snapshot (when its version is due one, this state), written only when due: its values are encoded
    # then alone.
    extra = f", {snapshot[0]} AS due, CASE WHEN {snapshot[0]} THEN {snapshot[1]} END AS snapshot" if snapshot else ""
    ctes.append(f"n AS MATERIALIZED (SELECT m.*{extra} FROM m)")
    action, changes, state = event
    ctes.append(
        f"ins AS (INSERT INTO {_EVENT_TABLE} ({_EVENT_COLUMNS}) SELECT (SELECT id FROM ct), n.object_pk, n.version, "
        f"{action}, {changes}, {state}, CAST(%s AS timestamptz), CAST(%s AS uuid), %s, %s, CAST(%s AS jsonb), "
        f"CASE WHEN {_DIGITS} THEN encode(sha256(convert_to({hashed}, 'UTF8')), 'hex') END FROM n)"
    )
    return f"WITH {', '.join(ctes)} SELECT {answer}"


_EVENT_TABLE = '"' + Event._meta.db_table + '"'
