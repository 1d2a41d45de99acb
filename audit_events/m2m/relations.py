"""Links changed by Django's relation: its managers' calls, and the deletion of related rows.

Auto-created through tables send no signal per row: ``m2m_changed`` records
the relation managers' calls (:func:`m2m_changed`), and the related model's
delete signals record the links its rows' deletion removes
(:func:`target_pre_delete`, :func:`target_post_delete`). The manager's own
write of the through rows, between its ``pre_`` and ``post_`` signals, is left
to ``m2m_changed`` (:func:`by_relation_manager`); the rows' other writes are
recorded in :mod:`.through`.

A symmetrical relation to the model itself (:func:`.links.mirrored`) holds each
link in both directions: its ``add()`` writes the other direction by a
``bulk_create`` of its own, without signals (recorded as a direct write of
the table), its ``remove()``/``clear()`` both in one DELETE, whose rows on
the other end are locked and read with the row the call is made on (for
``clear()`` found as from the related side: on PostgreSQL that row locked
``FOR UPDATE`` first, and one SELECT of the rows linked to it).
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from django.db import connections, models

from .. import registry
from ..context import is_paused
from ..links import Through, mirrored
from .changes import LinkChange, current_deletion, deletion_of, lock_targets


def _owners(
    field: models.ManyToManyField[Any, Any],
    instance: models.Model,
    reverse: bool,
    pk_set: Any,
    using: str,
    mirrored: bool = False,
) -> dict[str, Any]:
    """The lookup of the rows declaring ``field`` whose links the change touches.

    From the related side, ``pk_set`` holds their ``to_field`` values, as the
    through table does; without it (``clear()``, a related row deleted) they
    are the rows linked to ``instance`` now. ``mirrored``: a ``remove()`` or
    ``clear()`` of a symmetrical relation to the model itself, whose one
    DELETE takes both directions of each link: the rows on the other end
    lose their links to ``instance`` too, and are found as from the related side.
    """
    if not reverse and not mirrored:
        return {"pk__in": [instance.pk]}
    ends = Through.of(field)
    if pk_set is None:
        values = lock_targets(ends, using, None, getattr(instance, ends.target.target_field.attname))
        rows = ends.model._base_manager.using(using).filter(**{f"{ends.target.attname}__in": values})
        pk_set = rows.values_list(ends.source.attname, flat=True).distinct()
    if mirrored and not reverse:
        return {f"{ends.owner_key}__in": [getattr(instance, ends.owner_key), *pk_set]}
    return {f"{ends.owner_key}__in": list(pk_set)}


def _check_keys(field: models.ManyToManyField[Any, Any], reverse: bool, pk_set: Any) -> None:
    """Fail on a key ``remove()`` was given that is not one, as Django would, before any query.

    Django checks them only after ``pre_remove``, by the lookup built here (no
    query): a query of ours first would fail instead, with another error,
    in a transaction already marked for rollback.
    """
    ends = Through.of(field)
    ends.model._base_manager.filter(**{f"{(ends.source if reverse else ends.target).name}__in": list(pk_set)})


_BEFORE = "_audit_events_m2m"


def _remember(
    instance: models.Model, key: Any, spec: registry.ModelSpec, field: Any, owners: dict[str, Any], using: str
) -> None:
    change = LinkChange(using)
    change.lock(spec, field, owners)
    instance.__dict__.setdefault(_BEFORE, {})[key] = change


def _record(instance: models.Model, key: Any, spec: registry.ModelSpec, field: Any, using: str) -> None:
    change = instance.__dict__.get(_BEFORE, {}).pop(key, None)
    if change is not None:
        change.record()


def m2m_changed(
    sender: type[models.Model],
    instance: models.Model,
    action: str,
    reverse: bool,
    pk_set: Any,
    using: str,
    **kwargs: Any,
) -> None:
    if is_paused() and is_paused(*(spec.model for spec, _ in registry.m2m_links(sender))):  # noted when paused
        return
    for spec, field in registry.m2m_links(sender):
        key = (sender, spec.model, field.name)  # a multi-table parent and its child each have the field
        if action == "pre_remove":
            _check_keys(field, reverse, pk_set)
        if action.startswith("pre_"):
            _mark_relation_write(sender, using)
            # A symmetrical add() writes the other direction as a bulk_create of its own, without
            # signals (recorded as a direct write of the table); remove() and clear() in one DELETE.
            both = mirrored(field) and action in ("pre_remove", "pre_clear")
            _remember(instance, key, spec, field, _owners(field, instance, reverse, pk_set, using, both), using)
        else:
            _record(instance, key, spec, field, using)


def target_pre_delete(sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any) -> None:
    """A related row is being deleted: its links vanish with it, without a signal of their own.

    Django sends every ``pre_delete`` of a deletion before its first DELETE: the owners
    of all the related rows of one model it deletes are locked and read together, at
    the first one's, when the deletion is a ``QuerySet.delete()`` of them (its rows are
    locked first, :func:`.changes.lock_targets`); any other row, at its own.
    """
    if is_paused():
        return
    origin = kwargs.get("origin")
    deletion = deletion_of(origin, using)
    change = deletion.targets.setdefault(sender, LinkChange(using))
    for spec, field in registry.m2m_targets(sender):
        ends = Through.of(field)
        value = getattr(instance, ends.target.target_field.attname)
        if (field, value) in deletion.covered:
            continue
        if isinstance(origin, models.QuerySet) and origin.model is sender and (field, origin) not in deletion.covered:
            deletion.covered.add((field, origin))  # the deletion's own origin: kept alive by it anyway
            values = lock_targets(ends, using, origin)
        else:
            values = lock_targets(ends, using, None, value)
        deletion.covered.update((field, each) for each in values)
        rows = ends.model._base_manager.using(using).filter(**{f"{ends.target.attname}__in": values})
        owners = rows.values_list(ends.source.attname, flat=True).distinct()
        change.lock(spec, field, {f"{ends.owner_key}__in": list(owners)})


def target_post_delete(sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any) -> None:
    """Django sends a model's ``post_delete`` once all its rows of the deletion are deleted."""
    current = current_deletion(kwargs.get("origin"))
    if current is not None:
        change = current.targets.pop(sender, None)
        if change is not None:
            fields = {field for _, field in registry.m2m_targets(sender)}
            current.covered = {each for each in current.covered if each[0] not in fields}  # a delete() again
            change.record()


# --- the rows of a relation manager's own write ---------------------------------
#
# ``book.tags.add(t)`` is ``Book.tags.through.objects.bulk_create(...)`` between
# ``pre_add`` and ``post_add``, ``remove()``/``clear()`` a ``QuerySet.delete()``
# between ``pre_``/``post_`` signals, each inside an ``atomic()`` block of
# Django's own: ``m2m_changed`` records them. Its ``pre_`` receiver marks the
# write to come with that block; the write of the through model made while the
# block is open is the manager's (and takes the mark), any other is direct.

_relation_write: ContextVar[tuple[type[models.Model], Any] | None] = ContextVar(
    "audit_events_relation_write", default=None
)


def _mark_relation_write(through: type[models.Model], using: str) -> None:
    blocks = connections[using].atomic_blocks
    _relation_write.set((through, blocks[-1]) if blocks else None)


def by_relation_manager(model: type[models.Model], using: str) -> bool:
    """Whether this write of ``model`` is the one a relation manager's ``pre_`` signal announced."""
    mark = _relation_write.get()
    if mark is None or mark[0] is not model:
        return False
    _relation_write.set(None)
    return any(block is mark[1] for block in connections[using].atomic_blocks)
