"""Signal receivers that turn writes of registered models into events.

Cost per audited write, beyond Django's own statements:

* create: nothing (its event is inserted with the transaction's others);
* update: on PostgreSQL nothing, the UPDATE itself returns the old row
  (``UPDATE ... FROM (SELECT ... FOR UPDATE) AS old ... RETURNING old.*``,
  :func:`do_update`); elsewhere one locking SELECT of the old row first;
* delete: on PostgreSQL nothing, the DELETE returns the row (:func:`deleting`),
  for one-table models without many-to-many fields; otherwise one locking
  SELECT of the old row first;
* for a model with many-to-many fields, one more SELECT of its links, read
  once the row is locked (after the UPDATE on PostgreSQL): see
  :func:`_with_links`;
* and, per transaction, one INSERT of up to 500 events before COMMIT
  (``journal``).

The event's version, hash and whether it stores a full state are decided by
the database inside the INSERT (``journal``): no query for the row's history.

Foreign keys that a parent's delete sets to NULL (or a default) are recorded
by the audited ``QuerySet.update()`` Django's Collector calls (``querysets``).

Old values are read from the database inside the write's transaction (the
``save_base`` wrapper in ``registry`` makes it one), locked where the backend
can, never taken from memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from django.db import connections, models
from django.db.models.expressions import RawSQL

from . import journal, m2m, prepared, registry
from .context import is_paused
from .encoding import JSONValue, encode
from .models import Action
from .operations import current_operation

_OLD = "_audit_events_old"

State = dict[str, JSONValue]
if TYPE_CHECKING:
    Field = models.Field[Any, Any]


def lock_rows(
    spec: registry.ModelSpec,
    using: str,
    lookup: dict[str, Any],
    rows: models.QuerySet[Any] | None = None,
    links: bool = True,
) -> dict[Any, State]:
    """The full current state of the rows matching ``lookup`` (among ``rows``, a plain
    queryset of the model, if given), locked, many-to-many links included.

    Queries: one SELECT (``FOR UPDATE`` where the backend supports it), and
    for a model with many-to-many fields one more for the links, read once
    the rows are locked (:func:`_with_links`), unless ``links`` is false (a
    caller that has them from an earlier read under the same lock).
    """
    pk_index = _columns(spec).index(spec.pk_field.attname)
    found = {row[pk_index]: _state(spec, row) for row in _locking_queryset(spec, using, rows).filter(**lookup)}
    return _with_links(spec, using, found) if links else found


def _with_links(spec: registry.ModelSpec, using: str, states: dict[Any, State]) -> dict[Any, State]:
    """Add the many-to-many links of rows just locked, by pk (one SELECT; none without such fields).

    The links are read by a statement of their own, started once the rows are
    locked: under READ COMMITTED it sees the links a concurrent writer
    committed while this one waited for the lock. A subquery of the locking
    statement would not: PostgreSQL re-reads the locked row after the wait,
    but the rest of the statement keeps the snapshot it started with.
    """
    if spec.m2m_fields and states:
        for pk, links in m2m.read_links(spec, using, list(states)).items():
            states[pk].update(links)
    return states


def live_state(spec: registry.ModelSpec, using: str, pk: Any) -> State | None:
    """One row's full current state, locked (:func:`lock_rows`); ``None`` if there is no such row.

    The statement is compiled once per model and connection (this runs on
    every save and delete); only the key changes from one call to the next.
    """
    if _composite_key(spec):  # the general query
        return next(iter(lock_rows(spec, using, {"pk": pk}).values()), None)
    return _one_row(spec, connections[using]).fetch(pk)


def _composite_key(spec: registry.ModelSpec) -> bool:
    return bool(getattr(spec.pk_field, "fields", None))


def _one_row(spec: registry.ModelSpec, connection: Any) -> _OneRow:
    selects = connection.__dict__.setdefault(_SELECTS, {})
    select: _OneRow | None = selects.get(spec.model)
    if select is None or select.spec is not spec:
        select = selects[spec.model] = _OneRow(spec, connection)
    return select


_SELECTS = "_audit_events_selects"


def _locking_queryset(
    spec: registry.ModelSpec, using: str, rows: models.QuerySet[Any] | None = None
) -> models.QuerySet[Any, tuple[Any, ...]]:
    """Rows of :func:`_columns`, locked (their many-to-many links are read after: :func:`_with_links`).

    ``rows`` (a plain queryset of the model: only its filter counts) says which
    rows; all by default. Never the base manager's queryset, nor the model's
    default ordering: an ordering over a nullable foreign key or an annotation
    would make PostgreSQL refuse ``FOR UPDATE``, and reading rows needs neither.
    """
    qs = (models.QuerySet(spec.model, using=using) if rows is None else rows).order_by()
    if connections[using].features.has_select_for_update:
        qs = qs.select_for_update()
    selected: models.QuerySet[Any, tuple[Any, ...]] = qs.values_list(*_columns(spec))
    return selected


def _columns(spec: registry.ModelSpec) -> list[str]:
    """The attnames the locking SELECT reads: the fields', in order, then the pk's if no field is it."""
    attnames = [f.attname for f in spec.fields]
    return attnames if spec.pk_field.attname in attnames else [*attnames, spec.pk_field.attname]


def _state(spec: registry.ModelSpec, row: tuple[Any, ...] | list[Any]) -> State:
    """A row of :func:`_locking_queryset`, encoded (its links are added by :func:`_with_links`)."""
    return {f.name: None if (v := row[i]) is None else to_json(v) for i, (f, _, to_json) in enumerate(spec.encoders)}


class _OneRow:
    """:func:`_locking_queryset` for one key, compiled once: its SQL, the key's slot, the converters."""

    def __init__(self, spec: registry.ModelSpec, connection: Any) -> None:
        self.spec = spec
        self.connection = connection
        key = object()  # stands for the key in the compiled parameters
        qs = _locking_queryset(spec, connection.alias).filter(pk=RawSQL("%s", (key,)))
        self.compiler = qs.query.get_compiler(connection=connection)
        self.sql, params = self.compiler.as_sql()
        self.params = list(params)
        self.slot = next(i for i, p in enumerate(self.params) if p is key)
        selected = self.compiler.select[: self.compiler.col_count]
        self.names = [alias for _, _, alias in selected]
        self.pk_index = self.names.index(spec.pk_field.attname)
        self.columns = [sql for _, (sql, _), _ in selected]
        self.converters = self.compiler.get_converters([expression for expression, _, _ in selected])

    def fetch(self, pk: Any) -> State | None:
        return self._run(self.sql, self._params(pk))

    def update(self, pk: Any, values: list[tuple[Field, Any, Any]]) -> tuple[bool, State | None] | None:
        """``UPDATE ... FROM (this SELECT) AS old ... RETURNING old.*`` (PostgreSQL).

        One statement writes ``values`` and brings back the row as it was
        (locked by the subquery's ``FOR UPDATE`` before the UPDATE touches it).
        Returns the old state, or ``None`` if no row has the key, or ``None``
        for the whole result where the values need Django's own compiler
        (expressions, fields with their own placeholder, model instances).
        """
        connection, quote = self.connection, self.connection.ops.quote_name
        assignments: list[str] = []
        params: list[Any] = []
        for field, _model, value in values:
            if hasattr(value, "resolve_expression") or hasattr(value, "prepare_database_save"):
                return None
            if hasattr(field, "get_placeholder"):
                return None
            value = field.get_db_prep_save(value, connection=connection)
            if hasattr(value, "as_sql"):
                return None
            assignments.append(f"{quote(field.column)} = {'NULL' if value is None else '%s'}")
            if value is not None:
                params.append(value)
        table = quote(self.spec.model._meta.db_table)
        sql = (
            f"UPDATE {table} SET {', '.join(assignments)} FROM ({self.sql}) AS {_OLD_ROW} "
            f"WHERE {table}.{quote(self.spec.pk_field.column)} = {_OLD_ROW}.{quote(self.names[self.pk_index])} "
            f"RETURNING {_OLD_ROW}.*"
        )
        old = self._run(sql, params + self._params(pk), prepare=True)
        return old is not None, old

    def _params(self, pk: Any) -> list[Any]:
        params = list(self.params)
        params[self.slot] = self.spec.pk_field.get_db_prep_value(pk, self.connection)
        return params

    def _run(self, sql: str, params: list[Any], prepare: bool = False) -> State | None:
        if prepare:  # a save's UPDATE, planned once per connection (``prepared``)
            cursor = prepared.cursor(self.connection)
            prepared.execute(cursor, sql, params)
            rows = cursor.fetchall()
        else:
            with self.connection.cursor() as cursor:
                cursor.execute(sql, params)
                rows = cursor.fetchall()
        return next(iter(self.states(rows).values()), None)

    def states(self, rows: list[Any]) -> dict[str, State]:
        """Rows of this SELECT's columns, as states by canonical pk, links read now (:func:`_with_links`)."""
        if self.converters:
            rows = list(self.compiler.apply_converters(rows, self.converters))
        states = _with_links(
            self.spec, self.connection.alias, {row[self.pk_index]: _state(self.spec, row) for row in rows}
        )
        return {self.spec.object_pk(pk): state for pk, state in states.items()}


_OLD_ROW = '"_audit_events_old"'


def draft(
    spec: registry.ModelSpec,
    pk: Any,
    action: str,
    content_type_id: int | None = None,
    using: str | None = None,
    **kwargs: Any,
) -> journal.Draft:
    """An event of ``spec``'s row ``pk``, to be written to database ``using``;
    ``content_type_id`` (of that database) saves the lookup when a caller writes many."""
    return journal.Draft(
        content_type_id=spec.content_type_id(using) if content_type_id is None else content_type_id,
        content_type_label=spec.model._meta.label_lower,
        object_pk=spec.object_pk(pk),
        action=action,
        **kwargs,
    )


def diff(old: State, new: State) -> dict[str, list[JSONValue]]:
    return {name: [old.get(name), value] for name, value in new.items() if old.get(name) != value}


# --- save ---------------------------------------------------------------


def pre_save(sender: type[models.Model], instance: models.Model, raw: bool, using: str, **kwargs: Any) -> None:
    instance.__dict__.pop(_OLD, None)  # left by a save or delete that failed before its post_ signal
    spec = registry.spec_for(sender)
    if spec is None or is_paused():
        return
    old: State | object | None = None
    if instance.pk is not None and not _pk_is_fresh(instance, raw):
        old = _FROM_UPDATE if _update_returns_old_row(spec, using) else live_state(spec, using, instance.pk)
    instance.__dict__[_OLD] = old


# pre_save's mark: the UPDATE will bring the old row back itself (:func:`do_update`).
# Left as it is (an INSERT was forced), there was no old row.
_FROM_UPDATE = object()


def _update_returns_old_row(spec: registry.ModelSpec, using: str) -> bool:
    """PostgreSQL, one table (no multi-table parents), a single-column key."""
    return connections[using].vendor == "postgresql" and not spec.model._meta.parents and not _composite_key(spec)


def do_update(
    original: Callable[..., Any],
    instance: models.Model,
    base_qs: models.QuerySet[Any],
    using: str,
    pk_val: Any,
    values: list[tuple[Field, Any, Any]],
    update_fields: Any,
    forced_update: bool,
    *returning_fields: Any,
    **kwargs: Any,
) -> Any:
    """``Model._do_update`` of a registered model: the UPDATE of a save.

    Where :func:`pre_save` left the mark, the old row comes back from the
    UPDATE itself (:meth:`_OneRow.update`): the save costs no statement more
    than plain Django's. Otherwise (values Django must compile itself,
    ``select_on_save``, Django 6 returning fields) the row is read and locked
    first, then Django's own UPDATE runs.
    """
    args = (base_qs, using, pk_val, values, update_fields, forced_update, *returning_fields)
    if instance.__dict__.get(_OLD) is not _FROM_UPDATE:
        return original(instance, *args, **kwargs)
    spec = registry.spec_for(type(instance))
    if spec is None:  # unregistered while saving: as pre_save would have
        return original(instance, *args, **kwargs)
    returns = bool(returning_fields and returning_fields[0]) or bool(kwargs.get("returning_fields"))
    simple = (
        values
        and not returns
        and not kwargs
        # A model (or a library, e.g. optimistic locking) with its own _do_update keeps it.
        and original is models.Model._do_update
        and not (instance._meta.select_on_save and not forced_update)
    )
    result = _one_row(spec, connections[using]).update(pk_val, values) if simple else None
    if result is None:
        instance.__dict__[_OLD] = live_state(spec, using, pk_val)
        return original(instance, *args, **kwargs)
    updated, instance.__dict__[_OLD] = result
    if returning_fields:  # Django 6: the rows returned, none asked for
        return [()] if updated else []
    return updated


def _pk_is_fresh(instance: models.Model, raw: bool) -> bool:
    """True for a new instance whose pk its field's default just made (a UUID): no row can have it."""
    pk = instance._meta.pk
    assert pk is not None
    return not raw and instance._state.adding and pk.has_default()


def post_save(
    sender: type[models.Model],
    instance: models.Model,
    created: bool,
    using: str,
    update_fields: frozenset[str] | None,
    **kwargs: Any,
) -> None:
    if _OLD not in instance.__dict__:
        return
    old = instance.__dict__.pop(_OLD)
    if old is _FROM_UPDATE:
        old = None
    spec = registry.spec_for(sender)
    if spec is None:
        return
    new = _saved_state(spec, instance, using, old, update_fields, kwargs.get("raw", False))
    # A multi-table child's row is also a row of each registered parent model:
    # record it there too, from the same states (no extra query, same INSERT).
    # Not on raw saves: loaddata saves the parent table as an object of its own.
    views = [spec] if kwargs.get("raw") else [spec, *registry.parent_specs(spec)]
    drafts = [
        d for view in views if (d := view_event(view, getattr(instance, view.pk_field.attname), old, new, using=using))
    ]
    journal.write(drafts, using)


def view_event(
    spec: registry.ModelSpec,
    pk: Any,
    old: State | None,
    new: State,
    content_type_id: int | None = None,
    using: str | None = None,
) -> journal.Draft | None:
    """The event of a write seen as a row of ``spec``'s model (a multi-table
    child's row is also its parents'); ``None`` if nothing changed there."""
    names = spec.names
    if not spec.name_set.issuperset(new):  # a child's state seen as its parent's row
        new = {name: new[name] for name in names if name in new}
    if old is None:
        return draft(spec, pk, Action.CREATE, content_type_id, using, state=m2m.without_links(spec, new))
    if not spec.name_set.issuperset(old):
        old = {name: old[name] for name in names if name in old}
    changes = diff(old, new)
    if not changes:
        return None  # a write that changes nothing records nothing
    # Fields not written (links by a save) are as they were: the candidate snapshot keeps them.
    return draft(spec, pk, Action.UPDATE, content_type_id, using, changes=changes, snapshot={**old, **new})


def _saved_state(
    spec: registry.ModelSpec,
    instance: models.Model,
    using: str,
    old: State | None,
    update_fields: frozenset[str] | None,
    raw: bool = False,
) -> State:
    """The row as the save left it, without extra queries where the instance knows it."""
    values = instance.__dict__
    deferred = () if old is None else instance.get_deferred_fields()
    state: State = {}
    expressions: list[models.Field[Any, Any]] = []
    for field, attname, encode_value in spec.encoders:
        name = field.name
        unsaved = update_fields is not None and name not in update_fields and attname not in update_fields
        if old is not None and (unsaved or attname in deferred):
            state[name] = old[name]  # not written by this save
            continue
        value = values.get(attname)
        # A raw save (loaddata) of a multi-table child writes only its own table: the
        # instance does not hold its parents' fields, the database does.
        if hasattr(value, "resolve_expression") or (raw and field.model is not spec.model):
            expressions.append(field)
        else:
            state[name] = None if value is None else encode_value(value)
    if not expressions:
        return state  # every field, in order
    # F() and other expressions are only known after the database ran them.
    fresh = spec.model._base_manager.using(using).filter(pk=instance.pk).values(*(f.attname for f in expressions))
    row = fresh.get()
    for field in expressions:
        state[field.name] = encode(field, row[field.attname])
    return {f.name: state[f.name] for f in spec.fields}


# --- delete -------------------------------------------------------------


def pre_delete(sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any) -> None:
    instance.__dict__.pop(_OLD, None)  # left by a save or delete that failed before its post_ signal
    spec = registry.spec_for(sender)
    if spec is None or is_paused():
        return
    operation = current_operation()  # delete() and QuerySet.delete() opened one for the whole deletion
    scope = _deleting.get()
    if scope is not None and _update_returns_old_row(spec, using) and not spec.m2m_fields:
        scope.on(connections[using]).expect(spec, instance.pk)
        instance.__dict__[_OLD] = (_FROM_DELETE, operation)
        return
    state = live_state(spec, using, instance.pk)
    instance.__dict__[_OLD] = (state, operation)


def post_delete(sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any) -> None:
    if _OLD not in instance.__dict__:
        return
    state, operation = instance.__dict__.pop(_OLD)
    spec = registry.spec_for(sender)
    if spec is None:
        return
    if state is _FROM_DELETE:
        scope = _deleting.get()
        if scope is None:  # post_delete sent outside the delete() that marked it
            raise RuntimeError(f"audit_events: the deleted {spec.label} row was not read; the delete is undone.")
        state = scope.on(connections[using]).deleted_row(spec, instance.pk)
    if state is None:
        return
    journal.write([draft(spec, instance.pk, Action.DELETE, using=using, state=state, operation=operation)], using)


# pre_delete's mark: the DELETE will return the row itself (:func:`deleting`).
_FROM_DELETE = object()


class _Deleting:
    """The deletes of one ``delete()`` or ``QuerySet.delete()`` call, per connection object."""

    def __init__(self) -> None:
        self.connections: dict[int, _ReturningDeletes] = {}

    def on(self, connection: Any) -> _ReturningDeletes:
        returning = self.connections.get(id(connection))
        if returning is None or returning.connection is not connection:
            returning = self.connections[id(connection)] = _ReturningDeletes(connection)
        return returning


_deleting: ContextVar[_Deleting | None] = ContextVar("audit_events_deleting", default=None)


@contextlib.contextmanager
def deleting() -> Iterator[None]:
    """Around a ``delete()``/``QuerySet.delete()``: on PostgreSQL the DELETE returns the rows.

    Django's Collector deletes rows with ``DELETE FROM t WHERE t.pk IN (...)``;
    for a registered one-table model without many-to-many fields, whose
    ``pre_delete`` read nothing, that statement gets ``RETURNING`` the
    columns the locking SELECT would have read, while this is active
    (:class:`_ReturningDeletes`): the old row costs no statement of its own.
    """
    if _deleting.get() is not None:
        yield  # the outer call's scope holds
        return
    scope = _Deleting()
    token = _deleting.set(scope)
    try:
        yield
    finally:
        _deleting.reset(token)
        for returning in scope.connections.values():
            returning.remove()


class _ReturningDeletes:
    """An execute wrapper that adds ``RETURNING`` to the Collector's DELETE of expected rows.

    ``expected`` maps the start of the DELETE Django's Collector sends for a
    model (``DELETE FROM t WHERE t.pk IN (``) to the columns to return. A
    DELETE of such a table in another form (a custom compiler adding its own
    filter, say) is preceded by the locking SELECT of the rows marked for
    deletion, so their state is read all the same.
    """

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.expected: dict[str, _OneRow] = {}
        self.marked: dict[type[models.Model], set[str]] = {}  # canonical pks pre_delete marked
        self.covered: set[tuple[type[models.Model], str]] = set()  # rows a DELETE was seen for
        self.rows: dict[tuple[type[models.Model], str], State] = {}
        connection.execute_wrappers.insert(0, self)

    def expect(self, spec: registry.ModelSpec, pk: Any) -> None:
        quote = self.connection.ops.quote_name
        table, pk_column = quote(spec.model._meta.db_table), quote(spec.pk_field.column)
        self.expected.setdefault(f"DELETE FROM {table} WHERE {table}.{pk_column} IN (", _one_row(spec, self.connection))
        self.marked.setdefault(spec.model, set()).add(spec.object_pk(pk))

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        if not isinstance(sql, str) or not sql.startswith("DELETE FROM "):
            return execute(sql, params, many, context)
        for start, select in self.expected.items():
            if sql.startswith(start):
                return self._returning(select, execute, sql, params, many, context)
            if sql.startswith(start.split(" WHERE ")[0] + " "):  # this table, another form: read first
                self._read_marked(select)
                break
        return execute(sql, params, many, context)

    def _returning(
        self, select: _OneRow, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        result = execute(f"{sql} RETURNING {', '.join(select.columns)}", params, many, context)
        model, object_pk = select.spec.model, select.spec.object_pk
        self.covered.update((model, object_pk(p)) for p in params or ())  # the keys of its IN (...)
        for pk, state in select.states(context["cursor"].fetchall()).items():
            self.rows[(model, pk)] = state
        return result

    def _read_marked(self, select: _OneRow) -> None:
        spec = select.spec
        pks = [pk for pk in self.marked.get(spec.model, ()) if (spec.model, pk) not in self.covered]
        found = lock_rows(spec, self.connection.alias, {"pk__in": [spec.pk_field.to_python(pk) for pk in pks]})
        for pk, state in found.items():
            self.rows[(spec.model, spec.object_pk(pk))] = state
        self.covered.update((spec.model, pk) for pk in pks)

    def deleted_row(self, spec: registry.ModelSpec, pk: Any) -> State | None:
        """The row as it was deleted; ``None`` if it was gone already (another transaction deleted it).

        If no DELETE of the row was seen (``post_delete`` sent by code that
        deleted nothing, or deleted by other means), the row is read now: a row
        still there is recorded as deleted, as a ``pre_delete`` read would have
        had it; a row gone unseen cannot be recorded, and the delete is refused.
        """
        key = (spec.model, spec.object_pk(pk))
        if key in self.covered:
            return self.rows.pop(key, None)
        state = live_state(spec, self.connection.alias, pk)
        if state is None:
            raise RuntimeError(
                f"audit_events: the {spec.label} row {key[1]} was deleted by a statement this app did not "
                "see, so it could not be recorded; the delete is undone. Please report this with your "
                "Django version."
            )
        return state

    def remove(self) -> None:
        if self in self.connection.execute_wrappers:
            self.connection.execute_wrappers.remove(self)
