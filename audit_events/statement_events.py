"""``QuerySet.update()`` whose events the database makes, in the UPDATE's own statement (PostgreSQL).

Where every field the UPDATE writes has an exact SQL encoding
(``backends.postgresql_events.json_text``), the rows never come to Python:
one statement updates them, encodes each row's changes from its old and new
columns as the statement returned them, and inserts the events, versions and
hashes looked up as the event INSERT does (``inserts``). Python receives the
number of rows and only the rows whose event it must write itself: the
version looked up was taken by a transaction that committed while the UPDATE
waited for the row (``postgresql_events``' docstring), or a snapshot is due
(the whole row, with its links) where a field or a link of the model has no
exact SQL (:func:`_new_state`). Memory stays bounded by those.

Elsewhere (a written field of another type, a multi-table model, a
registered parent, a write inside another write's capture) ``updates``
brings every row back, as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import connections, models
from django.db.models import signals
from django.db.models.deletion import Collector
from django.utils import timezone

from . import backends, capture, conf, journal, prepared, registry
from .encoding import value_field
from .hashing import canonical_time
from .journal import json_string as _text  # a str as canonical_json writes it
from .links import Through
from .models import Event
from .operations import current_operation

if TYPE_CHECKING:
    from .backends.base import Backend
    from .returning import Plan
    from .updates import Rows

_KEYS = (models.CharField, models.TextField, models.UUIDField)
_OLD_ROW = '"_audit_events_old"'


def update_statement(spec: registry.ModelSpec, rows: Rows, update: str) -> str | None:
    """The statement around ``update`` (``UPDATE ... FROM (rows' SELECT) ... RETURNING old.*, rows.returning``);
    ``None`` where the events cannot be made by the database (Python makes them)."""
    backend = _backend(spec, rows.connection)
    if backend is None or rows.key_written:
        return None
    encoders = spec.encoders
    changes = []
    for k, j in enumerate(rows.written):
        field = encoders[j][0]
        old = backend.json_text(field, f"w.c{j}")
        new = backend.json_text(field, f"w.c{rows.width + 1 + k}")
        if old is None or new is None:
            return None
        changes.append((_text(field.name), old, new))
    if not changes:  # excluded fields only: the rows are written, nothing recorded (Python's way)
        return None
    changes.sort()  # canonical JSON: keys in order (the names are distinct)
    every = conf.get_config().snapshot_every
    key = f"(w.c{rows.width})::text"  # the key as the UPDATE left it (it writes no key here)
    state = _new_state(backend, spec, rows)
    return backend.update_with_events(update, rows.width, changes, key, _table(rows.connection), every, state=state)


def _new_state(backend: Backend, spec: registry.ModelSpec, rows: Rows) -> list[tuple[str, str]] | None:
    """The whole row as the UPDATE left it, for a snapshot: per field and many-to-many field, in the
    canonical order of its name, its JSON key and the SQL of its value's text (a field written: as the
    UPDATE returned it; the others as the locking SELECT read them); ``None`` where one has no exact
    SQL (Python writes the snapshots).

    The links are read by the statement, in its snapshot: a transaction that changed them and
    committed while the UPDATE waited for the row's lock also recorded an event the statement cannot
    see, whose version its INSERT then skips (``ON CONFLICT``), leaving that row to Python, which
    reads the links again (``rows.with_links``)."""
    new = {j: rows.width + 1 + k for k, j in enumerate(rows.written)}
    state = [
        (field.name, backend.json_text(field, f"w.c{new.get(j, j)}")) for j, (field, _, _) in enumerate(spec.encoders)
    ]
    for field in spec.m2m_fields:
        owner = Through.of(field).owner_key
        column = rows.names.index(owner) if owner in rows.names else None
        state.append((field.name, None if column is None else backend.links_text(field, f"w.c{column}")))
    if any(value is None for _, value in state):
        return None
    return sorted((_text(name), str(value)) for name, value in state)


def deletes_in_statement(spec: registry.ModelSpec, queryset: models.QuerySet[Any], using: str) -> bool:
    """Whether ``queryset.delete()`` may be one statement that inserts its events (:func:`delete_statement`):
    not where Django's Collector must delete (cascades, other receivers), links change, or a field has
    no SQL encoding."""
    backend = _backend(spec, connections[using])
    if backend is None or spec.m2m_fields or registry.through_rows(spec.model):
        return False
    encodable = all(backend.json_text(field, "x") is not None for field, _, _ in spec.encoders)
    return encodable and _fast(queryset)


def delete_statement(spec: registry.ModelSpec, rows: Rows) -> str:
    """The DELETE of the rows ``rows`` reads (locked), returning them and inserting their ``delete``
    events (where :func:`deletes_in_statement`)."""
    backend = backends.of(rows.connection)
    state = sorted(
        (_text(field.name), backend.json_text(field, f"w.c{j}") or "") for j, (field, _, _) in enumerate(spec.encoders)
    )
    quote = rows.connection.ops.quote_name
    table, pk_column = quote(spec.model._meta.db_table), quote(str(spec.pk_field.column))
    delete = (
        f"DELETE FROM {table} USING ({rows.sql}) AS {_OLD_ROW} WHERE {table}.{pk_column} = "
        f"{_OLD_ROW}.{quote(rows.names[rows.pk_index])} RETURNING {_OLD_ROW}.*"
    )
    key = f"(w.c{rows.pk_index})::text"
    return backend.delete_with_events(delete, rows.width, state, key, _table(rows.connection))


def insert_statement(spec: registry.ModelSpec, plan: Plan, insert: str) -> str | None:
    """The INSERT of a ``bulk_create()`` batch (``returning.Plan``), returning its rows and inserting their
    ``create`` events; ``None`` where Python must make the events (links, a field with no SQL encoding)."""
    backend = _backend(spec, plan.connection)
    if backend is None or spec.m2m_fields or spec.model._meta.parents or len(plan.keys) != 1:
        return None
    state = []
    for name, position, _ in plan.encoded:
        value = backend.json_text(plan.columns[position], f"w.c{position}")
        if value is None:
            return None
        state.append((_text(name), value))
    state.sort()
    key = f"(w.c{plan.keys[0]})::text"
    return backend.insert_with_events(insert, len(plan.columns), state, key, _table(plan.connection))


def run_insert(
    spec: registry.ModelSpec, plan: Plan, sql: str, params: Any, using: str
) -> tuple[list[list[Any]], list[list[Any]]]:
    """Run :func:`insert_statement`: every row the INSERT returned, in its order, and those whose
    event is Python's."""
    _, answered = _run(spec, sql, params, using, "create", 1 + plan.keys[0])
    return [row[1:] for row in answered], [row[1:] for row in answered if row[0]]


def _backend(spec: registry.ModelSpec, connection: Any) -> Backend | None:
    """The backend, where it makes a statement's events for rows of ``spec``: one table, one
    registered model (no registered parent), a key whose text is ``Event.object_pk``."""
    backend = backends.of(connection)
    if not backend.events_in_statement or journal.written.get() is not None or registry.parent_specs(spec):
        return None
    target = value_field(spec.pk_field)
    return backend if spec._integer_key or type(target) in _KEYS else None


def _fast(queryset: models.QuerySet[Any]) -> bool:
    """Whether Django would delete ``queryset``'s rows with one DELETE (its fast delete) but for this
    app's receivers: nothing cascades, no other receiver, a delete() Django allows as it is."""
    query, model = queryset.query, queryset.model
    # What Django refuses (a slice, distinct(), values()) is left to it, and its error.
    if query.is_sliced or query.distinct or query.combinator or queryset._fields is not None:  # type: ignore[attr-defined]
        return False
    ours = {signals.pre_delete: capture.pre_delete, signals.post_delete: capture.post_delete}
    for signal, receiver in ours.items():
        if [r for group in signal._live_receivers(model) for r in group] != [receiver]:
            return False
    return bool(_RelationsOnly(using=queryset.db, origin=queryset).can_fast_delete(queryset))


def run(rows: Rows, sql: str, params: list[Any], using: str, action: str) -> tuple[int, list[list[Any]]]:
    """Run a statement of :func:`update_statement` or :func:`delete_statement`: the number of rows
    written, and those whose event is Python's, as the statement returned them."""
    return _run(rows.spec, sql, params, using, action, rows.pk_index)


def _run(
    spec: registry.ModelSpec, sql: str, params: list[Any] | tuple[Any, ...], using: str, action: str, key: int
) -> tuple[int, list[list[Any]]]:
    """Run a statement of this module: the number of rows written, and the rows it answers (``key``:
    the key's column among them, NULL in the one row it answers when there are none)."""
    connection = connections[using]
    journal.flush(using)  # these rows' events waiting for COMMIT come first: the lookup must see them
    author = journal.Author.now()
    created_at, operation = canonical_time(timezone.now()), str(current_operation())
    pieces = journal.content_pieces(action, author, spec.model._meta.label_lower, created_at, operation)
    opts = spec.model._meta
    event: list[Any] = [opts.app_label, opts.model_name, created_at, operation, author.actor_id, author.actor_repr]
    backend = backends.of(connection)
    with connection.cursor() as cursor:
        prepared.execute_after(cursor, backend.before_statement_events, sql, [*params, *event, author.context, *pieces])
        returned = cursor.fetchall()
    return returned[0][0], [row[3:] for row in returned if row[3 + key] is not None]  # after the count, the settings


def _table(connection: Any) -> str:
    """The event table, quoted for ``connection``."""
    return str(connection.ops.quote_name(Event._meta.db_table))


class _RelationsOnly(Collector):
    """Django's ``can_fast_delete`` judged on the model's relations alone: :func:`_fast` checks the
    receivers itself, against this app's own."""

    def _has_signal_listeners(self, model: type[models.Model]) -> bool:
        return False
