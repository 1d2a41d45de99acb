"""PostgreSQL: a ``QuerySet.update()``'s events made by the database, in the UPDATE's own statement.

One statement updates the rows and inserts their events::

    WITH w AS (UPDATE t SET ... FROM (SELECT ... FOR NO KEY UPDATE) AS old ... RETURNING old.*, t.<written>),
         x AS (SELECT w.*, <the changes, as canonical JSON text> FROM w),
         v AS (SELECT x.*, <version and previous hash: the row's latest event> FROM x ...),
         n AS (SELECT v.*, <the whole new row, where a snapshot is due> FROM v),
         ins AS (INSERT INTO event ... SELECT ... FROM n WHERE <every value written>
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
  ``SNAPSHOT_EVERY``), which stores the whole row, links included, where
  the caller gives no SQL of the whole row (``update_with_events``' ``state``);
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
from django.contrib.contenttypes.models import ContentType
from django.db import models

from ..encoding import converts, value_field
from ..links import Through

if TYPE_CHECKING:
    from .base import Changes, Members

    Field = models.Field[Any, Any]

# Python writes a Decimal in exponent form below 1e-6 ('1E-7', '0E-7'): with at most six decimal
# places, a DecimalField's value never is, and PostgreSQL's numeric text is Python's str().
_DECIMAL_PLACES = 6


def json_text(field: Field, value: str) -> str | None:
    """SQL of the canonical JSON text (``null`` for NULL) of the column ``value`` of ``field``, as
    ``canonical_json(encode(field, v))`` writes it; ``None`` for a type it does not cover (Python
    records those: IP addresses, fields with a Python type or a ``to_python`` of their own). The SQL
    gives NULL for a value it cannot write exactly (a float from 1e16 on, migration 0010): Python
    records that row."""
    text = _json_text(field, value)
    return None if text is None else f"CASE WHEN ({value}) IS NULL THEN 'null' ELSE {text} END"


def _json_text(field: Field, value: str) -> str | None:
    if isinstance(field, models.JSONField):
        # As json.loads reads the stored text back (no decoder of the field's own): migration 0010.
        return f"audit_events_json({value})" if type(field) is models.JSONField and field.decoder is None else None
    target = value_field(field)
    if converts(target):
        return None
    # The first of Django's types the field is (a subclass too, if it reads values as its type does:
    # ``encoding`` encodes by type, through the field's ``to_python`` for some).
    for kind, write in _WRITERS:
        if isinstance(target, kind):
            return write(target, value) if type(target).to_python is kind.to_python else None
    return None


def _decimal(field: Any, value: str) -> str | None:
    places = field.decimal_places
    if places is None or places > _DECIMAL_PLACES:
        return None
    return f"CASE WHEN {value} = 'NaN' THEN NULL ELSE to_json(({value})::text)::text END"  # NaN: Python's to refuse


def _duration(field: Any, value: str) -> str:
    # Microseconds, as many digits as it takes. An interval with months or years (raw SQL only: Django
    # writes days and microseconds) is read by the driver as 30 and 365 days, not as EXTRACT counts them:
    # Python's to record.
    months = f"EXTRACT(MONTH FROM {value}) <> 0 OR EXTRACT(YEAR FROM {value}) <> 0"
    return f"CASE WHEN {months} THEN NULL ELSE trunc(EXTRACT(EPOCH FROM {value}) * 1000000)::text END"


def _datetime(field: Any, value: str) -> str | None:
    if not settings.USE_TZ:
        return None
    # isoformat() in UTC: microseconds only when there are some, the offset as +00:00.
    utc = f"(({value}) AT TIME ZONE 'UTC')"
    return f"""to_json(to_char({utc}, 'YYYY-MM-DD"T"HH24:MI:SS') || {_fraction(utc)} || '+00:00')::text"""


def _time(field: Any, value: str) -> str:
    clock = f"(({value})::interval)"
    return f"to_json(to_char({clock}, 'HH24:MI:SS') || {_fraction(clock)})::text"


def _text(field: Any, value: str) -> str:
    return f"to_json(({value})::text)::text"


_WRITERS: tuple[tuple[type[Any], Any], ...] = (
    (models.GenericIPAddressField, lambda field, value: None),  # PostgreSQL's inet text is not Python's
    (models.BooleanField, lambda field, value: f"CASE WHEN {value} THEN 'true' ELSE 'false' END"),
    (models.IntegerField, lambda field, value: f"({value})::text"),  # the AutoFields too
    (models.AutoField, lambda field, value: f"({value})::text"),
    (models.BigAutoField, lambda field, value: f"({value})::text"),
    (models.SmallAutoField, lambda field, value: f"({value})::text"),
    (models.DecimalField, _decimal),
    (
        models.FloatField,
        lambda field, value: (  # Python's repr (migration 0010); non-finite as text
            f"CASE WHEN {value} = 'NaN' THEN '\"nan\"' WHEN {value} = 'Infinity' THEN '\"inf\"' "
            f"WHEN {value} = '-Infinity' THEN '\"-inf\"' ELSE audit_events_float({value}) END"
        ),
    ),
    (models.DateTimeField, _datetime),  # before DateField, its base
    (models.DateField, lambda field, value: f"to_json(to_char({value}, 'YYYY-MM-DD'))::text"),
    (models.TimeField, _time),
    (models.DurationField, _duration),
    (models.BinaryField, lambda field, value: f"to_json(translate(encode({value}, 'base64'), E'\\n', ''))::text"),
    (models.CharField, _text),
    (models.TextField, _text),
    (models.UUIDField, _text),
    (models.FileField, _text),  # its name
)


def _fraction(moment: str) -> str:
    """isoformat()'s microseconds: written only when there are some."""
    return f"CASE WHEN date_trunc('second', {moment}) = {moment} THEN '' ELSE to_char({moment}, '.US') END"


# Before the statement: its estimated cost would have PostgreSQL compile it (JIT) for longer than it runs
# (half a second for 10,000 rows), and floats must be written in their shortest exact form (migration
# 0010's functions). No sort either: a row's latest event is then the index's, never a sort of a scan,
# which a planner that believes the event table empty or tiny (just analyzed so) would choose, and which
# reads, for each row, the events the statement itself inserted so far (quadratic). Set for the statement
# alone, which gives the transaction's settings back itself.
JIT_OFF = (
    "SELECT set_config('audit_events.jit', current_setting('jit'), true), set_config('jit', 'off', true), "
    "set_config('audit_events.efd', current_setting('extra_float_digits'), true), "
    "set_config('extra_float_digits', '1', true), "
    "set_config('audit_events.sort', current_setting('enable_sort'), true), set_config('enable_sort', 'off', true)"
)
_JIT_BACK = (  # two columns of the answer (``statement_events``)
    "set_config('jit', current_setting('audit_events.jit'), true), "
    "set_config('extra_float_digits', current_setting('audit_events.efd'), true) "
    "|| set_config('enable_sort', current_setting('audit_events.sort'), true)"
)


def _literal(text: str) -> str:
    """``text`` as a SQL string literal, in a statement with ``%s`` parameters."""
    return "'" + text.replace("'", "''").replace("%", "%%") + "'"


def update_with_events(
    update: str, width: int, changes: Changes, object_pk: str, table: str, every: int, state: Members | None = None
) -> str:
    """The statement of this module's docstring around ``update`` (an UPDATE returning ``width``
    columns of the old row, then the key and the written columns).

    ``changes``: per field written, in the canonical order of its name, its JSON key (``"name"``)
    and the SQL of its old and new values' canonical text over ``w.c<i>`` (:func:`json_text`);
    ``object_pk``: the SQL of the row's ``Event.object_pk`` over them; ``state``: per field and
    many-to-many field, in the same order, its JSON key and the SQL of its new value's canonical text
    (:func:`links_text` for links), the whole row a snapshot stores (``None``: Python writes snapshots).
    Parameters after the UPDATE's: the model's app label and name, the time, the operation, the actor's
    id and text, the context, the hashed content's three pieces (``statement_events``).
    """
    members = ", ".join(
        f"CASE WHEN o{i} IS DISTINCT FROM n{i} THEN {_literal(name + ':[')} || o{i} || ',' || n{i} || ']' END"
        for i, (name, _, _) in enumerate(changes)
    )
    # A value the SQL cannot write (NULL): the row's event is Python's (concat_ws would skip it).
    unwritten = " OR ".join(f"o{i} IS NULL OR n{i} IS NULL" for i in range(len(changes)))
    encoded = ", ".join(f"{old} AS o{i}, {new} AS n{i}" for i, (_, old, new) in enumerate(changes))
    due = f"(w.version = 1 OR w.version %% {int(every)} = 0)"
    # The whole row, for a snapshot due alone (NULL if a value is unwritten: Python's, as is any
    # snapshot without ``state``).
    snapshot = f"CASE WHEN {due} THEN {_object(state)} END" if state else "NULL::text"
    return _with_events(
        update,
        width + 1 + len(changes),
        [
            f"{encoded}, {object_pk} AS object_pk",
            f"CASE WHEN {unwritten} THEN NULL ELSE '{{' || concat_ws(',', {members}) || '}}' END AS changes",
        ],
        table,
        keep="changes IS DISTINCT FROM '{}'",  # a row the UPDATE left as it was records nothing
        numbered=f"{snapshot} AS state, {due} AS due",
        event=("'update'", "CAST(n.changes AS jsonb)", "CAST(n.state AS jsonb)"),
        hashed="n.previous || %s || n.changes || %s || to_json(n.object_pk)::text || %s || "
        "COALESCE(n.state, 'null') || '}'",
        insert="n.changes IS NOT NULL AND (n.state IS NOT NULL OR NOT n.due)",
    )


def _object(members: list[tuple[str, str]]) -> str:
    """SQL of a JSON object's canonical text from its members (JSON key, SQL of the value's text), in
    their canonical order: NULL if a value is."""
    return "'{' || " + " || ',' || ".join(f"{_literal(name + ':')} || {value}" for name, value in members) + " || '}'"


def links_text(field: models.ManyToManyField[Any, Any], owner: str) -> str | None:
    """SQL of the canonical JSON text of the links of ``field`` of the row whose key (the through
    table's ``to_field`` value) is ``owner``: the related rows' keys, sorted as Python sorts them
    (``links.decode_keys``: numbers as numbers, texts and UUIDs by code point, ``COLLATE "C"``), by a
    subquery on the through table. ``None`` where Python must read them: a through table holding
    another field than the related key (``to_field``), a key of another type."""
    ends = Through.of(field)
    if not ends.target.target_field.primary_key:
        return None
    column = f"t.{_quote(ends.target.column)}"
    kind = value_field(ends.target)
    if isinstance(kind, (models.IntegerField, models.AutoField)):
        order = column
    elif isinstance(kind, (models.CharField, models.TextField, models.UUIDField)):
        order = f'({column})::text COLLATE "C"'
    else:
        return None
    key = json_text(ends.target, column)  # never NULL for these types: string_agg would skip a NULL
    if key is None:
        return None
    return (
        f"(SELECT '[' || COALESCE(string_agg({key}, ',' ORDER BY {order}), '') || ']' "
        f"FROM {_quote(ends.model._meta.db_table)} AS t WHERE t.{_quote(ends.source.column)} = {owner})"
    )


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def delete_with_events(delete: str, width: int, state: list[tuple[str, str]], object_pk: str, table: str) -> str:
    """The statement of this module's docstring around ``delete`` (a DELETE returning ``width`` columns
    of the row it deleted): each row's ``delete`` event, its state written by the database.

    ``state``: per field, in the canonical order of its name, its JSON key and the SQL of its
    value's canonical text over ``w.c<i>``. Parameters after the DELETE's: as :func:`update_with_events`,
    with two pieces of hashed content (before the object_pk, and between it and the state).
    """
    return _state_events(delete, width, state, object_pk, table, "delete")


def insert_with_events(insert: str, width: int, state: list[tuple[str, str]], object_pk: str, table: str) -> str:
    """As :func:`delete_with_events`, around an INSERT: each row's ``create`` event. Its answer holds every
    row the INSERT returned, in its order, each marked whether its event is Python's."""
    return _state_events(insert, width, state, object_pk, table, "create")


def _state_events(write: str, width: int, state: list[tuple[str, str]], object_pk: str, table: str, action: str) -> str:
    return _with_events(
        write,
        width,
        [f"{object_pk} AS object_pk, {_object(state)} AS state"],  # NULL if a value is
        table,
        keep=None,
        event=(f"'{action}'", "'{}'::jsonb", "CAST(n.state AS jsonb)"),
        hashed="n.previous || %s || to_json(n.object_pk)::text || %s || n.state || '}'",
        insert="n.state IS NOT NULL",
        every_row=action == "create",
    )


def _with_events(
    write: str,
    width: int,
    stages: list[str],
    table: str,
    *,
    keep: str | None,
    numbered: str | None = None,
    event: tuple[str, str, str],
    hashed: str,
    insert: str,
    every_row: bool = False,
) -> str:
    """``write`` (returning ``width`` columns, ``w.c0``...), its rows through ``stages`` (columns each
    adds, over the previous ones), those that ``keep`` numbered from their latest event, and the INSERT of
    the events ``insert`` says the database writes: ``event``'s action, changes and state, hash of ``hashed``.
    Its answer: the number of rows written, then the rows whose event is Python's (the others: NULL);
    ``every_row``: each row written, in the order ``write`` returned them, after whether its event is
    Python's (one row of NULLs if none). ``numbered``: columns added once each row has its version
    (over ``w``, the rows numbered)."""
    names = ", ".join(f"c{i}" for i in range(width))
    # The model's content type, looked up in the statement (a write's own statements never include that
    # lookup, as for any event); missing (never migrated), no event is inserted here: Python's to record.
    ctes = [f"w({names}) AS ({write})", f"ct AS (SELECT id FROM {_CONTENT_TYPES} WHERE app_label = %s AND model = %s)"]
    source = "w"
    for i, columns in enumerate(stages):
        if every_row and not i:
            columns += ", row_number() OVER () AS ord"  # the order write returned its rows in
        # MATERIALIZED: computed once. Inlined (PostgreSQL inlines a CTE read once), a stage's columns are
        # computed again in each expression of the next that names them: each value encoded several times.
        ctes.append(f"s{i} AS MATERIALIZED (SELECT {source}.*, {columns} FROM {source})")
        source = f"s{i}"
    where = f" WHERE {source}.{keep}" if keep else ""
    name = "v" if numbered else "n"
    ctes.append(
        f"{name} AS (SELECT {source}.*, COALESCE(last.version, 0) + 1 AS version, COALESCE(last.hash, '') AS previous "
        f"FROM {source} LEFT JOIN LATERAL (SELECT e.version, e.hash FROM {table} AS e "
        f"WHERE e.content_type_id = (SELECT id FROM ct) AND e.object_pk = {source}.object_pk "
        "ORDER BY e.version DESC LIMIT 1) "
        f"AS last ON true{where})"
    )
    if numbered:
        ctes.append(f"n AS (SELECT w.*, {numbered} FROM v AS w)")
    action, changes, state = event
    ctes.append(
        f"ins AS (INSERT INTO {table} ({_EVENT_COLUMNS}) SELECT (SELECT id FROM ct), n.object_pk, n.version, "
        f"{action}, {changes}, {state}, CAST(%s AS timestamptz), CAST(%s AS uuid), %s, %s, CAST(%s AS jsonb), "
        f"encode(sha256(convert_to({hashed}, 'UTF8')), 'hex') FROM n "
        f"WHERE {insert} AND (SELECT id FROM ct) IS NOT NULL "
        "ON CONFLICT (content_type_id, object_pk, version) DO NOTHING RETURNING object_pk)"
    )
    returned = ", ".join(f"n.c{i}" for i in range(width))
    if every_row:
        return (
            f"WITH {', '.join(ctes)} SELECT (SELECT count(*) FROM w), {_JIT_BACK}, ins.object_pk IS NULL, {returned} "
            "FROM (SELECT 1) AS one LEFT JOIN (n LEFT JOIN ins ON ins.object_pk = n.object_pk) ON true ORDER BY n.ord"
        )
    return (
        f"WITH {', '.join(ctes)} SELECT (SELECT count(*) FROM w), {_JIT_BACK}, {returned} "
        "FROM (SELECT 1) AS one LEFT JOIN (n LEFT JOIN ins ON ins.object_pk = n.object_pk) ON ins.object_pk IS NULL"
    )


_CONTENT_TYPES = '"' + ContentType._meta.db_table + '"'
_EVENT_COLUMNS = (
    "content_type_id, object_pk, version, action, changes, state, created_at, operation, actor_id, actor_repr, "
    "context, hash"
)
