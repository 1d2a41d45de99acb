"""The audit views of deleted rows: the "Deleted …" list of a model, and undoing one deletion.

Both judge each deleted row as :mod:`.pages` says, on its last recorded state;
undoing a delete needs the permissions of every model it writes (:mod:`.rules`).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.contrib import messages
from django.contrib.admin.utils import quote
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Max
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _

from .. import registry
from ..context import audit_context
from ..deletions import deleted, undo_plan
from ..models import Action, Event
from ..replay import instance_from_state
from . import rules, undo
from .pages import PER_PAGE, AuditPages, CappedPaginator
from .values import state_label


class DeletedViews(AuditPages):
    """The "Deleted …" page of the changelist, and the "Undo delete" page of each deleted row."""

    def deleted_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        spec = self._spec()
        own = spec.content_type_id()
        restricted = rules.filters_rows(self.get_queryset(request))
        unjudged = restricted and not self._judges_deleted_rows()
        deletions = [] if unjudged else self._viewable_deletions(request, spec, restricted)
        page = CappedPaginator(deletions, PER_PAGE).get_page(request.GET.get("p"))
        events = list(page.object_list)
        others = _deleted_with(events, own)
        can_undo = self.has_add_permission(request)
        rows = [
            {
                "event": event,
                "label": state_label(self.model, event.state) or event.object_pk,
                "with": ", ".join(others[event.operation]),
                "history_url": self._url("history", quote(event.object_pk)),
                "undo_url": self._url("audit_undo", event.pk) if can_undo else None,
            }
            for event in events
        ]
        title = _("Deleted %s") % self.opts.verbose_name_plural
        context = {
            **self._context(request, title, [(_("Deleted"), None)]),
            "rows": rows,
            "page": page,
            "unjudged": unjudged,  # get_queryset() leaves rows out and cannot judge a deleted one: none is shown
        }
        return TemplateResponse(request, "audit_events/deleted_list.html", context)

    def _viewable_deletions(self, request: HttpRequest, spec: registry.ModelSpec, restricted: bool) -> Any:
        """The deletions of rows deleted now that the user may view, newest first (up to one past the cap)."""
        deletions: Any = deleted(self.model)
        if not (self._judges_deleted_rows() or rules.has_row_rules(self)):
            return deletions
        # Each row is asked (on its last recorded state): only the rows this user may view are listed or counted.
        visible = []
        for event in deletions.iterator():
            gone = instance_from_state(self.model, spec, event.state)
            if rules.may_view_deleted(request, self.admin_site, self.model, gone, restricted):
                visible.append(event)
                if len(visible) > CappedPaginator.cap:
                    break
        return visible

    def undo_delete_view(self, request: HttpRequest, event_id: int) -> HttpResponse:
        """A preview of what comes back (GET), then the undo (POST), as Django's delete confirmation."""
        spec = self._spec()
        event = get_object_or_404(
            Event.objects.select_related("content_type"),
            pk=event_id,
            content_type_id=spec.content_type_id(),
            action=Action.DELETE,
        )
        if not self.has_add_permission(request) or event.state is None:
            raise PermissionDenied
        gone = instance_from_state(self.model, spec, event.state)
        if not rules.in_queryset_when_deleted(self, request, gone):
            raise Http404  # as for a deletion that never was: get_queryset() would not show this row
        if not self.has_view_or_change_permission(request, gone):
            raise PermissionDenied
        plan = undo_plan(event)
        refusals = rules.undo_refusals(request, self.admin_site, plan)
        if request.method == "POST":
            if refusals:  # as Django's delete_view with perms_needed: the preview said why
                raise PermissionDenied
            with audit_context(actor=request.user, reason="undo delete (admin)"):
                outcome = undo.undo_deletion(event)
            if not outcome.ok:
                messages.error(request, outcome.message)
                return HttpResponseRedirect(self._url("audit_deleted"))
            messages.success(request, outcome.message)
            return HttpResponseRedirect(self._url("changelist"))
        context = {
            **self._context(
                request,
                _("Undo the deletion of “%s”?") % gone,
                [
                    (_("Deleted"), self._url("audit_deleted")),
                    (str(gone), self._url("history", quote(event.object_pk))),
                    (_("Undo delete"), None),
                ],
            ),
            "object_label": str(gone),
            "event": event,
            "plan": plan,
            "recreated": [(g, rules.shown(request, self.admin_site, g, live=False)) for g in plan.recreated],
            "reattached": [(g, rules.shown(request, self.admin_site, g, live=True)) for g in plan.reattached],
            "permissions": rules.permissions_needed(plan),
            "refusals": refusals,
            "conflicts": rules.conflicts_shown(request, self.admin_site, plan),
            "history_url": self._url("history", quote(event.object_pk)),
        }
        return TemplateResponse(request, "audit_events/undo_delete.html", context)


def _deleted_with(events: list[Event], own: int) -> dict[Any, list[str]]:
    """What else each deletion took with it (``2 books``), by operation: one query for the whole page.

    ``own`` is the content type of the page's model: its deleted row itself is not counted.
    """
    others: dict[Any, list[str]] = defaultdict(list)
    counts = (
        Event.objects.filter(operation__in={e.operation for e in events}, action=Action.DELETE)
        .values("operation", "content_type_id")
        .annotate(n=Count("id"), last=Max("id"))
        .order_by("-last")  # children are deleted first: parents come first
    )
    for row in counts:
        model = undo.model_for(row["content_type_id"])
        n = row["n"] - (row["content_type_id"] == own)  # not counting the deleted row itself
        if model is not None and n > 0:
            others[row["operation"]].append(undo.counted(model, n))
    return others
