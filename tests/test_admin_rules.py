"""The audit views obey the ModelAdmin's rules as Django's own views do: rows, fields, every model written.

The ``restricted`` admin site (tests/admin.py) hides ``Hidden…`` rows from
``get_queryset()`` (and deleted ones from ``deleted_row_in_queryset()``), refuses
``Secret…`` rows in ``has_view_permission(obj)`` and ``Locked…`` rows in
``has_change_permission(obj)``; its Book admin makes ``pages`` read-only and
leaves ``editor`` and ``tags`` out of the form, its Review admin excludes
``stars``, its Tag admin hides ``Hidden…`` tags from users other than
superusers in ``get_queryset()`` only. Row rules bind superusers too, so most
tests run as one.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit_events.models import Action, Event
from tests.helpers import at_commit
from tests.models import Author, Book, Review, Tag
from tests.test_admin import EVENTS, delete_family, make_family, snapshot, staff

pytestmark = pytest.mark.django_db

INDEX = reverse("restricted:index")


def url(name: str, *args: Any) -> str:
    return reverse(f"restricted:tests_{name}", args=args)


def assert_undo_refused(client: Client, model: str, deletion: Event, reason: str) -> str:
    """The undo preview says ``reason`` and offers no button; a POST is refused and writes nothing."""
    before = snapshot()
    preview = client.get(url(f"{model}_audit_undo", deletion.pk)).content.decode()
    assert f"undoing this deletion {reason}" in preview
    assert "Yes, undo the deletion" not in preview
    assert client.post(url(f"{model}_audit_undo", deletion.pk)).status_code == 403
    assert snapshot() == before
    return preview


def renamed(name: str, then: str) -> tuple[Author, Event]:
    """An author created as ``name`` and renamed ``then``: version 1 can be restored."""
    author = Author.objects.create(name=name, email=f"{name.lower()}@example.com")
    first = Event.objects.get(content_type__model="author", object_pk=str(author.pk))
    author.name = then
    author.save()
    return author, first


def assert_missing_redirect(response: Any, pk: Any) -> None:
    """Django's answer for an object the admin does not show: a redirect to the index with a warning."""
    assert response.status_code == 302
    assert response["Location"] == INDEX
    texts = [str(m) for m in get_messages(response.wsgi_request)]
    assert texts[-1] == f"author with ID “{pk}” doesn\u2019t exist. Perhaps it was deleted?"


# --- 1. row rules: get_queryset() and has_*_permission(request, obj) ----------------------------


def test_history_of_a_row_hidden_by_get_queryset_answers_as_djangos_history(admin_client: Client) -> None:
    author, _ = renamed("Visible", "Hidden Bob")
    response = admin_client.get(url("author_history", author.pk))
    assert_missing_redirect(response, author.pk)
    assert "Visible" not in response.content.decode()
    # Django's own change page answers the same.
    assert admin_client.get(url("author_change", author.pk))["Location"] == INDEX


def test_history_of_a_row_the_admin_may_not_view_is_403(admin_client: Client) -> None:
    author, _ = renamed("Public", "Secret Bob")
    assert admin_client.get(url("author_change", author.pk)).status_code == 403  # Django's own answer
    assert admin_client.get(url("author_history", author.pk)).status_code == 403


def test_restore_of_a_row_hidden_by_get_queryset_writes_nothing(admin_client: Client) -> None:
    author, first = renamed("Visible", "Hidden Bob")
    before = snapshot()
    assert_missing_redirect(admin_client.get(url("author_audit_restore", author.pk, first.pk)), author.pk)
    assert_missing_redirect(admin_client.post(url("author_audit_restore", author.pk, first.pk)), author.pk)
    assert snapshot() == before


def test_a_hidden_row_is_missing_for_a_user_without_add_permission_too() -> None:
    author, first = renamed("Visible", "Hidden Bob")
    client = staff("tests.view_author", "tests.change_author")
    assert_missing_redirect(client.get(url("author_audit_restore", author.pk, first.pk)), author.pk)
    assert_missing_redirect(client.get(url("author_history", author.pk)), author.pk)


def test_restore_of_a_row_the_admin_may_not_change_is_403(admin_client: Client) -> None:
    author, first = renamed("Open", "Locked Bob")
    before = snapshot()
    assert admin_client.get(url("author_history", author.pk)).status_code == 200  # may view
    assert admin_client.get(url("author_audit_restore", author.pk, first.pk)).status_code == 403
    assert admin_client.post(url("author_audit_restore", author.pk, first.pk)).status_code == 403
    assert snapshot() == before


def test_a_deleted_row_is_judged_by_the_row_rules_on_its_last_recorded_state(admin_client: Client) -> None:
    author, first = renamed("Public", "Secret Bob")
    pk = author.pk
    author.delete()
    deletion = Event.objects.get(content_type__model="author", object_pk=str(pk), action=Action.DELETE)
    Author.objects.create(name="Gone but public").delete()
    before = snapshot()

    listing = admin_client.get(url("author_audit_deleted"))
    assert listing.status_code == 200
    body = listing.content.decode()
    assert "Gone but public" in body
    assert "Secret Bob" not in body
    assert admin_client.get(url("author_history", pk)).status_code == 403
    assert admin_client.get(url("author_audit_restore", pk, first.pk)).status_code == 403
    assert admin_client.post(url("author_audit_restore", pk, first.pk)).status_code == 403
    assert admin_client.get(url("author_audit_undo", deletion.pk)).status_code == 403
    assert admin_client.post(url("author_audit_undo", deletion.pk)).status_code == 403
    assert snapshot() == before


def deleted_with_a_secret_book() -> Event:
    """An author deleted with a book whose row rule the restricted site's Book admin refuses."""
    author = Author.objects.create(name="Ursula")
    Book.objects.create(author=author, title="Secret diary")
    return delete_family(author)


def test_undo_refuses_when_a_row_deleted_with_it_is_out_of_the_users_rules(admin_client: Client) -> None:
    deletion = deleted_with_a_secret_book()
    before = snapshot()
    preview = admin_client.get(url("author_audit_undo", deletion.pk)).content.decode()
    assert "undoing this deletion recreates books that you may not view" in preview
    assert "Book object" not in preview  # the preview names no row the user may not view
    assert "a row you may not view" in preview
    assert admin_client.post(url("author_audit_undo", deletion.pk)).status_code == 403
    assert snapshot() == before


def test_the_event_admin_action_applies_the_same_rules(admin_client: Client) -> None:
    deletion = deleted_with_a_secret_book()
    before = snapshot()
    # The restricted Author admin filters rows in get_queryset(): the Event admin lists no deleted author
    # there (see section 6), so the action finds nothing to restore.
    changelist = reverse("restricted:audit_events_event_changelist")
    response = admin_client.post(changelist, {"action": "restore_deleted", "_selected_action": [deletion.pk]})
    assert response.status_code == 302
    assert snapshot() == before
    # On a model whose admin does not filter rows, the action asks the site's admins as the undo page does.
    review = Review.objects.create(book=Book.objects.create(author=Author.objects.create(name="Zq"), title="Open"))
    review_pk = review.pk
    review.delete()
    review_deletion = Event.objects.get(content_type__model="review", object_pk=str(review_pk), action=Action.DELETE)
    clerk = staff("audit_events.view_event", "tests.view_review")  # may not add reviews
    before = snapshot()
    data = {"action": "restore_deleted", "_selected_action": [review_deletion.pk]}
    assert clerk.post(changelist, data).status_code == 403
    assert snapshot() == before
    # The default site's admins have no row rules: the same request is allowed there.
    default = reverse("admin:audit_events_event_changelist")
    data = {"action": "restore_deleted", "_selected_action": [deletion.pk]}
    assert admin_client.post(default, data).status_code == 302
    assert Book.objects.filter(title="Secret diary").exists()


# --- 2. "Restore this version" honours the ModelAdmin's field rules ------------------------------


def edited_book() -> tuple[Book, Event, Author, Tag]:
    first_author, editor = Author.objects.create(name="First"), Author.objects.create(name="Editor")
    book = Book.objects.create(author=first_author, title="v1", pages=100, editor=editor)
    tag = Tag.objects.create(name="sf")
    book.tags.add(tag)
    first = Event.objects.filter(content_type__model="book", object_pk=str(book.pk)).order_by("version").last()
    assert first is not None
    book.title, book.pages, book.editor = "v2", 200, None
    book.save()
    book.tags.clear()
    return book, first, editor, tag


def test_restore_keeps_the_live_value_of_fields_the_user_cannot_edit(admin_client: Client) -> None:
    book, first, _, _ = edited_book()
    before = snapshot()
    preview = admin_client.get(url("book_audit_restore", book.pk, first.pk))
    assert preview.status_code == 200
    assert [(c.name, c.before, c.after) for c in preview.context["changes"]] == [("Title", "v2", "v1")]
    # Pages is read-only in the form: shown, kept. Editor and tags are not in the form: kept, not shown.
    assert [c.name for c in preview.context["kept"]] == ["Pages"]
    assert "it keeps its current value" in preview.content.decode()
    assert snapshot() == before  # the preview writes nothing

    assert admin_client.post(url("book_audit_restore", book.pk, first.pk)).status_code == 302
    book.refresh_from_db()
    assert (book.title, book.pages, book.editor_id, list(book.tags.all())) == ("v1", 200, None, [])


def test_restore_with_only_uneditable_differences_writes_nothing(admin_client: Client) -> None:
    book, _, _, _ = edited_book()
    book.title = "v3"
    book.save()
    second = Event.objects.filter(content_type__model="book", object_pk=str(book.pk)).order_by("version")
    target = next(e for e in second if e.changes.get("title") == ["v1", "v2"])
    book.title = "v2"
    book.save()  # back to v2: the target version differs only in pages, editor, tags
    before = snapshot()
    preview = admin_client.get(url("book_audit_restore", book.pk, target.pk))
    assert list(preview.context["changes"]) == []
    response = admin_client.post(url("book_audit_restore", book.pk, target.pk), follow=True)
    assert snapshot() == before
    assert [str(m) for m in response.context["messages"]] == [
        f"“{book}” already matches version {target.version}; nothing was written."
    ]


def test_restore_in_the_default_admin_restores_every_field(admin_client: Client) -> None:
    book, first, editor, tag = edited_book()
    assert admin_client.post(reverse("admin:tests_book_audit_restore", args=[book.pk, first.pk])).status_code == 302
    book.refresh_from_db()
    assert (book.title, book.pages, book.editor_id, list(book.tags.all())) == ("v1", 100, editor.pk, [tag])


# --- 3. undo-delete needs the permissions of every model it writes ---------------------------------


def edited_by(author: Author) -> Book:
    """A book of another author, edited by ``author``: deleting ``author`` sets ``editor`` to NULL."""
    return Book.objects.create(author=Author.objects.create(name="Other"), title="Edited", editor=author)


def test_undo_delete_needs_change_permission_on_the_rows_it_reattaches() -> None:
    author = Author.objects.create(name="Editor")
    book = edited_by(author)
    deletion = delete_family(author)
    client = staff("tests.view_author", "tests.add_author")
    before = snapshot()

    preview = client.get(reverse("admin:tests_author_audit_undo", args=[deletion.pk]))
    assert preview.status_code == 200
    body = preview.content.decode()
    assert "Can change book" in body
    assert "You may not" in body
    assert "Yes, undo the deletion" not in body

    assert "undoing this deletion also writes books, which you may not change" in body
    # As Django's delete_view with missing permissions: the confirmation said why, a POST is refused.
    assert client.post(reverse("admin:tests_author_audit_undo", args=[deletion.pk])).status_code == 403
    assert snapshot() == before

    allowed = staff("tests.view_author", "tests.add_author", "tests.view_book", "tests.change_book", username="ok")
    assert allowed.post(reverse("admin:tests_author_audit_undo", args=[deletion.pk])).status_code == 302
    book.refresh_from_db()
    assert book.editor_id == deletion.state["id"]


def test_undo_delete_needs_every_field_it_writes_to_be_editable_in_the_change_form() -> None:
    """The restricted Book admin leaves ``editor`` out of the form and makes ``pages`` read-only: an undo that
    gives a book its editor back, or reverts pages updated in the deletion's operation, is refused."""
    from audit_events.operations import operation

    author = Author.objects.create(name="Editor")
    book = edited_by(author)
    deletion = delete_family(author)
    client = staff("tests.view_author", "tests.add_author", "tests.view_book", "tests.change_book")
    assert_undo_refused(client, "author", deletion, "also writes editor of books, which you may not edit")

    book.refresh_from_db()
    review = Review.objects.create(book=book, stars=4)
    with operation():
        book.pages = 7
        book.save()
        review.delete()
    removal = Event.objects.get(content_type__model="review", action=Action.DELETE)
    reviewer = staff("tests.view_review", "tests.add_review", "tests.view_book", "tests.change_book", username="r")
    assert_undo_refused(reviewer, "review", removal, "also writes pages of books, which you may not edit")
    # The default site's Book admin lets the user edit every field: the same undo goes through there.
    assert reviewer.post(reverse("admin:tests_review_audit_undo", args=[removal.pk])).status_code == 302
    book.refresh_from_db()
    assert book.pages != 7


def test_undo_delete_preview_lists_rows_links_and_permissions(admin_client: Client) -> None:
    author = make_family()
    edited_by(author)
    deletion = delete_family(author)
    before = snapshot()
    page = admin_client.get(reverse("admin:tests_author_audit_undo", args=[deletion.pk]))
    assert page.status_code == 200
    assert snapshot() == before
    plan = page.context["plan"]
    assert [(group.model, len(group.rows)) for group in plan.recreated] == [(Author, 1), (Book, 2), (Review, 3)]
    assert [(group.model, len(group.rows)) for group in plan.reattached] == [(Book, 1)]
    body = page.content.decode()
    assert "Ursula" in body
    assert "Book object" in body
    assert "Review object" in body
    assert "csrfmiddlewaretoken" in body


# --- 4. what held: CSRF on every write, escaping of every value -----------------------------------

PAYLOADS = ('<script>alert("x")</script>', '" onmouseover="alert(1)', "'><img src=x onerror=alert(1)>")


@pytest.mark.parametrize("payload", PAYLOADS)
def test_every_page_and_message_escapes_recorded_values(admin_client: Client, payload: str) -> None:
    from django.utils.html import escape

    author = Author.objects.create(name=payload, email="p@example.com")
    first = Event.objects.get(content_type__model="author", object_pk=str(author.pk))
    author.name = payload + "2"
    author.save()
    Book.objects.create(author=author, title=payload)
    event = Event.objects.filter(content_type__model="book").first()
    assert event is not None
    pages = [
        reverse("admin:tests_author_history", args=[author.pk]),
        reverse("admin:tests_author_audit_restore", args=[author.pk, first.pk]),
        reverse("admin:audit_events_event_changelist"),
        reverse("admin:audit_events_event_change", args=[event.pk]),
    ]
    restored = admin_client.post(pages[1], follow=True)  # its flash message names the row
    pk = author.pk
    author.delete()
    deletion = Event.objects.get(content_type__model="author", object_pk=str(pk), action=Action.DELETE)
    pages += [
        reverse("admin:tests_author_audit_deleted"),
        reverse("admin:tests_author_history", args=[pk]),
        reverse("admin:tests_author_audit_undo", args=[deletion.pk]),
    ]
    bodies = [admin_client.get(page).content.decode() for page in pages]
    undone = admin_client.post(pages[-1], follow=True)
    bodies += [restored.content.decode(), undone.content.decode()]
    assert [str(m) for m in restored.context["messages"]] == [f"Restored “{payload}” to version 1."]
    assert [str(m) for m in undone.context["messages"]] == [f"Restored author “{payload}” together with 1 book."]
    for page, body in zip([*pages, "restore message", "undo message"], bodies, strict=True):
        assert payload not in body, page
        assert escape(payload) in body, page


def test_every_write_needs_a_csrf_token(admin_user: Any) -> None:
    author = make_family()
    first = Event.objects.get(content_type__model="author", object_pk=str(author.pk))
    author.name = "Renamed"
    author.save()
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    restore = reverse("admin:tests_author_audit_restore", args=[author.pk, first.pk])
    assert "csrfmiddlewaretoken" in client.get(restore).content.decode()
    deletion = delete_family(author)
    before = snapshot()
    undo = reverse("admin:tests_author_audit_undo", args=[deletion.pk])
    assert "csrfmiddlewaretoken" in client.get(undo).content.decode()
    action = {"action": "restore_deleted", "_selected_action": [deletion.pk]}
    for url, data in ((restore, {}), (undo, {}), (reverse("admin:audit_events_event_changelist"), action)):
        assert client.post(url, data).status_code == 403, url
    assert snapshot() == before


# --- 5. a deleted row is judged by get_queryset()'s rule too (deleted_row_in_queryset) ----------------


def test_a_deleted_row_hidden_by_get_queryset_is_not_listed_read_restored_or_undone(admin_client: Client) -> None:
    author, first = renamed("Plain Zq", "Hidden Carol")
    pk = author.pk
    deletion = delete_family(author)
    Author.objects.create(name="Gone but public").delete()
    before = snapshot()

    body = admin_client.get(url("author_audit_deleted")).content.decode()
    assert "Gone but public" in body
    assert "Hidden Carol" not in body
    # Answered as a row that never existed: Django's redirect for a missing object, a 404 for a missing event.
    assert_missing_redirect(admin_client.get(url("author_history", pk)), pk)
    assert_missing_redirect(admin_client.get(url("author_audit_restore", pk, first.pk)), pk)
    assert_missing_redirect(admin_client.post(url("author_audit_restore", pk, first.pk)), pk)
    assert admin_client.get(url("author_audit_undo", deletion.pk)).status_code == 404
    assert admin_client.post(url("author_audit_undo", deletion.pk)).status_code == 404
    assert snapshot() == before


def test_deleted_rows_are_refused_when_get_queryset_restricts_rows_without_a_deleted_rule() -> None:
    """The Tag admin restricts tags in get_queryset() only, and says nothing of deleted ones: a user it
    restricts sees no deleted tag (it cannot tell which of them get_queryset() would have shown)."""
    plain = Tag.objects.create(name="Plain tag")
    plain_pk = plain.pk
    plain.delete()
    Tag.objects.create(name="Hidden tag").delete()
    deletion = Event.objects.get(content_type__model="tag", object_pk=str(plain_pk), action=Action.DELETE)
    clerk = staff("tests.view_tag", "tests.add_tag", "tests.change_tag")
    before = snapshot()

    listing = clerk.get(url("tag_audit_deleted"))
    assert listing.status_code == 200
    assert listing.context["rows"] == []
    assert "Hidden tag" not in listing.content.decode()
    history = clerk.get(url("tag_history", plain_pk))
    assert (history.status_code, history["Location"]) == (302, INDEX)
    assert clerk.get(url("tag_audit_undo", deletion.pk)).status_code == 404
    assert clerk.post(url("tag_audit_undo", deletion.pk)).status_code == 404
    assert snapshot() == before

    # get_queryset() leaves no tag out for a superuser: the same pages list and open both.
    boss = staff(username="boss")
    User.objects.filter(username="boss").update(is_superuser=True)
    assert len(boss.get(url("tag_audit_deleted")).context["rows"]) == 2
    assert boss.get(url("tag_history", plain_pk)).status_code == 200


def test_undo_refuses_when_it_would_recreate_a_row_hidden_by_get_queryset(admin_client: Client) -> None:
    author = Author.objects.create(name="Ursula")
    Book.objects.create(author=author, title="Hidden diary")
    deletion = delete_family(author)
    preview = assert_undo_refused(admin_client, "author", deletion, "recreates books that you may not view")
    assert "Hidden diary" not in preview


# --- 6. the Event admin obeys the admins of the audited models ----------------------------------------

RESTRICTED_EVENTS = reverse("restricted:audit_events_event_changelist")


def listed(client: Client, **params: Any) -> list[Event]:
    response = client.get(RESTRICTED_EVENTS, params)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def event_url(event: Event, site: str = "restricted") -> str:
    return reverse(f"{site}:audit_events_event_change", args=[event.pk])


def test_the_event_admin_leaves_out_the_events_of_a_row_hidden_by_get_queryset(admin_client: Client) -> None:
    bob, first = renamed("Plain Zq", "Hidden Bob")
    alice = Author.objects.create(name="Alice")
    response = admin_client.get(RESTRICTED_EVENTS)
    authors = {e.object_pk for e in response.context["cl"].result_list if e.content_type.model == "author"}
    assert authors == {str(alice.pk)}
    body = response.content.decode()
    assert "Hidden Bob" not in body
    assert "Plain Zq" not in body
    # Its events are missing everywhere, as Django answers for an object its admin does not show.
    detail = admin_client.get(event_url(first))
    assert (detail.status_code, detail["Location"]) == (302, INDEX)
    assert listed(admin_client, model=first.content_type_id, object_pk=bob.pk) == []
    assert listed(admin_client, operation=str(first.operation)) == []


def test_the_event_admin_shows_no_value_of_a_row_the_user_may_not_view(admin_client: Client) -> None:
    bob, first = renamed("Plain Zq", "Secret Bob")
    response = admin_client.get(RESTRICTED_EVENTS)
    # Listed, as Django's changelist lists a row whose change page refuses it, but without its values.
    assert str(bob.pk) in {e.object_pk for e in response.context["cl"].result_list}
    body = response.content.decode()
    assert "Secret Bob" not in body
    assert "Plain Zq" not in body
    assert "a row you may not view" in body
    assert admin_client.get(event_url(first)).status_code == 403


def test_the_event_admin_judges_a_deleted_row_on_its_last_state(admin_client: Client) -> None:
    """The Tag admin leaves no tag out of a superuser's get_queryset() but refuses ``Secret…`` tags in
    has_view_permission(obj): a deleted secret tag's events are listed without values, and not opened."""
    secret = Tag.objects.create(name="Secret zq")
    secret.name = "Secret zq2"
    secret.save()
    secret_pk = secret.pk
    secret.delete()
    Tag.objects.create(name="Open zq").delete()
    update = Event.objects.get(content_type__model="tag", object_pk=str(secret_pk), action=Action.UPDATE)
    body = admin_client.get(RESTRICTED_EVENTS).content.decode()
    assert "Secret zq" not in body
    assert "Open zq" in body
    assert admin_client.get(event_url(update)).status_code == 403


def test_the_event_admin_leaves_out_deleted_rows_of_an_admin_that_filters_rows(admin_client: Client) -> None:
    """get_queryset() cannot see a deleted row and the Event admin filters in SQL: it lists no deleted
    author, as the Author admin filters rows (their Deleted page, which asks deleted_row_in_queryset(),
    lists the ones the user may see)."""
    hidden = Author.objects.create(name="Hidden Carol")
    hidden_pk = hidden.pk
    hidden.delete()
    public = Author.objects.create(name="Gone Dave")
    public_pk = public.pk
    public.delete()
    authors = {e.object_pk for e in listed(admin_client) if e.content_type.model == "author"}
    assert authors.isdisjoint({str(hidden_pk), str(public_pk)})
    assert "Hidden Carol" not in admin_client.get(RESTRICTED_EVENTS).content.decode()


def test_the_event_admin_shows_a_models_events_only_to_who_may_view_that_model() -> None:
    Author.objects.create(name="Zq author")
    Tag.objects.create(name="Zq tag")
    clerk = staff("audit_events.view_event", "tests.view_tag")
    response = clerk.get(RESTRICTED_EVENTS)
    assert {e.content_type.model for e in response.context["cl"].result_list} == {"tag"}
    assert "Zq author" not in response.content.decode()
    filters = response.context["cl"].filter_specs
    (models,) = [spec for spec in filters if getattr(spec, "parameter_name", None) == "model"]
    assert [label for _, label in models.lookup_choices] == ["tags"]  # the model filter offers no other model
    author_event = Event.objects.get(content_type__model="author")
    detail = clerk.get(event_url(author_event))
    assert (detail.status_code, detail["Location"]) == (302, INDEX)


def test_a_model_without_an_admin_on_the_site_is_for_superusers_only(admin_client: Client) -> None:
    """Tag has an admin on the restricted site only: the default site's Event admin cannot ask it, so only
    superusers see tags' events there, and undo their deletions, whatever the model permissions."""
    tag = Tag.objects.create(name="Open zq tag")
    pk = tag.pk
    tag.delete()
    deletion = Event.objects.get(content_type__model="tag", object_pk=str(pk), action=Action.DELETE)
    clerk = staff("audit_events.view_event", "tests.view_tag", "tests.add_tag", "tests.change_tag")
    assert {e.content_type.model for e in clerk.get(EVENTS).context["cl"].result_list} == set()
    assert clerk.get(event_url(deletion, site="admin")).status_code == 302
    action = {"action": "restore_deleted", "_selected_action": [deletion.pk]}
    clerk.post(EVENTS, action)  # not in the list: nothing to act on
    assert not Tag.objects.filter(pk=pk).exists()
    assert deletion.pk in {e.pk for e in admin_client.get(EVENTS).context["cl"].result_list}
    admin_client.post(EVENTS, action)
    assert Tag.objects.filter(pk=pk).exists()


def test_the_event_admin_shows_only_the_fields_the_change_form_shows(admin_client: Client) -> None:
    book, _, editor, _ = edited_book()
    update = Event.objects.get(content_type__model="book", object_pk=str(book.pk), changes__has_key="title")
    detail = admin_client.get(event_url(update)).content.decode()
    assert "<th scope='row'>Title</th>" in detail
    assert "<th scope='row'>Editor</th>" not in detail
    assert "Only fields not shown here changed." not in detail  # said only of an event with nothing else shown
    links = Event.objects.filter(content_type__model="book", object_pk=str(book.pk), changes__has_key="tags").last()
    assert links is not None
    detail = admin_client.get(event_url(links)).content.decode()
    assert "Tag object" not in detail
    assert "Only fields not shown here changed." in detail
    body = admin_client.get(RESTRICTED_EVENTS).content.decode()
    assert "editor:" not in body
    assert "tags:" not in body
    assert "title: &#x27;v1&#x27; → &#x27;v2&#x27;" in body
    # The Review admin excludes stars.
    review = Review.objects.create(book=book, stars=4)
    event = Event.objects.get(content_type__model="review", object_pk=str(review.pk))
    assert "<th scope='row'>Stars</th>" not in admin_client.get(event_url(event)).content.decode()
    assert "stars=4" not in admin_client.get(RESTRICTED_EVENTS).content.decode()
    assert editor.pk  # the editor still exists: it is the form, not a missing row, that hides it


def test_a_restricted_model_whose_key_sql_cannot_compare_lists_no_event(admin_client: Client) -> None:
    from tests.models import Ticket

    Ticket.objects.create(title="Hidden plan")
    Ticket.objects.create(title="Open plan")
    assert Event.objects.filter(content_type__model="ticket").count() == 2
    assert [e for e in listed(admin_client) if e.content_type.model == "ticket"] == []
    # The default site has no Ticket admin: the model permission alone, every ticket.
    rows = admin_client.get(EVENTS).context["cl"].result_list
    assert len([e for e in rows if e.content_type.model == "ticket"]) == 2


def test_events_of_a_model_no_longer_recorded_are_shown_to_superusers_only(admin_client: Client) -> None:
    from django.contrib.contenttypes.models import ContentType

    from audit_events import journal
    from tests.models import Unregistered

    content_type = ContentType.objects.get_for_model(Unregistered)
    draft = journal.Draft(content_type.pk, "tests.unregistered", "1", Action.CREATE, state={"id": 1, "name": "old"})
    journal.write([draft], "default")
    event = Event.objects.get(content_type=content_type)
    clerk = staff("audit_events.view_event", "tests.view_unregistered")
    assert list(clerk.get(EVENTS).context["cl"].result_list) == []
    assert clerk.get(event_url(event, site="admin")).status_code == 302
    assert [e.pk for e in admin_client.get(EVENTS).context["cl"].result_list] == [event.pk]


def test_the_event_admin_asks_for_the_fields_of_each_row(admin_client: Client) -> None:
    """The restricted Author admin's get_fields(request, obj) leaves the email of ``Quiet…`` authors out."""
    quiet = Author.objects.create(name="Quiet Q", email="quiet@example.com")
    Author.objects.create(name="Loud L", email="loud@example.com")
    body = admin_client.get(RESTRICTED_EVENTS).content.decode()
    assert "loud@example.com" in body
    assert "quiet@example.com" not in body
    event = Event.objects.get(content_type__model="author", object_pk=str(quiet.pk))
    assert "quiet@example.com" not in admin_client.get(event_url(event)).content.decode()
    assert "quiet@example.com" not in admin_client.get(url("author_history", quiet.pk)).content.decode()


def test_the_event_list_costs_the_same_queries_whatever_the_rows_it_judges(admin_client: Client) -> None:
    def count() -> int:
        at_commit()
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(RESTRICTED_EVENTS).status_code == 200
        return len(queries)

    def rows(i: int) -> None:
        author = Author.objects.create(name=f"Plain {i}", email=f"p{i}@example.com")
        Author.objects.create(name=f"Secret {i}", email=f"s{i}@example.com")
        Author.objects.create(name=f"Hidden {i}", email=f"h{i}@example.com")
        book = Book.objects.create(author=author, title=f"Secret {i}")
        Review.objects.create(book=Book.objects.create(author=author, title=f"Open {i}"), stars=3)
        book.delete()
        Tag.objects.create(name=f"tag {i}").delete()

    rows(0)
    few = count()
    for i in range(1, 12):
        rows(i)
    assert Event.objects.count() > 60
    assert count() == few


# --- 7. the history and the version preview show only the fields of the change form ------------------


def test_history_shows_only_the_fields_the_change_form_shows(admin_client: Client) -> None:
    book, _, _, _ = edited_book()
    page = admin_client.get(url("book_history", book.pk))
    assert page.status_code == 200
    names = {change.name for row in page.context["rows"] for change in row["changes"]}
    assert names == {"ID", "Author", "Title", "Pages"}
    body = page.content.decode()
    assert "Editor" not in body
    assert "Tag object" not in body
    assert "Only fields not shown here changed." in body  # the event that cleared the tags
    review = Review.objects.create(book=book, stars=4)
    assert "Stars" not in admin_client.get(url("review_history", review.pk)).content.decode()


def test_the_restore_preview_shows_no_field_outside_the_change_form(admin_client: Client) -> None:
    book, first, _, _ = edited_book()
    preview = admin_client.get(url("book_audit_restore", book.pk, first.pk))
    assert [c.name for c in preview.context["changes"]] == ["Title"]
    assert [c.name for c in preview.context["kept"]] == ["Pages"]
    body = preview.content.decode()
    assert "Editor" not in body
    assert "Tag object" not in body


# --- 8. a key reused by a new row: the earlier row's events are judged as that deleted row's -----------


def reused_tag(before: str, after: str) -> tuple[Tag, Event, Event]:
    """A tag ``before``, renamed, deleted; then a new tag ``after`` created with its key."""
    old = Tag.objects.create(name=before)
    old.name = before + " v2"
    old.save()
    pk = old.pk
    old.delete()
    new = Tag.objects.create(pk=pk, name=after)
    events = Event.objects.filter(content_type__model="tag", object_pk=str(pk))
    return new, events.get(version=1), events.get(version=4)


def test_a_reused_key_hides_the_events_of_an_earlier_row_the_user_may_not_view(admin_client: Client) -> None:
    """The Tag admin refuses ``Secret…`` tags in has_view_permission(obj): the new, open tag with a secret
    tag's key shows its own events only, on its history page and in the Event admin."""
    tag, earlier, own = reused_tag("Secret zq", "Open zq")
    history = admin_client.get(url("tag_history", tag.pk)).content.decode()
    assert "Secret zq" not in history
    assert "Open zq" in history
    body = admin_client.get(RESTRICTED_EVENTS).content.decode()
    assert "Secret zq" not in body
    assert "Open zq" in body
    assert admin_client.get(event_url(earlier)).status_code == 403
    assert admin_client.get(event_url(own)).status_code == 200
    assert admin_client.get(url("tag_audit_restore", tag.pk, earlier.pk)).status_code == 404


def test_a_reused_key_shows_an_earlier_row_the_user_may_view_as_such(admin_client: Client) -> None:
    tag, earlier, _ = reused_tag("Old zq", "New zq")
    history = admin_client.get(url("tag_history", tag.pk)).content.decode()
    assert "Old zq" in history
    assert "an earlier row with this key" in history
    assert url("tag_audit_restore", tag.pk, earlier.pk) not in history  # not a version of this row
    assert admin_client.get(url("tag_audit_restore", tag.pk, earlier.pk)).status_code == 404
    assert admin_client.get(event_url(earlier)).status_code == 200


def test_a_reused_key_of_an_admin_that_filters_rows_lists_the_live_rows_events_only(admin_client: Client) -> None:
    """The Author admin filters rows: as for a deleted row, the Event admin lists no event of an earlier
    row with a live author's key (the author's history page shows those the user may view)."""
    old = Author.objects.create(name="Plain old zq")
    pk = old.pk
    old.delete()
    Author.objects.create(pk=pk, name="Plain new zq")
    listed_versions = {e.version for e in listed(admin_client, object_pk=pk) if e.content_type.model == "author"}
    assert listed_versions == {3}
    history = admin_client.get(url("author_history", pk)).content.decode()
    assert "Plain old zq" in history  # deleted_row_in_queryset() lets this user see that earlier row


def test_the_undo_previews_conflicts_name_only_rows_the_user_may_view(admin_client: Client) -> None:
    public = Author.objects.create(name="Public zq", email="a@example.com")
    secret = Author.objects.create(name="Secret zq", email="b@example.com")
    Author.objects.filter(pk__in=[public.pk, secret.pk]).delete()  # one operation
    Author.objects.create(name="Newcomer 1", email="a@example.com")
    Author.objects.create(name="Newcomer 2", email="b@example.com")
    deletion = Event.objects.get(content_type__model="author", object_pk=str(public.pk), action=Action.DELETE)
    body = admin_client.get(url("author_audit_undo", deletion.pk)).content.decode()
    assert "author “Public zq”: Author with this Email already exists." in body
    assert "author (a row you may not view): Author with this Email already exists." in body
    assert "Secret zq" not in body


def test_the_event_page_shows_the_hash_only_to_who_may_see_every_field_of_the_row(admin_client: Client) -> None:
    """The hash is a SHA-256 over every recorded field: it would confirm a guess of ``stars``, which the
    restricted Review admin excludes from its form."""
    book = Book.objects.create(author=Author.objects.create(name="A"), title="T")
    review = Review.objects.create(book=book, stars=5)
    event = Event.objects.get(content_type__model="review", object_pk=str(review.pk))
    restricted_page = admin_client.get(event_url(event)).content.decode()
    assert event.hash not in restricted_page
    assert "hidden: it covers fields you may not see" in restricted_page
    assert event.hash in admin_client.get(event_url(event, site="admin")).content.decode()
