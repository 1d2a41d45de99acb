"""The audit views of one row: its history (its recorded events), and restoring one of its versions.

Both judge the row as :mod:`.pages` says; a version is restored with the
fields this user cannot edit in the change form kept at their current value.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page
from django.db import router, transaction
from django.db.models import Q, Subquery
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _

from .. import registry, rows
from ..context import audit_context
from ..encoding import State
from ..exceptions import NoHistory, RestoreError
from ..models import Action, Event, EventQuerySet
from ..replay import fold
from ..restoration import restore_fields
from . import diffs, event_rules, forms, rules
from .pages import PER_PAGE, AuditPages, CappedPaginator
from .values import Values, want_events


class HistoryViews(AuditPages):
    """The "History" page of a row and its "Restore this version" pages."""

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if registry.spec_for(self.model) is None:  # not recorded: Django's own history of admin actions
            return super().history_view(request, object_id, extra_context)
        spec = self._spec()
        # Answered as Django's history_view answers: a row this admin does not show is "missing", a row it
        # shows but the user may not view is a 403. A deleted row is judged on its last recorded state.
        obj, gone = self._row(request, object_id)
        row = obj if obj is not None else gone
        if row is None:
            return self._missing(request, object_id)
        if not self.has_view_or_change_permission(request, row):
            raise PermissionDenied
        pk = self._object_pk(spec, object_id)
        events = Event.objects.filter(content_type_id=spec.content_type_id(), object_pk=pk)
        # Events before the row's latest (re)creation are of earlier rows with its key: each is judged as a deleted
        # row, and left out when the user may not view it.
        earlier, views = self._earlier_rows(request, spec, pk)
        events = _without_hidden(events, earlier, views)
        page = CappedPaginator(events.select_related("content_type").order_by("-version"), PER_PAGE).get_page(
            request.GET.get("p")
        )
        rows = self._history_rows(request, object_id, row, page, earlier, views, self._may_restore(request, obj, gone))
        deletion = self._deletion(spec, pk) if gone is not None else None
        context = {
            **self._context(request, _("History: %s") % row, [*self._row_crumbs(obj, row), (_("History"), None)]),
            "object": obj,
            "object_label": str(row),
            "rows": rows,
            "page": page,
            "undo_url": self._url("audit_undo", deletion.pk)
            if deletion is not None and self.has_add_permission(request)
            else None,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "audit_events/object_history.html", context)

    def _history_rows(
        self,
        request: HttpRequest,
        object_id: str,
        row: Any,
        page: Page[Event],
        earlier: list[event_rules.EarlierRow],
        views: dict[int, event_rules.RowView],
        can_restore: bool,
    ) -> list[dict[str, Any]]:
        """One line per event of the page: its changes, of the fields the user may see of the row it belongs to."""
        latest = page.object_list[0].version if page.number == 1 and page.object_list else None
        shown = rules.visible_fields(self, request, row)  # as the change form: no other field's values
        values = Values(request, self.admin_site)
        want_events(values, page.object_list)  # the names behind the page's keys: one query per related model
        rows = []
        for event in page.object_list:
            earlier_row = event_rules.earlier_row(earlier, event.version)
            only = shown if earlier_row is None else views[earlier_row.until].fields
            restorable = (
                can_restore and event.action != Action.DELETE and event.version != latest and earlier_row is None
            )
            rows.append(
                {
                    "event": event,
                    "earlier": earlier_row is not None,
                    "changes": diffs.event_changes(event, values, only=only),
                    "hidden": diffs.changes_hidden(event, only) if only is not None else False,
                    "restore_url": self._url("audit_restore", quote(unquote(object_id)), event.pk)
                    if restorable
                    else None,
                }
            )
        return rows

    def _earlier_rows(
        self, request: HttpRequest, spec: registry.ModelSpec, object_pk: str
    ) -> tuple[list[event_rules.EarlierRow], dict[int, event_rules.RowView]]:
        """The rows that held this key before the current one, and what the user may see of each."""
        earlier = event_rules.earlier_rows(spec.content_type_id(), [object_pk]).get(object_pk, [])
        restricted = rules.filters_rows(self.get_queryset(request)) if earlier else None
        views = {
            row.until: event_rules.judge_earlier(request, self.admin_site, self.model, row, restricted)
            for row in earlier
        }
        return earlier, views

    def _may_restore(self, request: HttpRequest, obj: Any, gone: Any) -> bool:
        """As Django's change view: change permission on the row (on the model when no row is shown), and add
        permission as well when the row is deleted now."""
        row = obj if obj is not None else gone
        return self.has_change_permission(request, row) and (gone is None or self.has_add_permission(request))

    def restore_version_view(self, request: HttpRequest, object_id: str, event_id: int) -> HttpResponse:
        spec = self._spec()
        obj, gone = self._row(request, object_id)
        row = obj if obj is not None else gone
        # As Django's change_view: the permission first (model-level when the row is not shown), then "missing".
        if not self._may_restore(request, obj, gone):
            raise PermissionDenied
        if row is None:
            return self._missing(request, object_id)
        pk = self._object_pk(spec, object_id)
        event = _version(spec, pk, event_id)
        target = _version_state(event) or {}
        history_url = self._url("history", quote(unquote(object_id)))
        # Fields this user cannot edit here keep their current value, as in the change form; the preview
        # shows only the fields the change form shows (a field left out of it keeps its value unseen).
        shown = rules.visible_fields(self, request, row)
        editable = rules.editable_fields(self, request, row) & shown
        keep = [name for name in spec.names if name not in editable]
        current = (_live_state(spec, unquote(object_id)) if obj is not None else self._deletion_state(spec, pk)) or {}
        restored = _restored(target, current, keep)
        # As Django's change view: the change form of the current row, bound to the restored values of the
        # editable fields (the current ones for the rest), must accept them. The recorded values, not the
        # form's cleaned ones, are then written: a restore is exact (docs/admin.rst, "Permissions").
        errors = forms.form_errors(self, request, row, restored, editable)
        if request.method == "POST" and not errors:
            return self._restore_version(request, row, event, target, keep, history_url)
        changes, kept = self._preview(request, current, target, restored, shown, keep)
        crumbs = [(_("History"), history_url), (_("Restore version %d") % event.version, None)]
        context = {
            **self._context(request, _("Restore version %d?") % event.version, [*self._row_crumbs(obj, row), *crumbs]),
            "object": obj,
            "object_label": str(row),
            "event": event,
            "changes": changes,
            "kept": kept,
            "history_url": history_url,
            "form_errors": errors,
        }
        return TemplateResponse(request, "audit_events/restore_version.html", context)

    def _preview(
        self, request: HttpRequest, current: State, target: State, restored: State, shown: set[str], keep: list[str]
    ) -> tuple[list[diffs.FieldChange], list[diffs.FieldChange]]:
        """What restoring the version changes (of the fields shown), and what it keeps at the current value."""
        values = Values(request, self.admin_site)
        values.want(self.model, current)
        values.want(self.model, target)
        changes = diffs.changes_between(self.model, current, restored, only=shown, values=values)
        kept = [name for name in keep if name in shown]
        return changes, diffs.changes_between(self.model, current, target, only=kept, values=values)

    def _restore_version(
        self, request: HttpRequest, row: Any, event: Event, target: Any, keep: list[str], history_url: str
    ) -> HttpResponse:
        try:
            with audit_context(actor=request.user, reason=f"restore version {event.version} (admin)"):
                instance = restore_fields(self.model, row.pk, target, keep=keep)
        except (RestoreError, NoHistory) as error:
            messages.error(request, str(error))
            return HttpResponseRedirect(history_url)
        if instance is None:
            message = _("“%(obj)s” already matches version %(v)d; nothing was written.")
            messages.info(request, message % {"obj": row, "v": event.version})
            return HttpResponseRedirect(history_url)
        messages.success(request, _("Restored “%(obj)s” to version %(v)d.") % {"obj": instance, "v": event.version})
        return HttpResponseRedirect(self._url("change", quote(instance.pk)))


def _without_hidden(
    events: EventQuerySet, earlier: list[event_rules.EarlierRow], views: dict[int, event_rules.RowView]
) -> EventQuerySet:
    """``events`` without those of the earlier rows with the key that the user may not view."""
    since = 1
    for gone_row in earlier:
        if not views[gone_row.until].viewable:
            events = events.exclude(version__gte=since, version__lt=gone_row.until)
        since = gone_row.until
    return events


def _version(spec: registry.ModelSpec, object_pk: str, event_id: int) -> Event:
    """The event ``event_id`` of the row, when it is a version of it that can be restored (else a 404)."""
    event = get_object_or_404(Event, pk=event_id, content_type_id=spec.content_type_id(), object_pk=object_pk)
    if event.action == Action.DELETE:
        raise Http404(_("A deletion is not a version that can be restored."))
    earlier = event_rules.earlier_rows(spec.content_type_id(), [object_pk]).get(object_pk, [])
    if event_rules.earlier_row(earlier, event.version):
        raise Http404(_("This version is of an earlier row with this key."))
    return event


def _version_state(event: Event) -> State | None:
    """The row as ``event`` left it (``None`` after a deletion): one query, from the last full state on."""
    events = Event.objects.filter(
        content_type_id=event.content_type_id, object_pk=event.object_pk, version__lte=event.version
    )
    anchor = events.filter(Q(state__isnull=False) | Q(action=Action.DELETE)).order_by("-version")
    return fold(events.filter(version__gte=Subquery(anchor.values("version")[:1])).order_by("version"))


def _live_state(spec: registry.ModelSpec, pk: Any) -> State | None:
    """The row as the database holds it now (many-to-many links included), as ``restore`` reads it."""
    db = router.db_for_write(spec.model)
    with transaction.atomic(using=db):  # the read locks where it can, which needs a transaction
        return rows.live_state(spec, db, pk)


def _restored(target: State, current: State, keep: list[str]) -> State:
    """The version's values, with the current ones of the fields kept (those this user cannot edit here)."""
    return {**target, **{name: current[name] for name in keep if name in current}}
