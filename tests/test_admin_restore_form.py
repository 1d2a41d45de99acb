"""A version restore goes through the admin's change form (choices, validation), as Django's change view does."""

from __future__ import annotations

from typing import Any

import pytest
from django import forms
from django.contrib import admin
from django.test import Client, override_settings
from django.urls import path, reverse

from audit_events.admin import AuditedAdminMixin
from audit_events.models import Event
from tests.models import Author, Book

pytestmark = pytest.mark.django_db

site = admin.AdminSite(name="formsite")


class BookForm(forms.ModelForm):  # type: ignore[type-arg]
    def clean(self) -> Any:
        data = super().clean()
        if data.get("title", "").startswith("Forbidden"):
            raise forms.ValidationError("Titles may not be forbidden.")
        return data


@admin.register(Book, site=site)
class ChoiceLimitedBookAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Only authors not ``Blocked…`` may be chosen (a usual ``formfield_for_foreignkey`` rule); the form's
    ``clean()`` refuses ``Forbidden…`` titles."""

    fields = ("author", "title")
    form = BookForm

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


@override_settings(ROOT_URLCONF=__name__)
def test_restore_preview_shows_the_forms_errors_and_a_post_writes_nothing(admin_client: Client) -> None:
    good = Author.objects.create(name="Good")
    book = Book.objects.create(author=good, title="Forbidden fruit")
    first = Event.objects.get(content_type__model="book", object_pk=str(book.pk))
    book.title = "Allowed"
    book.save()
    restore = reverse("formsite:tests_book_audit_restore", args=[book.pk, first.pk])
    preview = admin_client.get(restore).content.decode()
    assert "Titles may not be forbidden." in preview
    assert "Yes, restore this version" not in preview
    refused = admin_client.post(restore)
    assert refused.status_code == 200
    assert "Titles may not be forbidden." in refused.content.decode()
    book.refresh_from_db()
    assert book.title == "Allowed"
    assert Event.objects.filter(content_type__model="book", object_pk=str(book.pk)).count() == 2
    # A version the form accepts is restored.
    book.title = "Allowed 2"
    book.save()
    second = Event.objects.get(content_type__model="book", object_pk=str(book.pk), version=2)
    assert admin_client.post(reverse("formsite:tests_book_audit_restore", args=[book.pk, second.pk])).status_code == 302
    book.refresh_from_db()
    assert book.title == "Allowed"
