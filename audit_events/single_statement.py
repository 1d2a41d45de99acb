"""One statement per save, create or delete of a registered row in autocommit mode, its event included.

Plain Django's ``save()`` or ``delete()`` outside a transaction is one
statement. Recording it the usual way takes four (BEGIN, the write, the event
INSERT, COMMIT), and each round trip costs about as much as the write. Where
the backend can (``backends.postgresql_single``), the write and its event are
one data-modifying statement instead, atomic on its own: no BEGIN, no COMMIT,
every recorded value from that statement's answer.

* A save: ``wiring`` asks :func:`saves_alone` before it would open the
  transaction around ``save_base``, and runs it inside :func:`alone` instead;
  ``pre_save`` still starts the capture, the UPDATE (:func:`update`) or
  INSERT (:func:`insert`) of ``capture`` is this statement, and the event is
  written: ``post_save`` has nothing left to do.
* A delete (:func:`delete`): where Django would delete the row with one
  DELETE but for this app's receivers (its fast delete: nothing to cascade
  to, no receiver but this app's), one DELETE that inserts the event, no
  signals sent (as Django's fast delete sends none), as
  ``querysets``' one-statement ``QuerySet.delete()``.

What cannot go this way goes the usual way, in a transaction: a model of
several tables, or with many-to-many fields, or registered children; a field
without an exact SQL encoding; a write whose signals reach another receiver;
a value Django must compile (an expression); and, known only once the
statement ran and failed, writing nothing (:class:`Fallback`): a value it
cannot encode, a snapshot due with one, a version taken meanwhile by a
concurrent writer (``backends.postgresql_single``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connections, models
from django.db.models.deletion import Collector
from django.utils import timezone

from . import backends, conf, journal, prepared, registry, rows
from .backends.base import _bound
from .context import is_paused
from .encoding import value_field
from .handoffs import handoff_depth
from .hashing import canonical_time
from .journal import json_string as _text  # a str as canonical_json writes it
from .models import Event
from .operations import current_operation
from .pending import _unmigrated as unmigrated
from .returning import insert_statements

if TYPE_CHECKING:
    from django.dispatch import Signal

    from .handoffs import SaveRecord

    Field = models.Field[Any, Any]

_KEYS = (models.CharField, models.TextField, models.UUIDField)  # keys whose text is Event.object_pk


class Fallback(Exception):
    """The write cannot be one statement with its event, and nothing was written: save it the usual way."""


# The instance whose save is written alone (:func:`alone`), in this context.
_alone: ContextVar[models.Model | None] = ContextVar("audit_events_alone", default=None)


def saves_alone(
    instance: models.Model, using: str, args: tuple[Any, ...], kwargs: dict[str, Any], ours: Mapping[Signal, Any]
) -> bool:
    """Whether ``instance.save_base(*args, **kwargs)`` may run outside a transaction, its statement writing
    its event (``ours``: this app's receivers of pre_save and post_save, the only ones it may reach)."""
    spec = registry.spec_for(type(instance))
    return bool(
        spec is not None
        and not args
        and not kwargs.get("raw")
        and handoff_depth(instance) == 0
        and _single(spec, using) is not None
        and _only(type(instance), ours)
        and not is_paused(type(instance))
    )


@contextlib.contextmanager
def alone(instance: models.Model) -> Iterator[None]:
    """The save of ``instance`` inside is written alone (:func:`saves_alone` said it may)."""
    token = _alone.set(instance)
    try:
        yield
    finally:
        _alone.reset(token)


def is_alone(instance: models.Model) -> bool:
    return _alone.get() is instance


def update(
    spec: registry.ModelSpec,
    saving: SaveRecord,
    using: str,
    pk: Any,
    values: list[tuple[Field, Any, Any]],
    plain: bool,
) -> bool:
    """The UPDATE of a save written alone (``capture.do_update``): whether it matched the row.

    Query: one, the UPDATE that returns the row it overwrote and the one it left and inserts the
    event of the change (none if nothing changed).
    """
    connection = connections[using]
    bound = _bound(values, connection) if plain else None
    if bound is None:
        raise Fallback  # Django's to compile, in a transaction
    shape, params = bound
    select = _row_select(spec, connection, no_key=True)
    backend = backends.of(connection)
    key = ("alone", tuple(shape), settings.USE_TZ)
    sql: str | None = select.statements.get(key)
    if sql is None:
        write, fields, _ = backend.statement(select, values, shape, True)  # type: ignore[attr-defined]
        sql = select.statements[key] = _update_sql(spec, select, write, fields, backend)
    params = [*params, *select.key_params(pk)]
    answer = _run(spec, connection, sql, params, "update")
    saving.recorded = True
    return bool(answer[0][0])


def _update_sql(spec: registry.ModelSpec, select: rows.RowSelect, write: str, fields: list[int], backend: Any) -> str:
    width = len(select.columns)
    written = {j: width + 1 + k for k, j in enumerate(fields)}  # after old.* and the key
    single = backend.single_row_events
    changes, state = [], []
    for j, (field, _, _) in enumerate(spec.encoders):
        old = f"w.c{select.indexes[j]}"
        if j in written:
            new = f"w.c{written[j]}"
            encoded = (_json(backend, field, old), _json(backend, field, new), single.same(field, old, new))
            changes.append((_text(field.name), *encoded))
        state.append((_text(field.name), _json(backend, field, f"m.c{written.get(j, select.indexes[j])}")))
    if not changes:  # excluded fields only: written, nothing recorded (the usual way)
        raise Fallback
    every = conf.get_config().snapshot_every
    key = f"(w.c{width})::text"  # the key as the UPDATE left it (a save writes no key here)
    return str(single.update(write, width + 1 + len(fields), sorted(changes), sorted(state), key, every))


def insert(
    spec: registry.ModelSpec,
    instance: models.Model,
    saving: SaveRecord,
    model: type[models.Model],
    using: str,
    fields: list[Field],
    asked: list[Field],
) -> list[tuple[Any, ...]]:
    """The INSERT of a save written alone (``capture.do_insert``): what Django asked it to return.

    Query: one, the INSERT that returns the row and inserts its ``create`` event.
    """
    plan, statements = insert_statements(spec, model, [instance], fields, asked, False, using, {})
    if len(statements) != 1 or len(plan.keys) != 1:
        raise Fallback
    write, params = statements[0]
    backend = backends.of(plan.connection)
    state = []
    for name, position, _ in plan.encoded:
        state.append((_text(name), _json(backend, plan.columns[position], f"w.c{position}")))
    sql = backend.single_row_events.insert(write, len(plan.columns), sorted(state), f"(w.c{plan.keys[0]})::text")
    answer = _run(spec, plan.connection, sql, list(params), "create")
    saving.recorded = True
    return plan.given(answer)


def delete(instance: models.Model, using: str, ours: Mapping[Signal, Any]) -> tuple[int, dict[str, int]] | None:
    """``instance.delete()`` as one DELETE that inserts its event, where Django would fast-delete it but for
    this app's receivers (``ours``: of pre_delete and post_delete), in autocommit mode; ``None`` elsewhere
    (nothing was written)."""
    model = type(instance)
    spec = registry.spec_for(model)
    if spec is None or instance.pk is None or is_paused(model) or handoff_depth(instance):
        return None
    if _single(spec, using) is None or not _only(model, ours):
        return None
    if not _RelationsOnly(using=using, origin=instance).can_fast_delete(instance):
        return None
    connection = connections[using]
    select = _row_select(spec, connection, no_key=False)
    key = ("alone", "delete", settings.USE_TZ)
    try:
        sql: str | None = select.statements.get(key)
        if sql is None:
            sql = select.statements[key] = _delete_sql(spec, select, connection)
        answer = _run(spec, connection, sql, [spec.pk_field.get_db_prep_value(instance.pk, connection)], "delete")
    except Fallback:
        return None
    count = int(answer[0][0])
    setattr(instance, spec.pk_field.attname, None)  # as Django's fast delete leaves it
    return count, {model._meta.label: count}


def _delete_sql(spec: registry.ModelSpec, select: rows.RowSelect, connection: Any) -> str:
    quote = connection.ops.quote_name
    table = quote(spec.model._meta.db_table)
    by_key = f"{table}.{quote(spec.pk_field.column)} = %s"
    write = f"DELETE FROM {table} WHERE {by_key} RETURNING {', '.join(select.columns)}"
    backend = backends.of(connection)
    state = sorted(
        (_text(field.name), _json(backend, field, f"w.c{select.indexes[j]}"))
        for j, (field, _, _) in enumerate(spec.encoders)
    )
    return str(backend.single_row_events.delete(write, len(select.columns), state, f"(w.c{select.pk_index})::text"))


def _row_select(spec: registry.ModelSpec, connection: Any, no_key: bool) -> rows.RowSelect:
    """``rows.row_select``, compiled outside a transaction. Django refuses to compile a locking SELECT in
    autocommit mode, where it would lock nothing once run alone; here it is never run alone, only as the
    subquery of one statement that writes the rows it locks (or its columns, for a DELETE's RETURNING)."""
    if connection.autocommit:
        connection.autocommit = False  # read by get_autocommit() alone; nothing is sent while it compiles
        try:
            return rows.row_select(spec, connection, no_key=no_key)
        finally:
            connection.autocommit = True
    return rows.row_select(spec, connection, no_key=no_key)


def _run(spec: registry.ModelSpec, connection: Any, sql: str, params: list[Any], action: str) -> list[Any]:
    """Run a statement of ``backends.postgresql_single``: its answer. :class:`Fallback` where it failed
    on the event, or on the event table missing (nothing was written, in autocommit mode)."""
    author = journal.Author.now()
    created_at, operation = canonical_time(timezone.now()), str(current_operation())
    opts = spec.model._meta
    event = [opts.app_label, opts.model_name, created_at, operation, author.actor_id, author.actor_repr, author.context]
    pieces = journal.content_pieces(action, author, opts.label_lower, created_at, operation)
    cursor = prepared.cursor(connection)
    try:
        prepared.execute(cursor, sql, [*params, *event, *pieces])
    except IntegrityError as error:
        if _on_events(error):
            raise Fallback from error
        raise
    except DatabaseError as error:
        if unmigrated(error):  # the usual way says what to do about it
            raise Fallback from error
        raise
    return list(cursor.fetchall())


def _on_events(error: IntegrityError) -> bool:
    """Whether the statement failed on its event (a NULL hash, a version taken), not on the row."""
    diag = getattr(error.__cause__, "diag", None)
    return getattr(diag, "table_name", None) == Event._meta.db_table


def _single(spec: registry.ModelSpec, using: str) -> Any:
    """The backend's one-statement writes, where a write of ``spec``'s row may be one now: in autocommit
    mode, of a model that fits (:func:`_fits`), outside another write's capture."""
    connection = connections[using]
    single = backends.of(connection).single_row_events
    if single is None or journal.written.get() is not None or connection.in_atomic_block:
        return None
    if not connection.get_autocommit():
        return None
    # Decided again when USE_TZ changes: which fields the database encodes depends on it (naive times: Python).
    key = (id(spec), settings.USE_TZ)
    fits = _fitting.get(key)
    if fits is None or fits[0] is not spec:
        fits = _fitting[key] = (spec, _fits(spec, connection))
    return single if fits[1] else None


_fitting: dict[tuple[int, bool], tuple[registry.ModelSpec, bool]] = {}


def _fits(spec: registry.ModelSpec, connection: Any) -> bool:
    """Whether a row of ``spec`` is one table's row whose every field the database encodes exactly."""
    model, backend = spec.model, backends.of(connection)
    if model._meta.parents or spec.m2m_fields or registry.through_rows(model) or model._meta.select_on_save:
        return False
    if rows.composite_key(spec) or any(spec in registry.parent_specs(s) for s in registry.registered_specs()):
        return False
    if not (spec._integer_key or type(value_field(spec.pk_field)) in _KEYS):
        return False
    return all(backend.json_text(field, "x") is not None for field in spec.fields)


def _only(model: type[models.Model], ours: Mapping[Signal, Callable[..., Any]]) -> bool:
    """Whether each signal of ``ours`` reaches no receiver for ``model`` but this app's."""
    for signal, receiver in ours.items():
        if [r for group in signal._live_receivers(model) for r in group] != [receiver]:
            return False
    return True


def _json(backend: Any, field: Field, value: str) -> str:
    """``backend.json_text``: :class:`Fallback` where the database cannot encode ``field`` (nothing ran)."""
    encoded: str | None = backend.json_text(field, value)
    if encoded is None:
        raise Fallback
    return encoded


class _RelationsOnly(Collector):
    """Django's ``can_fast_delete`` judged on the model's relations alone: :func:`_only` checks the
    receivers."""

    def _has_signal_listeners(self, model: type[models.Model]) -> bool:
        return False
