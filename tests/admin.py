"""Admin registrations the admin tests drive (the test client and the browser)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from audit_events.admin import AuditedAdminMixin, EventAdmin
from audit_events.models import Event

from .models import Author, Book, Review, Tag, Ticket, Unregistered


@admin.register(Author)
class AuthorAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("name", "email")
    fields = ("name", "email")


@admin.register(Book)
class BookAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("title", "author", "pages")
    list_select_related = ("author",)


@admin.register(Review)
class ReviewAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("book", "stars")


@admin.register(Unregistered)
class UnregisteredAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """The mixin on a model that is not recorded: Django's own pages, no "Deleted" link."""


# --- a second site whose admins restrict rows and fields, as a project's admin for support staff would ---

restricted = admin.AdminSite(name="restricted")


class RowRules:
    """Row rules keyed on a text field: ``Hidden…`` rows are left out of ``get_queryset()`` (and, for a
    deleted row, by ``deleted_row_in_queryset()``, the same rule in Python), ``Secret…`` rows fail
    ``has_view_permission(obj)`` and ``has_change_permission(obj)``, ``Locked…`` rows fail
    ``has_change_permission(obj)`` only."""

    rule_field = "name"

    def _starts(self, obj: Any, *prefixes: str) -> bool:
        return obj is not None and str(getattr(obj, self.rule_field)).startswith(prefixes)

    def get_queryset(self, request: HttpRequest) -> Any:
        queryset = super().get_queryset(request)  # type: ignore[misc]
        return queryset.exclude(**{f"{self.rule_field}__startswith": "Hidden"})

    def deleted_row_in_queryset(self, request: HttpRequest, obj: Any) -> bool:
        return not self._starts(obj, "Hidden")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_view_permission(request, obj) and not self._starts(obj, "Secret")  # type: ignore[misc]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_change_permission(request, obj)  # type: ignore[misc]
        return allowed and not self._starts(obj, "Secret", "Locked")


@admin.register(Author, site=restricted)
class RestrictedAuthorAdmin(RowRules, AuditedAdminMixin, admin.ModelAdmin):
    """The form of a ``Quiet…`` author leaves ``email`` out (``get_fields(request, obj)``, per row)."""

    fields = ("name", "email")

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = super().get_fields(request, obj)
        quiet = obj is not None and obj.name.startswith("Quiet")
        return [name for name in fields if name != "email"] if quiet else fields


@admin.register(Book, site=restricted)
class RestrictedBookAdmin(RowRules, AuditedAdminMixin, admin.ModelAdmin):
    """``pages`` is read-only and ``editor`` and ``tags`` are not in the form: a restore keeps their live value."""

    rule_field = "title"
    fields = ("author", "title", "pages")
    readonly_fields = ("pages",)


@admin.register(Review, site=restricted)
class RestrictedReviewAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """``stars`` is excluded from the form: the audit pages do not show it either."""

    exclude = ("stars",)


@admin.register(Tag, site=restricted)
class RestrictedTagAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """``Hidden…`` tags are left out of ``get_queryset()`` for users other than superusers, with no rule for
    deleted rows: such a user sees no deleted tag (none can be judged). ``Secret…`` tags fail
    ``has_view_permission(obj)`` and ``has_change_permission(obj)``, for everyone."""

    def get_queryset(self, request: HttpRequest) -> Any:
        queryset = super().get_queryset(request)
        return queryset if request.user.is_superuser else queryset.exclude(name__startswith="Hidden")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_view_permission(request, obj) and not (obj is not None and obj.name.startswith("Secret"))

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and not (obj is not None and obj.name.startswith("Secret"))


@admin.register(Ticket, site=restricted)
class RestrictedTicketAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """A UUID key, which the Event admin cannot compare to ``object_pk`` in SQL, and rows left out of
    ``get_queryset()``: no event of a ticket is listed there."""

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).exclude(title__startswith="Hidden")


restricted.register(Event, EventAdmin)
