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

import json
from collections.abc import Iterable
from typing import Any

from django.db import models
from django.db.models import Aggregate, OuterRef, Subquery

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


class _JSONKeys(Aggregate):
    """The aggregated values as JSON array text (order unspecified: callers sort)."""

    function = "JSON_GROUP_ARRAY"  # SQLite
    output_field = models.TextField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, template="CAST(JSONB_AGG(%(expressions)s) AS text)", **extra)

    def as_mysql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, function="JSON_ARRAYAGG", **extra)


def linked_keys(field: models.ManyToManyField[Any, Any]) -> Subquery:
    """A subquery of the outer row's related pks, as JSON text (``None`` when it has none)."""
    through, source, target = _columns(field)
    pairs = through._base_manager.filter(**{source: OuterRef("pk")}).order_by().values(source)
    return Subquery(pairs.annotate(keys=_JSONKeys(target)).values("keys")[:1])


def decode_keys(field: models.ManyToManyField[Any, Any], text: str | None) -> list[JSONValue]:
    """What :func:`linked_keys` returned, as the sorted encoded pks a state holds."""
    target_pk = field.related_model._meta.pk
    values = json.loads(text) if text else []
    return sorted(encode(target_pk, target_pk.to_python(value)) for value in values)


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


def without_links(spec: registry.ModelSpec, state: dict[str, JSONValue]) -> dict[str, JSONValue]:
    """The state of a row just created: no links yet (no query)."""
    if not spec.m2m_fields:
        return state
    return {**state, **{field.name: [] for field in spec.m2m_fields}}


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
    rows = capture.lock_rows(spec, using, {"pk__in": owners})
    if rows:
        instance.__dict__.setdefault(_BEFORE, {})[key] = rows


def _record(instance: models.Model, key: Any, spec: registry.ModelSpec, field: Any, using: str) -> None:
    rows = instance.__dict__.get(_BEFORE, {}).pop(key, None)
    if rows is None:
        return
    after = read_links(field, using, rows)
    with operation():
        drafts = []
        for pk, state in rows.items():
            if state[field.name] == after[pk]:
                continue
            changes = {field.name: [state[field.name], after[pk]]}
            snapshot = {**state, field.name: after[pk]}
            drafts.append(capture.draft(spec, pk, Action.UPDATE, changes=changes, snapshot=snapshot))
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
