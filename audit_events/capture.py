"""Signal receivers that turn writes of registered models into events.

The rule: every value an event records, old and new, comes from the
database's own answer for the statement that wrote it (``RETURNING`` where the
backend has it: ``backends``; otherwise a read under the same lock, inside the
same transaction, after the write: ``rows``), never from what Python believes
it sent. What one write hands from its ``pre_`` signal to its ``post_`` one is
one record (``handoffs``), turned into its events by ``recording``.

Cost per audited write, beyond Django's own statements:

* create: nothing (its event is inserted with the transaction's others); the
  INSERT returns every recorded column (:func:`do_insert`);
* update: on PostgreSQL nothing, the UPDATE itself returns the old row and the
  new one (:func:`do_update`, ``backends.postgresql``); on SQLite one locking
  SELECT of the old row first, the UPDATE returning the new one; where Django
  must compile the UPDATE itself (expressions, ``select_on_save``, multi-table
  models), the locking SELECT first and one SELECT of the new row after; a
  composite key on SQLite: one SELECT of the new row after Django's UPDATE,
  which hands back the values it overwrites (``backends.sqlite``);
* a multi-table child's row saved with a key it has no row for yet, the
  parents' rows there given it (``Restaurant(place_ptr=place)``): one locking
  SELECT per registered parent, their old values (:func:`_parent_rows`);
* delete: on PostgreSQL nothing, the DELETE returns the row (``handoffs.deleting``),
  for one-table models without many-to-many fields; otherwise one locking
  SELECT of the old row first;
* for a model with many-to-many fields, one more SELECT of its links, read
  once the row is locked (after the UPDATE on PostgreSQL): ``rows.with_links``;
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

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.db import connections, models

from . import backends, recording, registry, rows, single_statement
from .context import is_paused
from .handoffs import (
    DeleteRecord,
    Record,
    SaveRecord,
    delete_scope,
    finish,
    forget_finished,
    handoff_depth,
    handoffs,
    innermost,
    pop_handoff,
    unwatch,
    watch,
)
from .operations import current_operation
from .returning import insert_returning
from .rows import live_state

if TYPE_CHECKING:
    Field = models.Field[Any, Any]


# --- save ---------------------------------------------------------------


def pre_save(sender: type[models.Model], instance: models.Model, raw: bool, using: str, **kwargs: Any) -> None:
    spec = registry.spec_for(sender)
    if spec is None or is_paused(sender):
        handoffs(instance).append(Record())
        return
    recording.record_finished_saves()
    recording.record_enclosing(spec, instance, using)
    saving = SaveRecord(raw=bool(raw))
    if instance._is_pk_set() and not _pk_is_fresh(instance, raw):  # type: ignore[attr-defined]
        if backends.returns_old_row(spec, using) or backends.hands_back_overwritten(spec, connections[using]):
            saving.old_from_update = True  # do_update fills old in; if Django INSERTs instead, there was none
        else:
            saving.old = live_state(spec, using, instance.pk, no_key=True)
            watch(instance, saving, spec, using)
    if saving.old is None and not saving.old_from_update and not raw:
        saving.parents_old = rows.parent_rows(spec, using, instance)
    handoffs(instance).append(saving)


def _current_save(instance: models.Model) -> SaveRecord | None:
    saving = innermost(instance)
    return saving if isinstance(saving, SaveRecord) else None


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
    row it overwrites (``backends.update``): the save costs no statement
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
    finish(instance, saving, using)
    plain = _plain(original, instance, base_qs, values, forced_update, returning_fields, kwargs)
    if single_statement.is_alone(instance):  # outside a transaction: the UPDATE writes the event too
        return _update_answer(single_statement.update(spec, saving, using, pk_val, values, plain), returning_fields)
    written = backends.update(spec, base_qs, using, pk_val, values, saving.old_from_update) if plain else None
    if written is not None:
        old, new = written
        if old is not None or saving.old_from_update:  # the row it overwrote, or none
            saving.old = old
        saving.old_from_update = False
        saving.new.update(new or {})
        return _update_answer(new is not None, returning_fields)
    if saving.old_from_update:
        saving.old, saving.old_from_update = live_state(spec, using, pk_val, no_key=True), False
    saving.read_back = saving.read_back or bool(values)
    answer = original(instance, *args, **kwargs)
    saving.matched = bool(answer)
    return answer


def _plain(
    original: Callable[..., Any],
    instance: models.Model,
    base_qs: models.QuerySet[Any],
    values: list[tuple[Field, Any, Any]],
    forced_update: bool,
    returning_fields: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> bool:
    """Whether Django would send the save's UPDATE as a plain one by key, which this app may send itself."""
    returns = bool(returning_fields and returning_fields[0]) or bool(kwargs.get("returning_fields"))
    return bool(
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


def _update_answer(matched: bool, returning_fields: tuple[Any, ...]) -> Any:
    """What ``_do_update`` answers: whether the row matched, or on Django 6 the rows returned, none asked for."""
    if returning_fields:
        return [()] if matched else []
    return matched


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
    finish(instance, saving, using)
    returning = connections[using].features.can_return_columns_from_insert
    if kwargs or original is not models.Model._do_insert or not returning:  # type: ignore[attr-defined]
        saving.read_back = True
        return original(instance, manager, using, fields, returning_fields, raw, **kwargs)
    asked = list(returning_fields or ())
    if single_statement.is_alone(instance):  # outside a transaction: the INSERT writes the event too
        return single_statement.insert(spec, instance, saving, manager.model, using, fields, asked)
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
    saving = pop_handoff(instance)
    spec = registry.spec_for(sender)
    if isinstance(saving, SaveRecord) and spec is not None and not saving.recorded:
        recording.record_save(spec, instance, using, saving)
    forget_finished(instance)
    unwatch(instance)


# --- delete -------------------------------------------------------------


def pre_delete(sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any) -> None:
    spec = registry.spec_for(sender)
    if spec is None or is_paused(sender):
        handoffs(instance).append(Record())
        return
    recording.record_finished_saves()
    recording.record_enclosing(spec, instance, using)
    operation = current_operation()  # delete() and QuerySet.delete() opened one for the whole deletion
    scope = delete_scope()
    connection = connections[using]
    if scope is not None and backends.returns_old_row(spec, using) and not spec.m2m_fields:
        scope.on(connection).expect(spec, instance.pk)
        record = DeleteRecord(state=None, returned=True, operation=operation)
    else:
        record = DeleteRecord(state=live_state(spec, using, instance.pk), operation=operation)
        if record.state is not None:
            watch(instance, record, spec, using)
        elif scope is not None and backends.of(connection).delete_returns_rows:
            # Gone already, so not locked: a row made again with its key before the Collector's
            # DELETE (by key) runs would be deleted unseen. That DELETE returns what it deletes,
            # or (several tables, a composite key) is preceded by a locking read of it.
            returning = scope.on(connection)
            if backends.returns_old_row(spec, using):
                returning.expect(spec, instance.pk)
            else:
                returning.read_again(spec, instance.pk)
    handoffs(instance).append(record)
    if scope is not None:
        scope.pushed.append((instance, handoff_depth(instance) - 1))


def post_delete(sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any) -> None:
    record = pop_handoff(instance)
    spec = registry.spec_for(sender)
    if isinstance(record, DeleteRecord) and spec is not None and not record.recorded:
        recording.record_delete(spec, instance, using, record)
    unwatch(instance)
