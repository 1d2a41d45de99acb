"""as_of(): a whole table at a moment; diff(): one row between two moments."""

from __future__ import annotations

import datetime

import pytest
from django.conf import settings
from django.db import connection
from django.db.models.signals import post_init
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone

from audit_events import NoHistory, RestoreError, as_of, diff, restore
from audit_events.models import Event
from tests.helpers import at_commit, moment
from tests.models import Author, Book, Tag

pytestmark = pytest.mark.django_db


def test_as_of_gives_the_rows_that_existed_then_as_they_were() -> None:
    ann = Author.objects.create(name="Ann")
    bob = Author.objects.create(name="Bob")
    bob_pk = bob.pk
    then = moment()
    ann.name = "Anne"
    ann.save()
    bob.delete()
    cy = Author.objects.create(name="Cy")

    past = sorted(as_of(Author, then), key=lambda a: a.pk)
    assert [(a.pk, a.name) for a in past] == [(ann.pk, "Ann"), (bob_pk, "Bob")]  # deleted since: included
    assert all(a._state.adding for a in past)  # unsaved instances
    now = sorted(as_of(Author, moment()), key=lambda a: a.pk)
    assert [(a.pk, a.name) for a in now] == [(ann.pk, "Anne"), (cy.pk, "Cy")]  # created since: only now


def test_as_of_before_any_row_is_empty_and_a_restored_row_is_back() -> None:
    before = moment()
    ann = Author.objects.create(name="Ann")
    ann_pk = ann.pk
    ann.delete()
    gone = moment()
    restore(Author, ann_pk)
    assert list(as_of(Author, before)) == []
    assert list(as_of(Author, gone)) == []
    assert [a.name for a in as_of(Author, moment())] == ["Ann"]


def test_as_of_is_one_query_and_reads_no_further_back_than_the_last_full_state() -> None:
    read: list[Event] = []

    def count(sender: type[Event], instance: Event, **kwargs: object) -> None:
        read.append(instance)

    with override_settings(AUDIT_EVENTS={**settings.AUDIT_EVENTS, "SNAPSHOT_EVERY": 5}):
        authors = [Author.objects.create(name=f"a{i}") for i in range(3)]
        for round_ in range(12):
            for author in authors:
                author.name = f"{author.pk}-{round_}"
                author.save()
        then = moment()
        at_commit()
        post_init.connect(count, sender=Event)
        try:
            with CaptureQueriesContext(connection) as queries:
                seen = {a.pk: a.name for a in as_of(Author, then)}
        finally:
            post_init.disconnect(count, sender=Event)
    assert seen == {a.pk: f"{a.pk}-11" for a in authors}
    assert len(queries) == 1
    assert 0 < len(read) <= 3 * 5  # 13 events a row, at most SNAPSHOT_EVERY of them read


def test_as_of_wants_an_aware_moment() -> None:
    with pytest.raises(RestoreError, match="naive"):
        list(as_of(Author, datetime.datetime(2024, 5, 1)))


def test_diff_gives_what_changed_between_two_moments_with_links() -> None:
    ann = Author.objects.create(name="Ann")
    tag = Tag.objects.create(name="x")
    book = Book.objects.create(author=ann, title="One", pages=10)
    t1 = moment()
    book.title = "Two"
    book.pages = 12
    book.save()
    book.tags.add(tag)
    t2 = moment()
    book.title = "One"
    book.save()

    assert diff(Book, book.pk, t1, t2) == {"title": ("One", "Two"), "pages": (10, 12), "tags": ([], [tag.pk])}
    assert diff(Book, book.pk, t1) == {"pages": (10, 12), "tags": ([], [tag.pk])}  # to now: title is back
    assert diff(Book, book.pk, t2, t2) == {}


def test_diff_across_a_create_or_a_delete_lists_every_field() -> None:
    before = moment()
    author = Author.objects.create(name="Ann", email="ann@example.com")
    pk = author.pk
    created = moment()
    author.delete()
    changes = diff(Author, pk, before, created)
    assert changes["name"] == (None, "Ann")
    assert changes["email"] == (None, "ann@example.com")
    assert set(diff(Author, pk, created)) == set(changes)
    assert diff(Author, pk, created)["name"] == ("Ann", None)


def test_diff_of_a_row_without_history_raises_no_history() -> None:
    with pytest.raises(NoHistory):
        diff(Author, 999, timezone.now())


def test_as_of_and_diff_take_a_date_as_the_start_of_that_day() -> None:
    from tests.test_replay import _two_versions_around_paris_midnight

    pk = _two_versions_around_paris_midnight()  # "one" at 23:00 on 30 April in Paris, deleted at 01:00 on 1 May
    assert [(a.pk, a.name) for a in as_of(Author, datetime.date(2024, 5, 1))] == [(pk, "one")]
    assert diff(Author, pk, datetime.date(2024, 4, 30), datetime.date(2024, 5, 1))["name"] == (None, "one")
