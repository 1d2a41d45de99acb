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
from dataclasses import dataclass
from typing import Any

from django.db import models
from django.db.models import Aggregate, OuterRef, Subquery

from . import capture, journal, registry
from .context import is_paused
from .encoding import JSONValue, encode
from .models import Action
from .operations import operation

_BEFORE = "_audit_events_m2m"
State = dict[str, JSONValue]


@dataclass(frozen=True)
class _Through:
    """A many-to-many field's through table, and how its columns name the rows at either end.

    The through table holds each end's ``to_field`` value, which is the
    primary key unless the foreign key says otherwise; states hold primary keys.
    """

    model: type[models.Model]
    source: Any  # the through table's foreign key to the row declaring the field (the owner)
    target: Any  # its foreign key to the related row

    @classmethod
    def of(cls, field: models.ManyToManyField[Any, Any]) -> _Through:
        through = field.remote_field.through
        assert isinstance(through, type)
        meta = through._meta
        return cls(through, meta.get_field(field.m2m_field_name()), meta.get_field(field.m2m_reverse_field_name()))

    @property
    def owner_key(self) -> str:
        """The owner's attname the source column holds (its pk's, unless ``to_field`` names another)."""
        return str(self.source.target_field.attname)

    @property
    def related_pk(self) -> str:
        """The lookup, from a through row, of the related row's primary key (a join only for ``to_field``)."""
        if self.target.target_field.primary_key:
            return str(self.target.attname)
        return f"{self.target.name}__pk"


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
    ends = _Through.of(field)
    linked = ends.model._base_manager.filter(**{ends.source.attname: OuterRef(ends.owner_key)})
    pairs = linked.order_by().values(ends.source.attname)
    return Subquery(pairs.annotate(keys=_JSONKeys(ends.related_pk)).values("keys")[:1])


def decode_keys(field: models.ManyToManyField[Any, Any], text: str | None) -> list[JSONValue]:
    """What :func:`linked_keys` returned, as the sorted encoded pks a state holds."""
    target_pk = field.related_model._meta.pk
    values = json.loads(text) if text else []
    return sorted(encode(target_pk, target_pk.to_python(value)) for value in values)


_IN_CHUNK = 900  # keeps "pk IN (...)" under SQLite's 999 parameters


def read_links(
    spec: registry.ModelSpec,
    using: str,
    pks: list[Any],
    fields: Iterable[models.ManyToManyField[Any, Any]] | None = None,
) -> dict[Any, State]:
    """Each row's many-to-many links (of ``fields``, by default all), as a state holds them, by pk.

    Queries: one SELECT per 900 rows, each field a subquery of it. Read it
    once the rows are locked: a statement that starts after the lock is held
    sees the links other transactions committed before (``READ COMMITTED``).
    """
    fields = list(spec.m2m_fields if fields is None else fields)
    aliases = {f"_audit_links_{field.name}": linked_keys(field) for field in fields}
    links: dict[Any, State] = {}
    for start in range(0, len(pks), _IN_CHUNK):
        rows = spec.model._base_manager.using(using).filter(pk__in=pks[start : start + _IN_CHUNK]).order_by()
        for pk, *texts in rows.annotate(**aliases).values_list("pk", *aliases):
            links[pk] = {field.name: decode_keys(field, text) for field, text in zip(fields, texts, strict=True)}
    return links


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
        ends = _Through.of(field)
        related = field.related_model
        assert isinstance(related, type)
        wanted = {related._meta.pk.to_python(value) for value in state[field.name]}
        owner = _key_of(spec.model, ends.owner_key, [pk], using)[pk]
        rows = ends.model._base_manager.using(using).filter(**{ends.source.attname: owner})
        rows.exclude(**{f"{ends.related_pk}__in": wanted}).delete()
        present = set(rows.values_list(ends.related_pk, flat=True))
        missing = sorted(wanted - present, key=str)
        targets = _key_of(related, ends.target.target_field.attname, missing, using)
        ends.model._base_manager.using(using).bulk_create(
            [ends.model(**{ends.source.attname: owner, ends.target.attname: targets[value]}) for value in missing]
        )


def _key_of(model: type[models.Model], attname: str, pks: list[Any], using: str) -> dict[Any, Any]:
    """The value of ``attname`` (a ``to_field``) of each row, by pk; no query when it is the pk."""
    if attname == model._meta.pk.attname:
        return {pk: pk for pk in pks}
    return dict(model._base_manager.using(using).filter(pk__in=pks).values_list("pk", attname))


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
) -> dict[str, Any]:
    """The lookup of the rows declaring ``field`` whose links the change touches.

    From the related side, ``pk_set`` holds their ``to_field`` values, as the
    through table does; without it (``clear()``, a related row deleted) they
    are the rows linked to ``instance`` now.
    """
    if not reverse:
        return {"pk__in": [instance.pk]}
    ends = _Through.of(field)
    if pk_set is None:
        rows = ends.model._base_manager.using(using).filter(
            **{ends.target.attname: getattr(instance, ends.target.target_field.attname)}
        )
        pk_set = rows.values_list(ends.source.attname, flat=True).distinct()
    return {f"{ends.owner_key}__in": list(pk_set)}


def _check_keys(field: models.ManyToManyField[Any, Any], reverse: bool, pk_set: Any) -> None:
    """Fail on a key ``remove()`` was given that is not one, as Django would, before any query.

    Django checks them only after ``pre_remove``, by the lookup built here (no
    query): a query of ours first would fail instead, with another error,
    in a transaction already marked for rollback.
    """
    ends = _Through.of(field)
    ends.model._base_manager.filter(**{f"{(ends.source if reverse else ends.target).name}__in": list(pk_set)})


def _remember(
    instance: models.Model, key: Any, spec: registry.ModelSpec, field: Any, owners: dict[str, Any], using: str
) -> None:
    rows = capture.lock_rows(spec, using, owners)
    if rows:
        instance.__dict__.setdefault(_BEFORE, {})[key] = rows


def _record(instance: models.Model, key: Any, spec: registry.ModelSpec, field: Any, using: str) -> None:
    rows = instance.__dict__.get(_BEFORE, {}).pop(key, None)
    if rows is None:
        return
    after = read_links(spec, using, list(rows), [field])  # the owners are locked: see lock_rows
    with operation():
        drafts = []
        for pk, state in rows.items():
            now = after.get(pk, {}).get(field.name)
            if now is None or state[field.name] == now:
                continue
            changes = {field.name: [state[field.name], now]}
            snapshot = {**state, field.name: now}
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
        if action == "pre_remove":
            _check_keys(field, reverse, pk_set)
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
