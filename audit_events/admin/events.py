"""The Event admin: every recorded event, read-only, with the "undo delete" action.

The Event changelist stays fast on millions of events: the default ordering
(``-id``) and every filter (action, model, date) are served by an index, the
model column reads the ContentType cache, and search matches exact values on
indexed text columns, never ``LIKE`` over JSON.

It shows a user only what the admins of the audited models would
(:mod:`.event_rules`): the events of the models and rows they may view, and of
those only the values and fields the row's change form would show them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from .. import registry
from ..deletions import undo_plan
from ..models import Action, Event
from . import diffs, event_rules, rules, undo
from .event_list import ALLOWED_LOOKUPS, DeletionFilter, EventChangeList, EventQuerySetForAdmin, ModelFilter
from .pages import CappedPaginator
from .values import Values

__all__ = ["EventAdmin"]

if TYPE_CHECKING:
    _EventAdminBase = admin.ModelAdmin[Event]
else:
    _EventAdminBase = admin.ModelAdmin


@admin.register(Event)
class EventAdmin(_EventAdminBase):
    """Events can be read and searched here; they are never added, changed or deleted."""

    list_display = ("created_at", "model_name", "object", "action", "actor", "diff", "operation_link")
    list_filter = ("action", ModelFilter, DeletionFilter)
    date_hierarchy = "created_at"
    ordering = ("-id",)
    list_select_related = ("content_type",)  # the row checkbox's label is str(event), which names the model
    search_fields = ("=object_pk",)  # replaced by get_search_results; shows the search box
    search_help_text = _("An object's primary key, or an actor's id or username (exact).")
    show_full_result_count = False
    paginator = CappedPaginator
    change_form_template = "audit_events/event_change_form.html"
    list_per_page = 50
    actions = ["restore_deleted"]
    fields = (
        "created_at",
        "model_name",
        "object_pk",
        "version",
        "action",
        "actor_repr",
        "actor_id",
        "operation_link",
        "context_table",
        "diff_table",
        "hash_value",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Event | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Event | None = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Event | None = None) -> bool:
        """Viewing an event is viewing its row's values: the row's own admin must let the user view it."""
        if not super().has_view_permission(request, obj):
            return False
        return obj is None or self._row_view(request, obj).viewable

    def get_queryset(self, request: HttpRequest) -> Any:
        """Only the events of the models and rows the user may view (``event_rules.visible_events``)."""
        queryset = super().get_queryset(request).filter(event_rules.visible_events(request, self.admin_site))
        return EventQuerySetForAdmin(model=Event, query=queryset.query, using=queryset.db)

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Event | None:
        event = super().get_object(request, object_id, from_field)
        if event is not None:  # the detail page's fields show what the row's admin lets this user see
            annotated: Any = event  # as an annotation would: an attribute of this instance
            annotated.row_view = self._row_view(request, event)
        return event

    def _row_view(self, request: HttpRequest, event: Event) -> event_rules.RowView:
        view = getattr(event, "row_view", None)
        if view is None:
            view = event_rules.event_views(request, self.admin_site, [event])[event.pk]
        return view

    def get_search_results(self, request: HttpRequest, queryset: Any, search_term: str) -> tuple[Any, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        # IN on the leading column lets the (content_type, object_pk, version) index serve a pk lookup.
        content_types = [spec.content_type_id() for spec in registry.registered_specs()]
        match = Q(content_type_id__in=content_types, object_pk=term) | Q(actor_id=term)
        user_model = get_user_model()
        users = user_model._default_manager.filter(**{f"{user_model.USERNAME_FIELD}__iexact": term})
        actor_ids = [str(pk) for pk in users.values_list("pk", flat=True)[:20]]
        if actor_ids:
            match |= Q(actor_id__in=actor_ids)
        return queryset.filter(match), False

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return EventChangeList

    @admin.display(description=_("model"), ordering="content_type")
    def model_name(self, event: Event) -> str:
        content_type = ContentType.objects.get_for_id(event.content_type_id)
        model = content_type.model_class()
        if model is None:
            return f"{content_type.app_label}.{content_type.model}"
        return f"{model._meta.app_config.verbose_name} \u203a {model._meta.verbose_name}"

    @admin.display(description=_("operation"))
    def operation_link(self, event: Event) -> SafeString:
        """The operation's id, linking to every event of it (what was deleted or restored together)."""
        url = reverse("admin:audit_events_event_changelist", current_app=self.admin_site.name)
        return format_html(
            '<a href="{}?operation={}" title="{}">{}…</a>',
            url,
            event.operation,
            event.operation,
            str(event.operation)[:8],
        )

    @admin.display(description=_("context"))
    def context_table(self, event: Event) -> SafeString:
        if not event.context:
            return format_html("<p>{}</p>", "—")
        rows = format_html_join("", "<tr><th scope='row'>{}</th><td>{}</td></tr>", sorted(event.context.items()))
        return format_html('<table class="audit-context"><tbody>{}</tbody></table>', rows)

    @admin.display(description=_("object"))
    def object(self, event: Event) -> SafeString:
        url = reverse("admin:audit_events_event_changelist")
        query = urlencode({"model": str(event.content_type_id), "object_pk": event.object_pk})
        return format_html('<a href="{}?{}">{}</a>', url, query, event.object_pk)

    @admin.display(description=_("actor"), ordering="actor_id")
    def actor(self, event: Event) -> str:
        return event.actor_repr or "—"

    @admin.display(description=_("changes"))
    def diff(self, event: Event) -> SafeString:
        """A one-line summary; unfolds into one line per field (no query: the detail page names related rows)."""
        if event.action == Action.DELETE:
            undone = getattr(event, "undone", False)
            return format_html(
                '<span class="audit-{}">{}</span>',
                "undone" if undone else "deleted",
                _("deleted, undone since") if undone else _("deleted"),
            )
        view = getattr(event, "row_view", event_rules.HIDDEN)  # set for the page by EventChangeList
        if not view.viewable:
            return format_html('<span class="audit-hidden">{}</span>', _("a row you may not view"))
        values = Values(site=self.admin_site)  # display_recorded_value masks here too
        summary = diffs.short_diff(event, only=view.fields, values=values)
        lines = diffs.diff_lines(event, only=view.fields, values=values)
        if not lines and view.fields is not None and diffs.changes_hidden(event, view.fields):
            return format_html('<span class="audit-hidden">{}</span>', _("only fields not shown here changed"))
        if len(lines) < 2 and len(summary) < 80:
            return format_html("{}", summary)
        return format_html(
            "<details><summary>{}</summary><ul class='audit-lines'>{}</ul></details>",
            summary,
            format_html_join("", "<li>{}</li>", ((line,) for line in lines)),
        )

    @admin.display(description=_("hash"))
    def hash_value(self, event: Event) -> str:
        """The event's hash, only to a user who may see every recorded field of its row: it is a SHA-256 of
        them all, which confirms a guess of a field the user may not see."""
        view = getattr(event, "row_view", event_rules.HIDDEN)  # set by get_object
        model = event.content_type.model_class()
        spec = registry.spec_for(model) if model is not None else None
        if view.viewable and (view.fields is None or (spec is not None and set(spec.names) <= view.fields)):
            return event.hash
        return str(_("hidden: it covers fields you may not see"))

    @admin.display(description=_("changes"))
    def diff_table(self, event: Event) -> SafeString:
        view = getattr(event, "row_view", event_rules.HIDDEN)  # set by get_object
        if not view.viewable:
            return format_html("<p>{}</p>", _("a row you may not view"))
        rows = diffs.event_changes(event, Values(site=self.admin_site), only=view.fields)
        if not rows and view.fields is not None and diffs.changes_hidden(event, view.fields):
            return format_html("<p>{}</p>", _("Only fields not shown here changed."))
        if not rows:
            return format_html("<p>{}</p>", _("No field changed."))
        body = format_html_join(
            "", "<tr><th scope='row'>{}</th><td>{}</td><td>{}</td></tr>", ((r.name, r.before, r.after) for r in rows)
        )
        return format_html(
            '<table class="audit-diff"><thead><tr><th>{}</th><th>{}</th><th>{}</th></tr></thead>'
            "<tbody>{}</tbody></table>",
            _("field"),
            _("before"),
            _("after"),
            body,
        )

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        """Only the filters the list offers (``ALLOWED_LOOKUPS``); Django's default would also take any lookup
        on a local field, ``state__salary__gte=…`` or ``changes__email__0=…`` included: an oracle for the values
        these pages hide. A refused lookup answers 400, as Django's for a lookup it does not allow."""
        return lookup in ALLOWED_LOOKUPS

    @admin.action(description=_("Restore the selected deleted objects"))
    def restore_deleted(self, request: HttpRequest, queryset: Any) -> HttpResponse | None:
        """Undo each selected deletion with its whole group; one message per object, success or reason."""
        from ..context import audit_context

        deletions = [e for e in queryset.select_related("content_type").order_by("id") if e.action == Action.DELETE]
        skipped = queryset.exclude(action=Action.DELETE).count()
        if skipped:
            messages.warning(request, _("%d selected events are not deletions; they were skipped.") % skipped)
        groups: dict[Any, Event] = {}
        for event in deletions:
            groups.setdefault(event.operation, event)  # rows deleted together are restored together, once
        # Check every group before writing anything: a refusal must leave the database untouched.
        # The rules are those of this site's admins of the models written (rules), as in their own views.
        for event in groups.values():
            if rules.undo_refusals(request, self.admin_site, undo_plan(event)):
                raise PermissionDenied
        with audit_context(actor=request.user, reason="undo delete (admin)"):
            for event in groups.values():
                outcome = undo.undo_deletion(event)
                messages.add_message(request, messages.SUCCESS if outcome.ok else messages.ERROR, outcome.message)
        return None
