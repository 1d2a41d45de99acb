"""``QuerySet.update()``: the rows an UPDATE changed, as they were and as they became, and their events.

Every recorded value comes from the database's own answer for the statement
that wrote it, and the rows recorded are exactly the rows it changed (the
strategies per database are in ``querysets``' docstring). Called by
``querysets.AuditedQuerySet.update`` in one transaction and operation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.core.exceptions import EmptyResultSet, FieldError
from django.db import NotSupportedError, connections, models
from django.db.models.sql import UpdateQuery as DjangoUpdateQuery
from django.db.models.sql.where import WhereNode

from . import backends, journal, m2m, registry, statement_events
from .backends import returns_old_row
from .encoding import State
from .models import Action
from .recording import view_event
from .returning import split_converters
from .rows import composite_key, lock_rows, locking_queryset, row_state

_IN_CHUNK = 900  # keeps "pk IN (...)" under SQLite's 999 parameters
_OLD_ROW = '"_audit_events_old"'
# django.db.models.sql.UpdateQuery (its stubs lack ``values`` and ``related_updates``)
UpdateQuery = Any


def update_query(queryset: models.QuerySet[Any], kwargs: dict[str, Any], using: str) -> UpdateQuery | None:
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


def matched(model: type[models.Model], queryset: models.QuerySet[Any], using: str) -> models.QuerySet[Any]:
    """The rows ``queryset`` matches, as a plain queryset for the locking SELECT (``rows.lock_rows``).

    A filter on the model's own table is kept as it is, so that PostgreSQL,
    having waited for a row's lock, checks it again on the row's newest
    version; any other filter (joins, annotations) picks the rows by key.
    """
    query = queryset.query.chain()
    rows: models.QuerySet[Any] = models.QuerySet(model, query=query, using=using)
    own_table_only = (
        not query.annotations
        and not query.distinct
        and not query.extra
        and not query.combinator
        and query.group_by is None
        and query.count_active_tables() <= 1
    )
    if not own_table_only:
        rows = models.QuerySet(model, using=using).filter(pk__in=rows.order_by().values("pk"))
    return rows


class Rows:
    """The locking SELECT of :func:`matched` rows compiled, and how to turn its rows into states
    (a single-column key: each column of the SQL is a column of the row); ``no_key``: an UPDATE
    keeping the keys, ``FOR NO KEY UPDATE`` (``rows.locking_queryset``).

    The UPDATE's ``RETURNING`` (:attr:`returning`) gives the key and the recorded columns it
    writes (``written``), no other: the rest of the row is as the SELECT read it, under the
    same lock, as for a save (``capture._OneRow.update``).
    """

    def __init__(
        self,
        spec: registry.ModelSpec,
        queryset: models.QuerySet[Any],
        using: str,
        written: Iterable[models.Field[Any, Any]],
        no_key: bool = False,
    ) -> None:
        self.spec = spec
        self.connection = connections[using]
        locking = locking_queryset(spec, using, matched(spec.model, queryset, using), no_key)
        self.compiler = locking.query.get_compiler(using)
        self.sql, self.params = self.compiler.as_sql()
        selected = self.compiler.select[: self.compiler.col_count]
        self.width = len(selected)
        # As the database stores them (the backend's converters): what states record, keys included.
        self.converters = split_converters(self.compiler.get_converters([e for e, _, _ in selected]))[0]
        self.names = [str(alias) for _, _, alias in selected]
        self.pk_index = self.names.index(spec.pk_field.attname)
        # The SELECT's columns the RETURNING gives, in its order: the key, then the recorded fields
        # written (the SELECT reads spec.fields first, in order: field j is its column j).
        assigned = set(written)
        self.written = [j for j, field in enumerate(spec.fields) if field in assigned and j != self.pk_index]
        self.key_written = self.pk_index < len(spec.fields) and spec.fields[self.pk_index] in assigned
        returned = [self.pk_index, *self.written]
        quote = self.connection.ops.quote_name
        table = quote(spec.model._meta.db_table)
        columns = {f.attname: f.column for f in [*spec.fields, spec.pk_field]}
        self.returning = ", ".join(f"{table}.{quote(str(columns[self.names[i]]))}" for i in returned)
        self.new_converters = {k: self.converters[i] for k, i in enumerate(returned) if i in self.converters}

    def convert(self, rows: list[Any]) -> list[list[Any]]:
        """Rows of this SELECT, converted."""
        return self._apply(rows, self.converters)

    def convert_new(self, rows: list[Any], offset: int = 0) -> list[list[Any]]:
        """Rows whose columns from ``offset`` are a :attr:`returning`'s, converted."""
        return self._apply(rows, {offset + k: c for k, c in self.new_converters.items()})

    def _apply(self, rows: list[Any], converters: dict[int, Any]) -> list[list[Any]]:
        return [list(row) for row in self.compiler.apply_converters(rows, converters)] if converters else rows

    def key(self, row: list[Any]) -> Any:
        return row[self.pk_index]

    def change(self, old: list[Any], new: list[Any]) -> Change:
        """A row of this SELECT as it was, and a :attr:`returning` row of what the UPDATE wrote."""
        before = row_state(self.spec, old)
        after = dict(before)
        encoders = self.spec.encoders
        for k, j in enumerate(self.written, 1):
            after[encoders[j][0].name] = None if (value := new[k]) is None else encoders[j][2](value)
        if self.key_written:
            field, _, to_json = encoders[self.pk_index]
            after[field.name] = to_json(new[0])
        return self.key(old), before, new[0], after

    def read(self) -> list[list[Any]]:
        with self.connection.cursor() as cursor:
            cursor.execute(self.sql, self.params)
            return self.convert(cursor.fetchall())


# A row an UPDATE changed: its key and state before, its key and state after.
Change = tuple[Any, State, Any, State]


def updated_rows(
    spec: registry.ModelSpec,
    queryset: models.QuerySet[Any],
    query: UpdateQuery,
    kwargs: dict[str, Any],
    using: str,
    django_update: Callable[..., int],
) -> tuple[int, list[Change]]:
    """Run the UPDATE; the number of rows it changed, and each as it was and as it became.

    ``django_update`` is Django's own ``QuerySet.update``, which runs it where
    no RETURNING can (:func:`_update_then_read`).
    """
    moves_keys = any(field.primary_key for field, _, _ in query.values)
    assigned = [field for field, _, _ in query.values]
    if returns_old_row(spec, using):
        rows = Rows(spec, queryset, using, assigned, no_key=not moves_keys)
        sql, params = _returning_old_and_new(spec, query, rows, using)
        if with_events := statement_events.update_statement(spec, rows, sql):
            count, left = statement_events.run(rows, with_events, params, using, "update")
            left = rows.convert_new(rows.convert(left), offset=rows.width)
            return count, [rows.change(row[: rows.width], row[rows.width :]) for row in left]
        return _update_returning_old_and_new(rows, sql, params, using)
    if _reads_first(spec, connections[using]):
        # The lock is the database's (SQLite): the filter is evaluated once, by the read, and the
        # UPDATE changes the rows read, by key (a filter on Now() or RANDOM() would match others twice).
        rows = Rows(spec, queryset, using, assigned)
        before = rows.read()
        if moves_keys:
            return _update_moving_keys(queryset, kwargs, rows, before, using)
        return _update_by_keys(queryset, kwargs, rows, before, using)
    if moves_keys:
        raise NotSupportedError(f"{spec.label}: an update() changing primary keys cannot be recorded here.")
    return _update_then_read(spec, queryset, kwargs, using, django_update)


def _reads_first(spec: registry.ModelSpec, connection: Any) -> bool:
    """Whether the rows are read, then updated by key with ``RETURNING`` the values written: where
    the database returns rows from an UPDATE but takes no row locks of its own (SQLite).

    RETURNING gives only the child's own table: a multi-table model's row spans its parents' too.
    """
    returning = _update_returns_rows(connection) and not spec.model._meta.parents and not composite_key(spec)
    return returning and not connection.features.has_select_for_update


def _update_by_keys(
    queryset: models.QuerySet[Any],
    kwargs: dict[str, Any],
    rows: Rows,
    before: list[list[Any]],
    using: str,
) -> tuple[int, list[Change]]:
    """The UPDATE of the rows read (``before``), by key, returning what it wrote: one per 900 rows."""
    keys = [rows.key(old) for old in before]
    after: dict[Any, list[Any]] = {}
    for start in range(0, len(keys), _IN_CHUNK):
        by_keys = _by_keys(queryset, kwargs, keys[start : start + _IN_CHUNK], using)
        after.update((new[0], new) for new in _run_returning(by_keys, rows, using))
    changes = [rows.change(old, after[rows.key(old)]) for old in before if rows.key(old) in after]
    return len(changes), changes


def _update_then_read(
    spec: registry.ModelSpec,
    queryset: models.QuerySet[Any],
    kwargs: dict[str, Any],
    using: str,
    django_update: Callable[..., int],
) -> tuple[int, list[Change]]:
    """Multi-table models (one UPDATE per table), composite keys, databases whose UPDATE returns
    nothing (MySQL, MariaDB): Django's own UPDATE of
    exactly the rows read and locked, which are read again after it, still locked."""
    read = lock_rows(spec, using, {}, rows=matched(spec.model, queryset, using), no_key=True)
    pks, count, written = list(read), 0, {}
    # The caller's query without its filter (the read evaluated it): its annotations and aliases stay.
    query = queryset.query.chain()
    query.where = WhereNode()
    unfiltered: models.QuerySet[Any] = models.QuerySet(spec.model, query=query, using=using)
    for start in range(0, len(pks), _IN_CHUNK):
        count += django_update(unfiltered.filter(pk__in=pks[start : start + _IN_CHUNK]), **kwargs)
        written.update(lock_rows(spec, using, {"pk__in": pks[start : start + _IN_CHUNK]}, no_key=True))
    return count, [(pk, read[pk], pk, written[pk]) for pk in pks if pk in written]


def _update_moving_keys(
    queryset: models.QuerySet[Any],
    kwargs: dict[str, Any],
    rows: Rows,
    before: list[list[Any]],
    using: str,
) -> tuple[int, list[Change]]:
    """An UPDATE assigning primary keys, where RETURNING gives only the new rows: one row
    per statement, so that each old key is paired with its new one."""
    changes: list[Change] = []
    for old in before:
        one_query = _by_keys(queryset, kwargs, [rows.key(old)], using)
        changes.extend(rows.change(old, new) for new in _run_returning(one_query, rows, using))
    return len(changes), changes


def _by_keys(queryset: models.QuerySet[Any], kwargs: dict[str, Any], keys: list[Any], using: str) -> UpdateQuery:
    """The UPDATE of ``kwargs`` restricted to the rows with these keys (read and locked already).

    The caller's query without its filter (the read evaluated it once): its annotations and
    aliases stay, for the values that name them (``update(x=F("annotation"))``).
    """
    query = queryset.query.chain()
    query.where = WhereNode()
    rows: models.QuerySet[Any] = models.QuerySet(queryset.model, query=query, using=using)
    return update_query(rows.filter(pk__in=keys), kwargs, using)


def _update_returns_rows(connection: Any) -> bool:
    """``UPDATE ... RETURNING`` (PostgreSQL; SQLite 3.35+, which returns columns from INSERT since then too)."""
    default = backends.of(connection).update_returns_rows(connection)
    return bool(getattr(connection.features, "can_return_rows_from_update", default))


def _run_returning(query: UpdateQuery, rows: Rows, using: str) -> list[list[Any]]:
    """Django's UPDATE, returning the key and the recorded fields it writes (:attr:`Rows.returning`)."""
    sql, params = query.get_compiler(using).as_sql()
    with connections[using].cursor() as cursor:
        cursor.execute(f"{sql} RETURNING {rows.returning}", params)
        return rows.convert_new(cursor.fetchall())


def _returning_old_and_new(
    spec: registry.ModelSpec, query: UpdateQuery, rows: Rows, using: str
) -> tuple[str, list[Any]]:
    """The UPDATE joined to the locking SELECT, returning both rows (PostgreSQL): its SQL and parameters."""
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
    return sql, [*set_params, *rows.params]


def _update_returning_old_and_new(rows: Rows, sql: str, params: list[Any], using: str) -> tuple[int, list[Change]]:
    """One statement: the UPDATE joined to the locking SELECT, returning both rows (PostgreSQL)."""
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)
        returned = cursor.fetchall()
    returned = rows.convert_new(rows.convert(returned), offset=rows.width)
    changes = [rows.change(row[: rows.width], row[rows.width :]) for row in returned]
    return len(changes), changes


def record_updates(spec: registry.ModelSpec, using: str, changes: list[Change]) -> None:
    """Events for the rows an UPDATE changed, as they were and as they became.

    A row whose primary key changed ends its history under the old key (a
    ``delete`` with its last state) and begins one under the new key (a
    ``create`` with its full state), in the same operation.
    """
    if spec.m2m_fields and changes and spec.m2m_fields[0].name not in changes[0][1]:
        # A full state carries the links, which an UPDATE leaves as they are: read once the rows
        # are locked (one SELECT per 900 rows), by a statement of their own (``rows.lock_rows``).
        links = m2m.read_links(spec, using, [new_pk for _, _, new_pk, _ in changes])
        changes = [(o, {**old, **links.get(n, {})}, n, {**new, **links.get(n, {})}) for o, old, n, new in changes]
    views = [spec, *registry.parent_specs(spec)]
    drafts = []
    for old_pk, old, new_pk, new in changes:
        moved = spec.object_pk(old_pk) != spec.object_pk(new_pk)
        for view in views:  # the row, and the same row under its registered multi-table parents
            if moved:
                drafts.append(journal.Draft.of(view, old_pk, Action.DELETE, state=old))
            if event := view_event(view, new_pk, None if moved else old, new):
                drafts.append(event)
    journal.write(drafts, using)
