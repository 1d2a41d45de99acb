"""SQLite: an UPDATE that hands back the values it overwrites.

SQLite's ``RETURNING`` gives a row as the UPDATE left it, never as it found
it, so capture reads the old row by a SELECT before the UPDATE. Where that
SELECT would be the first statement of a save, and something looks at it
(Django's composite key tests read the SQL of a save's one statement), the
UPDATE answers for the old values itself: each column it writes is assigned
``audit_events_overwritten(<new value>, <column>, <n>)``, a function of this
app's registered on the connection, which SQLite calls once for the row it
changes with the value the row held, and which returns the new value as it
came, stored as the parameter would have been.

SQLite only: PostgreSQL's UPDATE returns the old row itself (``capture``).
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import Func, Value
from django.db.models.expressions import Col

_FUNCTION = "audit_events_overwritten"
# connection.__dict__ key: the _Collector registered on its current DB-API connection.
_COLLECTOR = "_audit_events_overwritten"


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


def supported(connection: Any) -> bool:
    return bool(connection.vendor == "sqlite")


def assignments(model: type[models.Model], values: list[tuple[Any, Any, Any]]) -> list[tuple[Any, Any, Any]] | None:
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


def collector(connection: Any) -> _Collector:
    """The connection's collector, registered on its current DB-API connection (once per connection)."""
    connection.ensure_connection()
    raw = connection.connection
    found: _Collector | None = connection.__dict__.get(_COLLECTOR)
    if found is None or found.raw is not raw:
        found = connection.__dict__[_COLLECTOR] = _Collector(raw)
        raw.create_function(_FUNCTION, 3, found)
    found.values = {}
    return found
