"""review14: attacks on the fixes (each test asserts the refusal; a failure is a leak or a write)."""

from __future__ import annotations

from typing import Any

import pytest
from django import forms
from django.contrib import admin
from django.test import Client, override_settings
from django.urls import path, reverse

from audit_events.admin import AuditedAdminMixin
from audit_events.models import Action, Event
from tests.models import Author, Book

pytestmark = pytest.mark.django_db

site = admin.AdminSite(name="r14")


class TitleFrozenForm(forms.ModelForm):  # type: ignore[type-arg]
    """A usual per-row rule: a book's title and editor cannot be changed once set (the form disables them)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.fields["title"].disabled = True
            self.fields["editor"].disabled = True

    def clean_pages(self) -> Any:
        pages = self.cleaned_data["pages"]
        if self.instance.pk is not None and pages < self.instance.pages:
            raise forms.ValidationError("The page count may only grow.")
        return pages


@admin.register(Book, site=site)
class FrozenBookAdmin(AuditedAdminMixin, admin.ModelAdmin):
    fields = ("author", "title", "pages", "editor")
    form = TitleFrozenForm


@admin.register(Author, site=site)
class PlainAuthorAdmin(AuditedAdminMixin, admin.ModelAdmin):
    fields = ("name", "email")


urlpatterns = [path("r14/", site.urls)]


def u(name: str, *args: Any) -> str:
    return reverse(f"r14:tests_{name}", args=args)


@override_settings(ROOT_URLCONF=__name__)
def test_restore_writes_a_field_the_form_disables_per_row(admin_client: Client) -> None:
    book = Book.objects.create(author=Author.objects.create(name="A"), title="First title")
    first = Event.objects.get(content_type__model="book", object_pk=str(book.pk))
    book.title = "Second title"
    book.save()
    # Django's own change view cannot change it: the disabled field ignores what is posted.
    admin_client.post(u("book_change", book.pk), {"author": book.author_id, "title": "First title", "pages": 0})
    book.refresh_from_db()
    assert book.title == "Second title"
    admin_client.post(u("book_audit_restore", book.pk, first.pk))
    book.refresh_from_db()
    assert book.title == "Second title"


@override_settings(ROOT_URLCONF=__name__)
def test_restore_passes_a_clean_method_that_compares_with_the_row(admin_client: Client) -> None:
    book = Book.objects.create(author=Author.objects.create(name="A"), title="T", pages=10)
    first = Event.objects.get(content_type__model="book", object_pk=str(book.pk))
    book.pages = 20
    book.save()
    refused = admin_client.post(u("book_change", book.pk), {"author": book.author_id, "title": "T", "pages": 10})
    assert "The page count may only grow." in refused.content.decode()
    admin_client.post(u("book_audit_restore", book.pk, first.pk))
    book.refresh_from_db()
    assert book.pages == 20


@override_settings(ROOT_URLCONF=__name__)
def test_undo_writes_back_a_field_the_form_disables_per_row(admin_client: Client) -> None:
    editor = Author.objects.create(name="Editor")
    book = Book.objects.create(author=Author.objects.create(name="Other"), title="T", editor=editor)
    pk = editor.pk
    editor.delete()  # SET_NULL: book.editor -> NULL in the deletion's operation
    deletion = Event.objects.get(content_type__model="author", object_pk=str(pk), action=Action.DELETE)
    # Django's change form of the book does not let anyone set `editor` (disabled); the undo preview offers its button
    admin_client.post(u("author_audit_undo", deletion.pk))
    book.refresh_from_db()
    assert book.editor_id is None


def test_a_key_brought_back_by_restore_at_shows_the_reused_keys_secret_row(admin_client: Client) -> None:
    """``restore(model, pk, at=…)`` recreates a key as an earlier row had it, with a ``restore`` event, not a
    ``create``: the events of the row that held the key in between are then judged as the live row's."""
    from audit_events import restore

    public = Author.objects.create(name="Public A", email="a@example.com")
    pk = public.pk
    first = Event.objects.get(content_type__model="author", object_pk=str(pk), version=1)
    public.delete()
    secret = Author.objects.create(pk=pk, name="Secret B", email="secret@example.com")  # refused by has_view_permission
    secret.delete()
    restore(Author, pk, at=first.created_at)  # "Public A" again, as at its first version
    history = admin_client.get(reverse("restricted:tests_author_history", args=[pk])).content.decode()
    assert "secret@example.com" not in history
