"""Links written back by restore: each row's links made what its recorded state lists.

A symmetrical relation to the model itself (:func:`.links.mirrored`) holds
each link in both directions: restore writes both, the rows on the other end
recording the link they gain or lose. A registered explicit through model
restores its own rows (:func:`.through.through_row_restored` records the
links they give back): its field is left alone here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import models

from .. import registry
from ..encoding import JSONValue
from ..links import Through, mirrored
from .changes import LinkChange, lock_targets


def write_links(
    spec: registry.ModelSpec,
    pk: Any,
    state: dict[str, JSONValue],
    using: str,
    coming: Iterable[tuple[type[models.Model], Any]] = (),
) -> None:
    """Make the row's links exactly what ``state`` lists (for restore). Of a symmetrical relation to
    the model itself, both directions, the rows on the other end recording the link they gain or
    lose; but links to rows ``coming`` (restored after this one, in the same group) are left to
    theirs, which write both directions once both rows are there."""
    coming = list(coming)
    for field in spec.m2m_fields:
        if field.name not in state or _through_is_recorded(field):
            continue
        ends = Through.of(field)
        related = field.related_model
        assert isinstance(related, type)
        wanted = {related._meta.pk.to_python(value) for value in state[field.name]}
        if mirrored(field):
            wanted -= _later(related, coming)
        owner = _key_of(spec.model, ends.owner_key, [pk], using)[pk]
        others = _lock_mirrored(spec, field, owner, wanted, using) if mirrored(field) else None
        rows = ends.model._base_manager.using(using).filter(**{ends.source.attname: owner})
        rows.exclude(**{f"{ends.related_pk}__in": wanted}).delete()
        present = set(rows.values_list(ends.related_pk, flat=True))
        missing = sorted(wanted - present, key=str)
        targets = _key_of(related, ends.target.target_field.attname, missing, using)
        ends.model._base_manager.using(using).bulk_create(
            [ends.model(**{ends.source.attname: owner, ends.target.attname: targets[value]}) for value in missing]
        )
        if others is not None:
            _write_mirrored(ends, owner, *others)


def _later(related: type[models.Model], coming: list[tuple[type[models.Model], Any]]) -> set[Any]:
    """The keys of the rows of ``related`` among those ``coming``."""
    return {pk for model, pk in coming if issubclass(model, related)}


def _lock_mirrored(
    spec: registry.ModelSpec, field: Any, owner: Any, wanted: set[Any], using: str
) -> tuple[set[Any], LinkChange]:
    """For restore: the keys (as the through table holds them) of the rows a symmetrical relation
    to the model itself is to link ``owner`` to; and those rows, with the rows linked to it now,
    locked and read: each gains or loses its link to ``owner`` in the other direction."""
    ends = Through.of(field)
    keys = set(_key_of(ends.target.target_field.model, ends.target.target_field.attname, list(wanted), using).values())
    lock_targets(ends, using, None, owner)  # no link to it commits meanwhile (PostgreSQL)
    rows = ends.model._base_manager.using(using).filter(**{ends.target.attname: owner})
    change = LinkChange(using)
    change.lock_keys(spec, field, (keys | set(rows.values_list(ends.source.attname, flat=True))) - {owner})
    return keys, change


def _write_mirrored(ends: Through, owner: Any, keys: set[Any], change: LinkChange) -> None:
    """The other direction of the links :func:`write_links` wrote (Django keeps both), recorded on
    the rows on the other end, in the restore's operation."""
    rows = ends.model._base_manager.using(change.using).filter(**{ends.target.attname: owner})
    rows.exclude(**{f"{ends.source.attname}__in": keys}).delete()
    missing = sorted(keys - set(rows.values_list(ends.source.attname, flat=True)), key=str)
    ends.model._base_manager.using(change.using).bulk_create(
        [ends.model(**{ends.source.attname: key, ends.target.attname: owner}) for key in missing]
    )
    change.record()


def _key_of(model: type[models.Model], attname: str, pks: list[Any], using: str) -> dict[Any, Any]:
    """The value of ``attname`` (a ``to_field``) of each row, by pk; no query when it is the pk."""
    if attname == model._meta.pk.attname:
        return {pk: pk for pk in pks}
    return dict(model._base_manager.using(using).filter(pk__in=pks).values_list("pk", attname))


def missing_targets(
    spec: registry.ModelSpec,
    state: dict[str, JSONValue],
    using: str,
    coming: Iterable[tuple[type[models.Model], Any]] = (),
) -> list[str]:
    """Descriptions of related rows named in ``state`` that no longer exist; of a symmetrical
    relation to the model itself, nor are among the rows ``coming`` (restored in the same group,
    after this one: :func:`write_links`)."""
    coming = list(coming)
    problems = []
    for field in spec.m2m_fields:
        if field.name not in state or _through_is_recorded(field):
            continue
        related = field.related_model
        assert isinstance(related, type)
        wanted = {related._meta.pk.to_python(value) for value in state[field.name]}
        found = set(related._base_manager.using(using).filter(pk__in=wanted).values_list("pk", flat=True))
        if mirrored(field):
            found |= _later(related, coming)
        problems += [f"{field.name}: {related._meta.label} pk={pk}" for pk in sorted(wanted - found, key=str)]
    return problems


def _through_is_recorded(field: models.ManyToManyField[Any, Any]) -> bool:
    """An explicit through model that is registered records (and restores) its own rows."""
    through = field.remote_field.through
    return isinstance(through, type) and registry.spec_for(through) is not None
