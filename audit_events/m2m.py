"""Many-to-many links, recorded on the row that declares the field.

``book.tags.add(t)`` and ``tag.books.add(book)`` both record an ``update`` of
the book: ``{"tags": [[1, 2], [1, 2, 5]]}``, the sorted related primary keys
before and after. Full states carry each many-to-many field the same way, so
replay and restore bring links back.

Deleting a related row (a tag) removes links without any signal for the
through table; the target model's delete signals are used to record it.

Cost of one ``add``/``remove``/``set``/``clear`` call: one locking SELECT of
the owning rows and one SELECT of their links before, one SELECT of the links
after, one INSERT of events.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import models

from . import capture, journal, registry
from .context import is_paused
from .encoding import JSONValue, encode
from .models import Action
from .operations import operation

_BEFORE = "_audit_events_m2m"


def _columns(field: models.ManyToManyField[Any, Any]) -> tuple[type[models.Model], str, str]:
    through = field.remote_field.through
    assert isinstance(through, type)
    source = through._meta.get_field(field.m2m_field_name()).attname  # type: ignore[union-attr]
    target = through._meta.get_field(field.m2m_reverse_field_name()).attname  # type: ignore[union-attr]
    return through, source, target


def read_links(
    field: models.ManyToManyField[Any, Any], using: str, owners: Iterable[Any]
) -> dict[Any, list[JSONValue]]:
    """The sorted related pks of each owner, encoded. Queries: one SELECT."""
    through, source, target = _columns(field)
    target_pk = field.related_model._meta.pk
    links: dict[Any, list[JSONValue]] = {pk: [] for pk in owners}
    if links:
        pairs = through._base_manager.using(using).filter(**{f"{source}__in": list(links)})
        for owner, related in pairs.values_list(source, target):
            links[owner].append(encode(target_pk, related))
    return {owner: sorted(values) for owner, values in links.items()}


def complete(
    spec: registry.ModelSpec, using: str, states: dict[Any, dict[str, JSONValue]], new_rows: bool = False
) -> None:
    """Add every many-to-many field to full states (new rows have no links: no query)."""
    for field in spec.m2m_fields:
        links = {pk: [] for pk in states} if new_rows else read_links(field, using, states)
        for pk, state in states.items():
            state[field.name] = links.get(pk, [])


def write_links(spec: registry.ModelSpec, pk: Any, state: dict[str, JSONValue], using: str) -> None:
    """Make the row's links exactly what ``state`` lists (for restore)."""
    for field in spec.m2m_fields:
        if field.name not in state or _through_is_recorded(field):
            continue
        through, source, target = _columns(field)
        target_pk = field.related_model._meta.pk
        wanted = {target_pk.to_python(value) for value in state[field.name]}
        rows = through._base_manager.using(using).filter(**{source: pk})
        rows.exclude(**{f"{target}__in": wanted}).delete()
        present = set(rows.values_list(target, flat=True))
        through._base_manager.using(using).bulk_create(
            [through(**{source: pk, target: value}) for value in sorted(wanted - present, key=str)]
        )


def missing_targets(spec: registry.ModelSpec, state: dict[str, JSONValue], using: str) -> list[str]:
    """Descriptions of related rows named in ``state`` that no longer exist."""
    problems = []
    for field in spec.m2m_fields:
        if field.name not in state or _through_is_recorded(field):
            continue
        related = field.related_model
        assert isinstance(related, type)
        wanted = {related._meta.pk.to_python(value) for value in state[field.name]}
        found = set(related._base_manager.using(using).filter(pk__in=wanted).values_list("pk", flat=True))
        problems += [f"{field.name}: {related._meta.label} pk={pk}" for pk in sorted(wanted - found, key=str)]
    return problems


def _through_is_recorded(field: models.ManyToManyField[Any, Any]) -> bool:
    """An explicit through model that is registered records (and restores) its own rows."""
    through = field.remote_field.through
    return isinstance(through, type) and registry.spec_for(through) is not None


# --- signal receivers ---------------------------------------------------


def _owners(
    field: models.ManyToManyField[Any, Any], instance: models.Model, reverse: bool, pk_set: Any, using: str
) -> list[Any]:
    if not reverse:
        return [instance.pk]
    if pk_set is not None:
        return list(pk_set)
    through, source, target = _columns(field)
    rows = through._base_manager.using(using).filter(**{target: instance.pk})
    return list(rows.values_list(source, flat=True).distinct())


def _remember(
    instance: models.Model, key: Any, spec: registry.ModelSpec, field: Any, owners: list[Any], using: str
) -> None:
    rows = capture.locked_rows(spec, using, {"pk__in": owners})
    if rows:
        before = read_links(field, using, rows)
        instance.__dict__.setdefault(_BEFORE, {})[key] = (rows, before)


def _record(instance: models.Model, key: Any, spec: registry.ModelSpec, field: Any, using: str) -> None:
    rows, before = instance.__dict__.get(_BEFORE, {}).pop(key, (None, None))
    if rows is None:
        return
    after = read_links(field, using, rows)
    with operation():
        drafts = []
        for pk, (state, last_version) in rows.items():
            if before[pk] == after[pk]:
                continue
            snapshot = None
            if capture.should_snapshot(last_version):
                snapshot = dict(state)
                complete(spec, using, {pk: snapshot})
            changes = {field.name: [before[pk], after[pk]]}
            drafts.append(capture.draft(spec, pk, Action.UPDATE, changes=changes, state=snapshot))
        journal.write(drafts, using)


def m2m_changed(
    sender: type[models.Model],
    instance: models.Model,
    action: str,
    reverse: bool,
    pk_set: Any,
    using: str,
    **kwargs: Any,
) -> None:
    if is_paused():
        return
    for spec, field in registry.m2m_links(sender):
        key = (sender, field.name)
        if action.startswith("pre_"):
            _remember(instance, key, spec, field, _owners(field, instance, reverse, pk_set, using), using)
        else:
            _record(instance, key, spec, field, using)


def target_pre_delete(sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any) -> None:
    """A related row is being deleted: its links vanish with it, without a signal of their own."""
    if is_paused():
        return
    for spec, field in registry.m2m_targets(sender):
        key = ("delete", field.model, field.name)
        _remember(instance, key, spec, field, _owners(field, instance, True, None, using), using)


def target_post_delete(sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any) -> None:
    for spec, field in registry.m2m_targets(sender):
        _record(instance, ("delete", field.model, field.name), spec, field, using)
