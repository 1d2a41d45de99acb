"""Reading a row's links, and the through table's ends that name them.

Links are read once the owning rows are locked, by a statement of its own
(:func:`read_links`): under READ COMMITTED it sees what a writer committed
while this one waited for the lock (a subquery of the locking statement would
keep the snapshot it started with). "After" links are read after the write,
the owners still locked.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import models
from django.db.models import Aggregate, OuterRef, Subquery

from . import registry
from .encoding import JSONValue, State, encode


@dataclass(frozen=True)
class Through:
    """A many-to-many field's through table, and how its columns name the rows at either end.

    The through table holds each end's ``to_field`` value, which is the
    primary key unless the foreign key says otherwise; states hold primary keys.
    """

    model: type[models.Model]
    source: Any  # the through table's foreign key to the row declaring the field (the owner)
    target: Any  # its foreign key to the related row

    @classmethod
    def of(cls, field: models.ManyToManyField[Any, Any]) -> Through:
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
    ends = Through.of(field)
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
        # A plain queryset: the base manager's ordering or annotations are not the rows'.
        rows: models.QuerySet[Any] = models.QuerySet(spec.model, using=using)
        rows = rows.filter(pk__in=pks[start : start + _IN_CHUNK]).order_by()
        for pk, *texts in rows.annotate(**aliases).values_list("pk", *aliases):
            links[pk] = {field.name: decode_keys(field, text) for field, text in zip(fields, texts, strict=True)}
    return links


def without_links(spec: registry.ModelSpec, state: dict[str, JSONValue]) -> dict[str, JSONValue]:
    """The state of a row just created: no links yet (no query)."""
    if not spec.m2m_fields:
        return state
    return {**state, **{field.name: [] for field in spec.m2m_fields}}


def mirrored(field: models.ManyToManyField[Any, Any]) -> bool:
    """Whether Django writes each link of ``field`` in both directions: a symmetrical relation
    to its own model (``ManyToManyField("self")``), its through table auto-created or explicit."""
    return bool(field.remote_field.symmetrical) and field.related_model is field.model
