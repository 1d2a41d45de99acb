"""The Event changelist's parts: its filters, its change list, its date hierarchy and the lookups it allows.

Each is served by an index or the ContentType cache, so the list stays fast on
millions of events; what the user may see of each event is :mod:`.event_rules`'.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db import models
from django.db.models import Exists, OuterRef
from django.db.models.expressions import Col
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from .. import registry
from ..models import Action, Event, EventQuerySet
from . import event_rules, rules


class ModelFilter(admin.SimpleListFilter):
    """Registered models only: listing them reads no events (a plain ``content_type`` filter would)."""

    title = _("model")
    parameter_name = "model"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        site = model_admin.admin_site
        viewable = [spec for spec in registry.registered_specs() if rules.may(request, site, spec.model, "view")]
        specs = sorted(viewable, key=lambda spec: spec.label)
        return [(str(spec.content_type_id()), str(spec.model._meta.verbose_name_plural)) for spec in specs]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(content_type_id=int(value))
        return queryset


def _later() -> Exists:
    """Whether the event's row was written after it: for a deletion, that it was undone (index lookup)."""
    later = Event.objects.filter(
        content_type_id=OuterRef("content_type_id"), object_pk=OuterRef("object_pk"), version__gt=OuterRef("version")
    )
    return Exists(later)


class DeletionFilter(admin.SimpleListFilter):
    """Deletions still in force, or undone since (by undo delete or a restore)."""

    title = _("deletion")
    parameter_name = "deletion"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("deleted", _("still deleted")), ("undone", _("undone since"))]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        if self.value() == "deleted":
            return queryset.filter(action=Action.DELETE).filter(~_later())
        if self.value() == "undone":
            return queryset.filter(action=Action.DELETE).filter(_later())
        return queryset


class EventChangeList(ChangeList):
    """Marks what the user may see of each event's row, and the page's deletions that were undone since:
    a few queries for the page (one or two per model on it), not one per row."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        views = event_rules.event_views(request, self.model_admin.admin_site, self.result_list)
        for event in self.result_list:  # as an annotation would: an attribute of the page's instances
            event.row_view = views[event.pk]
        deletions = [e for e in self.result_list if e.action == Action.DELETE]
        if not deletions:
            return
        rows = Event.objects.filter(
            content_type_id__in={e.content_type_id for e in deletions}, object_pk__in={e.object_pk for e in deletions}
        ).values_list("content_type_id", "object_pk", "version")
        latest: dict[tuple[int, str], int] = {}
        for content_type_id, object_pk, version in rows:
            latest[(content_type_id, object_pk)] = max(version, latest.get((content_type_id, object_pk), 0))
        for event in deletions:  # as an annotation would: an attribute of the page's instances
            event.undone = latest[(event.content_type_id, event.object_pk)] > event.version


class EventQuerySetForAdmin(EventQuerySet):
    """The date hierarchy without ``SELECT DISTINCT`` over every event.

    Django builds the hierarchy from ``datetimes()``, which scans the whole
    (filtered) table; here the periods are spanned from the earliest and
    latest event (:func:`_span`, index lookups). A period with no event shows
    an empty page.
    """

    def datetimes(self, field_name: str, kind: str, *args: Any, **kwargs: Any) -> Any:
        span = _span(self, field_name)
        if span is None:
            return []
        first, last = (_local(span[0]), _local(span[1]))
        if kind == "year":
            return [first.replace(year=year, month=1, day=1) for year in range(first.year, last.year + 1)]
        if kind == "month":
            return [first.replace(month=month, day=1) for month in range(first.month, last.month + 1)]
        day = first.replace(hour=0, minute=0, second=0, microsecond=0)
        days = []
        while day <= last:
            days.append(day)
            day += datetime.timedelta(days=1)
        return days


def _span(queryset: models.QuerySet[Event], field_name: str) -> tuple[datetime.datetime, datetime.datetime] | None:
    """The earliest and latest time of the events, without reading them all.

    On PostgreSQL the time's index is a BRIN index (migration 0009), which
    finds a range of time (a few block ranges) but gives no ``MIN()`` by
    itself. Where the list is filtered by time (the hierarchy's year, month,
    day), ``MIN()`` and ``MAX()`` read that range. Otherwise the first and
    last event by id bound the answer (events are written in time order, but
    an importer's are older): the earliest time is at most the first event's,
    so it is looked for only among the events up to that time, a few block
    ranges; the latest likewise. Primary-key and index lookups either way.
    """
    if _filters_on(queryset, field_name):
        span = queryset.aggregate(first=models.Min(field_name), last=models.Max(field_name))
        return None if span["first"] is None else (span["first"], span["last"])
    by_id = queryset.order_by("pk").values_list(field_name, flat=True)
    first, last = by_id.first(), by_id.last()
    if first is None or last is None:
        return None
    earliest = queryset.filter(**{f"{field_name}__lte": first}).aggregate(at=models.Min(field_name))["at"]
    latest = queryset.filter(**{f"{field_name}__gte": last}).aggregate(at=models.Max(field_name))["at"]
    return earliest, latest


def _filters_on(queryset: models.QuerySet[Event], field_name: str) -> bool:
    """Whether the queryset's ``WHERE`` reads the column of ``field_name``."""
    nodes = (node for lookup in queryset.query.where.leaves() for node in lookup.flatten())
    return any(isinstance(node, Col) and node.target.name == field_name for node in nodes)


def _local(moment: datetime.datetime) -> datetime.datetime:
    from django.utils import timezone

    return timezone.localtime(moment) if timezone.is_aware(moment) else moment


# The URL lookups the Event changelist accepts: its filters (action, model, deletion, the date hierarchy), the
# links it makes (a row's events, an operation's events) and the actor; never a lookup into changes, state or
# context, whose values the pages show only field by field, to users allowed to see them.
ALLOWED_LOOKUPS = frozenset(
    {
        ModelFilter.parameter_name,
        DeletionFilter.parameter_name,
        *(f"action{s}" for s in ("", "__exact", "__in", "__isnull")),
        *(f"content_type{s}" for s in ("", "__exact", "__id__exact", "_id", "_id__exact", "_id__in")),
        *(f"object_pk{s}" for s in ("", "__exact", "__in")),
        *(f"operation{s}" for s in ("", "__exact")),
        *(f"actor_id{s}" for s in ("", "__exact", "__in")),
        *(f"created_at__{s}" for s in ("gte", "gt", "lte", "lt", "range", "date", "year", "month", "day")),
    }
)
