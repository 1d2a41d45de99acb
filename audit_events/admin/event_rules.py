"""Which events the Event admin lists for a user, and which of their values it shows.

An event carries a row's values, so the Event admin asks the admin of the
row's model on the same site, as the audit pages do (:mod:`.rules`):

* the model: its admin's ``has_view_or_change_permission(request)`` (superusers
  only when it has no admin there: its admin on another site may hide rows);
* the row, in SQL (lists, counts, filters and pages agree): when that admin's
  ``get_queryset(request)`` leaves rows out, only the events of the rows it
  holds, compared by the key's text, and none of a deleted row, which it
  cannot see;
* the values, per page: ``has_view_or_change_permission(request, obj)`` on the
  live row, or the deleted row's rule on its last recorded state; and only the
  fields its change form shows.

A key can be reused: a natural key (a code, a slug) deleted and then created
again names a new row, and the events before that row's latest (re)creation
belong to earlier rows with that key (:func:`earlier_rows`). A row is
(re)created by a ``create`` event or by a ``restore`` event that brings the
deleted key back (the key's previous event is a ``delete``): ``restore(M, pk,
at=…)`` may bring back a row older than the one deleted last, so the events in
between are never taken for the live row's. Each earlier row
is judged as a deleted row, on the state its deletion recorded; for a model
whose admin filters rows, the list holds only the events of a live row's
latest (re)creation and after.

Queries: the SQL filter adds none (it is part of the list's own queries);
judging a page costs one query per model on it for its live rows, one for
its deleted rows and one for keys reused by a later row (one more when a key
on the page was reused), whatever the number of events.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.db.models.functions import Cast
from django.http import HttpRequest

from .. import registry
from ..deletions import deleted
from ..encoding import converts, value_field
from ..models import Action, Event
from ..replay import instance_from_state
from . import rules

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
        if not rules.may(request, site, spec.model, "view"):
            continue
        admin = rules.model_admin(site, spec.model)
        queryset = admin.get_queryset(request) if admin is not None else None
        if queryset is None or not rules.filters_rows(queryset):
            open_models.append(content_type_id)
            continue
        keys = _keys(spec, queryset)
        if keys is not None:  # else no event of it: its rows cannot be compared in SQL
            # A live row's events from its latest (re)creation on: the earlier ones are of deleted rows with its key.
            rows |= Q(Q(content_type_id=content_type_id, object_pk__in=keys), ~Exists(_recreated_later()))
    user: Any = request.user
    if user.is_superuser and len(open_models) == len(every):
        return Q()  # every event: no filter to pay for
    allowed = Q(content_type_id__in=open_models) | rows
    if user.is_superuser:
        allowed |= ~Q(content_type_id__in=every)
    return allowed


def _recreated_later() -> models.QuerySet[Event]:
    """A later (re)creation of the event's key: the event belongs to an earlier row with that key (index
    lookups)."""
    return Event.objects.filter(
        recreates(),
        content_type_id=OuterRef("content_type_id"),
        object_pk=OuterRef("object_pk"),
        version__gt=OuterRef("version"),
    )


def recreates() -> Q:
    """The events that start a row under a key: a ``create``, or a ``restore`` whose previous event of the
    key is its deletion and that brings back another state than the deleted row's (``restore(at=)`` of an
    earlier row). A ``restore`` of a live row only overwrites it; the undo of a deletion brings the same
    row back, in the state it was deleted in, and its history goes on."""
    deleted_just_before = Event.objects.filter(
        content_type_id=OuterRef("content_type_id"),
        object_pk=OuterRef("object_pk"),
        version=OuterRef("version") - 1,
        action=Action.DELETE,
    ).exclude(state=OuterRef("state"))
    return Q(action=Action.CREATE) | Q(Exists(deleted_just_before), action=Action.RESTORE)


@dataclass(frozen=True)
class EarlierRow:
    """A row that had a key before a later row took it: its events are those before ``until`` (a version)."""

    until: int
    deletion: Event | None  # the deletion that ended it, if recorded (its state is the row as it was)


def earlier_rows(content_type_id: int, object_pks: Collection[str]) -> dict[str, list[EarlierRow]]:
    """For each key (re)created after its first event (:func:`recreates`), the rows that held it before, oldest
    first.

    Queries: one; one more (the deletions of those keys) when a key was reused.
    """
    creates = Event.objects.filter(
        recreates(), content_type_id=content_type_id, object_pk__in=list(object_pks), version__gt=1
    ).values_list("object_pk", "version")
    starts: dict[str, list[int]] = defaultdict(list)
    for object_pk, version in creates:
        starts[object_pk].append(version)
    if not starts:
        return {}
    deletions: dict[str, list[Event]] = defaultdict(list)
    ended = Event.objects.filter(content_type_id=content_type_id, object_pk__in=list(starts), action=Action.DELETE)
    for event in ended.order_by("version"):
        deletions[event.object_pk].append(event)
    found: dict[str, list[EarlierRow]] = {}
    for object_pk, versions in starts.items():
        rows, since = [], 1
        for until in sorted(versions):
            ending = [d for d in deletions[object_pk] if since <= d.version < until]
            rows.append(EarlierRow(until, ending[-1] if ending else None))
            since = until
        found[object_pk] = rows
    return found


def earlier_row(rows: list[EarlierRow], version: int) -> EarlierRow | None:
    """The earlier row the event ``version`` of a key belongs to, or ``None`` for the key's latest row."""
    return next((row for row in rows if version < row.until), None)


def judge_earlier(
    request: HttpRequest, site: AdminSite, model: type[models.Model], row: EarlierRow, restricted: bool | None = None
) -> RowView:
    """What the user may see of an earlier row's events: the deleted-row rule, on the state its deletion recorded
    (none recorded: nothing to judge it by, hidden)."""
    spec = registry.spec_for(model)
    if spec is None or row.deletion is None or row.deletion.state is None:
        return HIDDEN
    obj = instance_from_state(model, spec, row.deletion.state)
    if not rules.may_view_deleted(request, site, model, obj, restricted):
        return HIDDEN
    admin = rules.model_admin(site, model)
    return RowView(True, frozenset(rules.visible_fields(admin, request, obj)) if admin is not None else None)


def event_views(request: HttpRequest, site: AdminSite, events: Iterable[Event]) -> dict[int, RowView]:
    """What the user may see of each event, by its id: :func:`row_views` of its key, or, for an event of an
    earlier row with that key, :func:`judge_earlier` of that row."""
    events = list(events)
    views = row_views(request, site, events)
    keys: dict[int, set[str]] = defaultdict(set)
    for event in events:
        keys[event.content_type_id].add(event.object_pk)
    earlier: dict[tuple[int, str], list[EarlierRow]] = {}
    for content_type_id, object_pks in keys.items():
        for object_pk, rows in earlier_rows(content_type_id, object_pks).items():
            earlier[(content_type_id, object_pk)] = rows
    judged: dict[tuple[int, str, int], RowView] = {}
    found: dict[int, RowView] = {}
    for event in events:
        key = (event.content_type_id, event.object_pk)
        row = earlier_row(earlier.get(key, []), event.version)
        if row is None:
            found[event.pk] = views[key]
            continue
        if (*key, row.until) not in judged:
            model = ContentType.objects.get_for_id(event.content_type_id).model_class()
            judged[(*key, row.until)] = HIDDEN if model is None else judge_earlier(request, site, model, row)
        found[event.pk] = judged[(*key, row.until)]
    return found


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
        admin = rules.model_admin(site, model) if model is not None else None
        if model is None or spec is None or admin is None:
            # No admin to ask about rows: superusers only (the list holds no other event).
            view = RowView(viewable=model is None or rules.may(request, site, model, "view"))
            views.update({(content_type_id, pk): view for pk in object_pks})
            continue
        for pk, view in _judge(request, site, admin, spec, object_pks).items():
            views[(content_type_id, pk)] = view
    return views


def _judge(
    request: HttpRequest, site: AdminSite, admin: ModelAdmin[Any], spec: registry.ModelSpec, object_pks: set[str]
) -> dict[str, RowView]:
    live, gone = _rows(request, admin, spec, object_pks)
    restricted = rules.filters_rows(admin.get_queryset(request)) if gone else None
    per_row = rules.fields_per_row(admin)
    fields: frozenset[str] | None = None
    views: dict[str, RowView] = {}
    for object_pk in object_pks:
        if object_pk in live:
            obj = live[object_pk]
            viewable = admin.has_view_or_change_permission(request, obj)
        elif object_pk in gone:
            obj = gone[object_pk]
            viewable = rules.may_view_deleted(request, site, spec.model, obj, restricted)
        else:  # neither in get_queryset() nor deleted: nothing to judge it by
            viewable = False
        if not viewable:
            views[object_pk] = HIDDEN
            continue
        if fields is None or per_row:  # each call builds a form class (about a millisecond): once, if it can
            fields = frozenset(rules.visible_fields(admin, request, obj))
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
