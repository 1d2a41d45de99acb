"""Rows as the database answers a write: the INSERT of a create or a ``bulk_create()``.

What a state records is each value as the database stores it: a row
returned or read goes through the backend's converters only
(:func:`split_converters`), not the fields' own ``from_db_value``; Django gets
what it asked for with both applied, as from its own INSERT.

An INSERT of a registered model returns every recorded column (``RETURNING``).
What to do with what it returns is the same for every INSERT of a model
asking for the same columns, and that is planned once per connection
(:class:`Plan`): the hot part of a create is then the statement and a
loop over its values, as in plain Django.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.db import connections, models
from django.db.models.sql import InsertQuery

from . import prepared, registry
from .encoding import State, converts

if TYPE_CHECKING:
    Field = models.Field[Any, Any]


def split_converters(converters: dict[int, Any]) -> tuple[dict[int, Any], dict[int, Any]]:
    """A compiler's ``get_converters()`` as the backend's and the fields' own ``from_db_value``.

    The backend's alone give each value as the database stores it, which is
    what a state records (:func:`.encoding.stored_encoder`): no method of the
    field is called on what it made of it. Applied after them, the fields' own
    give what Django sets on an instance.
    """
    stored: dict[int, Any] = {}
    own: dict[int, Any] = {}
    for index, (functions, expression) in converters.items():
        if backend := [f for f in functions if not _own_converter(f)]:
            stored[index] = (backend, expression)
        if fields := [f for f in functions if _own_converter(f)]:
            own[index] = (fields, expression)
    return stored, own


def _own_converter(function: Any) -> bool:
    """A field's ``from_db_value`` that makes objects of its own (a JSONField's gives plain JSON: kept)."""
    field = getattr(function, "__self__", None)
    return getattr(function, "__name__", "") == "from_db_value" and isinstance(field, models.Field) and converts(field)


def insert_returning(
    spec: registry.ModelSpec,
    model: type[models.Model],
    objs: list[models.Model],
    fields: list[Field],
    asked: list[Field],
    raw: bool,
    using: str,
    conflicts: dict[str, Any],
) -> tuple[list[tuple[Any, State]], list[tuple[Any, ...]]]:
    """Django's ``_insert`` of ``objs`` into ``model``'s table, returning the columns Django asked for
    (``asked``) and every column of it that ``spec`` records.

    Returns, for each row the INSERT returned (none for a row it left alone),
    its key and the state of the recorded columns (the fields of ``spec``
    whose column is in ``model``'s table: a multi-table parent's INSERT gives
    a child its parent's fields), as the database stores them; and the
    ``asked`` columns, in order, as Django gives them. One statement, sent
    through the cursor the connection keeps (:func:`.prepared.cursor`): a
    fresh one would look up how to read each returned column again.
    """
    plan, statements = insert_statements(spec, model, objs, fields, asked, raw, using, conflicts)
    cursor = prepared.cursor(plan.connection)
    for sql, params in statements:
        cursor.execute(sql, params)
    returned = cursor.fetchall()
    return plan.states(returned), plan.given(returned)


def insert_statements(
    spec: registry.ModelSpec,
    model: type[models.Model],
    objs: list[models.Model],
    fields: list[Field],
    asked: list[Field],
    raw: bool,
    using: str,
    conflicts: dict[str, Any],
) -> tuple[Plan, list[tuple[str, Any]]]:
    """:func:`insert_returning`'s plan and statements, not run."""
    connection = connections[using]
    plan = _plan(spec, model, asked, connection)
    query = InsertQuery(model, **conflicts)
    query.insert_values(fields, objs, raw=raw)
    compiler: Any = query.get_compiler(connection=connection)
    return plan, plan.statements(compiler)


def _plan(spec: registry.ModelSpec, model: type[models.Model], asked: list[Field], connection: Any) -> Plan:
    plans: dict[tuple[type[models.Model], tuple[Field, ...]], Plan] = connection.__dict__.setdefault(_PLANS, {})
    key = (model, tuple(asked))
    plan = plans.get(key)
    if plan is None or plan.spec is not spec:
        plan = plans[key] = Plan(spec, model, asked, connection)
    return plan


_PLANS = "_audit_events_insert_plans"
_Converter = tuple[int, list[Callable[..., Any]], Any]  # a column's position, its converters, its expression


class Plan:
    """The INSERT of ``model`` returning ``asked`` and ``spec``'s recorded columns: which
    columns, and how each returned value becomes a state's and the one Django asked for."""

    def __init__(
        self, spec: registry.ModelSpec, model: type[models.Model], asked: list[Field], connection: Any
    ) -> None:
        self.spec = spec
        self.connection = connection
        opts = (model._meta.concrete_model or model)._meta  # a proxy's fields are its concrete model's
        keys = list(opts.pk_fields)
        self.columns: list[Field] = _returned_columns(spec, opts.local_concrete_fields, asked, keys)
        # Django's RETURNING clause of these columns, made once: quoting them is most of compiling a create.
        self.returning = _returning_clause(connection, self.columns)
        position = {field: i for i, field in enumerate(self.columns)}
        compiler = InsertQuery(model).get_compiler(connection=connection)
        table = model._meta.db_table
        converters = compiler.get_converters([f.get_col(table) for f in self.columns])
        stored = split_converters(converters)[0]
        self.stored: list[_Converter] = [(i, functions, expression) for i, (functions, expression) in stored.items()]
        self.encoded = [(f.name, position[f], to_json) for f, _, to_json in spec.encoders if f in position]
        self.keys = [position[f] for f in keys]
        # What Django asked for, converted from the value as returned, as by Django's own INSERT:
        # no object of a state is handed to the instance.
        self.asked: list[_Converter] = [(position[f], *converters.get(position[f], ([], None))) for f in asked]

    def statements(self, compiler: Any) -> list[tuple[str, Any]]:
        """The INSERT ``compiler`` makes, returning :attr:`columns`.

        Where the backend inserts many rows in one statement and can return them,
        Django's statement without RETURNING is that statement, and the clause is
        appended as Django appends it; otherwise Django makes the whole statement.
        """
        if self.returning is not None:
            compiler.returning_fields = None
            statements = compiler.as_sql()
            if len(statements) == 1:
                (sql, params), (returning, returning_params) = statements[0], self.returning
                return [(f"{sql} {returning}", (*params, *returning_params))]
        compiler.returning_fields = self.columns
        statements = compiler.as_sql()
        return list(statements)

    def states(self, returned: list[Any]) -> list[tuple[Any, State]]:
        """Each returned row's key (a tuple for a composite one) and its state."""
        connection, stored, encoded, keys = self.connection, self.stored, self.encoded, self.keys
        out = []
        for row in returned:
            if stored:
                row = list(row)
                for i, functions, expression in stored:
                    value = row[i]
                    for function in functions:
                        value = function(value, expression, connection)
                    row[i] = value
            state = {name: None if (value := row[i]) is None else to_json(value) for name, i, to_json in encoded}
            out.append((row[keys[0]] if len(keys) == 1 else tuple(row[i] for i in keys), state))
        return out

    def given(self, returned: list[Any]) -> list[tuple[Any, ...]]:
        """The asked columns of each returned row, as Django's own INSERT would give them."""
        if not self.asked:
            return []
        connection = self.connection
        out = []
        for row in returned:
            values = []
            for i, functions, expression in self.asked:
                value = row[i]
                for function in functions:
                    value = function(value, expression, connection)
                values.append(value)
            out.append(tuple(values))
        return out


def _returned_columns(spec: registry.ModelSpec, local: Any, asked: list[Field], keys: list[Field]) -> list[Field]:
    """The columns an INSERT into a table of ``local`` fields returns: those ``spec`` records (not
    the excluded ones: never read), the key's, and those Django asked for, in the table's order
    then the asked ones the table has not."""
    recorded = set(spec.fields)
    columns = [f for f in local if f in recorded or f in asked or f in keys]
    return columns + [f for f in asked if f not in columns]


def _returning_clause(connection: Any, columns: list[Field]) -> tuple[str, tuple[Any, ...]] | None:
    """Django's ``RETURNING`` clause of ``columns``, where the backend inserts many rows in one
    statement and can return them (:meth:`Plan.statements` appends it); ``None`` elsewhere."""
    features = connection.features
    if not (features.has_bulk_insert and features.can_return_rows_from_bulk_insert):
        return None
    ops = connection.ops  # Django 6 renamed return_insert_columns() returning_columns(), same arguments
    make = getattr(ops, "returning_columns", None) or ops.return_insert_columns
    clause: tuple[str, tuple[Any, ...]] = make(columns)
    return clause
