"""The audit admin follows the change form as Django's change view builds it: fields its ``__init__`` disables
for a row are not written by a restore or an undo, a ``clean`` comparing with the current row judges a
restore, the form's data for the fields a restore keeps is what the change form would post back unchanged,
and a key brought back by ``restore(at=)`` starts a new row for the history page."""

from __future__ import annotations

from typing import Any

import pytest
from django import forms
from django.contrib import admin
from django.test import Client, override_settings
from django.urls import path, reverse

from audit_events.admin import AuditedAdminMixin
from audit_events.models import Action, Event
from tests.models import Author, Book, Everything, Tag

pytestmark = pytest.mark.django_db

site = admin.AdminSite(name="form_rules")


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


class OnlyCharMayChangeForm(forms.ModelForm):  # type: ignore[type-arg]
    """Refuses any change but ``char``: a restore of a version differing only there passes only if every other
    field is posted back exactly as the change form shows it (dates, booleans, JSON, keys, choices)."""

    def clean(self) -> Any:
        changed = set(self.changed_data) - {"char", "title", "pages"}
        if changed:
            raise forms.ValidationError(f"Changed: {sorted(changed)}")
        return super().clean()


@admin.register(Everything, site=site)
class EverythingAdmin(AuditedAdminMixin, admin.ModelAdmin):
    form = OnlyCharMayChangeForm
    exclude = ("url",)  # its form field warns about its default scheme (Django 5)


@admin.register(Tag, site=site)
class TagAdmin(AuditedAdminMixin, admin.ModelAdmin):
    pass


urlpatterns = [path("form_rules/", site.urls)]


def u(name: str, *args: Any) -> str:
    return reverse(f"form_rules:tests_{name}", args=args)


@override_settings(ROOT_URLCONF=__name__)
def test_restore_keeps_a_field_the_form_disables_per_row(admin_client: Client) -> None:
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
def test_restore_is_refused_by_a_clean_method_that_compares_with_the_row(admin_client: Client) -> None:
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
def test_undo_does_not_write_back_a_field_the_form_disables_per_row(admin_client: Client) -> None:
    editor = Author.objects.create(name="Editor")
    book = Book.objects.create(author=Author.objects.create(name="Other"), title="T", editor=editor)
    pk = editor.pk
    editor.delete()  # SET_NULL: book.editor -> NULL in the deletion's operation
    deletion = Event.objects.get(content_type__model="author", object_pk=str(pk), action=Action.DELETE)
    # Django's change form of the book does not let anyone set `editor` (disabled); the undo preview offers its button
    admin_client.post(u("author_audit_undo", deletion.pk))
    book.refresh_from_db()
    assert book.editor_id is None


def test_a_key_brought_back_by_restore_at_hides_the_in_between_rows_events(admin_client: Client) -> None:
    """``restore(model, pk, at=…)`` recreates a key as an earlier row had it, with a ``restore`` event, not a
    ``create``: the events of the row that held the key in between are judged as that deleted row's (refused
    here), not as the live row's; and the row brought back is the earlier one, as it was at ``at``."""
    from audit_events import restore

    public = Author.objects.create(name="Public A", email="a@example.com")
    pk = public.pk
    first = Event.objects.get(content_type__model="author", object_pk=str(pk), version=1)
    public.delete()
    secret = Author.objects.create(pk=pk, name="Secret B", email="secret@example.com")  # refused by has_view_permission
    secret.delete()
    restored = restore(Author, pk, at=first.created_at)  # "Public A" again, as at its first version
    assert (restored.name, restored.email) == ("Public A", "a@example.com")
    history = admin_client.get(reverse("restricted:tests_author_history", args=[pk])).content.decode()
    assert "secret@example.com" not in history


@override_settings(ROOT_URLCONF=__name__)
def test_restore_posts_the_kept_fields_as_the_change_form_shows_them(admin_client: Client) -> None:
    import datetime
    import decimal
    import uuid

    author = Author.objects.create(name="A")
    row = Everything.objects.create(
        char="old",
        decimal=decimal.Decimal("1.2500"),
        flag=True,
        maybe=False,
        day=datetime.date(2024, 2, 29),
        moment=datetime.datetime(2024, 2, 29, 13, 14, 15, tzinfo=datetime.UTC),
        clock=datetime.time(7, 8, 9),
        span=datetime.timedelta(days=1, seconds=5),
        ident=uuid.uuid4(),
        data={"a": [1, 2], "b": None},
        ip="10.0.0.1",
        note="n",
        author=author,
    )
    first = Event.objects.get(content_type__model="everything", object_pk=str(row.pk))
    row.char = "new"
    row.save()
    preview = admin_client.get(u("everything_audit_restore", row.pk, first.pk)).content.decode()
    assert "Changed:" not in preview
    admin_client.post(u("everything_audit_restore", row.pk, first.pk))
    row.refresh_from_db()
    assert row.char == "old"


@override_settings(ROOT_URLCONF=__name__)
def test_restore_posts_many_to_many_links_and_foreign_keys_as_the_change_form_shows_them(
    admin_client: Client,
) -> None:
    book = Book.objects.create(author=Author.objects.create(name="A"), title="T", pages=10)
    book.tags.set([Tag.objects.create(name="x"), Tag.objects.create(name="y")])
    version = Event.objects.filter(content_type__model="book", object_pk=str(book.pk)).order_by("-version")[0]
    book.pages = 30  # may only grow: a restore to 10 pages is refused, not for the links
    book.save()
    preview = admin_client.get(u("book_audit_restore", book.pk, version.pk)).content.decode()
    assert "The page count may only grow." in preview
    assert "This field" not in preview  # no other field refused: the links and keys were posted as shown
