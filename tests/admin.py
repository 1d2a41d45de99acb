"""Admin registrations the admin tests drive (the test client and the browser)."""

from __future__ import annotations

from django.contrib import admin

from audit_events.admin import AuditedAdminMixin

from .models import Author, Book, Review, Unregistered


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
