"""Review 13: a version restore skips the admin's form (choices, validation) that Django's change view applies."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.test import Client, override_settings
from django.urls import path, reverse

from audit_events.admin import AuditedAdminMixin
from audit_events.models import Event
from tests.models import Author, Book

pytestmark = pytest.mark.django_db

site = admin.AdminSite(name="formsite")


@admin.register(Book, site=site)
class ChoiceLimitedBookAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Only authors not ``Blocked…`` may be chosen (a usual ``formfield_for_foreignkey`` rule)."""

    fields = ("author", "title")

    def formfield_for_foreignkey(self, db_field: Any, request: Any, **kwargs: Any) -> Any:
        if db_field.name == "author":
            kwargs["queryset"] = Author.objects.exclude(name__startswith="Blocked")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


urlpatterns = [path("formsite/", site.urls)]


@override_settings(ROOT_URLCONF=__name__)
def test_restore_sets_a_foreign_key_the_form_refuses(admin_client: Client) -> None:
    blocked, good = Author.objects.create(name="Blocked Corp"), Author.objects.create(name="Good")
    book = Book.objects.create(author=blocked, title="T")
    first = Event.objects.get(content_type__model="book", object_pk=str(book.pk))
    book.author = good
    book.save()
    change = reverse("formsite:tests_book_change", args=[book.pk])
    # Django's own change view refuses the blocked author.
    refused = admin_client.post(change, {"author": blocked.pk, "title": "T"})
    assert refused.status_code == 200
    assert "Select a valid choice" in refused.content.decode()
    admin_client.post(reverse("formsite:tests_book_audit_restore", args=[book.pk, first.pk]))
    book.refresh_from_db()
    assert book.author_id == good.pk  # FAILS: the restore wrote the blocked author
