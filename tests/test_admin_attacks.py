"""The admin attacked by a staff user with limited rights: each test asserts the refusal (a failure is a leak)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from audit_events.models import Action, Event
from tests.models import Author, Book, Tag
from tests.test_admin import delete_family, staff

pytestmark = pytest.mark.django_db


def rurl(name: str, *args: Any) -> str:
    return reverse(f"restricted:{name}", args=args)


# 1. Undo delete writes Book.editor, a field the restricted Book admin's form does not offer the user.
def test_undo_reattach_writes_a_field_outside_the_change_form() -> None:
    editor = Author.objects.create(name="Editor")
    book = Book.objects.create(author=Author.objects.create(name="Other"), title="Edited", editor=editor)
    deletion = delete_family(editor)  # SET_NULL: book.editor -> NULL in the deletion's operation
    client = staff("tests.view_author", "tests.add_author", "tests.view_book", "tests.change_book")
    # Django's own change form of the restricted site does not let this user edit `editor`.
    form = client.get(rurl("tests_book_change", book.pk)).content.decode()
    assert 'name="editor"' not in form
    response = client.post(rurl("tests_author_audit_undo", deletion.pk))
    book.refresh_from_db()
    assert response.status_code == 403 or book.editor_id is None  # FAILS: 302 and editor_id written back


# 2. The undo preview's conflict list names a recreated row the user may not view.
def test_undo_preview_conflict_names_a_row_the_user_may_not_view(admin_client: Client) -> None:
    public = Author.objects.create(name="Public A", email="a@example.com")
    secret = Author.objects.create(name="Secret B", email="b@example.com")
    assert admin_client.get(rurl("tests_author_change", secret.pk)).status_code == 403  # Django refuses it
    Author.objects.filter(pk__in=[public.pk, secret.pk]).delete()  # one operation
    Author.objects.create(name="Newcomer", email="b@example.com")  # takes Secret B's unique email
    deletion = Event.objects.get(content_type__model="author", object_pk=str(public.pk), action=Action.DELETE)
    body = admin_client.get(rurl("tests_author_audit_undo", deletion.pk)).content.decode()
    assert "a row you may not view" in body  # the row list hides it...
    assert "Secret B" not in body  # FAILS: ...the conflict list names it


# 3. display_recorded_value masks a field on the audit pages, but the Event changelist shows it raw.
def test_event_changelist_bypasses_display_recorded_value(admin_client: Client, monkeypatch: Any) -> None:
    from tests.admin import RestrictedAuthorAdmin

    def masked(self: Any, field: Any, value: Any) -> str | None:
        return "•••" if field.name == "email" else None

    monkeypatch.setattr(RestrictedAuthorAdmin, "display_recorded_value", masked)
    author = Author.objects.create(name="Ursula", email="u@example.com")
    history = admin_client.get(rurl("tests_author_history", author.pk)).content.decode()
    assert "u@example.com" not in history  # the history page masks it
    event = Event.objects.get(content_type__model="author", object_pk=str(author.pk))
    detail = admin_client.get(rurl("audit_events_event_change", event.pk)).content.decode()
    assert "u@example.com" not in detail  # the event's page masks it
    listing = admin_client.get(rurl("audit_events_event_changelist")).content.decode()
    assert "u@example.com" not in listing  # FAILS: the changelist's "changes" column shows it


# 4. A model with an admin on one site only: the other site's Event admin shows its hidden rows' values.
def test_event_admin_of_another_site_shows_rows_the_models_admin_hides() -> None:
    tag = Tag.objects.create(name="Hidden tag")  # RestrictedTagAdmin.get_queryset hides it from non-superusers
    client = staff("tests.view_tag", "audit_events.view_event")
    assert client.get(rurl("tests_tag_change", tag.pk)).status_code == 302  # Django: "doesn't exist"
    assert "Hidden tag" not in client.get(rurl("audit_events_event_changelist")).content.decode()
    listing = client.get(reverse("admin:audit_events_event_changelist")).content.decode()
    assert "Hidden tag" not in listing  # FAILS: the default site's Event admin lists it with its value


# 5. ...and its "Restore the selected deleted objects" action recreates a row the model's admin refuses.
def test_event_admin_action_of_another_site_undoes_a_refused_deletion() -> None:
    tag = Tag.objects.create(name="Secret tag")  # RestrictedTagAdmin refuses it in has_view/change_permission
    pk = tag.pk
    tag.delete()
    deletion = Event.objects.get(content_type__model="tag", object_pk=str(pk), action=Action.DELETE)
    client = staff("tests.view_tag", "tests.add_tag", "audit_events.view_event")
    # The restricted site (the only admin of Tag) refuses this undo.
    assert client.get(rurl("tests_tag_audit_undo", deletion.pk)).status_code in (403, 404)
    client.post(
        reverse("admin:audit_events_event_changelist"),
        {"action": "restore_deleted", "_selected_action": [deletion.pk]},
    )
    assert not Tag.objects.filter(pk=pk).exists()  # FAILS: recreated through the default site


def test_setup_sanity() -> None:
    assert User.objects.count() == 0


# 6. Any UPDATE in a deletion's operation is reverted by its undo, whatever the field: here `pages`,
# read-only in the restricted Book admin (e.g. a post_delete handler or code run inside operation()).
def test_undo_reverts_a_read_only_field_updated_in_the_deletions_operation() -> None:
    from audit_events.operations import operation
    from tests.models import Review

    book = Book.objects.create(author=Author.objects.create(name="A"), title="T", pages=100)
    review = Review.objects.create(book=book, stars=5)
    with operation():  # e.g. a post_delete handler keeping a counter on the parent
        book.pages = 99
        book.save()
        review.delete()
    book.refresh_from_db()
    deletion = Event.objects.get(content_type__model="review", action=Action.DELETE)
    client = staff("tests.view_review", "tests.add_review", "tests.view_book", "tests.change_book")
    form = client.get(rurl("tests_book_change", book.pk)).content.decode()
    assert 'name="pages"' not in form  # read-only for this user in Django's own form
    client.post(rurl("tests_review_audit_undo", deletion.pk))
    book.refresh_from_db()
    assert book.pages == 99  # FAILS: the undo wrote pages back to 100


# controls (expected to pass): CSRF and facets/search on the Event admin
def test_control_csrf() -> None:
    author = Author.objects.create(name="Ursula")
    first = Event.objects.get(content_type__model="author", object_pk=str(author.pk))
    author.name = "Le Guin"
    author.save()
    user = User.objects.create_superuser("root", password="pw")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(rurl("tests_author_audit_restore", author.pk, first.pk)).status_code == 403
    pk = author.pk
    author.delete()
    deletion = Event.objects.get(content_type__model="author", object_pk=str(pk), action=Action.DELETE)
    assert client.post(rurl("tests_author_audit_undo", deletion.pk)).status_code == 403
    assert not Author.objects.filter(pk=pk).exists()


def test_control_facets_and_search() -> None:
    tag = Tag.objects.create(name="Hidden tag")
    client = staff("tests.view_tag", "audit_events.view_event")
    for query in ("?_facets=1", f"?q={tag.pk}", f"?object_pk={tag.pk}", "?o=2&action=create"):
        body = client.get(rurl("audit_events_event_changelist") + query).content.decode()
        assert "Hidden tag" not in body
        assert "0 events" in body or "0 audit" in body.lower() or "(1)" not in body
