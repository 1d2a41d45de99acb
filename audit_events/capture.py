"""Signal receivers that turn writes of registered models into events.

The rule: every value an event records, old and new, comes from the
database's own answer for the statement that wrote it (``RETURNING`` where the
backend has it; otherwise a read under the same lock, inside the same
transaction, after the write), never from what Python believes it sent. What
one save hands from ``pre_save`` to ``post_save`` is one record (:class:`_Save`).

Cost per audited write, beyond Django's own statements:

* create: nothing (its event is inserted with the transaction's others); the
  INSERT returns every recorded column (:func:`do_insert`);
* update: on PostgreSQL nothing, the UPDATE itself returns the old row and the
  new one (``UPDATE ... FROM (SELECT ... FOR NO KEY UPDATE) AS old ... RETURNING
  old.*, t.<columns>``, :func:`do_update`); on SQLite one locking SELECT of
  the old row first, the UPDATE returning the new one; where Django must
  compile the UPDATE itself (expressions, ``select_on_save``, multi-table
  models), the locking SELECT first and one SELECT of the new row after; a
  composite key on SQLite: one SELECT of the new row after Django's UPDATE,
  which hands back the values it overwrites (:func:`_update_overwriting`);
* a multi-table child's row saved with a key it has no row for yet, the
  parents' rows there given it (``Restaurant(place_ptr=place)``): one locking
  SELECT per registered parent, their old values (:func:`_parent_rows`);
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

Everything runs inside the write's transaction (the ``save_base`` wrapper in
``registry`` makes it one), rows locked where the backend can.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Collection, Iterator, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from django.db import connections, models
from django.db.models.expressions import Value
from django.db.models.sql.constants import MULTI

from . import journal, m2m, overwritten, prepared, registry
from .context import is_paused
from .encoding import JSONValue, State
from .models import Action
from .operations import current_operation
from .replay import recorded_state
from .returning import insert_returning, split_converters

# instance.__dict__ key: the records (:class:`_Save`, :class:`_Delete`) its writes in progress hand from
# their pre_ signal to their post_ one, innermost last: a receiver may save or delete the same instance
# again between the two (:func:`handoffs`).
_HANDOFFS = "_audit_events_handoffs"

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
    NO KEY UPDATE`` with ``no_key``: :func:`_locking_queryset`), and
    for a model with many-to-many fields one more for the links, read once
    the rows are locked (:func:`_with_links`), unless ``links`` is false (a
    caller that has them from an earlier read under the same lock).

    ``only``: the state of these of the spec's fields alone, no links (a caller
    that read the rest earlier under the same lock, and knows what its write left alone).
    """
    encoders = spec.encoders if only is None else tuple(e for e in spec.encoders if e[0] in only)
    columns = _columns(spec, encoders)
    links = links and only is None
    query = _locking_queryset(spec, using, rows, no_key, columns).filter(**lookup).query
    compiler = query.get_compiler(using)
    read: Any = [row for chunk in compiler.execute_sql(MULTI) for row in chunk]
    selected = [e for e, _, _ in compiler.select[: compiler.col_count]]
    stored, own = split_converters(compiler.get_converters(selected))
    read = list(compiler.apply_converters(read, stored)) if stored else read
    if compiler.has_composite_fields(selected):  # as Django's results_iter() does
        read, own = list(compiler.composite_fields_to_tuples(read, selected)), {}
    pk_index = columns.index(spec.pk_field.attname)
    functions, expression = own.get(pk_index, ([], None))  # the key as Django gives it, for the callers
    found = {
        functools.reduce(lambda v, f: f(v, expression, compiler.connection), functions, row[pk_index]): {
            f.name: None if (v := row[i]) is None else to_json(v) for i, (f, _, to_json) in enumerate(encoders)
        }
        for row in read
    }
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


def live_state(spec: registry.ModelSpec, using: str, pk: Any, no_key: bool = False) -> State | None:
    """One row's full current state, locked (:func:`lock_rows`, ``no_key`` as there); ``None`` if there is no such row.

    The statement is compiled once per model, lock and connection (this runs on
    every save and delete); only the key changes from one call to the next.
    """
    if _composite_key(spec):
        return _whole_row(spec, using, pk, no_key)
    return _one_row(spec, connections[using], no_key).fetch(pk)


def _whole_row(spec: registry.ModelSpec, using: str, pk: Any, no_key: bool) -> State | None:
    """A composite-key row, locked, read as ``SELECT t.* FROM t WHERE <key> FOR ... UPDATE``.

    The key's columns are named once, in the ``WHERE``, as in the UPDATE of a
    save (Django's composite key tests count them in a save's first
    statement, which this read is on PostgreSQL); the columns are picked back
    by name.
    """
    compiler = _locking_queryset(spec, using, no_key=no_key).filter(pk=pk).query.get_compiler(using)
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
    return _with_links(spec, using, {pk: _state(spec, values)})[pk]


def _composite_key(spec: registry.ModelSpec) -> bool:
    return bool(getattr(spec.pk_field, "fields", None))


def _one_row(spec: registry.ModelSpec, connection: Any, no_key: bool = False) -> _OneRow:
    selects = connection.__dict__.setdefault(_SELECTS, {})
    select: _OneRow | None = selects.get((spec.model, no_key))
    if select is None or select.spec is not spec:
        select = selects[(spec.model, no_key)] = _OneRow(spec, connection, no_key)
    return select


_SELECTS = "_audit_events_selects"


def _locking_queryset(
    spec: registry.ModelSpec,
    using: str,
    rows: models.QuerySet[Any] | None = None,
    no_key: bool = False,
    columns: list[str] | None = None,
) -> models.QuerySet[Any, tuple[Any, ...]]:
    """Rows of :func:`_columns` (or of ``columns``), locked (their many-to-many links are read after:
    :func:`_with_links`).

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


def _state(spec: registry.ModelSpec, row: tuple[Any, ...] | list[Any]) -> State:
    """A row of :func:`_locking_queryset`, encoded (its links are added by :func:`_with_links`)."""
    return {f.name: None if (v := row[i]) is None else to_json(v) for i, (f, _, to_json) in enumerate(spec.encoders)}


class _OneRow:
    """:func:`_locking_queryset` for one key, compiled once: its SQL, the key's slot, the converters."""

    def __init__(self, spec: registry.ModelSpec, connection: Any, no_key: bool = False) -> None:
        self.spec = spec
        self.connection = connection
        key = object()  # stands for the key in the compiled parameters
        # Value, not RawSQL: RawSQL looks up the parents' columns in its SQL, and a parent's
        # ForeignObject (a field without a column) makes that fail.
        qs = _locking_queryset(spec, connection.alias, no_key=no_key).filter(pk=Value(key))
        self.compiler = qs.query.get_compiler(connection=connection)
        self.sql, params = self.compiler.as_sql()
        self.params = list(params)
        self.slot = next(i for i, p in enumerate(self.params) if p is key)
        selected = self.compiler.select[: self.compiler.col_count]
        self.names = [alias for _, _, alias in selected]
        self.pk_index = self.names.index(spec.pk_field.attname)
        self.columns = [sql for _, (sql, _), _ in selected]
        self.converters = split_converters(self.compiler.get_converters([e for e, _, _ in selected]))[0]
        # Where each of spec.fields is in this SELECT: an UPDATE returns those it writes (:meth:`update`).
        self.indexes = [self.names.index(f.attname) for f in spec.fields]
        # The UPDATEs of saves, by the columns they set (and which to NULL), compiled once (:meth:`update`).
        self.statements: dict[tuple[tuple[tuple[str, bool], ...], bool], tuple[str, list[int], dict[int, Any]]] = {}

    def fetch(self, pk: Any) -> State | None:
        return self._run(self.sql, self._params(pk))

    def update(
        self, pk: Any, values: list[tuple[Field, Any, Any]], with_old: bool
    ) -> tuple[State | None, State | None] | None:
        """The UPDATE of a save, returning the row it leaves (and, ``with_old``, the row it overwrote).

        With ``with_old`` (PostgreSQL): ``UPDATE ... FROM (this SELECT) AS old
        ... RETURNING old.*, t.<columns>``: one statement locks the row (the
        subquery's ``FOR NO KEY UPDATE``), writes ``values`` and brings back the row
        as it was and as it is. Otherwise ``UPDATE t SET ... WHERE pk = %s
        RETURNING <columns>`` (SQLite, whose RETURNING sees only the table).
        ``<columns>`` are the key and the columns the save writes: ``new`` holds
        those fields only, the others are as the old row (``_saved_state``).
        Returns ``(old, new)``, both ``None`` if no row has the key; ``None``
        for the whole result where the values need Django's own compiler
        (expressions, fields with their own placeholder, model instances).
        """
        connection = self.connection
        shape: list[tuple[str, bool]] = []  # each column written, and whether it is set to NULL
        params: list[Any] = []
        for field, _model, value in values:
            if hasattr(value, "resolve_expression") or hasattr(value, "prepare_database_save"):
                return None
            if hasattr(field, "get_placeholder"):
                return None
            value = field.get_db_prep_save(value, connection=connection)
            if hasattr(value, "as_sql"):
                return None
            shape.append((str(field.column), value is None))
            if value is not None:
                params.append(value)
        key = (tuple(shape), with_old)
        statement = self.statements.get(key)
        if statement is None:
            if len(self.statements) >= 100:  # saves of ever other fields (update_fields): keep a few
                self.statements.clear()
            statement = self.statements[key] = self._statement(values, shape, with_old)
        sql, fields, converters = statement
        if not with_old:
            with connection.cursor() as cursor:
                cursor.execute(sql, [*params, self.spec.pk_field.get_db_prep_value(pk, connection)])
                rows = cursor.fetchall()
            return None, next(iter(self.new_states(rows, fields, converters)), None)
        cursor = prepared.cursor(connection)  # planned once per connection (``prepared``)
        prepared.execute(cursor, sql, params + self._params(pk))
        rows = cursor.fetchall()
        if not rows:
            return None, None
        width = len(self.columns)  # old.*, then the key and the columns written
        old = self.states([row[:width] for row in rows])
        return next(iter(old.values())), self.new_states([row[width:] for row in rows], fields, converters)[0]

    def _statement(
        self, values: list[tuple[Field, Any, Any]], shape: list[tuple[str, bool]], with_old: bool
    ) -> tuple[str, list[int], dict[int, Any]]:
        """:meth:`update`'s SQL for the columns of ``values``, each set to ``%s`` or NULL as ``shape``
        says; which of ``spec.fields`` (by position) it returns after the key, and their converters
        (by position in what it returns)."""
        quote = self.connection.ops.quote_name
        assignments = ", ".join(f"{quote(column)} = {'NULL' if null else '%s'}" for column, null in shape)
        table, pk_column = quote(self.spec.model._meta.db_table), quote(self.spec.pk_field.column)
        # The key and the columns written, no other: the rest are as the old row read under the same lock.
        written = {field.attname for field, _, _ in values}
        fields = [j for j, f in enumerate(self.spec.fields) if f.attname in written]
        new_columns = ", ".join([self.columns[self.pk_index], *(self.columns[self.indexes[j]] for j in fields)])
        converters = {
            k: self.converters[self.indexes[j]] for k, j in enumerate(fields, 1) if self.indexes[j] in self.converters
        }
        if not with_old:
            sql = f"UPDATE {table} SET {assignments} WHERE {table}.{pk_column} = %s RETURNING {new_columns}"
        else:
            sql = (
                f"UPDATE {table} SET {assignments} FROM ({self.sql}) AS {_OLD_ROW} "
                f"WHERE {table}.{pk_column} = {_OLD_ROW}.{quote(self.names[self.pk_index])} "
                f"RETURNING {_OLD_ROW}.*, {new_columns}"
            )
        return sql, fields, converters

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

    def _params(self, pk: Any) -> list[Any]:
        params = list(self.params)
        params[self.slot] = self.spec.pk_field.get_db_prep_value(pk, self.connection)
        return params

    def _run(self, sql: str, params: list[Any]) -> State | None:
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


def diff(old: State, new: State) -> dict[str, list[JSONValue]]:
    return {name: [old.get(name), value] for name, value in new.items() if old.get(name) != value}


# --- save ---------------------------------------------------------------


@dataclasses.dataclass
class _Save:
    """What one save of a registered model hands from ``pre_save`` to ``post_save``.

    ``old`` is the row before (``None``: there was none), ``old_from_update``
    says the UPDATE will bring it back itself (PostgreSQL; SQLite for a composite
    key: :func:`do_update`).
    ``new`` holds, field by field, the row as the database answered the save's
    INSERT or UPDATE (``RETURNING``); ``read_back`` says a statement did not
    answer (Django compiled it itself): ``post_save`` then reads the row.
    ``parents_old``: a multi-table child's row there was none of, the rows its
    registered parents had with its key, by parent model (a child row given to
    an existing parent row: the save updates the parent's, :func:`_parent_rows`).
    """

    old: State | None
    old_from_update: bool = False
    new: State = dataclasses.field(default_factory=dict)
    read_back: bool = False
    raw: bool = False
    written: bool = False  # its INSERT or UPDATE has run
    matched: bool = False  # Django's own UPDATE (not ours) matched a row
    recorded: bool = False  # its event is written (a save of the same instance came before post_save)
    parents_old: dict[type[models.Model], State] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _Delete:
    """What one delete of a registered row hands from ``pre_delete`` to ``post_delete``.

    ``state`` is the row as locked before the DELETE, or :data:`_FROM_DELETE`
    (the DELETE returns it); ``None``: there was no row.
    """

    state: State | object | None
    operation: Any
    recorded: bool = False


def handoffs(instance: models.Model) -> list[_Save | _Delete | None]:
    """The records of ``instance``'s saves and deletes between their pre_ and post_ signals, innermost last.

    ``None`` stands for a save or delete not recorded (capture paused), so that
    each post_ signal takes back exactly what its pre_ signal put.
    """
    found: list[_Save | _Delete | None] = instance.__dict__.setdefault(_HANDOFFS, [])
    return found


def handoff_depth(instance: models.Model) -> int:
    return len(instance.__dict__.get(_HANDOFFS, ()))


def forget_handoffs(instance: models.Model, depth: int) -> None:
    """Drop what saves or deletes that failed before their post_ signal left above ``depth``."""
    found = instance.__dict__.get(_HANDOFFS)
    if found is not None and len(found) > depth:
        del found[depth:]
    if found is not None and not found:
        del instance.__dict__[_HANDOFFS]  # an instance no write is in progress on carries nothing
    _forget_finished(instance)
    _unwatch(instance)


def _pop_handoff(instance: models.Model) -> _Save | _Delete | None:
    found = instance.__dict__.get(_HANDOFFS)
    if not found:
        return None
    record: _Save | _Delete | None = found.pop()
    if not found:
        del instance.__dict__[_HANDOFFS]
    return record


# Saves whose INSERT or UPDATE has run and whose post_save has not recorded them yet, in this
# context: a write of a registered row that starts meanwhile (a post_save receiver connected
# before this app's writing the same row) records them first (:func:`record_finished_saves`).
_finished: ContextVar[tuple[tuple[models.Model, _Save, str], ...]] = ContextVar("audit_events_finished", default=())


def _finish(instance: models.Model, saving: _Save, using: str) -> None:
    saving.written = True
    _finished.set((*_finished.get(), (instance, saving, using)))


def _forget_finished(instance: models.Model) -> None:
    """Drop ``instance``'s saves from :data:`_finished` once recorded, or failed (no longer handed over)."""
    kept = instance.__dict__.get(_HANDOFFS) or []
    finished = _finished.get()
    if any(entry[0] is instance for entry in finished):
        _finished.set(tuple(e for e in finished if e[0] is not instance or (e[1] in kept and not e[1].recorded)))


# Saves and deletes holding an old row read before their statement (no RETURNING of it): a
# write of the same row recorded in between (a receiver connected after this app's) makes it
# stale, so it is read again then (:func:`_read_again`, told by ``journal.write``).
_watched: ContextVar[tuple[tuple[models.Model, _Save | _Delete, registry.ModelSpec, str], ...]] = ContextVar(
    "audit_events_watched", default=()
)


def _watch(instance: models.Model, record: _Save | _Delete, spec: registry.ModelSpec, using: str) -> None:
    _watched.set((*_watched.get(), (instance, record, spec, using)))
    journal.written.set(_read_again)


def _unwatch(instance: models.Model) -> None:
    """Stop watching ``instance``'s records that are no longer handed over (done, or failed)."""
    watched = _watched.get()
    if any(entry[0] is instance for entry in watched):
        kept = instance.__dict__.get(_HANDOFFS) or []
        left = tuple(e for e in watched if e[0] is not instance or e[1] in kept)
        _watched.set(left)
        if not left:
            journal.written.set(None)


def _read_again(drafts: Sequence[journal.Draft], using: str) -> None:
    written = {(draft.content_type_label, draft.object_pk) for draft in drafts}
    for instance, record, spec, db in _watched.get():
        if db != using or (spec.model._meta.label_lower, spec.object_pk(instance.pk)) not in written:
            continue
        if isinstance(record, _Save) and not record.written and not record.old_from_update:
            record.old = live_state(spec, db, instance.pk, no_key=True)
        elif isinstance(record, _Delete) and isinstance(record.state, dict) and not record.recorded:
            record.state = live_state(spec, db, instance.pk)


def record_finished_saves() -> None:
    """Record the saves whose statement has run and whose post_save has not come yet: a write
    starting now comes after them, and so must its event (the database's order)."""
    finished = _finished.get()
    if not finished:
        return
    _finished.set(())
    for instance, saving, using in finished:
        spec = registry.spec_for(type(instance))
        if spec is not None and not saving.recorded:
            _record_save(spec, instance, using, saving)


def _record_enclosing(spec: registry.ModelSpec, instance: models.Model, using: str) -> None:
    """A save or delete of ``instance`` starts inside another one's post_ receivers (connected
    before this app's): record the enclosing write now, its statement done, so its event
    comes before this one's, as the writes did. Its post_ signal then records nothing."""
    found = instance.__dict__.get(_HANDOFFS)
    enclosing = found[-1] if found else None
    if isinstance(enclosing, _Save) and enclosing.written and not enclosing.recorded:
        _record_save(spec, instance, using, enclosing)
    elif isinstance(enclosing, _Delete) and not enclosing.recorded and _delete_done(spec, using, instance, enclosing):
        _record_delete(spec, instance, using, enclosing)


def pre_save(sender: type[models.Model], instance: models.Model, raw: bool, using: str, **kwargs: Any) -> None:
    spec = registry.spec_for(sender)
    if spec is None or is_paused(sender):
        handoffs(instance).append(None)
        return
    record_finished_saves()
    _record_enclosing(spec, instance, using)
    saving = _Save(old=None, raw=bool(raw))
    if instance._is_pk_set() and not _pk_is_fresh(instance, raw):  # type: ignore[attr-defined]
        if _update_returns_old_row(spec, using) or _update_hands_back_old_values(spec, connections[using]):
            saving.old_from_update = True  # do_update fills old in; if Django INSERTs instead, there was none
        else:
            saving.old = live_state(spec, using, instance.pk, no_key=True)
            _watch(instance, saving, spec, using)
    if saving.old is None and not saving.old_from_update and not raw:
        saving.parents_old = _parent_rows(spec, using, instance)
    handoffs(instance).append(saving)


def _parent_rows(spec: registry.ModelSpec, using: str, instance: models.Model) -> dict[type[models.Model], State]:
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


def _current_save(instance: models.Model) -> _Save | None:
    found = instance.__dict__.get(_HANDOFFS)
    saving = found[-1] if found else None
    return saving if isinstance(saving, _Save) else None


def _update_returns_old_row(spec: registry.ModelSpec, using: str) -> bool:
    """PostgreSQL, one table (no multi-table parents), a single-column key."""
    return connections[using].vendor == "postgresql" and not spec.model._meta.parents and not _composite_key(spec)


def _update_returns_new_row(spec: registry.ModelSpec, connection: Any) -> bool:
    """PostgreSQL and SQLite (``RETURNING`` since 3.35), one table, a single-column key."""
    returning = connection.vendor in ("postgresql", "sqlite") and connection.features.can_return_columns_from_insert
    return returning and not spec.model._meta.parents and not _composite_key(spec)


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

    Where it can, the UPDATE returns the row it leaves, and on PostgreSQL the
    row it overwrites (:meth:`_OneRow.update`): the save costs no statement
    more than plain Django's. Otherwise (values Django must compile itself,
    ``select_on_save``, a base manager with its own ``_update`` or a filter, a model with
    its own ``_do_update``, Django 6 returning fields) Django's own UPDATE
    runs, the old row read first and the new one after.
    """
    args = (base_qs, using, pk_val, values, update_fields, forced_update, *returning_fields)
    saving = _current_save(instance)
    spec = registry.spec_for(type(instance))
    if saving is None or spec is None or _is_wrapper(original):
        return original(instance, *args, **kwargs)  # not recorded, or a registered parent's wrapper records it
    _finish(instance, saving, using)
    connection = connections[using]
    returns = bool(returning_fields and returning_fields[0]) or bool(kwargs.get("returning_fields"))
    plain = (
        values
        and not returns
        and not kwargs
        # A model (or a library, e.g. optimistic locking) with its own _do_update keeps it,
        # a base manager with its own _update (Django's select_on_save tests) too.
        and original is models.Model._do_update
        and _plain_update(base_qs)
        and not base_qs.query.where  # a base manager that filters rows out: Django's UPDATE does not see them
        and not (instance._meta.select_on_save and not forced_update)
    )
    if plain and _update_hands_back_old_values(spec, connection):
        matched = _update_overwriting(spec, base_qs, using, pk_val, values, saving)
        if matched is not None:
            return _update_answer(matched, returning_fields)
    simple = plain and _update_returns_new_row(spec, connection)
    result = _one_row(spec, connection, no_key=True).update(pk_val, values, saving.old_from_update) if simple else None
    if result is None:
        if saving.old_from_update:
            saving.old, saving.old_from_update = live_state(spec, using, pk_val, no_key=True), False
        saving.read_back = saving.read_back or bool(values)
        answer = original(instance, *args, **kwargs)
        saving.matched = bool(answer)
        return answer
    old, new = result
    if saving.old_from_update:
        saving.old = old
    saving.new.update(new or {})
    return _update_answer(new is not None, returning_fields)


def _update_answer(matched: bool, returning_fields: tuple[Any, ...]) -> Any:
    """What ``_do_update`` answers: whether the row matched, or on Django 6 the rows returned, none asked for."""
    if returning_fields:
        return [()] if matched else []
    return matched


def _update_hands_back_old_values(spec: registry.ModelSpec, connection: Any) -> bool:
    """SQLite, one table, a composite key: a save's UPDATE hands back what it overwrites (``overwritten``)."""
    return overwritten.supported(connection) and not spec.model._meta.parents and _composite_key(spec)


def _update_overwriting(
    spec: registry.ModelSpec,
    base_qs: models.QuerySet[Any],
    using: str,
    pk: Any,
    values: list[tuple[Field, Any, Any]],
    saving: _Save,
) -> bool | None:
    """Django's own UPDATE of a save, each value wrapped to hand back the one it overwrites
    (:mod:`.overwritten`), then the row it left read: the old row is that one with the
    overwritten values. Whether a row was updated; ``None`` where Django must compile the
    values itself (nothing has run).

    Queries: the UPDATE, then one SELECT (SQLite holds the write lock from the UPDATE on).
    Its first statement is the UPDATE Django sends, the same ``WHERE``, no column more.
    """
    wrapped = overwritten.assignments(spec.model, values)
    if wrapped is None:
        return None
    collected = overwritten.collector(connections[using])
    saving.old_from_update = False
    if not base_qs.filter(pk=pk)._update(wrapped):  # type: ignore[attr-defined]
        return False  # no row: Django INSERTs, and there was none
    row = live_state(spec, using, pk, no_key=True)
    if row is None:
        raise RuntimeError(f"audit_events: the saved {spec.label} row {spec.object_pk(pk)} could not be read back")
    fields = [field for field, _, _ in values]
    compiler = models.QuerySet(spec.model, using=using).query.get_compiler(using)
    converters = split_converters(compiler.get_converters([f.get_col(spec.model._meta.db_table) for f in fields]))[0]
    olds = [collected.values.get(n) for n in range(len(fields))]
    if converters:
        olds = list(next(iter(compiler.apply_converters([olds], converters))))
    encoders = {field: to_json for field, _, to_json in spec.encoders}  # not the excluded fields
    was = {f.name: None if v is None else encoders[f](v) for f, v in zip(fields, olds, strict=True) if f in encoders}
    saving.old = {**row, **was}
    saving.new.update({f.name: row[f.name] for f in spec.fields})
    return True


def do_insert(
    original: Callable[..., Any],
    instance: models.Model,
    manager: models.Manager[Any],
    using: str,
    fields: list[Field],
    returning_fields: list[Field] | None,
    raw: bool,
    **kwargs: Any,
) -> Any:
    """``Model._do_insert`` of a registered model: the INSERT of a save returns every column.

    Django asks for the columns it sets on the instance (``returning_fields``:
    the auto key, ``db_default`` fields); the INSERT returns every recorded
    column of the table too (:func:`.returning.insert_returning`), and Django
    gets back exactly what it asked for: the instance is left as plain Django leaves it.
    Where the backend cannot return columns, ``post_save`` reads the row.
    """
    saving = _current_save(instance)
    spec = registry.spec_for(type(instance))
    if saving is None or spec is None or _is_wrapper(original):
        return original(instance, manager, using, fields, returning_fields, raw, **kwargs)
    _finish(instance, saving, using)
    returning = connections[using].features.can_return_columns_from_insert
    if kwargs or original is not models.Model._do_insert or not returning:  # type: ignore[attr-defined]
        saving.read_back = True
        return original(instance, manager, using, fields, returning_fields, raw, **kwargs)
    asked = list(returning_fields or ())
    states, given = insert_returning(spec, manager.model, [instance], fields, asked, raw, using, {})
    saving.new.update(states[0][1])
    return given


def _is_wrapper(method: Callable[..., Any]) -> bool:
    """A registered parent model's wrapped method, inherited by a registered child (``registry``)."""
    return getattr(method, "audit_events_wrapper", False)


def _plain_update(queryset: models.QuerySet[Any]) -> bool:
    """Whether ``queryset._update`` is Django's own (or this app's), not a custom one."""
    return _plain_update_class(type(queryset))


@functools.lru_cache(maxsize=1024)  # asked on every save; QuerySet classes are few
def _plain_update_class(cls: type[models.QuerySet[Any]]) -> bool:
    owner = next(c for c in cls.__mro__ if "_update" in c.__dict__)
    return owner is models.QuerySet or owner.__module__.startswith("audit_events.")


def _pk_is_fresh(instance: models.Model, raw: bool) -> bool:
    """True for a new instance whose key its fields' defaults make (a UUID, a database default): no row can have it.

    As Django decides to skip the UPDATE and INSERT at once (``Model._save_table``).
    """
    pk_fields = instance._meta.pk_fields
    return not raw and instance._state.adding and all(f.has_default() or f.has_db_default() for f in pk_fields)


def post_save(
    sender: type[models.Model],
    instance: models.Model,
    created: bool,
    using: str,
    update_fields: frozenset[str] | None,
    **kwargs: Any,
) -> None:
    saving = _pop_handoff(instance)
    spec = registry.spec_for(sender)
    if isinstance(saving, _Save) and spec is not None and not saving.recorded:
        _record_save(spec, instance, using, saving)
    _forget_finished(instance)
    _unwatch(instance)


def _record_save(spec: registry.ModelSpec, instance: models.Model, using: str, saving: _Save) -> None:
    saving.recorded = True
    old, new = saving.old, _saved_state(spec, instance, using, saving)
    if old is None and saving.matched:
        # Django's UPDATE (by key) matched a row the locking read found gone: another transaction
        # made it again and committed in between (PostgreSQL, READ COMMITTED). It was as that
        # transaction recorded it.
        old = recorded_state(spec, instance.pk, using=using)
    # A multi-table child's row is also a row of each registered parent model:
    # record it there too, from the same states (no extra query, same INSERT).
    # Not on raw saves: loaddata saves the parent table as an object of its own.
    views = [spec] if saving.raw else [spec, *registry.parent_specs(spec)]
    drafts = [
        d
        for view in views
        if (d := view_event(view, _row_key(view, instance, new), saving.parents_old.get(view.model, old), new))
    ]
    journal.write(drafts, using)


def _row_key(spec: registry.ModelSpec, instance: models.Model, new: State) -> Any:
    """The saved row's key: the instance's, but as the database stored it (the state's) where the
    key's field makes objects of its own (``from_db_value``), which it may not prepare again."""
    field = spec.pk_field
    if spec.key_converts and new.get(field.name) is not None:
        return new[field.name]
    return getattr(instance, field.attname)


def view_event(
    spec: registry.ModelSpec,
    pk: Any,
    old: State | None,
    new: State,
) -> journal.Draft | None:
    """The event of a write seen as a row of ``spec``'s model (a multi-table
    child's row is also its parents'); ``None`` if nothing changed there."""
    names = spec.names
    if not spec.name_set.issuperset(new):  # a child's state seen as its parent's row
        new = {name: new[name] for name in names if name in new}
    if old is None:
        return journal.Draft.of(spec, pk, Action.CREATE, state=m2m.without_links(spec, new))
    if not spec.name_set.issuperset(old):
        old = {name: old[name] for name in names if name in old}
    changes = diff(old, new)
    if not changes:
        return None  # a write that changes nothing records nothing
    # Fields not written (links by a save) are as they were: the candidate snapshot keeps them.
    return journal.Draft.of(spec, pk, Action.UPDATE, changes=changes, snapshot={**old, **new})


def _saved_state(spec: registry.ModelSpec, instance: models.Model, using: str, saving: _Save) -> State:
    """The row as the save left it: as its statements answered, else as read now, under the save's lock.

    Fields no statement wrote (a multi-table parent's table left alone by
    ``update_fields``) are as they were.
    """
    answered = saving.new
    if not saving.read_back and (len(answered) == len(spec.fields) or saving.old is not None):
        old = saving.old or {}
        return {f.name: answered[f.name] if f.name in answered else old[f.name] for f in spec.fields}
    row = live_state(spec, using, instance.pk, no_key=True)
    if row is None:
        raise RuntimeError(
            f"audit_events: the saved {spec.label} row {spec.object_pk(instance.pk)} could not be read back; "
            "the save is undone."
        )
    return {f.name: row[f.name] for f in spec.fields}


# --- delete -------------------------------------------------------------


def pre_delete(sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any) -> None:
    spec = registry.spec_for(sender)
    if spec is None or is_paused(sender):
        handoffs(instance).append(None)
        return
    record_finished_saves()
    _record_enclosing(spec, instance, using)
    operation = current_operation()  # delete() and QuerySet.delete() opened one for the whole deletion
    scope = _deleting.get()
    if scope is not None and _update_returns_old_row(spec, using) and not spec.m2m_fields:
        scope.on(connections[using]).expect(spec, instance.pk)
        deleting_ = _Delete(_FROM_DELETE, operation)
    else:
        deleting_ = _Delete(live_state(spec, using, instance.pk), operation)
        if deleting_.state is not None:
            _watch(instance, deleting_, spec, using)
        if deleting_.state is None and scope is not None and connections[using].vendor == "postgresql":
            # Gone already, so not locked: a row made again with its key before the Collector's
            # DELETE (by key) runs would be deleted unseen. That DELETE returns what it deletes,
            # or (several tables, a composite key) is preceded by a locking read of it.
            returning = scope.on(connections[using])
            if _update_returns_old_row(spec, using):
                returning.expect(spec, instance.pk)
            else:
                returning.read_again(spec, instance.pk)
    handoffs(instance).append(deleting_)
    if scope is not None:
        scope.pushed.append((instance, handoff_depth(instance) - 1))


def post_delete(sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any) -> None:
    record = _pop_handoff(instance)
    spec = registry.spec_for(sender)
    if isinstance(record, _Delete) and spec is not None and not record.recorded:
        _record_delete(spec, instance, using, record)
    _unwatch(instance)


def _record_delete(spec: registry.ModelSpec, instance: models.Model, using: str, record: _Delete) -> None:
    record.recorded = True
    state = record.state
    if state is _FROM_DELETE:
        scope = _deleting.get()
        if scope is None:  # post_delete sent outside the delete() that marked it
            raise RuntimeError(f"audit_events: the deleted {spec.label} row was not read; the delete is undone.")
        state = scope.on(connections[using]).deleted_row(spec, instance.pk)
    elif state is None and (scope := _deleting.get()) is not None:
        state = scope.on(connections[using]).made_again(spec, instance.pk)
    if state is None:
        return
    assert isinstance(state, dict)
    event = journal.Draft.of(spec, instance.pk, Action.DELETE, state=state, operation=record.operation)
    journal.write([event], using)


def _delete_done(spec: registry.ModelSpec, using: str, instance: models.Model, record: _Delete) -> bool:
    """Whether the DELETE of ``record`` has run (asked only when the same instance is written again)."""
    if record.state is _FROM_DELETE:
        scope = _deleting.get()
        return scope is not None and scope.on(connections[using]).has_deleted(spec, instance.pk)
    return live_state(spec, using, instance.pk) is None


# pre_delete's mark: the DELETE will return the row itself (:func:`deleting`).
_FROM_DELETE = object()


class _Deleting:
    """The deletes of one ``delete()`` or ``QuerySet.delete()`` call, per connection object."""

    def __init__(self) -> None:
        self.connections: dict[int, _ReturningDeletes] = {}
        # The instances whose pre_delete handed a record over, and where in their handoffs():
        # a delete that fails before post_delete leaves it there, dropped when the call ends.
        self.pushed: list[tuple[models.Model, int]] = []

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
        for instance, depth in scope.pushed:
            forget_handoffs(instance, depth)


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
        # Rows read gone, of models whose DELETE cannot return a whole state, by their table's DELETE
        # (``DELETE FROM t ``): read again, locked, just before it (:meth:`read_again`).
        self.gone: dict[str, tuple[registry.ModelSpec, set[str]]] = {}
        connection.execute_wrappers.insert(0, self)

    def expect(self, spec: registry.ModelSpec, pk: Any) -> None:
        quote = self.connection.ops.quote_name
        table, pk_column = quote(spec.model._meta.db_table), quote(spec.pk_field.column)
        self.expected.setdefault(f"DELETE FROM {table} WHERE {table}.{pk_column} IN (", _one_row(spec, self.connection))
        self.marked.setdefault(spec.model, set()).add(spec.object_pk(pk))

    def read_again(self, spec: registry.ModelSpec, pk: Any) -> None:
        """``pre_delete`` read the row of ``spec`` (several tables, or a composite key) gone.

        Just before the Collector's DELETE of the model's own table, the row is read
        again, locked: one made again in between is recorded as deleted, like a row
        the DELETE returns (:meth:`made_again`). That DELETE returns the keys it took:
        one made again after that read too (its snapshot is the statement's own) cannot
        be recorded, and the delete is refused.
        """
        table = self.connection.ops.quote_name(spec.model._meta.db_table)
        self.gone.setdefault(f"DELETE FROM {table} ", (spec, set()))[1].add(spec.object_pk(pk))

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        if not isinstance(sql, str) or not sql.startswith("DELETE FROM "):
            return execute(sql, params, many, context)
        for start, (spec, pks) in self.gone.items():
            if sql.startswith(start) and pks:
                return self._gone_again(spec, pks, execute, sql, params, many, context)
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

    def _gone_again(
        self,
        spec: registry.ModelSpec,
        pks: set[str],
        execute: Callable[..., Any],
        sql: str,
        params: Any,
        many: bool,
        context: Any,
    ) -> Any:
        model, alias = spec.model, self.connection.alias
        key_fields: tuple[Field, ...] = getattr(spec.pk_field, "fields", None) or (spec.pk_field,)
        # This batch's keys (the Collector sends one DELETE per batch of keys): a row of a later batch,
        # made again after this one ran, is read with its own; one of an earlier batch stays alive.
        batch = pks & self._keys(spec, key_fields, list(params or ()))
        found = lock_rows(spec, alias, {"pk__in": [spec.pk_field.to_python(pk) for pk in batch]}) if batch else {}
        for pk, state in found.items():
            self.rows[(model, spec.object_pk(pk))] = state
        pks.difference_update(spec.object_pk(pk) for pk in found)
        columns = ", ".join(self.connection.ops.quote_name(f.column) for f in key_fields)
        result = execute(f"{sql} RETURNING {columns}", params, many, context)
        taken = self._keys(spec, key_fields, [v for values in context["cursor"].fetchall() for v in values])
        if unread := taken & pks:
            raise RuntimeError(
                f"audit_events: the {spec.label} row {min(unread)}, read gone by this delete, was made again "
                "by another transaction as it ran, and its DELETE took it unread, so it could not be "
                "recorded; the delete is undone. Retry it."
            )
        pks.difference_update(batch)
        return result

    @staticmethod
    def _keys(spec: registry.ModelSpec, key_fields: tuple[Field, ...], values: list[Any]) -> set[str]:
        """The canonical keys of ``values``, the key's columns one after another (a DELETE's ``IN`` list)."""
        width = len(key_fields)
        keys = set()
        for start in range(0, len(values) - width + 1, width):
            parts = [f.to_python(v) for f, v in zip(key_fields, values[start : start + width], strict=True)]
            keys.add(spec.object_pk(tuple(parts) if width > 1 else parts[0]))
        return keys

    def _read_marked(self, select: _OneRow) -> None:
        spec = select.spec
        pks = [pk for pk in self.marked.get(spec.model, ()) if (spec.model, pk) not in self.covered]
        found = lock_rows(spec, self.connection.alias, {"pk__in": [spec.pk_field.to_python(pk) for pk in pks]})
        for pk, state in found.items():
            self.rows[(spec.model, spec.object_pk(pk))] = state
        self.covered.update((spec.model, pk) for pk in pks)

    def has_deleted(self, spec: registry.ModelSpec, pk: Any) -> bool:
        return (spec.model, spec.object_pk(pk)) in self.covered

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

    def made_again(self, spec: registry.ModelSpec, pk: Any) -> State | None:
        """The row the DELETE deleted although ``pre_delete`` read it gone: another transaction made it
        again, with the same key, and committed in between (PostgreSQL, READ COMMITTED). ``None`` if the
        DELETE deleted no such row.

        Its columns are the DELETE's answer; its links, which the Collector's DELETE of the
        through rows removed before, are those its maker recorded (committed before this DELETE
        could see the row).
        """
        state = self.rows.pop((spec.model, spec.object_pk(pk)), None)
        if state is not None and spec.m2m_fields:
            recorded = recorded_state(spec, pk, using=self.connection.alias) or {}
            state.update({f.name: recorded.get(f.name, []) for f in spec.m2m_fields})
        return state

    def remove(self) -> None:
        if self in self.connection.execute_wrappers:
            self.connection.execute_wrappers.remove(self)
