"""PostgreSQL: a ``QuerySet.update()``'s events made by the database, in the UPDATE's own statement.

One statement updates the rows and inserts their events::

    WITH w AS (UPDATE t SET ... FROM (SELECT ... FOR NO KEY UPDATE) AS old ... RETURNING old.*, t.<written>),
         x AS (SELECT w.*, <the changes, as canonical JSON text> FROM w),
         n AS (SELECT x.*, <version and previous hash: the row's latest event> FROM x ...),
         ins AS (INSERT INTO event ... SELECT ... FROM n WHERE <no snapshot due>
                 ON CONFLICT (content_type_id, object_pk, version) DO NOTHING RETURNING object_pk)
    SELECT count(*) of w, then the rows of n whose event is Python's

Every value recorded is the statement's own: the old row as the locking
subquery read it, the new one as the UPDATE returned it, encoded by SQL that
writes each value exactly as :func:`audit_events.encoding.encode` and
:func:`~audit_events.encoding.canonical_json` would (:func:`json_text`; a
hypothesis test holds the two equal for every type it covers). The hashed
content is :func:`audit_events.hashing.hash_content`'s text, so ``audit_verify``
recomputes it as for any event.

Rows the statement leaves to Python (returned with their old and new columns):

* those whose event falls on a snapshot version (1, or a multiple of
  ``SNAPSHOT_EVERY``), which stores the whole row, links included;
* those whose event the INSERT could not add because the version it looked
  up was taken: the UPDATE waited for another transaction's lock on the row,
  and that transaction committed an event after this statement's snapshot
  was taken (READ COMMITTED), which the lookup cannot see. ``ON CONFLICT DO
  NOTHING`` skips it; Python's INSERT, a later statement, sees it;
* those with a value the SQL cannot write exactly (a float from 1e16 on).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import models

from ..encoding import converts, value_field

if TYPE_CHECKING:
    Field = models.Field[Any, Any]

_INTEGERS = (
    models.AutoField,
    models.BigAutoField,
    models.SmallAutoField,
    models.IntegerField,
    models.BigIntegerField,
    models.SmallIntegerField,
    models.PositiveIntegerField,
    models.PositiveBigIntegerField,
    models.PositiveSmallIntegerField,
)
_TEXTS = (models.CharField, models.TextField, models.SlugField, models.EmailField, models.URLField, models.UUIDField)
# Python writes a Decimal in exponent form below 1e-6 ('1E-7', '0E-7'): with at most six decimal
# places, a DecimalField's value never is, and PostgreSQL's numeric text is Python's str().
_DECIMAL_PLACES = 6


def json_text(field: Field, value: str) -> str | None:
    """SQL of the canonical JSON text (``null`` for NULL) of the column ``value`` of ``field``, as
    ``canonical_json(encode(field, v))`` writes it; ``None`` for a type it does not cover (Python
    records those: IP addresses, fields with a Python type of their own). The SQL gives NULL for a
    value it cannot write exactly (a float from 1e16 on, migration 0009): Python records that row."""
    text = _json_text(field, value)
    return None if text is None else f"CASE WHEN ({value}) IS NULL THEN 'null' ELSE {text} END"


def _json_text(field: Field, value: str) -> str | None:
    if isinstance(field, models.JSONField):
        # As json.loads reads the stored text back (no decoder of the field's own): migration 0009.
        return f"audit_events_json({value})" if type(field) is models.JSONField and field.decoder is None else None
    target = value_field(field)
    kind = type(target)
    if converts(target):
        return None
    if kind in _INTEGERS:
        return f"({value})::text"
    if kind is models.BooleanField:
        return f"CASE WHEN {value} THEN 'true' ELSE 'false' END"
    if kind in _TEXTS or kind is models.FileField:  # a file: its name
        return f"to_json(({value})::text)::text"
    if kind is models.DecimalField:
        places = target.decimal_places  # type: ignore[attr-defined]
        return f"to_json(({value})::text)::text" if places is not None and places <= _DECIMAL_PLACES else None
    return _other_json_text(kind, value)


def _other_json_text(kind: type[Field], value: str) -> str | None:
    if kind is models.FloatField:  # Python's repr (migration 0009); non-finite as text
        return (
            f"CASE WHEN {value} = 'NaN' THEN '\"nan\"' WHEN {value} = 'Infinity' THEN '\"inf\"' "
            f"WHEN {value} = '-Infinity' THEN '\"-inf\"' ELSE audit_events_float({value}) END"
        )
    if kind is models.DateField:
        return f"to_json(to_char({value}, 'YYYY-MM-DD'))::text"
    if kind is models.DateTimeField and settings.USE_TZ:
        # isoformat() in UTC: microseconds only when there are some, the offset as +00:00.
        utc = f"(({value}) AT TIME ZONE 'UTC')"
        return f"""to_json(to_char({utc}, 'YYYY-MM-DD"T"HH24:MI:SS') || {_fraction(utc)} || '+00:00')::text"""
    if kind is models.TimeField:
        clock = f"(({value})::interval)"
        return f"to_json(to_char({clock}, 'HH24:MI:SS') || {_fraction(clock)})::text"
    if kind is models.DurationField:  # microseconds
        return f"(EXTRACT(EPOCH FROM {value}) * 1000000)::bigint::text"
    if kind is models.BinaryField:  # base64, in one line
        return f"to_json(translate(encode({value}, 'base64'), E'\\n', ''))::text"
    return None


def _fraction(moment: str) -> str:
    """isoformat()'s microseconds: written only when there are some."""
    return f"CASE WHEN date_trunc('second', {moment}) = {moment} THEN '' ELSE to_char({moment}, '.US') END"


# Before the statement: its estimated cost would have PostgreSQL compile it (JIT) for longer than it runs
# (half a second for 10,000 rows). Off for it alone: the statement itself gives the transaction's setting back.
JIT_OFF = "SELECT set_config('audit_events.jit', current_setting('jit'), true), set_config('jit', 'off', true)"
_JIT_BACK = "set_config('jit', current_setting('audit_events.jit'), true)"


def _literal(text: str) -> str:
    """``text`` as a SQL string literal, in a statement with ``%s`` parameters."""
    return "'" + text.replace("'", "''").replace("%", "%%") + "'"


def update_with_events(
    update: str,
    width: int,
    changes: list[tuple[str, str, str]],
    object_pk: str,
    table: str,
    every: int,
) -> str:
    """The statement of this module's docstring around ``update`` (an UPDATE returning ``width``
    columns of the old row, then the key and the written columns).

    ``changes``: per field written, in the canonical order of its name, its JSON key (``"name"``)
    and the SQL of its old and new values' canonical text over ``w.c<i>`` (:func:`json_text`);
    ``object_pk``: the SQL of the row's ``Event.object_pk`` over them.
    Parameters after the UPDATE's: the content type id twice, the time, the operation, the actor's
    id and text, the context, the hashed content's three pieces (``update_events.content_pieces``).
    """
    names = ", ".join(f"c{i}" for i in range(width + 1 + len(changes)))
    members = ", ".join(
        f"CASE WHEN o{i} IS DISTINCT FROM n{i} THEN {_literal(name + ':[')} || o{i} || ',' || n{i} || ']' END"
        for i, (name, _, _) in enumerate(changes)
    )
    # A value the SQL cannot write (NULL): the row's event is Python's (concat_ws would skip it).
    unwritten = " OR ".join(f"o{i} IS NULL OR n{i} IS NULL" for i in range(len(changes)))
    encoded = ", ".join(f"{old} AS o{i}, {new} AS n{i}" for i, (_, old, new) in enumerate(changes))
    snapshot = f"(n.version = 1 OR n.version %% {int(every)} = 0)"
    columns = (
        "content_type_id, object_pk, version, action, changes, state, created_at, operation, "
        "actor_id, actor_repr, context, hash"
    )
    return (
        f"WITH w({names}) AS ({update}), "
        f"v AS (SELECT w.*, {encoded}, {object_pk} AS object_pk FROM w), "
        f"x AS (SELECT v.*, CASE WHEN {unwritten} THEN NULL ELSE '{{' || concat_ws(',', {members}) || '}}' END "
        "AS changes FROM v), "
        "n AS (SELECT x.*, COALESCE(last.version, 0) + 1 AS version, COALESCE(last.hash, '') AS previous FROM x "
        f"LEFT JOIN LATERAL (SELECT e.version, e.hash FROM {table} AS e WHERE e.content_type_id = %s "
        "AND e.object_pk = x.object_pk ORDER BY e.version DESC LIMIT 1) AS last ON true "
        "WHERE x.changes IS DISTINCT FROM '{}'), "
        f"ins AS (INSERT INTO {table} ({columns}) "
        "SELECT %s, n.object_pk, n.version, 'update', CAST(n.changes AS jsonb), NULL, CAST(%s AS timestamptz), "
        "CAST(%s AS uuid), %s, %s, CAST(%s AS jsonb), encode(sha256(convert_to(n.previous || %s || n.changes || %s "
        "|| to_json(n.object_pk)::text || %s, 'UTF8')), 'hex') "
        f"FROM n WHERE NOT {snapshot} AND n.changes IS NOT NULL "
        "ON CONFLICT (content_type_id, object_pk, version) DO NOTHING RETURNING object_pk) "
        f"SELECT (SELECT count(*) FROM w), {_JIT_BACK}, {', '.join(f'n.{name}' for name in names.split(', '))} "
        "FROM (SELECT 1) AS one LEFT JOIN (n LEFT JOIN ins ON ins.object_pk = n.object_pk) ON ins.object_pk IS NULL"
    )
