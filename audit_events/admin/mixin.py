"""``AuditedAdminMixin``: history, restore a version and undo delete, inside the user's own model admin.

Every view answers as Django's own views do (see :mod:`.rules`): a row the
admin's ``get_queryset()`` leaves out is "missing" (a redirect with a warning),
a row it shows but ``has_view_permission(request, obj)`` /
``has_change_permission(request, obj)`` refuses is a 403; a deleted row is
judged on the instance rebuilt from its last recorded state, with
``deleted_row_in_queryset()`` standing in for ``get_queryset()``. The pages
show only the fields the change form shows this user. Restoring a version
needs change (and add, when the row is deleted now) and writes only the fields
the change form lets this user edit; undoing a delete needs the permissions of
every model it writes. Every refusal comes before any write.
"""

from __future__ import annotations

from collections import defaultdict
from functools import cache, update_wrapper
from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Max
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.functional import cached_property
from django.utils.text import capfirst
from django.utils.translation import gettext as _

from .. import registry
from ..context import audit_context
from ..deletions import deleted, undo_plan
from ..exceptions import NoHistory, RestoreError
from ..models import Action, Event
from ..replay import instance_from_state
from ..restoration import restore_fields
from . import diffs, event_rules, forms, rules, undo
from .values import Values, want_events

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

    _Base = ModelAdmin[Any]
    _PaginatorBase = Paginator[Event]
else:
    _Base = object
    _PaginatorBase = Paginator

PER_PAGE = 50


@cache
def breadcrumbs_are_a_list() -> bool:
    """Whether the admin's ``base.html`` marks breadcrumbs up as ``<ol class="breadcrumbs">`` (Django 6) or a div.

    Read from the template itself, so the audit pages follow whichever Django
    (or project override of ``admin/base.html``) renders them.
    """
    from django.template.loader import get_template

    source = getattr(getattr(get_template("admin/base.html"), "template", None), "source", "")
    return '<ol class="breadcrumbs">' in source


class CappedPaginator(_PaginatorBase):
    """Counts at most ``cap`` events (``cap + 1`` means "more than ``cap``").

    An exact ``COUNT(*)`` over a million events costs more than the whole page
    (a fifth of a second on PostgreSQL, over a second for the deleted rows'
    ``NOT EXISTS``); pages past the cap are reached by filtering, not paging.
    """

    cap = 10_000

    @cached_property
    def count(self) -> int:
        if isinstance(self.object_list, list):
            return min(len(self.object_list), self.cap + 1)
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

    def display_recorded_value(self, field: Any, value: Any) -> str | None:
        """How the audit pages show a recorded ``value`` of ``field``; ``None`` shows it as Django's admin does.

        ``value`` is decoded (a ``Decimal``, an aware ``datetime``, a foreign
        key's raw key, a list of keys for a many-to-many field; never
        ``None`` unless recorded so). Return text (escaped for you) or HTML
        built with ``format_html``. Override it to mask a field or show it
        your way::

            def display_recorded_value(self, field, value):
                if field.name == "iban":
                    return "•••• " + value[-4:] if value else None
                return super().display_recorded_value(field, value)
        """
        return None

    def deleted_row_in_queryset(self, request: HttpRequest, obj: Any) -> bool | None:
        """Whether ``get_queryset(request)`` would hold ``obj``, a deleted row rebuilt from its last recorded state.

        A deleted row is not in the table, so ``get_queryset()`` cannot be
        asked. ``None`` (the default) lets the audit pages decide from
        ``get_queryset(request)`` itself: when it leaves no row out for this
        request the row passes, when it filters rows (a ``filter()``, an
        ``exclude()``, a filtering manager) every deleted row is refused. An
        admin that filters rows writes the same rule here, in Python, to show
        its users the deleted rows they may see::

            def get_queryset(self, request):
                return super().get_queryset(request).filter(team=request.user.team)

            def deleted_row_in_queryset(self, request, obj):
                return obj.team_id == request.user.team_id

        ``has_view_permission(request, obj)`` and the other row rules are asked
        as well; this answers only for ``get_queryset()``.
        """
        return None

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
        since = 1
        for gone_row in earlier:
            if not views[gone_row.until].viewable:
                events = events.exclude(version__gte=since, version__lt=gone_row.until)
            since = gone_row.until
        page = CappedPaginator(events.select_related("content_type").order_by("-version"), PER_PAGE).get_page(
            request.GET.get("p")
        )
        latest = page.object_list[0].version if page.number == 1 and page.object_list else None
        can_restore = self.has_change_permission(request, row) and (obj is not None or self.has_add_permission(request))
        shown = rules.visible_fields(self, request, row)  # as the change form: no other field's values
        values = Values(request, self.admin_site)
        want_events(values, page.object_list)  # the names behind the page's keys: one query per related model
        rows = []
        for event in page.object_list:
            earlier_row = event_rules.earlier_row(earlier, event.version)
            only = shown if earlier_row is None else views[earlier_row.until].fields
            rows.append(
                {
                    "event": event,
                    "earlier": earlier_row is not None,
                    "changes": diffs.event_changes(event, values, only=only),
                    "hidden": diffs.changes_hidden(event, only) if only is not None else False,
                    "restore_url": self._url("audit_restore", quote(unquote(object_id)), event.pk)
                    if can_restore and event.action != Action.DELETE and event.version != latest and earlier_row is None
                    else None,
                }
            )
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

    def restore_version_view(self, request: HttpRequest, object_id: str, event_id: int) -> HttpResponse:
        spec = self._spec()
        obj, gone = self._row(request, object_id)
        row = obj if obj is not None else gone
        # As Django's change_view: the permission first (model-level when the row is not shown), then "missing".
        if not self.has_change_permission(request, row) or (gone is not None and not self.has_add_permission(request)):
            raise PermissionDenied
        if row is None:
            return self._missing(request, object_id)
        pk = self._object_pk(spec, object_id)
        event = get_object_or_404(Event, pk=event_id, content_type_id=spec.content_type_id(), object_pk=pk)
        if event.action == Action.DELETE:
            raise Http404(_("A deletion is not a version that can be restored."))
        if event_rules.earlier_row(event_rules.earlier_rows(spec.content_type_id(), [pk]).get(pk, []), event.version):
            raise Http404(_("This version is of an earlier row with this key."))
        target = undo.version_state(event) or {}
        history_url = self._url("history", quote(unquote(object_id)))
        # Fields this user cannot edit here keep their current value, as in the change form; the preview
        # shows only the fields the change form shows (a field left out of it keeps its value unseen).
        shown = rules.visible_fields(self, request, row)
        editable = rules.editable_fields(self, request, row) & shown
        keep = [name for name in spec.names if name not in editable]
        current = undo.live_state(spec, unquote(object_id)) if obj is not None else self._deletion_state(spec, pk)
        current = current or {}
        restored = {**target, **{name: current[name] for name in keep if name in current}}
        # As Django's change view: the change form of the current row, bound to the restored values of the
        # editable fields (the current ones for the rest), must accept them. The recorded values, not the
        # form's cleaned ones, are then written: a restore is exact (docs/admin.rst, "Permissions").
        errors = forms.form_errors(self, request, row, restored, editable)
        if request.method == "POST" and not errors:
            return self._restore_version(request, row, event, target, keep, history_url)
        values = Values(request, self.admin_site)
        values.want(self.model, current)
        values.want(self.model, target)
        context = {
            **self._context(
                request,
                _("Restore version %d?") % event.version,
                [
                    *self._row_crumbs(obj, row),
                    (_("History"), history_url),
                    (_("Restore version %d") % event.version, None),
                ],
            ),
            "object": obj,
            "object_label": str(row),
            "event": event,
            "changes": diffs.changes_between(self.model, current, restored, only=shown, values=values),
            "kept": diffs.changes_between(
                self.model, current, target, only=[name for name in keep if name in shown], values=values
            ),
            "history_url": history_url,
            "form_errors": errors,
        }
        return TemplateResponse(request, "audit_events/restore_version.html", context)

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

    # --- deleted rows ---------------------------------------------------------

    def deleted_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        spec = self._spec()
        own = spec.content_type_id()
        deletions: Any = deleted(self.model)
        restricted = rules.filters_rows(self.get_queryset(request))
        says = type(self).deleted_row_in_queryset is not AuditedAdminMixin.deleted_row_in_queryset
        if restricted and not says:
            deletions = []  # get_queryset() leaves rows out and cannot judge a deleted one: none is shown
        elif says or rules.has_row_rules(self):
            # Each row is asked (on its last recorded state): only the rows this user may view are listed or counted.
            visible = []
            for event in deletions.iterator():
                gone = instance_from_state(self.model, spec, event.state)
                if rules.may_view_deleted(request, self.admin_site, self.model, gone, restricted):
                    visible.append(event)
                    if len(visible) > CappedPaginator.cap:
                        break
            deletions = visible
        page = CappedPaginator(deletions, PER_PAGE).get_page(request.GET.get("p"))
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
        context = {
            **self._context(request, title, [(_("Deleted"), None)]),
            "rows": rows,
            "page": page,
            "unjudged": restricted and not says,
        }
        return TemplateResponse(request, "audit_events/deleted_list.html", context)

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

    def _row(self, request: HttpRequest, object_id: str) -> tuple[Any, Any]:
        """``(obj, None)`` for a row this admin shows, ``(None, rebuilt)`` for a deleted one, else ``(None, None)``.

        A row that is in the table but not in ``get_queryset()`` is hidden, not
        deleted: it gets ``(None, None)`` as a missing row does; so does a
        deleted row that ``get_queryset()`` would not hold (as
        ``deleted_row_in_queryset()`` or its default answers).
        """
        obj = self.get_object(request, unquote(object_id))
        if obj is not None:
            return obj, None
        spec = self._spec()
        try:
            pk = spec.pk_field.to_python(unquote(object_id))
            if self.model._base_manager.filter(pk=pk).exists():
                return None, None
        except (ValidationError, ValueError, TypeError):
            return None, None
        state = self._deletion_state(spec, spec.object_pk(pk))
        if state is None:
            return None, None
        gone = instance_from_state(self.model, spec, state)
        return None, (gone if rules.in_queryset_when_deleted(self, request, gone) else None)

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

    def _row_crumbs(self, obj: Any, row: Any) -> list[tuple[str, str | None]]:
        if obj is not None:
            return [(str(obj), self._url("change", quote(obj.pk)))]
        return [(_("Deleted"), self._url("audit_deleted")), (str(row), None)]

    def _missing(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Django's own answer for a row its admin does not show: a warning and a redirect to the index."""
        redirect = self._get_obj_does_not_exist_redirect  # type: ignore[attr-defined]  # private in the stubs
        response: HttpResponse = redirect(request, self.opts, object_id)
        return response

    def _deletion(self, spec: registry.ModelSpec, object_pk: str) -> Event | None:
        """The row's latest event if it is a deletion."""
        events = Event.objects.filter(content_type_id=spec.content_type_id(), object_pk=object_pk)
        latest = events.order_by("-version").first()
        return latest if latest is not None and latest.action == Action.DELETE else None

    def _deletion_state(self, spec: registry.ModelSpec, object_pk: str) -> Any:
        deletion = self._deletion(spec, object_pk)
        return deletion.state if deletion is not None else None

    def _url(self, name: str, *args: Any) -> str:
        return reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_{name}", args=args, current_app=self.admin_site.name
        )

    def _context(self, request: HttpRequest, title: str, crumbs: list[tuple[str, str | None]]) -> dict[str, Any]:
        """The admin's context; ``crumbs`` are the breadcrumbs after the model's, (label, url or None)."""
        request.current_app = self.admin_site.name
        return {
            **self.admin_site.each_context(request),
            "audit_breadcrumbs_list": breadcrumbs_are_a_list(),
            "crumbs": [{"label": label, "url": url} for label, url in crumbs],
            "title": title,
            "subtitle": None,
            "opts": self.opts,
            "module_name": str(capfirst(self.opts.verbose_name_plural)),
            "changelist_url": self._url("changelist"),
            "deleted_url": self._url("audit_deleted"),
        }
