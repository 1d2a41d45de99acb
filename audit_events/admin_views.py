"""``AuditedAdminMixin``: history, restore a version and undo delete, inside the user's own model admin.

Permissions are the model's own: history needs view, restoring a version
needs change (and add, when the row is deleted now), undoing a delete needs
add on every model of the deletion group. Anything else is a 403, before any
write.
"""

from __future__ import annotations

from collections import defaultdict
from functools import update_wrapper
from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Max
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.functional import cached_property
from django.utils.text import capfirst
from django.utils.translation import gettext as _

from . import registry, undo
from .context import audit_context
from .exceptions import NoHistory, RestoreError
from .models import Action, Event
from .replay import recorded_state
from .restoration import restore

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

    _Base = ModelAdmin[Any]
    _PaginatorBase = Paginator[Event]
else:
    _Base = object
    _PaginatorBase = Paginator

PER_PAGE = 50


class CappedPaginator(_PaginatorBase):
    """Counts at most ``cap`` events (``cap + 1`` means "more than ``cap``").

    An exact ``COUNT(*)`` over a million events costs more than the whole page
    (a fifth of a second on PostgreSQL, over a second for the deleted rows'
    ``NOT EXISTS``); pages past the cap are reached by filtering, not paging.
    """

    cap = 10_000

    @cached_property
    def count(self) -> int:
        return int(self.object_list[: self.cap + 1].count())  # type: ignore[attr-defined]


class AuditedAdminMixin(_Base):
    """Mix into a ``ModelAdmin`` of a registered model, before ``admin.ModelAdmin``.

    Replaces the object's "History" page by its recorded events, with a
    "Restore this version" button each, and adds a "Deleted …" page to the
    changelist with an "Undo delete" button per deleted row. Writes made
    through this admin carry the admin user as their actor.
    """

    change_list_template = "audit_events/change_list.html"

    def get_urls(self) -> list[URLPattern]:
        def wrap(view: Any) -> Any:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                return self.admin_site.admin_view(view)(*args, **kwargs)

            return update_wrapper(wrapper, view)

        info = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("deleted/", wrap(self.deleted_view), name=f"{info}_audit_deleted"),
            path("deleted/<int:event_id>/undo/", wrap(self.undo_delete_view), name=f"{info}_audit_undo"),
            path(
                "<path:object_id>/history/<int:event_id>/restore/",
                wrap(self.restore_version_view),
                name=f"{info}_audit_restore",
            ),
            *super().get_urls(),
        ]

    # --- writes through the admin carry the admin user ----------------------

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        with audit_context(actor=request.user):
            return super().changeform_view(request, *args, **kwargs)

    def delete_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        with audit_context(actor=request.user):
            return super().delete_view(request, *args, **kwargs)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra = dict(extra_context or {})
        if registry.spec_for(self.model) is not None:
            extra.setdefault("audit_deleted_url", self._url("audit_deleted"))
            extra.setdefault("audit_deleted_label", _("Deleted %s") % self.opts.verbose_name_plural)
        with audit_context(actor=request.user):  # actions and list_editable write here
            return super().changelist_view(request, extra)

    # --- history ------------------------------------------------------------

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if registry.spec_for(self.model) is None:  # not recorded: Django's own history of admin actions
            return super().history_view(request, object_id, extra_context)
        spec = self._spec()
        pk = self._object_pk(spec, object_id)
        obj = self.get_object(request, unquote(object_id))
        if not self.has_view_or_change_permission(request, obj):
            raise PermissionDenied
        events = Event.objects.filter(content_type_id=spec.content_type_id(), object_pk=pk)
        page = CappedPaginator(events.select_related("content_type").order_by("-version"), PER_PAGE).get_page(
            request.GET.get("p")
        )
        if obj is None and not page.object_list:
            raise Http404(_("%s with pk %s has no recorded history.") % (self.opts.verbose_name, object_id))
        latest = page.object_list[0].version if page.number == 1 and page.object_list else None
        can_restore = self.has_change_permission(request, obj) and (obj is not None or self.has_add_permission(request))
        rows = [
            {
                "event": event,
                "changes": undo.event_changes(event),
                "restore_url": self._url("audit_restore", quote(unquote(object_id)), event.pk)
                if can_restore and event.action != Action.DELETE and event.version != latest
                else None,
            }
            for event in page.object_list
        ]
        label = str(obj) if obj is not None else undo.state_label(self.model, self._last_state(events))
        context = {
            **self._context(request, _("History: %s") % (label or object_id)),
            "object": obj,
            "object_label": label or object_id,
            "rows": rows,
            "page": page,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "audit_events/object_history.html", context)

    def restore_version_view(self, request: HttpRequest, object_id: str, event_id: int) -> HttpResponse:
        spec = self._spec()
        pk = self._object_pk(spec, object_id)
        event = get_object_or_404(Event, pk=event_id, content_type_id=spec.content_type_id(), object_pk=pk)
        obj = self.get_object(request, unquote(object_id))
        if not self.has_change_permission(request, obj) or (obj is None and not self.has_add_permission(request)):
            raise PermissionDenied
        if event.action == Action.DELETE:
            raise Http404(_("A deletion is not a version that can be restored."))
        target = undo.version_state(event)
        history_url = self._url("history", quote(unquote(object_id)))
        if request.method == "POST":
            return self._restore_version(request, spec, object_id, event, target, history_url)
        context = {
            **self._context(request, _("Restore version %d?") % event.version),
            "object": obj,
            "object_label": str(obj) if obj is not None else undo.state_label(self.model, target),
            "event": event,
            "changes": undo.changes_between(self.model, undo.live_state(spec, unquote(object_id)), target),
            "history_url": history_url,
        }
        return TemplateResponse(request, "audit_events/restore_version.html", context)

    def _restore_version(
        self,
        request: HttpRequest,
        spec: registry.ModelSpec,
        object_id: str,
        event: Event,
        target: Any,
        history_url: str,
    ) -> HttpResponse:
        pk = unquote(object_id)
        if recorded_state(spec, pk, event.created_at) != target:
            # Another event of this row has the very same timestamp: restoring "at" it would not give this version.
            message = _("Version %d cannot be told apart by its time; nothing was restored.")
            messages.error(request, message % event.version)
            return HttpResponseRedirect(history_url)
        try:
            with audit_context(actor=request.user, reason=f"restore version {event.version} (admin)"):
                instance = restore(self.model, pk, at=event.created_at)
        except (RestoreError, NoHistory) as error:
            messages.error(request, str(error))
            return HttpResponseRedirect(history_url)
        messages.success(request, _("Restored “%(obj)s” to version %(v)d.") % {"obj": instance, "v": event.version})
        return HttpResponseRedirect(self._url("change", quote(instance.pk)))

    # --- deleted rows ---------------------------------------------------------

    def deleted_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        own = self._spec().content_type_id()
        page = CappedPaginator(undo.deleted_rows(self.model), PER_PAGE).get_page(request.GET.get("p"))
        events = list(page.object_list)
        # What else each deletion took with it: one query for the whole page.
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
                name = model._meta.verbose_name if n == 1 else model._meta.verbose_name_plural
                others[row["operation"]].append(f"{n} {name}")
        can_undo = self.has_add_permission(request)
        rows = [
            {
                "event": event,
                "label": undo.state_label(self.model, event.state) or event.object_pk,
                "with": ", ".join(others[event.operation]),
                "history_url": self._url("history", quote(event.object_pk)),
                "undo_url": self._url("audit_undo", event.pk) if can_undo else None,
            }
            for event in events
        ]
        title = _("Deleted %s") % self.opts.verbose_name_plural
        context = {**self._context(request, title), "rows": rows, "page": page}
        return TemplateResponse(request, "audit_events/deleted_list.html", context)

    def undo_delete_view(self, request: HttpRequest, event_id: int) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        spec = self._spec()
        event = get_object_or_404(
            Event.objects.select_related("content_type"),
            pk=event_id,
            content_type_id=spec.content_type_id(),
            action=Action.DELETE,
        )
        if not self.has_add_permission(request) or undo.missing_add_permissions(request.user, event):
            raise PermissionDenied
        with audit_context(actor=request.user, reason="undo delete (admin)"):
            outcome = undo.undo_deletion(event)
        if not outcome.ok:
            messages.error(request, outcome.message)
            return HttpResponseRedirect(self._url("audit_deleted"))
        messages.success(request, outcome.message)
        return HttpResponseRedirect(self._url("changelist"))

    # --- helpers ----------------------------------------------------------------

    def _spec(self) -> registry.ModelSpec:
        spec = registry.spec_for(self.model)
        if spec is None:
            raise Http404(_("%s is not registered in AUDIT_EVENTS['MODELS'].") % self.opts.label)
        return spec

    def _object_pk(self, spec: registry.ModelSpec, object_id: str) -> str:
        try:
            return spec.object_pk(unquote(object_id))
        except (ValidationError, ValueError, TypeError) as error:
            raise Http404(str(error)) from error

    def _last_state(self, events: Any) -> Any:
        last = events.exclude(state__isnull=True).order_by("-version").first()
        return last.state if last is not None else None

    def _url(self, name: str, *args: Any) -> str:
        return reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_{name}", args=args, current_app=self.admin_site.name
        )

    def _context(self, request: HttpRequest, title: str) -> dict[str, Any]:
        request.current_app = self.admin_site.name
        return {
            **self.admin_site.each_context(request),
            "title": title,
            "subtitle": None,
            "opts": self.opts,
            "module_name": str(capfirst(self.opts.verbose_name_plural)),
            "changelist_url": self._url("changelist"),
            "deleted_url": self._url("audit_deleted"),
        }
