"""Capture of the QuerySet write paths that send no per-row signals.

While any model is registered, ``update()``, ``delete()``, ``bulk_create()``
and ``bulk_update()`` of Django's ``QuerySet`` itself are wrapped (:func:`install`),
so every queryset records its writes whatever class built it: a manager's
own QuerySet class, a subclass overriding these methods (it reaches them
through ``super()``), a related manager, the managers ``apps.clear_cache()``
rebuilds. Unregistered models pay one dict lookup and no query.

Every recorded value comes from the database's own answer for the statement
that wrote it, and the rows recorded are exactly the rows it changed:

* ``update()`` on PostgreSQL is one statement,
  ``UPDATE t SET ... FROM (SELECT ... FROM t WHERE <filter> FOR UPDATE) AS old
  WHERE t.pk = old.pk RETURNING old.*, t.*``: the subquery locks the rows and
  re-checks the filter on the newest version of each, and returns it as it
  was; RETURNING gives the values written. Elsewhere (SQLite, where the lock
  is the database's; multi-table models; composite keys) the rows are read
  first, then ``UPDATE ... RETURNING`` gives the new values, or they are read
  again after the UPDATE, in the same transaction.

Cost per call, beyond Django's own statements (``B`` = rows / batch size):

* ``update()``: on PostgreSQL nothing (the UPDATE returns old and new rows);
  elsewhere one SELECT of the old rows first (and for multi-table models
  one more after); then ``B`` event INSERTs.
* ``bulk_update()``: one locking SELECT per 900 objects, ``B`` event INSERTs.
* ``bulk_create()``: ``B`` event INSERTs; with ``ignore_conflicts`` or
  ``update_conflicts`` also one locking SELECT before and one SELECT after.
* ``delete()``: the Collector's signals, grouped into one operation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from django.core.exceptions import EmptyResultSet, FieldError
from django.db import NotSupportedError, connections, models, transaction
from django.db.models.sql import UpdateQuery as DjangoUpdateQuery

from . import journal, m2m, registry
from .capture import (
    State,
    _columns,
    _composite_key,
    _locking_queryset,
    _state,
    _update_returns_old_row,
    deleting,
    diff,
    draft,
    lock_rows,
    view_event,
)
from .context import capture_paused, is_paused
from .encoding import encode
from .models import Action
from .operations import operation

_IN_CHUNK = 900  # keeps "pk IN (...)" under SQLite's 999 parameters
_OLD_ROW = '"_audit_events_old"'
# django.db.models.sql.UpdateQuery (its stubs lack ``values`` and ``related_updates``)
UpdateQuery = Any


def _expression(value: Any) -> bool:
    return hasattr(value, "resolve_expression")


class AuditedQuerySet:
    """The write methods of a registered model's querysets, whatever their class.

    Called by the wrappers :func:`install` puts on ``QuerySet`` with the
    queryset as ``self``; Django's own methods are :data:`django_method`.
    """

    def update(self: Any, **kwargs: Any) -> int:
        spec = registry.spec_for(self.model)
        if spec is None:
            count: int = django_method["update"](self, **kwargs)
            return count
        self._for_write = True  # as Django's update() does before it reads self.db (a router's write database)
        using = self.db
        query = _update_query(self, kwargs, using)  # raises what Django raises, before anything is opened
        if query is None or (not query.values and not query.related_updates):
            count = django_method["update"](self, **kwargs)
            return count
        with transaction.atomic(using=using, savepoint=False), operation():
            count, changes = _updated_rows(spec, self, query, kwargs, using)
            _record_updates(spec, using, changes)
        return count

    def bulk_update(
        self: Any, objs: Iterable[models.Model], fields: Iterable[str], batch_size: int | None = None
    ) -> int:
        spec = registry.spec_for(self.model)
        objs, fields = list(objs), list(fields)
        if spec is None or not objs:
            count: int = django_method["bulk_update"](self, objs, fields, batch_size=batch_size)
            return count
        self._for_write = True  # as Django's bulk_update() does before it reads self.db
        with transaction.atomic(using=self.db, savepoint=False), operation():
            pks = [obj.pk for obj in objs]
            before: dict[Any, State] = {}
            for start in range(0, len(pks), _IN_CHUNK):
                before.update(lock_rows(spec, self.db, {"pk__in": pks[start : start + _IN_CHUNK]}))
            with capture_paused():  # Django's bulk_update calls update(): record once, here
                count = django_method["bulk_update"](self, objs, fields, batch_size=batch_size)
            listed = [f for f in spec.fields if f.name in fields or f.attname in fields]
            news: dict[Any, dict[models.Field[Any, Any], Any]] = {
                obj.pk: {f: getattr(obj, f.attname) for f in listed} for obj in objs
            }
            _record_assigned(spec, self.db, before, news)
        return count

    def bulk_create(self: Any, objs: Iterable[models.Model], *args: Any, **kwargs: Any) -> list[Any]:
        spec = registry.spec_for(self.model)
        objs = list(objs)
        if spec is None or not objs:
            created: list[Any] = django_method["bulk_create"](self, objs, *args, **kwargs)
            return created
        self._for_write = True  # as Django's bulk_create() does before it reads self.db
        conflicts = kwargs.get("ignore_conflicts") or kwargs.get("update_conflicts")
        key = _conflict_key(spec, objs, kwargs) if conflicts else []
        with transaction.atomic(using=self.db, savepoint=False), operation():
            if conflicts:
                return _bulk_create_with_conflicts(self, spec, objs, key, args, kwargs)
            created = django_method["bulk_create"](self, objs, *args, **kwargs)
            if any(obj.pk is None for obj in created):
                raise NotSupportedError(
                    f"{spec.label}: this database does not return primary keys from bulk_create(), "
                    "so the rows cannot be recorded; nothing was written."
                )
            states = {obj.pk: m2m.without_links(spec, spec.snapshot(obj)) for obj in created}
            content_type_id = spec.content_type_id(self.db)
            drafts = [draft(spec, pk, Action.CREATE, content_type_id, state=state) for pk, state in states.items()]
            journal.write(drafts, self.db)
        return created

    def delete(self: Any) -> tuple[int, dict[str, int]]:
        deleted: tuple[int, dict[str, int]]
        if not registry.groups_deletes(self.model):
            deleted = django_method["delete"](self)
            return deleted
        with operation(), deleting():
            deleted = django_method["delete"](self)
        return deleted


# --- update() --------------------------------------------------------------


def _update_query(queryset: models.QuerySet[Any], kwargs: dict[str, Any], using: str) -> UpdateQuery | None:
    """The UPDATE Django's ``update()`` would run, built as it builds it and compiled once;
    ``None`` if its filter can match no row (``none()``, ``pk__in=[]``): Django runs nothing.

    Compiling raises what Django's ``update()`` raises (a slice, a joined
    ``F()``, an unknown field...), before any transaction or lock is taken, so
    a caught error leaves the caller's transaction usable, as plain Django does.
    """
    queryset._not_support_combined_queries("update")  # type: ignore[attr-defined]
    if queryset.query.is_sliced:
        raise TypeError("Cannot update a query once a slice has been taken.")
    query: UpdateQuery = queryset.query.chain(DjangoUpdateQuery)
    query.add_update_values(kwargs)
    for name in query.order_by:  # Django inlines annotations of order_by(); it refuses aggregates
        annotation = query.annotations.get(name.removeprefix("-")) if isinstance(name, str) else None
        if getattr(annotation, "contains_aggregate", False):
            raise FieldError(f"Cannot update when ordering by an aggregate: {annotation}")
    query.clear_select_clause()
    for model, values in query.related_updates.items():
        parent: UpdateQuery = DjangoUpdateQuery(model)
        parent.values = list(values)
        parent.get_compiler(using).as_sql()
    probe = query.clone()
    probe.related_updates = {}  # compiling them would SELECT the rows now
    try:
        probe.get_compiler(using).as_sql()  # the values first, then the filter
    except EmptyResultSet:
        return None
    return query


def _matched(spec: registry.ModelSpec, queryset: models.QuerySet[Any], using: str) -> models.QuerySet[Any]:
    """The rows ``queryset`` matches, as a plain queryset for the locking SELECT (``capture.lock_rows``).

    A filter on the model's own table is kept as it is, so that PostgreSQL,
    having waited for a row's lock, checks it again on the row's newest
    version; any other filter (joins, annotations) picks the rows by key.
    """
    query = queryset.query.chain()
    rows: models.QuerySet[Any] = models.QuerySet(spec.model, query=query, using=using)
    own_table_only = (
        not query.annotations
        and not query.distinct
        and not query.extra
        and not query.combinator
        and query.group_by is None
        and query.count_active_tables() <= 1
    )
    if not own_table_only:
        rows = models.QuerySet(spec.model, using=using).filter(pk__in=rows.order_by().values("pk"))
    return rows


class _Rows:
    """The locking SELECT of :func:`_matched` rows compiled, and how to turn its rows into states
    (a single-column key: each column of the SQL is a column of the row)."""

    def __init__(self, spec: registry.ModelSpec, queryset: models.QuerySet[Any], using: str) -> None:
        self.spec = spec
        self.connection = connections[using]
        self.compiler = _locking_queryset(spec, using, _matched(spec, queryset, using)).query.get_compiler(using)
        self.sql, self.params = self.compiler.as_sql()
        selected = self.compiler.select[: self.compiler.col_count]
        self.width = len(selected)
        self.converters = self.compiler.get_converters([expression for expression, _, _ in selected])
        self.names = [str(alias) for _, _, alias in selected]
        self.pk_index = self.names.index(spec.pk_field.attname)
        self.fields = len(_columns(spec))  # the columns a RETURNING of the row gives: no links
        quote = self.connection.ops.quote_name
        table = quote(spec.model._meta.db_table)
        columns = {f.attname: f.column for f in [*spec.fields, spec.pk_field]}
        self.returning = ", ".join(f"{table}.{quote(str(columns[attname]))}" for attname in _columns(spec))

    def convert(self, rows: list[Any], offset: int = 0, width: int | None = None) -> list[list[Any]]:
        """Rows whose columns from ``offset`` are this SELECT's (``width`` of them), converted."""
        width = self.width if width is None else width
        converters = {offset + i: c for i, c in self.converters.items() if i < width}
        return [list(row) for row in self.compiler.apply_converters(rows, converters)] if converters else rows

    def key(self, row: list[Any]) -> Any:
        return row[self.pk_index]

    def change(self, old: list[Any], new: list[Any]) -> _Change:
        """A row of this SELECT as it was, and the row's fields as it became (its links unchanged)."""
        return self.key(old), self.state(old), self.key(new), self.state(new, links_of=old)

    def state(self, row: list[Any], links_of: list[Any] | None = None) -> State:
        """A row of this SELECT's columns; a row of fields only takes its links from ``links_of``."""
        if links_of is not None:
            row = [*row, *links_of[self.fields :]]
        return _state(self.spec, row)

    def read(self) -> list[list[Any]]:
        with self.connection.cursor() as cursor:
            cursor.execute(self.sql, self.params)
            return self.convert(cursor.fetchall())


# A row an UPDATE changed: its key and state before, its key and state after.
_Change = tuple[Any, State, Any, State]


def _updated_rows(
    spec: registry.ModelSpec,
    queryset: models.QuerySet[Any],
    query: UpdateQuery,
    kwargs: dict[str, Any],
    using: str,
) -> tuple[int, list[_Change]]:
    """Run the UPDATE; the number of rows it changed, and each as it was and as it became."""
    connection = connections[using]
    moves_keys = any(field.primary_key for field, _, _ in query.values)
    if _update_returns_old_row(spec, using):
        return _update_returning_old_and_new(spec, query, _Rows(spec, queryset, using), using)
    returning = _update_returns_rows(connection) and not query.related_updates and not _composite_key(spec)
    if returning and not connection.features.has_select_for_update:
        # The lock is the database's (SQLite): the rows read are the rows the UPDATE changes.
        rows = _Rows(spec, queryset, using)
        before = rows.read()
        if not before:
            return 0, []
        if moves_keys:
            return _update_moving_keys(spec, query, kwargs, rows, before, using)
        after = {rows.key(new): new for new in _run_returning(query, rows, using)}
        changes = [rows.change(old, after[rows.key(old)]) for old in before if rows.key(old) in after]
        if len(changes) != len(after):
            raise RuntimeError(f"audit_events: an update() of {spec.label} changed rows it had not read; undone.")
        return len(changes), changes
    if moves_keys:
        raise NotSupportedError(f"{spec.label}: an update() changing primary keys cannot be recorded here.")
    # Multi-table models (one UPDATE per table), composite keys: Django's own UPDATE of
    # exactly the rows read and locked, which are read again after it, still locked.
    read = lock_rows(spec, using, {}, rows=_matched(spec, queryset, using))
    pks, count, written = list(read), 0, {}
    for start in range(0, len(pks), _IN_CHUNK):
        chunk: models.QuerySet[Any] = models.QuerySet(spec.model, using=using)
        count += django_method["update"](chunk.filter(pk__in=pks[start : start + _IN_CHUNK]), **kwargs)
        written.update(lock_rows(spec, using, {"pk__in": pks[start : start + _IN_CHUNK]}))
    return count, [(pk, read[pk], pk, written[pk]) for pk in pks if pk in written]


def _update_moving_keys(
    spec: registry.ModelSpec,
    query: UpdateQuery,
    kwargs: dict[str, Any],
    rows: _Rows,
    before: list[list[Any]],
    using: str,
) -> tuple[int, list[_Change]]:
    """An UPDATE assigning primary keys, where RETURNING gives only the new rows: one row
    per statement when there are several, so that each old key is paired with its new one."""
    if len(before) == 1:
        after = _run_returning(query, rows, using)
        return len(after), [rows.change(before[0], new) for new in after]
    changes: list[_Change] = []
    for old in before:
        one: models.QuerySet[Any] = models.QuerySet(spec.model, using=using)
        one_query = _update_query(one.filter(pk=rows.key(old)), kwargs, using)
        changes.extend(rows.change(old, new) for new in _run_returning(one_query, rows, using))
    return len(changes), changes


def _update_returns_rows(connection: Any) -> bool:
    """``UPDATE ... RETURNING`` (PostgreSQL; SQLite 3.35+, which returns columns from INSERT since then too)."""
    features = connection.features
    default = connection.vendor in ("postgresql", "sqlite") and features.can_return_columns_from_insert
    return bool(getattr(features, "can_return_rows_from_update", default))


def _run_returning(query: UpdateQuery, rows: _Rows, using: str) -> list[list[Any]]:
    """Django's UPDATE, returning the row's fields as written."""
    sql, params = query.get_compiler(using).as_sql()
    with connections[using].cursor() as cursor:
        cursor.execute(f"{sql} RETURNING {rows.returning}", params)
        return rows.convert(cursor.fetchall(), width=rows.fields)


def _update_returning_old_and_new(
    spec: registry.ModelSpec, query: UpdateQuery, rows: _Rows, using: str
) -> tuple[int, list[_Change]]:
    """One statement: the UPDATE joined to the locking SELECT, returning both rows (PostgreSQL)."""
    connection = connections[using]
    assignments: UpdateQuery = DjangoUpdateQuery(spec.model)
    assignments.values = list(query.values)  # resolved against the caller's query: no filter of its own
    set_sql, set_params = assignments.get_compiler(using).as_sql()
    quote = connection.ops.quote_name
    table, pk_column = quote(spec.model._meta.db_table), quote(str(spec.pk_field.column))
    old_pk = quote(rows.names[rows.pk_index])
    sql = (
        f"{set_sql} FROM ({rows.sql}) AS {_OLD_ROW} WHERE {table}.{pk_column} = {_OLD_ROW}.{old_pk} "
        f"RETURNING {_OLD_ROW}.*, {rows.returning}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, (*set_params, *rows.params))
        returned = cursor.fetchall()
    returned = rows.convert(rows.convert(returned), offset=rows.width, width=rows.fields)
    changes = [rows.change(row[: rows.width], row[rows.width :]) for row in returned]
    return len(changes), changes


def _record_updates(spec: registry.ModelSpec, using: str, changes: list[_Change]) -> None:
    """Events for the rows an UPDATE changed, as they were and as they became.

    A row whose primary key changed ends its history under the old key (a
    ``delete`` with its last state) and begins one under the new key (a
    ``create`` with its full state), in the same operation.
    """
    views = [(view, view.content_type_id(using)) for view in [spec, *registry.parent_specs(spec)]]
    drafts = []
    for old_pk, old, new_pk, new in changes:
        moved = spec.object_pk(old_pk) != spec.object_pk(new_pk)
        for view, content_type_id in views:  # the row, and the same row under its registered multi-table parents
            if moved:
                drafts.append(draft(view, old_pk, Action.DELETE, content_type_id, state=old))
            if event := view_event(view, new_pk, None if moved else old, new, content_type_id):
                drafts.append(event)
    journal.write(drafts, using)


# --- bulk_update() -----------------------------------------------------------


def _field_by_attname(spec: registry.ModelSpec, attname: str) -> models.Field[Any, Any] | None:
    return next((f for f in spec.fields if f.attname == attname), None)


def _record_assigned(
    spec: registry.ModelSpec,
    using: str,
    before: dict[Any, State],
    assigned: dict[Any, dict[models.Field[Any, Any], Any]],
) -> None:
    """Write update events for the rows in ``before`` whose tracked values really changed.

    ``assigned`` maps each pk to the values written to it. Values that are
    expressions are read back in one SELECT: only the database knows them.
    """
    needs_reading = {f for values in assigned.values() for f, value in values.items() if _expression(value)}
    fresh: dict[Any, dict[str, Any]] = {}
    if needs_reading:
        pk_name = spec.pk_field.attname
        rows = spec.model._base_manager.using(using).filter(pk__in=list(before))
        fresh = {v[pk_name]: v for v in rows.values(pk_name, *(f.attname for f in needs_reading))}
    views = [(view, view.content_type_id(using)) for view in [spec, *registry.parent_specs(spec)]]
    drafts = []
    for pk, old in before.items():
        new = dict(old)
        for field, value in assigned.get(pk, {}).items():
            if field in needs_reading:
                value = fresh[pk][field.attname]
            elif isinstance(value, models.Model):
                value = value.pk
            new[field.name] = encode(field, value)
        for view, content_type_id in views:  # the row, and the same row under its registered multi-table parents
            if event := view_event(view, pk, old, new, content_type_id):
                drafts.append(event)
    journal.write(drafts, using)


# --- bulk_create() -----------------------------------------------------------


def _conflict_key(spec: registry.ModelSpec, objs: list[models.Model], kwargs: dict[str, Any]) -> list[str]:
    """The fields that tell, before and after a conflicting insert, which row is which."""
    key = list(kwargs.get("unique_fields") or [])
    if key:
        return key
    if any(obj.pk is None for obj in objs):
        raise NotSupportedError(
            f"{spec.label}: bulk_create(ignore_conflicts=True) on an audited model needs every object's "
            "primary key set (or update_conflicts with unique_fields), so that what happened can be "
            "recorded; nothing was written."
        )
    return ["pk"]


def _bulk_create_with_conflicts(
    queryset: models.QuerySet[Any],
    spec: registry.ModelSpec,
    objs: list[models.Model],
    key: list[str],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> list[Any]:
    """``bulk_create`` with ``ignore_conflicts``/``update_conflicts``: record what really happened.

    Rows are matched before and after the insert by the conflict key (the
    ``unique_fields`` given, else the primary key), so a row that was left
    alone records nothing, an inserted one a create and an updated one an update.
    """
    key_fields = [spec.pk_field if name == "pk" else spec.model._meta.get_field(name) for name in key]
    attnames = [f.attname for f in key_fields]  # type: ignore[union-attr]

    def lookup() -> dict[str, Any]:
        if len(attnames) == 1:
            return {f"{attnames[0]}__in": [getattr(o, attnames[0]) for o in objs]}
        query = models.Q()
        for obj in objs:
            query |= models.Q(**{a: getattr(obj, a) for a in attnames})
        return {"pk__in": spec.model._base_manager.filter(query).values("pk")}

    def by_key(rows: dict[Any, State]) -> dict[tuple[Any, ...], tuple[Any, State]]:
        names = [f.name for f in key_fields]
        return {tuple(state[n] for n in names): (pk, state) for pk, state in rows.items()}

    before = by_key(lock_rows(spec, queryset.db, lookup()))
    created: list[Any] = django_method["bulk_create"](queryset, objs, *args, **kwargs)
    drafts = []
    content_type_id = spec.content_type_id(queryset.db)
    for row_key, (pk, state) in by_key(lock_rows(spec, queryset.db, lookup())).items():
        if row_key not in before:
            drafts.append(draft(spec, pk, Action.CREATE, content_type_id, state=state))
            continue
        changes = diff(before[row_key][1], state)
        if changes:
            drafts.append(draft(spec, pk, Action.UPDATE, content_type_id, changes=changes, snapshot=state))
    journal.write(drafts, queryset.db)
    return created


# --- installing and removing the wrappers ----------------------------------------

# Django's own methods, as the QuerySet class defines them.
_WRAPPED = ("update", "delete", "bulk_create", "bulk_update")
django_method: dict[str, Callable[..., Any]] = {name: vars(models.QuerySet)[name] for name in _WRAPPED}
_models: set[type[models.Model]] = set()  # models (and proxies) whose querysets are recorded or grouped


def _wrapper(name: str) -> Callable[..., Any]:
    original, audited = django_method[name], getattr(AuditedQuerySet, name)

    @functools.wraps(original)  # keeps alters_data and queryset_only, which managers read
    def method(self: models.QuerySet[Any], *args: Any, **kwargs: Any) -> Any:
        if self.model not in _models or is_paused():  # one lookup for an unregistered model
            return original(self, *args, **kwargs)
        return audited(self, *args, **kwargs)

    return method


def install(model: type[models.Model]) -> None:
    """Record the QuerySet writes of ``model`` (a registered model, or one whose deletes reach them).

    Django's managers, every QuerySet subclass (through ``super()``) and the
    related managers built from them look ``update``, ``delete``,
    ``bulk_create`` and ``bulk_update`` up on ``django.db.models.QuerySet``
    at call time (``BaseManager._get_queryset_methods`` copies them by name):
    wrapping them there, once, reaches every queryset of the model whatever
    class built it. The wrappers go while no model needs them.
    """
    if not _models:
        for name in _WRAPPED:
            setattr(models.QuerySet, name, _wrapper(name))
    _models.add(model)


def uninstall(model: type[models.Model]) -> None:
    _models.discard(model)
    if not _models:
        for name, original in django_method.items():
            setattr(models.QuerySet, name, original)
