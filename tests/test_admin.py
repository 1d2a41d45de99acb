"""The admin through Django's test client: the Event admin, history, restore a version, undo delete, permissions."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit_events.models import Action, Event
from tests.helpers import at_commit, spec_of
from tests.models import Author, Book, Review

pytestmark = pytest.mark.django_db


# --- helpers ----------------------------------------------------------------


def snapshot() -> tuple[dict[str, list[dict[str, Any]]], list[tuple[Any, ...]]]:
    """Every row of the test tables and every event: to prove a refused request wrote nothing."""
    rows = {model._meta.label: list(model._base_manager.order_by("pk").values()) for model in (Author, Book, Review)}
    return rows, list(Event.objects.order_by("id").values_list("id", "object_pk", "version", "action"))


def make_family(name: str = "Ursula", email: str | None = "ursula@example.com") -> Author:
    """An author with two books, each with reviews: 1 + 2 + 3 rows."""
    author = Author.objects.create(name=name, email=email)
    first = Book.objects.create(author=author, title="The Dispossessed", pages=387)
    second = Book.objects.create(author=author, title="The Lathe of Heaven", pages=184)
    Review.objects.create(book=first, stars=5)
    Review.objects.create(book=first, stars=4)
    Review.objects.create(book=second, stars=5)
    return author


def delete_family(author: Author) -> Event:
    pk = author.pk
    author.delete()
    return Event.objects.get(content_type__model="author", object_pk=str(pk), action=Action.DELETE)


def staff(*perms: str, username: str = "clerk") -> Client:
    """A logged-in staff user holding exactly ``perms`` (codenames like ``tests.add_author``)."""
    user = User.objects.create_user(username, password="pw", is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    client = Client()
    client.force_login(user)
    return client


ALL_ADD = ("tests.add_author", "tests.add_book", "tests.add_review")
# Undo shows the rows it brings back: the user must be allowed to view them too.
ALL_VIEW = ("tests.view_author", "tests.view_book", "tests.view_review")
EVENTS = reverse("admin:audit_events_event_changelist")


# --- the Event admin ----------------------------------------------------------


def test_event_admin_is_read_only_even_for_superusers(admin_client: Client) -> None:
    make_family()
    event = Event.objects.first()
    assert event is not None
    change_url = reverse("admin:audit_events_event_change", args=[event.pk])
    before = snapshot()

    assert admin_client.get(reverse("admin:audit_events_event_add")).status_code == 403
    assert admin_client.post(change_url, {"action": "delete"}).status_code == 403
    assert admin_client.get(reverse("admin:audit_events_event_delete", args=[event.pk])).status_code == 403
    page = admin_client.get(EVENTS)
    assert page.status_code == 200
    assert "delete_selected" not in page.content.decode()
    detail = admin_client.get(change_url)
    assert detail.status_code == 200
    assert 'name="_save"' not in detail.content.decode()
    assert "historylink" not in detail.content.decode()
    assert snapshot() == before


def test_changelist_columns_filters_and_short_diff(admin_client: Client) -> None:
    author = Author.objects.create(name="Old name")
    author.name = "New name"
    author.save()
    body = admin_client.get(EVENTS).content.decode()
    for column in ("column-created_at", "column-model_name", "column-object", "column-action", "column-actor"):
        assert column in body
    assert "name: &#x27;Old name&#x27; → &#x27;New name&#x27;" in body

    updates = admin_client.get(EVENTS, {"action__exact": "update"})
    assert list(updates.context["cl"].result_list) == list(Event.objects.filter(action="update").order_by("-id"))
    author_ct = Event.objects.filter(object_pk=str(author.pk)).first().content_type_id  # type: ignore[union-attr]
    Book.objects.create(author=author, title="t")
    by_model = admin_client.get(EVENTS, {"model": str(author_ct)})
    assert {e.content_type_id for e in by_model.context["cl"].result_list} == {author_ct}


def test_date_hierarchy_lists_the_periods_of_the_events(admin_client: Client) -> None:
    Author.objects.create(name="a")
    event = Event.objects.get()
    page = admin_client.get(EVENTS)
    assert page.status_code == 200
    from django.utils import timezone

    local = timezone.localtime(event.created_at)
    # All events in one month: the hierarchy opens on that month's days.
    day_page = admin_client.get(
        EVENTS, {"created_at__year": local.year, "created_at__month": local.month, "created_at__day": local.day}
    )
    assert list(day_page.context["cl"].result_list) == [event]
    other_year = admin_client.get(EVENTS, {"created_at__year": local.year - 1})
    assert list(other_year.context["cl"].result_list) == []


def test_search_by_object_pk_and_by_actor(admin_client: Client) -> None:
    from audit_events import audit_context

    alice = User.objects.create_user("alice")
    with audit_context(actor=alice):
        by_alice = Author.objects.create(name="by alice")
    Author.objects.bulk_create([Author(name=f"filler {i}") for i in range(5)])
    other = Author.objects.create(name="other")
    assert not User.objects.filter(pk=other.pk).exists()  # its pk must not also match an actor id

    found = admin_client.get(EVENTS, {"q": str(other.pk)}).context["cl"].result_list
    assert [e.object_pk for e in found] == [str(other.pk)]
    found = admin_client.get(EVENTS, {"q": "ALICE"}).context["cl"].result_list
    assert [e.object_pk for e in found] == [str(by_alice.pk)]
    term = str(alice.pk)
    found = admin_client.get(EVENTS, {"q": term}).context["cl"].result_list
    assert any(e.object_pk == str(by_alice.pk) for e in found)
    assert all(term in (e.actor_id, e.object_pk) for e in found)


def test_search_uses_no_like(admin_client: Client) -> None:
    Author.objects.create(name="x")
    with CaptureQueriesContext(connection) as queries:
        admin_client.get(EVENTS, {"q": "42"})
    event_queries = [q["sql"] for q in queries.captured_queries if "audit_events_event" in q["sql"]]
    assert event_queries
    assert not any(" LIKE " in sql.upper() for sql in event_queries)


def test_changelist_query_count_does_not_grow_with_rows(admin_client: Client) -> None:
    def count() -> int:
        at_commit()  # the families' events: not the page's work
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(EVENTS).status_code == 200
        return len(queries)

    make_family("A", "a@example.com")
    few = count()
    for i in range(8):
        make_family(f"Author {i}", f"{i}@example.com")
    assert Event.objects.count() > 40
    assert count() == few


def test_detail_shows_the_diff_as_a_table(admin_client: Client) -> None:
    book = Book.objects.create(author=Author.objects.create(name="a"), title="Draft", pages=10)
    book.title = "Final"
    book.save()
    event = Event.objects.get(action=Action.UPDATE)
    body = admin_client.get(reverse("admin:audit_events_event_change", args=[event.pk])).content.decode()
    assert '<table class="audit-diff">' in body
    assert "<th scope='row'>Title</th><td>Draft</td><td>Final</td>" in body


# --- the Event admin's "Restore the selected deleted objects" ------------------------


def run_restore_action(client: Client, *events: Event) -> Any:
    data = {"action": "restore_deleted", "_selected_action": [str(e.pk) for e in events]}
    return client.post(EVENTS, data, follow=True)


def test_restore_action_brings_back_the_whole_group(admin_client: Client) -> None:
    delete_event = delete_family(make_family())
    assert Author.objects.count() == Book.objects.count() == Review.objects.count() == 0

    response = run_restore_action(admin_client, delete_event)

    assert (Author.objects.count(), Book.objects.count(), Review.objects.count()) == (1, 2, 3)
    texts = [str(m) for m in response.context["messages"]]
    assert texts == ["Restored author “Ursula” together with 2 books, 3 reviews."]
    restores = Event.objects.filter(action=Action.RESTORE)
    assert restores.count() == 6
    assert {e.actor_repr for e in restores} == {"admin"}
    assert {e.context["reason"] for e in restores} == {"undo delete (admin)"}


def test_restore_action_reports_each_refusal_and_writes_nothing_for_it(admin_client: Client) -> None:
    taken = delete_family(make_family("Taken", "taken@example.com"))
    Author.objects.create(name="Newcomer", email="taken@example.com")  # the unique email is taken now
    restored = delete_family(make_family("Again", "again@example.com"))
    run_restore_action(admin_client, restored)
    orphan_author = make_family("Orphan", "orphan@example.com")
    review = Review.objects.filter(book__author=orphan_author).first()
    assert review is not None
    review_pk = review.pk
    review.delete()
    orphan = Event.objects.get(content_type__model="review", object_pk=str(review_pk), action=Action.DELETE)
    delete_family(orphan_author)  # the review's book is gone now
    before = snapshot()

    response = run_restore_action(admin_client, taken, restored, orphan)

    texts = [str(m) for m in response.context["messages"]]
    assert len(texts) == 3
    assert "email" in texts[0].lower()
    assert "Nothing was restored" in texts[0]
    assert "already restored" in texts[1]
    assert "no longer exists" in texts[2]
    assert snapshot() == before


def test_restore_action_skips_events_that_are_not_deletions(admin_client: Client) -> None:
    Author.objects.create(name="alive")
    before = snapshot()
    response = run_restore_action(admin_client, Event.objects.get())
    assert "not deletions" in str(next(iter(response.context["messages"])))
    assert snapshot() == before


def test_restore_action_needs_add_permission_for_every_model_of_the_group() -> None:
    delete_event = delete_family(make_family())
    # Each may view authors: the Event admin lists an author's deletion only to who may view authors.
    no_add_review = ("audit_events.view_event", "tests.view_author", "tests.add_author", "tests.add_book")
    client = staff(*no_add_review)
    before = snapshot()
    data = {"action": "restore_deleted", "_selected_action": [str(delete_event.pk)]}
    assert client.post(EVENTS, data).status_code == 403
    assert snapshot() == before

    blind = staff("audit_events.view_event", "tests.view_author", *ALL_ADD, username="blind")  # not books, reviews
    assert blind.post(EVENTS, data).status_code == 403
    assert snapshot() == before

    allowed = staff("audit_events.view_event", *ALL_ADD, *ALL_VIEW, username="boss")
    allowed.post(EVENTS, data)
    assert Review.objects.count() == 3


# --- the mixin: history -------------------------------------------------------------


def history_url(obj: Any) -> str:
    return reverse(f"admin:tests_{obj._meta.model_name}_history", args=[obj.pk])


def test_history_lists_events_with_diffs_and_restore_buttons(admin_client: Client) -> None:
    author = Author.objects.create(name="First")
    author.name = "Second"
    author.save()
    author.name = "Third"
    author.save()
    body = admin_client.get(history_url(author)).content.decode()
    assert body.count('class="audit-event') == 3
    assert '<td class="before">First</td><td class="after">Second</td>' in body
    # Versions 1 and 2 can be restored; the latest is what the row is already.
    assert body.count("Restore this version") == 2


def test_history_needs_view_permission() -> None:
    author = Author.objects.create(name="a")
    assert staff().get(history_url(author)).status_code == 403
    viewer = staff("tests.view_author", username="viewer")
    page = viewer.get(history_url(author))
    assert page.status_code == 200
    assert "Restore this version" not in page.content.decode()  # needs change permission


def test_history_of_a_deleted_row(admin_client: Client) -> None:
    author = Author.objects.create(name="Gone")
    pk = author.pk
    author.delete()
    page = admin_client.get(reverse("admin:tests_author_history", args=[pk]))
    assert page.status_code == 200
    assert "This row is deleted" in page.content.decode()
    deletion = Event.objects.get(content_type__model="author", object_pk=str(pk), action=Action.DELETE)
    assert f'href="{undo_url(deletion)}"' in page.content.decode()  # "Undo delete" from its own history
    missing = admin_client.get(reverse("admin:tests_author_history", args=[pk + 100]))
    assert (missing.status_code, missing["Location"]) == (302, reverse("admin:index"))  # as Django's history


# --- the mixin: restore a version ------------------------------------------------------


def restore_url(obj: Any, event: Event) -> str:
    return reverse(f"admin:tests_{obj._meta.model_name}_audit_restore", args=[obj.pk, event.pk])


def edited_book() -> tuple[Book, Event]:
    book = Book.objects.create(author=Author.objects.create(name="a"), title="v1", pages=1)
    first = Event.objects.get(object_pk=str(book.pk), content_type__model="book")
    book.title, book.pages = "v2", 2
    book.save()
    return book, first


def test_restore_version_preview_writes_nothing(admin_client: Client) -> None:
    book, first = edited_book()
    before = snapshot()
    page = admin_client.get(restore_url(book, first))
    assert page.status_code == 200
    changes = [(c.name, c.before, c.after) for c in page.context["changes"]]
    assert changes == [("Title", "v2", "v1"), ("Pages", "2", "1")]
    assert "csrfmiddlewaretoken" in page.content.decode()
    assert snapshot() == before


def test_restore_version_post_restores_and_records_the_admin_user(admin_client: Client) -> None:
    book, first = edited_book()
    response = admin_client.post(restore_url(book, first))
    assert response.status_code == 302
    book.refresh_from_db()
    assert (book.title, book.pages) == ("v1", 1)
    event = Event.objects.filter(content_type__model="book", object_pk=str(book.pk)).last()
    assert event is not None
    assert event.action == Action.RESTORE
    assert event.actor_repr == "admin"
    assert (event.changes["title"], event.changes["pages"]) == (["v2", "v1"], [2, 1])


def test_restoring_a_version_equal_to_the_live_row_says_so_and_writes_nothing(admin_client: Client) -> None:
    book, first = edited_book()
    book.title, book.pages = "v1", 1
    book.save()  # version 3 is version 1 again
    before = snapshot()
    preview = admin_client.get(restore_url(book, first))
    assert "already matches version 1" in preview.content.decode()
    assert "Yes, restore this version" not in preview.content.decode()
    response = admin_client.post(restore_url(book, first), follow=True)
    assert [str(m) for m in response.context["messages"]] == [
        f"“{book}” already matches version 1; nothing was written."
    ]
    assert snapshot() == before


def test_restore_version_needs_csrf(admin_user: User) -> None:
    book, first = edited_book()
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    before = snapshot()
    assert client.post(restore_url(book, first)).status_code == 403
    assert snapshot() == before


def test_restore_version_needs_change_permission() -> None:
    book, first = edited_book()
    viewer = staff("tests.view_book")
    before = snapshot()
    assert viewer.get(restore_url(book, first)).status_code == 403
    assert viewer.post(restore_url(book, first)).status_code == 403
    assert snapshot() == before
    editor = staff("tests.view_book", "tests.change_book", username="editor")
    assert editor.post(restore_url(book, first)).status_code == 302
    book.refresh_from_db()
    assert book.title == "v1"


def test_restore_version_refuses_a_deletion_and_a_foreign_event(admin_client: Client) -> None:
    book, _ = edited_book()
    other, other_first = edited_book()
    assert admin_client.get(restore_url(book, other_first)).status_code == 404
    pk = other.pk
    other.delete()
    deletion = Event.objects.get(content_type__model="book", object_pk=str(pk), action=Action.DELETE)
    url = reverse("admin:tests_book_audit_restore", args=[pk, deletion.pk])
    assert admin_client.get(url).status_code == 404


def test_restore_version_of_a_deleted_row_recreates_it(admin_client: Client) -> None:
    book, first = edited_book()
    pk = book.pk
    book.delete()
    url = reverse("admin:tests_book_audit_restore", args=[pk, first.pk])
    assert admin_client.get(url).status_code == 200
    admin_client.post(url)
    assert Book.objects.get(pk=pk).title == "v1"


# --- the mixin: deleted rows and undo delete --------------------------------------------


DELETED = reverse("admin:tests_author_audit_deleted")


def undo_url(event: Event) -> str:
    return reverse("admin:tests_author_audit_undo", args=[event.pk])


def test_changelist_links_to_the_deleted_rows(admin_client: Client) -> None:
    body = admin_client.get(reverse("admin:tests_author_changelist")).content.decode()
    assert f'href="{DELETED}"' in body
    assert "Deleted authors" in body


def test_deleted_view_lists_deleted_rows_with_what_went_with_them(admin_client: Client) -> None:
    delete_event = delete_family(make_family())
    Author.objects.create(name="Alive")
    page = admin_client.get(DELETED)
    body = page.content.decode()
    assert [row["event"] for row in page.context["rows"]] == [delete_event]
    assert "Ursula" in body
    assert "2 books, 3 reviews" in body
    assert f'href="{undo_url(delete_event)}"' in body
    assert "Alive" not in body


def test_undo_delete_restores_the_group(admin_client: Client) -> None:
    delete_event = delete_family(make_family())
    response = admin_client.post(undo_url(delete_event), follow=True)
    assert response.redirect_chain[-1][0] == reverse("admin:tests_author_changelist")
    assert (Author.objects.count(), Book.objects.count(), Review.objects.count()) == (1, 2, 3)
    texts = [str(m) for m in response.context["messages"]]
    assert texts == ["Restored author “Ursula” together with 2 books, 3 reviews."]
    assert admin_client.get(DELETED).context["rows"] == []

    again = admin_client.post(undo_url(delete_event), follow=True)
    assert any("already restored" in str(m) for m in again.context["messages"])


def test_undo_delete_conflict_is_reported_and_writes_nothing(admin_client: Client) -> None:
    delete_event = delete_family(make_family())
    Author.objects.create(name="Newcomer", email="ursula@example.com")
    before = snapshot()
    preview = admin_client.get(undo_url(delete_event)).content.decode()
    assert "cannot be undone as things are now" in preview
    assert "Author with this Email already exists." in preview
    assert "Yes, undo the deletion" not in preview
    response = admin_client.post(undo_url(delete_event), follow=True)
    assert any("email" in str(m).lower() for m in response.context["messages"])
    assert snapshot() == before


def test_undo_delete_shows_a_preview_first(admin_client: Client) -> None:
    delete_event = delete_family(make_family())
    before = snapshot()
    page = admin_client.get(undo_url(delete_event))
    assert page.status_code == 200
    assert "Yes, undo the deletion" in page.content.decode()
    assert snapshot() == before


def test_undo_delete_needs_add_permission_on_every_model_of_the_group() -> None:
    delete_event = delete_family(make_family())
    partial = staff("tests.view_author", "tests.add_author", "tests.add_book")  # reviews were deleted too
    before = snapshot()
    assert partial.get(DELETED).status_code == 200
    assert partial.post(undo_url(delete_event)).status_code == 403
    assert snapshot() == before

    no_view = staff(*ALL_ADD, username="blind")
    assert no_view.get(DELETED).status_code == 403

    no_view_of_children = staff("tests.view_author", *ALL_ADD, username="children")
    assert no_view_of_children.post(undo_url(delete_event)).status_code == 403
    assert snapshot() == before

    full = staff(*ALL_VIEW, *ALL_ADD, username="full")
    assert full.post(undo_url(delete_event)).status_code == 302
    assert Review.objects.count() == 3
    assert {e.actor_repr for e in Event.objects.filter(action=Action.RESTORE)} == {"full"}


def test_undo_delete_needs_csrf(admin_user: User) -> None:
    delete_event = delete_family(make_family())
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    before = snapshot()
    assert client.post(undo_url(delete_event)).status_code == 403
    assert snapshot() == before


# --- writes through the admin carry the admin user --------------------------------------


def test_admin_edits_and_deletes_carry_the_admin_user(admin_client: Client, admin_user: User) -> None:
    author = make_family()
    change = reverse("admin:tests_author_change", args=[author.pk])
    assert admin_client.post(change, {"name": "Renamed", "email": "ursula@example.com"}).status_code == 302
    update = Event.objects.get(action=Action.UPDATE, content_type__model="author")
    assert (update.actor_id, update.actor_repr) == (str(admin_user.pk), "admin")

    delete = reverse("admin:tests_author_delete", args=[author.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 302
    deletions = Event.objects.filter(action=Action.DELETE)
    assert deletions.count() == 6
    assert {e.actor_id for e in deletions} == {str(admin_user.pk)}


# --- odds and ends -----------------------------------------------------------------------


def test_the_object_column_links_to_that_rows_events(admin_client: Client) -> None:
    author = Author.objects.create(name="a")
    author.name = "b"
    author.save()
    Author.objects.create(name="other")
    event = Event.objects.filter(object_pk=str(author.pk)).first()
    assert event is not None
    link = f"?model={event.content_type_id}&amp;object_pk={author.pk}"
    assert link in admin_client.get(EVENTS).content.decode()
    rows = admin_client.get(EVENTS, {"model": event.content_type_id, "object_pk": author.pk}).context["cl"].result_list
    assert [e.version for e in rows] == [2, 1]


def _import_authors_created_in(*years: int) -> None:
    """An importer's create of an author on June 1st of each year (written now, dated then)."""
    import datetime

    from audit_events import journal

    spec = spec_of(Author)
    drafts = [
        journal.Draft.of(
            spec,
            900 + year,
            Action.CREATE,
            state={"id": 900 + year, "name": "imported", "email": None},
            created_at=datetime.datetime(year, 6, 1, tzinfo=datetime.UTC),
            content_type_id=spec.content_type_id(),
        )
        for year in years
    ]
    journal.write(drafts, "default")


def test_date_hierarchy_spans_the_years_between_the_first_and_last_event(admin_client: Client) -> None:
    _import_authors_created_in(2019, 2021)
    Author.objects.create(name="now")
    body = admin_client.get(EVENTS).content.decode()
    this_year = Event.objects.order_by("-id").first().created_at.year  # type: ignore[union-attr]
    for year in range(2019, this_year + 1):
        assert f"created_at__year={year}" in body
    assert "created_at__year=2018" not in body
    months = admin_client.get(EVENTS, {"created_at__year": 2021}).content.decode()
    assert "created_at__month=6" in months
    assert "created_at__month=7" not in months


def test_date_hierarchy_spans_events_imported_out_of_time_order(admin_client: Client) -> None:
    # The span is looked for from the first and last event by id (the time's index is BRIN on PostgreSQL):
    # an older event written later, a later event written earlier, still bound it.
    Author.objects.create(name="first by id")
    this_year = Event.objects.get().created_at.year
    _import_authors_created_in(2019, this_year + 1)
    Author.objects.create(name="last by id")
    body = admin_client.get(EVENTS).content.decode()
    for year in range(2019, this_year + 2):
        assert f"created_at__year={year}" in body
    assert "created_at__year=2018" not in body
    assert f"created_at__year={this_year + 2}" not in body


def test_history_and_deleted_pages_cost_the_same_queries_whatever_their_length(admin_client: Client) -> None:
    def queries(url: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(url).status_code == 200
        return len(captured)

    author = Author.objects.create(name="v1", email="v@example.com")
    delete_family(make_family("Gone 0", "g0@example.com"))
    short_history, short_deleted = queries(history_url(author)), queries(DELETED)
    for version in range(2, 20):
        author.name = f"v{version}"
        author.save()
    for i in range(1, 6):
        delete_family(make_family(f"Gone {i}", f"g{i}@example.com"))
    assert (queries(history_url(author)), queries(DELETED)) == (short_history, short_deleted)


def test_the_mixin_on_an_unrecorded_model_keeps_djangos_pages(admin_client: Client) -> None:
    from tests.models import Unregistered

    thing = Unregistered.objects.create(name="plain")
    assert admin_client.get(reverse("admin:tests_unregistered_history", args=[thing.pk])).status_code == 200
    changelist = admin_client.get(reverse("admin:tests_unregistered_changelist")).content.decode()
    assert "audit_deleted" not in changelist
    assert "Deleted unregistereds" not in changelist
    assert admin_client.get(reverse("admin:tests_unregistered_audit_deleted")).status_code == 404


def test_the_changelist_counts_events_up_to_a_cap(admin_client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    from audit_events.admin import CappedPaginator

    monkeypatch.setattr(CappedPaginator, "cap", 5)
    for i in range(3):
        Author.objects.create(name=f"a{i}")
    assert "3 audit events" in admin_client.get(EVENTS).content.decode()
    for i in range(3):
        Author.objects.create(name=f"b{i}")
    body = admin_client.get(EVENTS).content.decode()
    assert "More than 5 events" in body
    assert "6 audit events" not in body


def test_many_to_many_changes_show_in_the_history_and_the_preview(admin_client: Client) -> None:
    from tests.models import Tag

    book = Book.objects.create(author=Author.objects.create(name="a"), title="Tagged")
    first = Event.objects.get(content_type__model="book", object_pk=str(book.pk))
    sf, classic = Tag.objects.create(name="sf"), Tag.objects.create(name="classic")
    book.tags.add(sf, classic)

    from django.utils.html import strip_tags

    names = f"Tag object ({sf.pk}) (#{sf.pk}), Tag object ({classic.pk}) (#{classic.pk})"  # str() and key
    history = admin_client.get(history_url(book))
    changes = [(c.name, c.before, strip_tags(c.after)) for row in history.context["rows"] for c in row["changes"]]
    assert ("Tags", "—", names) in changes

    preview = admin_client.get(restore_url(book, first))
    assert [(c.name, strip_tags(c.before), c.after) for c in preview.context["changes"]] == [("Tags", names, "—")]
    admin_client.post(restore_url(book, first))
    assert list(book.tags.all()) == []


def test_the_deleted_page_counts_up_to_the_cap_too(admin_client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    from audit_events.admin import CappedPaginator

    monkeypatch.setattr(CappedPaginator, "cap", 2)
    for i in range(3):
        Author.objects.create(name=f"gone {i}").delete()
    body = admin_client.get(DELETED).content.decode()
    assert "More than 2 entries" in body
    assert body.count("Undo delete") == 3


# --- the Event admin for people reading it (issue 13, item 9) ------------------------------------


def test_the_model_column_names_the_app(admin_client: Client) -> None:
    Author.objects.create(name="a")
    assert "Tests \u203a author" in admin_client.get(EVENTS).content.decode()


def test_an_operations_events_are_one_click_away(admin_client: Client) -> None:
    deletion = delete_family(make_family())
    Author.objects.create(name="Unrelated")
    body = admin_client.get(EVENTS).content.decode()
    link = f'href="{EVENTS}?operation={deletion.operation}"'
    assert link in body
    detail = admin_client.get(reverse("admin:audit_events_event_change", args=[deletion.pk])).content.decode()
    assert link in detail
    together = admin_client.get(EVENTS, {"operation": str(deletion.operation)}).context["cl"].result_list
    assert sorted(e.pk for e in together) == sorted(
        Event.objects.filter(operation=deletion.operation).values_list("pk", flat=True)
    )


def test_an_undone_deletion_is_marked_in_the_list_and_its_filter(admin_client: Client) -> None:
    undone = delete_family(make_family())
    still = delete_family(make_family("Other", "o@example.com"))
    from audit_events import restore

    restore(Author, undone.object_pk)
    rows = {e.pk: e for e in admin_client.get(EVENTS).context["cl"].result_list}
    assert rows[undone.pk].undone
    assert not rows[still.pk].undone
    body = admin_client.get(EVENTS).content.decode()
    assert "deleted, undone since" in body
    with CaptureQueriesContext(connection) as queries:
        undone_list = admin_client.get(EVENTS, {"deletion": "undone", "model": undone.content_type_id})
    assert [e.pk for e in undone_list.context["cl"].result_list] == [undone.pk]
    deleted_list = admin_client.get(EVENTS, {"deletion": "deleted", "model": still.content_type_id})
    assert [e.pk for e in deleted_list.context["cl"].result_list] == [still.pk]
    event_sql = [q["sql"].upper() for q in queries.captured_queries if "AUDIT_EVENTS_EVENT" in q["sql"].upper()]
    assert not any(" LIKE " in sql or "DISTINCT" in sql for sql in event_sql)


def test_long_changes_fold_into_a_summary_and_context_shows_as_rows(admin_client: Client) -> None:
    from audit_events import audit_context

    with audit_context(reason="ticket <42>", ticket=42):
        Book.objects.create(author=Author.objects.create(name="a"), title="x" * 60, pages=3)
    body = admin_client.get(EVENTS).content.decode()
    assert "<details><summary>" in body
    assert "<li>pages=3</li>" in body
    event = Event.objects.get(content_type__model="book")
    detail = admin_client.get(reverse("admin:audit_events_event_change", args=[event.pk])).content.decode()
    assert "<tr><th scope='row'>reason</th><td>ticket &lt;42&gt;</td></tr>" in detail
    assert "<tr><th scope='row'>ticket</th><td>42</td></tr>" in detail


def test_the_audit_pages_use_djangos_breadcrumbs_markup(admin_client: Client) -> None:
    """An ``ol.breadcrumbs`` where Django's own pages have one (Django 6), a ``div`` before."""
    author = Author.objects.create(name="First")
    first = Event.objects.get()
    author.name = "Second"
    author.save()
    own = admin_client.get(reverse("admin:tests_author_change", args=[author.pk])).content.decode()
    markup = '<ol class="breadcrumbs">' if '<ol class="breadcrumbs">' in own else '<div class="breadcrumbs">'
    deletion = delete_family(make_family())
    pages = [
        history_url(author),
        reverse("admin:tests_author_audit_restore", args=[author.pk, first.pk]),
        DELETED,
        undo_url(deletion),
    ]
    for page in pages:
        body = admin_client.get(page).content.decode()
        assert markup in body, page
        assert body.count("breadcrumbs") == own.count("breadcrumbs"), page
    history = admin_client.get(history_url(author)).content.decode()
    change = reverse("admin:tests_author_change", args=[author.pk])
    if markup.startswith("<ol"):
        assert f'<li><a href="{change}">Second</a></li>' in history
        assert '<li aria-current="page">History</li>' in history
    else:
        assert f'&rsaquo; <a href="{change}">Second</a>' in history
