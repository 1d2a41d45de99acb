"""Signal receivers that turn writes of registered models into events.

Cost per audited write, beyond Django's own statements:

* create: one INSERT (the event);
* update: one locking SELECT of the old row, one INSERT;
* delete: one locking SELECT of the old row, one INSERT;
* a no-op save: the SELECT only.

Foreign keys that a parent's delete sets to NULL (or a default) are recorded
by the audited ``QuerySet.update()`` Django's Collector calls (``querysets``).

Old values are read from the database inside the write's transaction (the
``save_base`` wrapper in ``registry`` makes it one), locked where the backend
can, never taken from memory.
"""

from __future__ import annotations

from typing import Any

from django.db import connections, models
from django.db.models import OuterRef, Subquery
from django.db.models.functions import Cast

from . import conf, journal, m2m, registry
from .context import is_paused
from .encoding import JSONValue, encode, value_field
from .models import Action, Event
from .operations import deletion_begin, deletion_end

_OLD = "_audit_events_old"

State = dict[str, JSONValue]


def locked_rows(
    spec: registry.ModelSpec, using: str, lookup: dict[str, Any], object_pk: str | None = None
) -> dict[Any, tuple[State, int | None]]:
    """Current rows matching ``lookup``, locked, with each row's latest event version.

    ``object_pk`` names the one row looked up; without it, the latest version
    is found only for integer keys, and an unknown one (``None``) merely makes
    the next event carry a full state. Queries: one SELECT (``FOR UPDATE``
    where the backend supports it).
    """
    qs = spec.model._base_manager.using(using).filter(**lookup)
    if connections[using].features.has_select_for_update:
        qs = qs.select_for_update()
    pk_name = spec.pk_field.attname
    names = [f.attname for f in spec.fields]
    key: Any = object_pk
    if key is None and isinstance(value_field(spec.pk_field), models.IntegerField):
        key = Cast(OuterRef("pk"), output_field=models.CharField())
    if key is not None:
        events = Event.objects.filter(content_type_id=spec.content_type_id(), object_pk=key)
        qs = qs.annotate(_audit_last_version=Subquery(events.order_by("-version").values("version")[:1]))
    rows: dict[Any, tuple[State, int | None]] = {}
    for values in qs.values(pk_name, *names, *(["_audit_last_version"] if key is not None else [])):
        state = {f.name: encode(f, values[f.attname]) for f in spec.fields}
        rows[values[pk_name]] = (state, values.get("_audit_last_version"))
    return rows


def should_snapshot(last_version: int | None) -> bool:
    if last_version is None:
        return True  # a row's first event carries its full state
    return (last_version + 1) % conf.get_config().snapshot_every == 0


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
    old: tuple[State, int | None] | None = None
    if instance.pk is not None and not _pk_is_fresh(instance, raw):
        rows = locked_rows(spec, using, {"pk": instance.pk}, spec.object_pk(instance.pk))
        old = next(iter(rows.values()), None)
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
    new = _saved_state(spec, instance, using, old[0] if old else None, update_fields)
    if old is None:
        m2m.complete(spec, using, {instance.pk: new}, new_rows=True)
        event = draft(spec, instance.pk, Action.CREATE, state=new)
    else:
        old_state, last_version = old
        changes = diff(old_state, new)
        if not changes:
            return  # a save that changes nothing records nothing
        snapshot = None
        if should_snapshot(last_version):
            snapshot = new
            m2m.complete(spec, using, {instance.pk: snapshot})
        event = draft(spec, instance.pk, Action.UPDATE, changes=changes, state=snapshot)
    journal.write([event], using)


def _saved_state(
    spec: registry.ModelSpec,
    instance: models.Model,
    using: str,
    old: State | None,
    update_fields: frozenset[str] | None,
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
        if hasattr(value, "resolve_expression"):
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
    operation = deletion_begin(kwargs.get("origin"))
    rows = locked_rows(spec, using, {"pk": instance.pk}, spec.object_pk(instance.pk))
    row = next(iter(rows.values()), None)
    state = row[0] if row else None
    if state is not None:
        m2m.complete(spec, using, {instance.pk: state})  # links go with the row: keep them
    instance.__dict__[_OLD] = (state, operation)


def post_delete(sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any) -> None:
    if _OLD not in instance.__dict__:
        return
    state, operation = instance.__dict__.pop(_OLD)
    deletion_end(kwargs.get("origin"))
    spec = registry.spec_for(sender)
    if spec is None or state is None:
        return
    journal.write([draft(spec, instance.pk, Action.DELETE, state=state, operation=operation)], using)
