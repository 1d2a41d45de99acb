"""Putting rows back: one row to any moment, or a whole deletion undone.

A restore is atomic (everything or nothing), writes the historical values
exactly (raw saves: no ``auto_now`` bump, no custom ``save()``), and records
itself as ``restore`` events sharing one operation: history is never edited.
"""

from __future__ import annotations

import datetime
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, TypeVar

from django.core.exceptions import ValidationError
from django.db import DatabaseError, models, router, transaction

from . import inheritance, journal, m2m, registry, rows
from .context import capture_paused
from .encoding import State, decode
from .exceptions import NotDeleted, RestoreError
from .models import Action, Event
from .operations import operation
from .recording import diff
from .replay import (
    absent_at,
    instance_from_state,
    moment_of,
    no_history,
    recorded_state,
    row_events,
    spec_or_error,
)

M = TypeVar("M", bound=models.Model)


@dataclass(frozen=True)
class _Row:
    """One row to write back, and the reason it is written."""

    spec: registry.ModelSpec
    model: type[models.Model]
    pk: Any
    state: State


def restore(model: type[M], pk: Any, at: datetime.date | None = None, *, using: str | None = None) -> M:
    """Restore a row and return it.

    * ``restore(Account, 32)``: bring back a deleted row as it was last
      recorded, with everything deleted in the same operation (a cascade, one
      ``QuerySet.delete()``), parents first, and put back foreign keys that
      the deletion set to NULL.
    * ``restore(Account, 32, at=moment)``: put the row back as it was at
      ``moment``, recreating it if it is deleted now, overwriting it otherwise.
      A date is the start of that day in the current time zone.

    Raises :class:`NoHistory` if the row has no events, :class:`RestoreError`
    if it cannot be done faithfully; either way nothing is written.
    """
    spec = spec_or_error(model)
    at = moment_of(model, pk, at)
    db = using or router.db_for_write(model)
    with transaction.atomic(using=db), capture_paused(), operation():
        events = row_events(spec, pk, db)
        last = events.order_by("-version").first()
        if last is None:
            raise no_history(model, pk, db)
        if at is None:
            if last.action != Action.DELETE:
                raise NotDeleted(
                    f"{model._meta.label} pk={pk} is not deleted (already restored?); "
                    "pass at= to put it back as it was at an earlier moment."
                )
            _undo_deletion(last, db)
        else:
            state = recorded_state(spec, pk, at, db)
            if state is None:
                raise RestoreError(absent_at(model, pk, at, db))
            _write_rows([_Row(spec, model, pk, state)], db)
    return model._base_manager.using(db).get(pk=pk)


def _undo_deletion(delete_event: Event, db: str) -> None:
    """Recreate every row deleted by the operation of ``delete_event``, and re-attach SET_NULL children."""
    group = list(Event.objects.using(db).filter(operation=delete_event.operation).order_by("id"))
    rows: list[_Row] = []
    for event in reversed(group):  # Django deletes children first: reversed, parents come first
        if event.action != Action.DELETE:
            continue
        model = event.content_type.model_class()
        spec = registry.spec_for(model) if model is not None else None
        if model is None or spec is None or event.state is None:
            raise RestoreError(
                f"{event.content_type.app_label}.{event.content_type.model} pk={event.object_pk} was deleted "
                "together with the requested row but is no longer registered or installed; nothing was restored."
            )
        if event.pk != delete_event.pk and _deleted_again(event, db):
            continue  # brought back and deleted since: that later deletion holds it now
        rows.append(_Row(spec, model, _recorded_key(spec, event), event.state))
    _write_rows(rows, db, recreate_only=True)
    _reattach(group, db)


def _recorded_key(spec: registry.ModelSpec, event: Event) -> Any:
    """The key of ``event``'s row: from its state (a composite key has no value of its own in it: its text)."""
    if getattr(spec.pk_field, "fields", None):
        return tuple(spec.pk_field.to_python(event.object_pk))
    assert event.state is not None
    return decode(spec.pk_field, event.state[spec.pk_field.name])


def _deleted_again(event: Event, db: str) -> bool:
    """Whether the row's latest event is a later deletion than ``event`` (by another operation)."""
    events = Event.objects.using(db).filter(content_type_id=event.content_type_id, object_pk=event.object_pk)
    latest = events.order_by("-version").values_list("version", "action").first()
    return latest is not None and latest[0] > event.version and latest[1] == Action.DELETE


def _reattach(group: list[Event], db: str) -> None:
    """Give back foreign keys that the deletion set to NULL (or a default), where they still are."""
    for event in group:
        model = event.content_type.model_class()
        spec = registry.spec_for(model) if model is not None else None
        if event.action != Action.UPDATE or spec is None or model is None:
            continue
        pk = spec.pk_field.to_python(event.object_pk)
        live_state = rows.live_state(spec, db, pk)
        if live_state is None:
            continue  # deleted since: nothing to re-attach
        target = dict(live_state)
        for name, (old, new) in event.changes.items():
            if live_state.get(name) == new:
                target[name] = old
        _write_rows([_Row(spec, model, pk, target)], db)


def _write_rows(group: list[_Row], db: str, recreate_only: bool = False) -> None:
    """Write each row exactly as recorded, checking first what would make it unfaithful.

    Rows are written one after the other, so a child's checks see its parent
    restored just before it. A row's symmetrical links to rows of the group
    still to come are written by theirs (both directions).
    """
    for index, row in enumerate(group):
        coming = [(later.model, later.pk) for later in group[index + 1 :]]
        live_state = rows.live_state(row.spec, db, row.pk)
        if live_state is not None and recreate_only:
            raise RestoreError(
                f"{row.model._meta.label} pk={row.pk} already exists (already restored?); nothing was restored."
            )
        if live_state is not None and _holds(live_state, row.state):
            continue  # already as asked: nothing to write, nothing to record
        instance, present = _checked_instance(row, live_state, db, coming)
        views = _views(row, instance, live_state, db)
        # A parent's row is also its children's; a through row's links are the owners' too.
        with inheritance.restoring(row.model, db, row.pk), m2m.through_row_restored(instance, db):
            _save_exactly(instance, row.spec, present=present, db=db, fields=row.state.keys())
        m2m.write_links(row.spec, row.pk, row.state, db, coming)
        journal.write(_drafts(views, _written_state(row, db), db), db)


def _holds(live: State, state: State) -> bool:
    """Whether the live row already holds every value of ``state``."""
    return all(live.get(name) == value for name, value in state.items())


def _checked_instance(
    row: _Row, live_state: State | None, db: str, coming: list[tuple[type[models.Model], Any]]
) -> tuple[models.Model, set[type[models.Model]]]:
    """The instance to write and the tables (models) that hold its row already, once nothing would make
    the write unfaithful: links to rows gone, a foreign key's row gone, a uniqueness broken. Writes nothing."""
    missing = m2m.missing_targets(row.spec, row.state, db, coming)
    if missing:
        raise RestoreError(
            f"{row.model._meta.label} pk={row.pk} was linked to rows that no longer exist ({', '.join(missing)}); "
            "restore them first. Nothing was restored."
        )
    instance = instance_from_state(row.model, row.spec, row.state)
    instance._state.adding = live_state is None
    instance._state.db = db
    present = _tables_present(row, instance, live_state, db)
    _check_parents(row, instance, db)
    _check_unique(row, instance, exclude={klass._meta.pk.name for klass in present if klass is not row.model})
    return instance, present


_View = tuple[registry.ModelSpec, Any, State | None]


def _views(row: _Row, instance: models.Model, live_state: State | None, db: str) -> list[_View]:
    """The row as its model and its registered multi-table parents see it (each spec, the row's key there, its
    live state there), read before the write: the row is also a row of those parents, and they record the
    restore too. One SELECT per registered parent."""
    return [(row.spec, row.pk, live_state)] + [
        (parent, pk, rows.live_state(parent, db, pk))
        for parent in registry.parent_specs(row.spec)
        if (pk := getattr(instance, parent.pk_field.attname)) is not None
    ]


def _drafts(views: list[_View], written: State, db: str) -> list[journal.Draft]:
    """The ``restore`` events of the row as ``written``: one per view it changed."""
    drafts = []
    for spec, pk, live in views:
        state = {name: written[name] for name in spec.names if name in written}
        if live is not None and _holds(live, state):
            continue  # this view of the row was already as restored
        changes = {} if live is None else diff(live, state)
        drafts.append(
            journal.Draft.of(
                spec, pk, Action.RESTORE, changes=changes, state=state, content_type_id=spec.content_type_id(db)
            )
        )
    return drafts


def _written_state(row: _Row, db: str) -> State:
    """The row as the database stored it (a trigger, a column's precision may change what was sent): read under
    the lock the write holds, inside the restore's transaction. One SELECT, and one of its links for a model with
    many-to-many fields. The whole row: the fields the restored state lacks (kept as they were, or their defaults
    in a row recreated) are what the row holds now too."""
    stored = rows.live_state(row.spec, db, row.pk)
    if stored is None:
        raise RestoreError(f"{row.model._meta.label} pk={row.pk} could not be read back after its restore.")
    return stored


def _check_parents(row: _Row, instance: models.Model, db: str) -> None:
    for field in row.spec.fields:
        if not isinstance(field, models.ForeignKey) or field.remote_field.parent_link:
            continue
        value = getattr(instance, field.attname)
        if value is None:
            continue
        parent = field.related_model
        assert isinstance(parent, type)
        if not parent._base_manager.using(db).filter(**{field.target_field.attname: value}).exists():
            raise RestoreError(
                f"{row.model._meta.label} pk={row.pk}: its {field.name} ({parent._meta.label} "
                f"{field.target_field.attname}={value}) no longer exists; restore that row first. Nothing was restored."
            )


def _tables_present(row: _Row, instance: models.Model, live_state: State | None, db: str) -> set[type[models.Model]]:
    """The tables (models) that hold the row already: every one for a live row. A multi-table child deleted
    together with its parent row: the group restores the parent row first, so the child fills in only its own
    table. One query per parent, for a row recreated."""
    if live_state is not None:
        return {row.model, *row.model._meta.get_parent_list()}
    return {
        klass
        for klass in row.model._meta.get_parent_list()
        if klass._base_manager.using(db).filter(pk=getattr(instance, klass._meta.pk.attname)).exists()
    }


def _check_unique(row: _Row, instance: models.Model, exclude: set[str]) -> None:
    try:
        instance.validate_unique(exclude=exclude)
        instance.validate_constraints()
    except ValidationError as error:
        raise RestoreError(
            f"{row.model._meta.label} pk={row.pk} cannot be restored: {'; '.join(error.messages)} Nothing was restored."
        ) from error


def _save_exactly(
    instance: models.Model,
    spec: registry.ModelSpec,
    present: set[type[models.Model]],
    db: str,
    fields: Collection[str],
) -> None:
    """Write every table of the row (parents first) with raw values, sending no signals.

    ``present`` holds the tables (models) that have the row already: updated, the others inserted.
    ``fields``: the names the restored state holds.
    """
    opts = spec.model._meta
    # An existing row keeps its fields that are not recorded (EXCLUDE_FIELDS), or that the state restored
    # lacks (an imported past of a library that tracked some fields): nothing to restore them from.
    recorded = frozenset(field.name for field in spec.fields if field.name in fields)
    for klass in [*reversed(opts.get_parent_list()), spec.model]:
        exists = klass in present
        try:
            instance._save_table(  # type: ignore[attr-defined]
                raw=True,
                cls=klass,
                force_insert=not exists,
                force_update=exists,
                using=db,
                update_fields=recorded if exists else None,
            )
        except DatabaseError as error:
            raise RestoreError(f"{opts.label} pk={instance.pk} could not be written back: {error}") from error
    _put_back_file_nulls(instance, spec, db)
    instance._state.adding = False
    instance._state.db = db


def _put_back_file_nulls(instance: models.Model, spec: registry.ModelSpec, db: str) -> None:
    """A FileField writes None as "" from an instance (its descriptor wraps None in a
    FieldFile): put a recorded NULL back with one UPDATE per table, only when there is one."""
    nulls = [
        f
        for f in spec.fields
        if isinstance(f, models.FileField) and f.null and getattr(instance, f.attname).name is None
    ]
    for klass in {f.model for f in nulls}:
        models.QuerySet(klass, using=db).filter(pk=getattr(instance, klass._meta.pk.attname)).update(
            **{f.attname: None for f in nulls if f.model is klass}
        )


def restore_fields(
    model: type[M], pk: Any, state: State, keep: Collection[str] = (), *, using: str | None = None
) -> M | None:
    """Put the row back to the recorded ``state``, except the fields named in ``keep``.

    Those keep the row's current value (its value when it was deleted, if it is
    deleted now): the admin restores only what its user may edit. Returns the
    row, or ``None`` when it already holds every value asked (nothing written,
    nothing recorded). Raises :class:`RestoreError` as :func:`restore` does.
    """
    spec = spec_or_error(model)
    db = using or router.db_for_write(model)
    with transaction.atomic(using=db), capture_paused(), operation():
        live = rows.live_state(spec, db, pk)
        if live is None:
            deletion = row_events(spec, pk, db).filter(action=Action.DELETE).order_by("-version").first()
            current = deletion.state if deletion is not None and deletion.state is not None else {}
        else:
            current = live
        target = {**state, **{name: current[name] for name in keep if name in current}}
        if live is not None and _holds(live, target):
            return None
        _write_rows([_Row(spec, model, pk, target)], db)
    return model._base_manager.using(db).get(pk=pk)
