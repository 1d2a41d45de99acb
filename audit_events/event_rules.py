"""Which events the Event admin lists for a user, and which of their values it shows.

An event carries a row's values, so the Event admin asks the admin of the
row's model on the same site, as the audit pages do (``admin_rules``):

* the model: its admin's ``has_view_or_change_permission(request)`` (the user's
  model permission when it has no admin there);
* the row, in SQL (lists, counts, filters and pages agree): when that admin's
  ``get_queryset(request)`` leaves rows out, only the events of the rows it
  holds, compared by the key's text, and none of a deleted row, which it
  cannot see;
* the values, per page: ``has_view_or_change_permission(request, obj)`` on the
  live row, or the deleted row's rule on its last recorded state; and only the
  fields its change form shows.

Queries: the SQL filter adds none (it is part of the list's own queries);
judging a page costs one query per model on it for its live rows and one for
its deleted rows, whatever the number of events.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.db.models.functions import Cast
from django.http import HttpRequest

from . import admin_rules, registry
from .deletions import deleted
from .encoding import converts, value_field
from .models import Event
from .replay import instance_from_state

if TYPE_CHECKING:
    from django.contrib.admin import AdminSite, ModelAdmin


@dataclass(frozen=True)
class RowView:
    """What the user may see of one row's events: its values at all, and which fields (``None``: every field)."""

    viewable: bool
    fields: frozenset[str] | None = None


HIDDEN = RowView(viewable=False, fields=frozenset())


def visible_events(request: HttpRequest, site: AdminSite) -> Q:
    """The events the user may list on ``site``: of the models they may view, of the rows those admins show.

    Events of a model no longer recorded have no admin rule to ask: only
    superusers see them.
    """
    every = []
    open_models = []
    rows = Q(pk__in=[])  # none
    for spec in registry.registered_specs():
        content_type_id = spec.content_type_id()
        every.append(content_type_id)
        if not admin_rules.may(request, site, spec.model, "view"):
            continue
        admin = admin_rules.model_admin(site, spec.model)
        queryset = admin.get_queryset(request) if admin is not None else None
        if queryset is None or not admin_rules.filters_rows(queryset):
            open_models.append(content_type_id)
            continue
        keys = _keys(spec, queryset)
        if keys is not None:  # else no event of it: its rows cannot be compared in SQL
            rows |= Q(content_type_id=content_type_id, object_pk__in=keys)
    user: Any = request.user
    if user.is_superuser and len(open_models) == len(every):
        return Q()  # every event: no filter to pay for
    allowed = Q(content_type_id__in=open_models) | rows
    if user.is_superuser:
        allowed |= ~Q(content_type_id__in=every)
    return allowed


def _keys(spec: registry.ModelSpec, queryset: models.QuerySet[Any]) -> models.QuerySet[Any] | None:
    """The keys of ``queryset``'s rows as the text ``Event.object_pk`` holds, or ``None`` for a key whose
    column is not stored as that text (a composite key, a UUID, a field converting its values)."""
    field = value_field(spec.pk_field)
    plain = isinstance(field, models.IntegerField | models.CharField | models.TextField) and not converts(field)
    if getattr(spec.pk_field, "fields", None) or not plain or queryset.query.is_sliced or queryset.query.combinator:
        return None
    return queryset.order_by().values_list(Cast("pk", models.TextField()), flat=True)


def row_views(request: HttpRequest, site: AdminSite, events: Iterable[Event]) -> dict[tuple[int, str], RowView]:
    """What the user may see of each event's row, by ``(content_type_id, object_pk)``.

    Queries: per model, one for its live rows (through its admin's
    ``get_queryset()``) and one for the last states of its deleted rows.
    """
    keys: dict[int, set[str]] = defaultdict(set)
    for event in events:
        keys[event.content_type_id].add(event.object_pk)
    views: dict[tuple[int, str], RowView] = {}
    for content_type_id, object_pks in keys.items():
        model = ContentType.objects.get_for_id(content_type_id).model_class()
        spec = registry.spec_for(model) if model is not None else None
        admin = admin_rules.model_admin(site, model) if model is not None else None
        if model is None or spec is None or admin is None:
            # No admin to ask about rows: the model permission (the list holds no other event).
            view = RowView(viewable=model is None or admin_rules.may(request, site, model, "view"))
            views.update({(content_type_id, pk): view for pk in object_pks})
            continue
        for pk, view in _judge(request, site, admin, spec, object_pks).items():
            views[(content_type_id, pk)] = view
    return views


def _judge(
    request: HttpRequest, site: AdminSite, admin: ModelAdmin[Any], spec: registry.ModelSpec, object_pks: set[str]
) -> dict[str, RowView]:
    live, gone = _rows(request, admin, spec, object_pks)
    restricted = admin_rules.filters_rows(admin.get_queryset(request)) if gone else None
    per_row = admin_rules.fields_per_row(admin)
    fields: frozenset[str] | None = None
    views: dict[str, RowView] = {}
    for object_pk in object_pks:
        if object_pk in live:
            obj = live[object_pk]
            viewable = admin.has_view_or_change_permission(request, obj)
        elif object_pk in gone:
            obj = gone[object_pk]
            viewable = admin_rules.may_view_deleted(request, site, spec.model, obj, restricted)
        else:  # neither in get_queryset() nor deleted: nothing to judge it by
            viewable = False
        if not viewable:
            views[object_pk] = HIDDEN
            continue
        if fields is None or per_row:  # each call builds a form class (about a millisecond): once, if it can
            fields = frozenset(admin_rules.visible_fields(admin, request, obj))
        views[object_pk] = RowView(True, fields)
    return views


def _rows(
    request: HttpRequest, admin: ModelAdmin[Any], spec: registry.ModelSpec, object_pks: set[str]
) -> tuple[dict[str, models.Model], dict[str, models.Model]]:
    """The live rows ``admin.get_queryset(request)`` holds, and the deleted rows rebuilt from their last
    state, by ``object_pk``: two queries."""
    pks = {}
    for object_pk in object_pks:
        try:
            pks[object_pk] = spec.pk_field.to_python(object_pk)
        except (ValidationError, ValueError, TypeError):
            continue
    live = {spec.object_pk(obj.pk): obj for obj in admin.get_queryset(request).filter(pk__in=list(pks.values()))}
    missing = [object_pk for object_pk in pks if object_pk not in live]
    gone = {}
    if missing:
        for event in deleted(spec.model).filter(object_pk__in=missing, state__isnull=False):
            gone[event.object_pk] = instance_from_state(spec.model, spec, event.state or {})
    return live, gone
