"""SQLite: the statements that write a row and return it, the triggers, ``BEGIN IMMEDIATE``.

* a save's UPDATE returns the row it leaves (``UPDATE ... RETURNING``, SQLite
  3.35+: :class:`.base.Returning`); SQLite's ``RETURNING`` gives a row as the
  UPDATE left it, never as it found it, so capture reads the old row by a
  locking SELECT before the UPDATE;
* where that SELECT would be the first statement of a save, and something
  looks at it (Django's composite key tests read the SQL of a save's one
  statement), the UPDATE answers for the old values itself
  (:meth:`SQLite.update_overwriting`): each column it writes is assigned
  ``audit_events_overwritten(<new value>, <column>, <n>)``, a function of this
  app's registered on the connection, which SQLite calls once for the row it
  changes with the value the row held, and which returns the new value as it
  came, stored as the parameter would have been;
* the event table's append-only triggers, dropped and made again around a flush.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from django.db import connections, models
from django.db.models import Func, Value
from django.db.models.expressions import Col

from .. import rows
from ..returning import split_converters
from .base import DELETE, Returning

if TYPE_CHECKING:
    from ..encoding import State
    from ..registry import ModelSpec
    from .base import Written

    Field = models.Field[Any, Any]

_FUNCTION = "audit_events_overwritten"
# connection.__dict__ key: the _Collector registered on its current DB-API connection.
_COLLECTOR = "_audit_events_overwritten"


class SQLite(Returning):
    hands_back_overwritten = True
    expected_triggers = ("audit_events_no_delete", "audit_events_no_replace", "audit_events_no_update")
    commit_order = "single writer"
    events_in_one_document = True

    def event_drafts(self, columns: tuple[str, ...], rows: int) -> str:
        """``json_each`` of one JSON document: the values a VALUES row would bind (a JSON string gives TEXT)."""
        extracted = ", ".join(f"json_extract(j.value, '$.{name}') AS {name}" for name in columns)
        return f"(SELECT {extracted} FROM json_each(%s) AS j ORDER BY j.key) AS d"

    def begins_deferred(self, connection: Any) -> bool:
        # Django's SQLite backend begins with "BEGIN {transaction_mode}" (Django 5.1+); None means DEFERRED.
        return getattr(connection, "transaction_mode", "") is None

    def update_overwriting(
        self, spec: ModelSpec, base_qs: models.QuerySet[Any], using: str, pk: Any, values: list[tuple[Field, Any, Any]]
    ) -> Written | None:
        """Django's own UPDATE of a save, each value wrapped to hand back the one it overwrites,
        then the row it left read: the old row is that one with the overwritten values. ``None``
        where Django must compile the values itself (nothing has run).

        Queries: the UPDATE, then one SELECT (SQLite holds the write lock from the UPDATE on).
        Its first statement is the UPDATE Django sends, the same ``WHERE``, no column more.
        """
        wrapped = _assignments(spec.model, values)
        if wrapped is None:
            return None
        collected = _collector(connections[using])
        if not base_qs.filter(pk=pk)._update(wrapped):  # type: ignore[attr-defined]
            return None, None  # no row: Django INSERTs, and there was none
        row = rows.live_state(spec, using, pk, no_key=True)
        if row is None:
            raise RuntimeError(f"audit_events: the saved {spec.label} row {spec.object_pk(pk)} could not be read back")
        fields = [field for field, _, _ in values]
        was = _overwritten(spec, using, fields, [collected.values.get(n) for n in range(len(fields))])
        return {**row, **was}, {f.name: row[f.name] for f in spec.fields}

    def installed_triggers(self, connection: Any, cursor: Any, table: str) -> list[str]:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s", [table])
        return sorted(row[0] for row in cursor.fetchall())

    def erases_events(self, statement: str, names_events: bool) -> int:
        return DELETE if statement.startswith("DELETE") and names_events else 0

    @contextlib.contextmanager
    def lifted(self, connection: Any, cursor: Any, table: str, events: int) -> Iterator[None]:
        """SQLite cannot disable a trigger: drop each, and make it again from its own stored SQL."""
        cursor.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s", [table])
        triggers = cursor.fetchall()
        for name, _sql in triggers:
            cursor.execute(f"DROP TRIGGER {connection.ops.quote_name(name)}")
        yield
        for _name, sql in triggers:
            cursor.execute(sql)


def _overwritten(spec: ModelSpec, using: str, fields: list[Field], olds: list[Any]) -> State:
    """The values the UPDATE overwrote (``olds``, of ``fields``), as a state of the recorded fields."""
    compiler = models.QuerySet(spec.model, using=using).query.get_compiler(using)
    converters = split_converters(compiler.get_converters([f.get_col(spec.model._meta.db_table) for f in fields]))[0]
    if converters:
        olds = list(next(iter(compiler.apply_converters([olds], converters))))
    encoders = {field: to_json for field, _, to_json in spec.encoders}  # not the excluded fields
    return {f.name: None if v is None else encoders[f](v) for f, v in zip(fields, olds, strict=True) if f in encoders}


class _Collector:
    """The function SQLite calls: it keeps the old value of column ``n`` and returns the new one."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw  # the DB-API connection it is registered on
        self.values: dict[int, Any] = {}

    def __call__(self, new: Any, old: Any, n: int) -> Any:
        self.values[n] = old
        return new


class _Overwriting(Func):
    function = _FUNCTION
    arity = 3


def _assignments(model: type[models.Model], values: list[tuple[Any, Any, Any]]) -> list[tuple[Any, Any, Any]] | None:
    """A save's ``values`` (Django's ``(field, model, value)``), each value wrapped so that the
    UPDATE hands back the one it overwrites; ``None`` where a value is Django's to compile
    (an expression, a model instance)."""
    table = model._meta.db_table
    wrapped = []
    for n, (field, owner, value) in enumerate(values):
        if hasattr(value, "resolve_expression") or hasattr(value, "prepare_database_save"):
            return None
        new = Value(value, output_field=field)
        wrapped.append((field, owner, _Overwriting(new, Col(table, field), Value(n), output_field=field)))
    return wrapped


def _collector(connection: Any) -> _Collector:
    """The connection's collector, registered on its current DB-API connection (once per connection)."""
    connection.ensure_connection()
    raw = connection.connection
    found: _Collector | None = connection.__dict__.get(_COLLECTOR)
    if found is None or found.raw is not raw:
        found = connection.__dict__[_COLLECTOR] = _Collector(raw)
        raw.create_function(_FUNCTION, 3, found)
    found.values = {}
    return found
