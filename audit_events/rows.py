"""The live rows of registered models, read under lock, many-to-many links included.

Every old row an event records is read here, or returned by the statement
that wrote it (``backends``): capture reads the row a save or delete is about
to change, restoration and verification the row as it is now, snapshots and
many-to-many writes the rows they start from. Each read locks what it reads
(``FOR UPDATE``, or ``FOR NO KEY UPDATE`` for a write that keeps keys, where
the backend has them), inside the caller's transaction, so the row cannot
change between the read and the write it precedes.

The one-row read of a save or delete is compiled once per model, lock and
connection (:class:`RowSelect`); only the key changes from one call to the next.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from django.db import connections, models
from django.db.models.expressions import Value
from django.db.models.sql.constants import MULTI

from . import registry
from .encoding import State
from .links import read_links
from .returning import split_converters

if TYPE_CHECKING:
    Field = models.Field[Any, Any]


def lock_rows(
    spec: registry.ModelSpec,
    using: str,
    lookup: dict[str, Any],
    rows: models.QuerySet[Any] | None = None,
    links: bool = True,
    no_key: bool = False,
    only: Collection[Field] | None = None,
) -> dict[Any, State]:
    """The full current state of the rows matching ``lookup`` (among ``rows``, a plain
    queryset of the model, if given), locked, many-to-many links included.

    Queries: one SELECT (``FOR UPDATE`` where the backend supports it; ``FOR
    NO KEY UPDATE`` with ``no_key``: :func:`locking_queryset`), and
    for a model with many-to-many fields one more for the links, read once
    the rows are locked (:func:`with_links`), unless ``links`` is false (a
    caller that has them from an earlier read under the same lock).

    ``only``: the state of these of the spec's fields alone, no links (a caller
    that read the rest earlier under the same lock, and knows what its write left alone).
    """
    encoders = spec.encoders if only is None else tuple(e for e in spec.encoders if e[0] in only)
    columns = _columns(spec, encoders)
    query = locking_queryset(spec, using, rows, no_key, columns).filter(**lookup).query
    read, key = _fetch(query.get_compiler(using), columns.index(spec.pk_field.attname))
    found = {key(row): _encoded(encoders, row) for row in read}
    return with_links(spec, using, found) if links and only is None else found


def _fetch(compiler: Any, pk_index: int) -> tuple[list[Any], Callable[[Any], Any]]:
    """The rows of a locking SELECT, each value as the database stores it (the backend's converters
    only), and how to take from one its key as Django gives it (its field's own converters too),
    for the callers."""
    read: Any = [row for chunk in compiler.execute_sql(MULTI) for row in chunk]
    selected = [e for e, _, _ in compiler.select[: compiler.col_count]]
    stored, own = split_converters(compiler.get_converters(selected))
    read = list(compiler.apply_converters(read, stored)) if stored else read
    if compiler.has_composite_fields(selected):  # as Django's results_iter() does
        read, own = list(compiler.composite_fields_to_tuples(read, selected)), {}
    functions, expression = own.get(pk_index, ([], None))
    connection = compiler.connection
    return read, lambda row: functools.reduce(lambda v, f: f(v, expression, connection), functions, row[pk_index])


def with_links(spec: registry.ModelSpec, using: str, states: dict[Any, State]) -> dict[Any, State]:
    """Add the many-to-many links of rows just locked, by pk (one SELECT; none without such fields).

    The links are read by a statement of their own, started once the rows are
    locked: under READ COMMITTED it sees the links a concurrent writer
    committed while this one waited for the lock. A subquery of the locking
    statement would not: PostgreSQL re-reads the locked row after the wait,
    but the rest of the statement keeps the snapshot it started with.
    """
    if spec.m2m_fields and states:
        for pk, links in read_links(spec, using, list(states)).items():
            states[pk].update(links)
    return states


def live_state(spec: registry.ModelSpec, using: str, pk: Any, no_key: bool = False) -> State | None:
    """One row's full current state, locked (:func:`lock_rows`, ``no_key`` as there); ``None`` if there is no such row.

    The statement is compiled once per model, lock and connection (this runs on
    every save and delete); only the key changes from one call to the next.
    """
    if composite_key(spec):
        return _whole_row(spec, using, pk, no_key)
    return row_select(spec, connections[using], no_key).fetch(pk)


def _whole_row(spec: registry.ModelSpec, using: str, pk: Any, no_key: bool) -> State | None:
    """A composite-key row, locked, read as ``SELECT t.* FROM t WHERE <key> FOR ... UPDATE``.

    The key's columns are named once, in the ``WHERE``, as in the UPDATE of a
    save (Django's composite key tests count them in a save's first
    statement, which this read is on PostgreSQL); the columns are picked back
    by name.
    """
    compiler = locking_queryset(spec, using, no_key=no_key).filter(pk=pk).query.get_compiler(using)
    sql, params = compiler.as_sql()
    table = spec.model._meta.db_table
    # The SELECT list is the fields' columns: no " FROM " before the table's.
    sql = f"SELECT {compiler.connection.ops.quote_name(table)}.*{sql[sql.index(' FROM ') :]}"
    with compiler.connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
        names = [column[0] for column in cursor.description]
    if row is None:
        return None
    by_column = dict(zip(names, row, strict=True))
    values = [by_column[f.column] for f in spec.fields]
    converters = split_converters(compiler.get_converters([f.get_col(table) for f in spec.fields]))[0]
    if converters:
        values = list(next(iter(compiler.apply_converters([values], converters))))
    return with_links(spec, using, {pk: row_state(spec, values)})[pk]


def parent_rows(spec: registry.ModelSpec, using: str, instance: models.Model) -> dict[type[models.Model], State]:
    """The rows the registered parents of ``spec`` have with the keys ``instance`` gives them, locked, by model.

    A save of a child row there is none of, given an existing parent row
    (``Restaurant(place_ptr=place).save()``), UPDATEs the parent's tables by key
    before it INSERTs the child's: their rows were there, and are updated.
    Queries: one locking SELECT per registered parent whose key the instance
    holds, none for one whose fields a row found already holds (a grandparent's,
    in its child's row); none for a model without registered parents, nor for a
    new row (no key).
    """
    found: dict[type[models.Model], State] = {}
    for parent in registry.parent_specs(spec):
        pk = _parent_key(instance, parent.model)
        if pk is None:
            continue
        state = next((row for row in found.values() if parent.name_set.issubset(row)), None)
        if state is None:
            state = live_state(parent, using, pk, no_key=True)
        if state is not None:
            found[parent.model] = state
    return found


def _parent_key(instance: models.Model, parent: type[models.Model]) -> Any:
    """The key of ``instance``'s row in ``parent``'s table: its own field, else the link to it that
    Django's ``_save_parents`` copies into it before the save (``Cinema(venue_ptr_id=...)``)."""
    key = getattr(instance, parent._meta.pk.attname)
    for model in (type(instance), *type(instance)._meta.get_parent_list()):
        link = model._meta.parents.get(parent)
        if key is None and link is not None:
            key = getattr(instance, link.attname)
    return key


def composite_key(spec: registry.ModelSpec) -> bool:
    return bool(getattr(spec.pk_field, "fields", None))


def row_select(spec: registry.ModelSpec, connection: Any, no_key: bool = False) -> RowSelect:
    selects = connection.__dict__.setdefault(_SELECTS, {})
    select: RowSelect | None = selects.get((spec.model, no_key))
    if select is None or select.spec is not spec:
        select = selects[(spec.model, no_key)] = RowSelect(spec, connection, no_key)
    return select


_SELECTS = "_audit_events_selects"


def locking_queryset(
    spec: registry.ModelSpec,
    using: str,
    rows: models.QuerySet[Any] | None = None,
    no_key: bool = False,
    columns: list[str] | None = None,
) -> models.QuerySet[Any, tuple[Any, ...]]:
    """Rows of :func:`_columns` (or of ``columns``), locked (their many-to-many links are read after:
    :func:`with_links`).

    ``rows`` (a plain queryset of the model: only its filter counts) says which
    rows; all by default. Never the base manager's queryset, nor the model's
    default ordering: an ordering over a nullable foreign key or an annotation
    would make PostgreSQL refuse ``FOR UPDATE``, and reading rows needs neither.

    ``no_key`` (a write that keeps the rows and their keys: a save, an update)
    takes the lock Django's own UPDATE takes, ``FOR NO KEY UPDATE`` on
    PostgreSQL: it leaves inserts of rows referencing these (their foreign
    key checks take ``KEY SHARE``) free, as plain Django does. A delete, or
    an update moving keys, keeps ``FOR UPDATE``.
    """
    qs = (models.QuerySet(spec.model, using=using) if rows is None else rows).order_by()
    if connections[using].features.has_select_for_update:
        qs = qs.select_for_update(no_key=no_key and connections[using].features.has_select_for_no_key_update)
    selected: models.QuerySet[Any, tuple[Any, ...]] = qs.values_list(*(columns or _columns(spec)))
    return selected


def _columns(spec: registry.ModelSpec, encoders: tuple[tuple[Field, str, Any], ...] | None = None) -> list[str]:
    """The attnames the locking SELECT reads: the fields' (those of ``encoders``, a part of
    ``spec.encoders``, if given), in order, then the pk's if no field is it."""
    attnames = [attname for _, attname, _ in (spec.encoders if encoders is None else encoders)]
    return attnames if spec.pk_field.attname in attnames else [*attnames, spec.pk_field.attname]


def row_state(spec: registry.ModelSpec, row: tuple[Any, ...] | list[Any]) -> State:
    """A row of :func:`locking_queryset`, encoded (its links are added by :func:`with_links`)."""
    return _encoded(spec.encoders, row)


def _encoded(encoders: tuple[tuple[Field, str, Any], ...], row: tuple[Any, ...] | list[Any]) -> State:
    """The values of ``row``, one per encoder and in their order, as a state."""
    return {f.name: None if (v := row[i]) is None else to_json(v) for i, (f, _, to_json) in enumerate(encoders)}


class RowSelect:
    """:func:`locking_queryset` for one key, compiled once: its SQL, the key's slot, the converters.

    The backends build a save's UPDATE of the row from it (its columns, and on
    PostgreSQL the SELECT itself, as the UPDATE's subquery): ``backends``.
    """

    def __init__(self, spec: registry.ModelSpec, connection: Any, no_key: bool = False) -> None:
        self.spec = spec
        self.connection = connection
        key = object()  # stands for the key in the compiled parameters
        # Value, not RawSQL: RawSQL looks up the parents' columns in its SQL, and a parent's
        # ForeignObject (a field without a column) makes that fail.
        qs = locking_queryset(spec, connection.alias, no_key=no_key).filter(pk=Value(key))
        self.compiler = qs.query.get_compiler(connection=connection)
        self.sql, params = self.compiler.as_sql()
        self.params = list(params)
        self.slot = next(i for i, p in enumerate(self.params) if p is key)
        selected = self.compiler.select[: self.compiler.col_count]
        self.names = [alias for _, _, alias in selected]
        self.pk_index = self.names.index(spec.pk_field.attname)
        self.columns = [sql for _, (sql, _), _ in selected]
        self.converters = split_converters(self.compiler.get_converters([e for e, _, _ in selected]))[0]
        # Where each of spec.fields is in this SELECT: an UPDATE returns those it writes (``backends``).
        self.indexes = [self.names.index(f.attname) for f in spec.fields]
        # The UPDATEs of saves of this row by key, compiled once by the backend (``backends.base.Backend.update``).
        self.statements: dict[Any, Any] = {}

    def fetch(self, pk: Any) -> State | None:
        """The row with key ``pk``, locked; ``None`` if there is none."""
        with self.connection.cursor() as cursor:
            cursor.execute(self.sql, self.key_params(pk))
            rows = cursor.fetchall()
        return next(iter(self.states(rows).values()), None)

    def new_states(self, rows: list[Any], fields: list[int], converters: dict[int, Any]) -> list[State]:
        """Rows of the key and these of ``spec.fields`` (by position), the fields encoded
        (``converters``: those of the returned columns, by position)."""
        if converters:
            rows = list(self.compiler.apply_converters(rows, converters))
        encoders = self.spec.encoders
        return [
            {(e := encoders[j])[0].name: None if (v := row[k]) is None else e[2](v) for k, j in enumerate(fields, 1)}
            for row in rows
        ]

    def key_params(self, pk: Any) -> list[Any]:
        """The SELECT's parameters for the row with key ``pk``."""
        params = list(self.params)
        params[self.slot] = self.spec.pk_field.get_db_prep_value(pk, self.connection)
        return params

    def states(self, rows: list[Any]) -> dict[str, State]:
        """Rows of this SELECT's columns, as states by canonical pk, links read now (:func:`with_links`)."""
        if self.converters:
            rows = list(self.compiler.apply_converters(rows, self.converters))
        states = with_links(
            self.spec, self.connection.alias, {row[self.pk_index]: row_state(self.spec, row) for row in rows}
        )
        return {self.spec.object_pk(pk): state for pk, state in states.items()}
