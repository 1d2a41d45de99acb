"""Signal receivers that turn writes of registered models into events.

Cost per audited write, beyond Django's own statements:

* create: one INSERT (the event);
* update: one locking SELECT of the old row, one INSERT;
* delete: one locking SELECT of the old row, one INSERT;
* a no-op save: the SELECT only.

The event's version, hash and whether it stores a full state are decided by
the database inside the INSERT (``journal``): no query for the row's history.

Foreign keys that a parent's delete sets to NULL (or a default) are recorded
by the audited ``QuerySet.update()`` Django's Collector calls (``querysets``).

Old values are read from the database inside the write's transaction (the
``save_base`` wrapper in ``registry`` makes it one), locked where the backend
can, never taken from memory.
"""

from __future__ import annotations

from typing import Any

from django.db import connections, models
from django.db.models.expressions import RawSQL

from . import journal, m2m, registry
from .context import is_paused
from .encoding import JSONValue, encode
from .models import Action
from .operations import current_operation

_OLD = "_audit_events_old"

State = dict[str, JSONValue]


def lock_rows(spec: registry.ModelSpec, using: str, lookup: dict[str, Any]) -> dict[Any, State]:
    """The full current state of the rows matching ``lookup``, locked, many-to-many links included.

    Queries: one SELECT (``FOR UPDATE`` where the backend supports it); each
    many-to-many field is a subquery of it, not a query of its own.
    """
    rows: dict[Any, State] = {}
    for values in _locking_queryset(spec, using).filter(**lookup):
        rows[values[spec.pk_field.attname]] = _state(spec, values)
    return rows


def live_state(spec: registry.ModelSpec, using: str, pk: Any) -> State | None:
    """One row's full current state, locked (:func:`lock_rows`); ``None`` if there is no such row.

    The statement is compiled once per model and connection (this runs on
    every save and delete); only the key changes from one call to the next.
    """
    if getattr(spec.pk_field, "fields", None):  # a composite primary key: the general query
        return next(iter(lock_rows(spec, using, {"pk": pk}).values()), None)
    connection = connections[using]
    selects = connection.__dict__.setdefault(_SELECTS, {})
    select: _OneRow | None = selects.get(spec.model)
    if select is None or select.spec is not spec:
        select = selects[spec.model] = _OneRow(spec, connection)
    return select.fetch(pk)


_SELECTS = "_audit_events_selects"


def _locking_queryset(spec: registry.ModelSpec, using: str) -> models.QuerySet[Any, dict[str, Any]]:
    qs = spec.model._base_manager.using(using).all()
    if connections[using].features.has_select_for_update:
        qs = qs.select_for_update()
    links = {_links_alias(field): m2m.linked_keys(field) for field in spec.m2m_fields}
    values: models.QuerySet[Any, dict[str, Any]] = qs.annotate(**links).values(
        spec.pk_field.attname, *(f.attname for f in spec.fields), *links
    )
    return values


def _links_alias(field: models.ManyToManyField[Any, Any]) -> str:
    return f"_audit_links_{field.name}"


def _state(spec: registry.ModelSpec, values: dict[str, Any]) -> State:
    state = {f.name: encode(f, values[f.attname]) for f in spec.fields}
    for field in spec.m2m_fields:
        state[field.name] = m2m.decode_keys(field, values[_links_alias(field)])
    return state


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
        self.converters = self.compiler.get_converters([expression for expression, _, _ in selected])

    def fetch(self, pk: Any) -> State | None:
        params = list(self.params)
        params[self.slot] = self.spec.pk_field.get_db_prep_value(pk, self.connection)
        with self.connection.cursor() as cursor:
            cursor.execute(self.sql, params)
            rows = cursor.fetchall()
        if not rows:
            return None
        if self.converters:
            rows = list(self.compiler.apply_converters(rows, self.converters))
        return _state(self.spec, dict(zip(self.names, rows[0], strict=True)))


def draft(spec: registry.ModelSpec, pk: Any, action: str, **kwargs: Any) -> journal.Draft:
    return journal.Draft(
        content_type_id=spec.content_type_id(),
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
    old: State | None = None
    if instance.pk is not None and not _pk_is_fresh(instance, raw):
        old = live_state(spec, using, instance.pk)
    instance.__dict__[_OLD] = old


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
    spec = registry.spec_for(sender)
    if spec is None:
        return
    new = _saved_state(spec, instance, using, old, update_fields, kwargs.get("raw", False))
    # A multi-table child's row is also a row of each registered parent model:
    # record it there too, from the same states (no extra query, same INSERT).
    # Not on raw saves: loaddata saves the parent table as an object of its own.
    views = [spec] if kwargs.get("raw") else [spec, *registry.parent_specs(spec)]
    drafts = [d for view in views if (d := view_event(view, getattr(instance, view.pk_field.attname), old, new))]
    journal.write(drafts, using)


def view_event(spec: registry.ModelSpec, pk: Any, old: State | None, new: State) -> journal.Draft | None:
    """The event of a write seen as a row of ``spec``'s model (a multi-table
    child's row is also its parents'); ``None`` if nothing changed there."""
    names = [f.name for f in spec.fields] + [f.name for f in spec.m2m_fields]
    new = {name: new[name] for name in names if name in new}
    if old is None:
        return draft(spec, pk, Action.CREATE, state=m2m.without_links(spec, new))
    old = {name: old[name] for name in names if name in old}
    changes = diff(old, new)
    if not changes:
        return None  # a write that changes nothing records nothing
    # Fields not written (links by a save) are as they were: the candidate snapshot keeps them.
    return draft(spec, pk, Action.UPDATE, changes=changes, snapshot={**old, **new})


def _saved_state(
    spec: registry.ModelSpec,
    instance: models.Model,
    using: str,
    old: State | None,
    update_fields: frozenset[str] | None,
    raw: bool = False,
) -> State:
    """The row as the save left it, without extra queries where the instance knows it."""
    deferred = instance.get_deferred_fields()
    state: State = {}
    expressions: list[models.Field[Any, Any]] = []
    for field in spec.fields:
        unsaved = update_fields is not None and field.name not in update_fields and field.attname not in update_fields
        if old is not None and (unsaved or field.attname in deferred):
            state[field.name] = old[field.name]
            continue
        value = instance.__dict__.get(field.attname)
        # A raw save (loaddata) of a multi-table child writes only its own table: the
        # instance does not hold its parents' fields, the database does.
        if hasattr(value, "resolve_expression") or (raw and field.model is not spec.model):
            expressions.append(field)
        else:
            state[field.name] = encode(field, value)
    if expressions:
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
    state = live_state(spec, using, instance.pk)
    instance.__dict__[_OLD] = (state, operation)


def post_delete(sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any) -> None:
    if _OLD not in instance.__dict__:
        return
    state, operation = instance.__dict__.pop(_OLD)
    spec = registry.spec_for(sender)
    if spec is None or state is None:
        return
    journal.write([draft(spec, instance.pk, Action.DELETE, state=state, operation=operation)], using)
