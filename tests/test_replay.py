"""Reading the past: history(), state_at(), the replay behind them and what it costs."""

from __future__ import annotations

import datetime
import zoneinfo
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from audit_events import NoHistory, RestoreError, history, restore, state_at
from audit_events.context import capture_paused
from audit_events.models import Action, Event
from audit_events.registry import spec_for
from audit_events.replay import events_until, recorded_state
from tests.helpers import moment, spec_of
from tests.models import Author, Book, Code, Place, Restaurant, Ticket, Unregistered

pytestmark = pytest.mark.django_db

SNAPSHOT_EVERY = 10  # tests/settings.py


def live_state(author: Author) -> dict[str, Any]:
    return {"id": author.pk, **Author.objects.filter(pk=author.pk).values("name", "email").get()}


# --- history ----------------------------------------------------------------


def test_history_is_oldest_first_in_both_forms() -> None:
    author = Author.objects.create(name="v1")
    for name in ("v2", "v3", "v4"):
        author.name = name
        author.save()
    Author.objects.create(name="someone else")  # interleaved events of another row

    by_pk = list(history(Author, author.pk))
    by_instance = list(history(author))

    assert by_pk == by_instance
    assert [e.version for e in by_pk] == [1, 2, 3, 4]
    assert [e.action for e in by_pk] == [Action.CREATE, Action.UPDATE, Action.UPDATE, Action.UPDATE]
    assert [e.changes.get("name") for e in by_pk[1:]] == [["v1", "v2"], ["v2", "v3"], ["v3", "v4"]]
    assert [e.id for e in by_pk] == sorted(e.id for e in by_pk)
    assert list(history(Author, str(author.pk))) == by_pk  # the pk as text names the same row


def test_history_follows_delete_and_restore() -> None:
    author = Author.objects.create(name="a")
    pk = author.pk
    author.delete()
    restore(Author, pk)
    assert list(history(Author, pk).values_list("version", "action")) == [
        (1, Action.CREATE),
        (2, Action.DELETE),
        (3, Action.RESTORE),
    ]


def test_history_of_odd_keys() -> None:
    ticket = Ticket.objects.create(title="t")
    code = Code.objects.create(code="x y", label="c")
    restaurant = Restaurant.objects.create(name="r")
    assert [e.action for e in history(ticket)] == [Action.CREATE]
    assert [e.action for e in history(Ticket, str(ticket.pk))] == [Action.CREATE]
    assert [e.action for e in history(code)] == [Action.CREATE]
    assert [e.action for e in history(restaurant)] == [Action.CREATE]


def test_history_of_an_unregistered_model_is_refused() -> None:
    thing = Unregistered.objects.create(name="x")
    with pytest.raises(RestoreError, match=r"tests\.Unregistered is not registered"):
        history(thing)


# --- state_at -----------------------------------------------------------------


def test_state_at_across_a_rows_life() -> None:
    before = moment()
    author = Author.objects.create(name="one", email="one@example.com")
    pk = author.pk
    created = moment()
    author.name = "two"
    author.save()
    updated = moment()
    author.delete()
    deleted = moment()
    restore(Author, pk)
    restored = moment()

    assert state_at(Author, pk, at=before) is None
    first = state_at(Author, pk, at=created)
    assert isinstance(first, Author)
    assert (first.pk, first.name, first.email) == (pk, "one", "one@example.com")
    assert first._state.adding  # unsaved: a view of the past, not a live row
    assert state_at(Author, pk, at=updated).name == "two"
    assert state_at(Author, pk, at=deleted) is None
    assert state_at(Author, pk, at=restored).name == "two"
    assert state_at(Author, pk).name == "two"  # at=None: now


def test_state_at_an_events_exact_time_includes_it() -> None:
    author = Author.objects.create(name="one")
    event = history(author).get()
    assert state_at(Author, author.pk, at=event.created_at).name == "one"
    assert state_at(Author, author.pk, at=event.created_at - datetime.timedelta(microseconds=1)) is None


def test_state_at_of_a_foreign_key_gives_the_related_pk() -> None:
    ann = Author.objects.create(name="Ann")
    bob = Author.objects.create(name="Bob")
    book = Book.objects.create(author=ann, title="t", editor=bob)
    then = moment()
    book.editor = None
    book.save()
    past = state_at(Book, book.pk, at=then)
    assert (past.author_id, past.editor_id) == (ann.pk, bob.pk)


def test_state_at_multi_table_child_has_parent_fields() -> None:
    restaurant = Restaurant.objects.create(name="Luigi's", serves_pizza=True)
    then = moment()
    restaurant.name = "Mario's"
    restaurant.save()
    past = state_at(Restaurant, restaurant.pk, at=then)
    assert (past.pk, past.name, past.serves_pizza) == (restaurant.pk, "Luigi's", True)


def test_no_history() -> None:
    with capture_paused():
        silent = Author.objects.create(name="silent")
    for pk in (silent.pk, 999_999):
        with pytest.raises(NoHistory) as error:
            state_at(Author, pk)
        assert isinstance(error.value, LookupError)
        assert f"tests.Author pk={pk}" in str(error.value)
        with pytest.raises(NoHistory):
            state_at(Author, pk, at=timezone.now())


def test_state_at_of_an_unregistered_model_is_refused() -> None:
    with pytest.raises(RestoreError, match="not registered"):
        state_at(Unregistered, 1)


# --- snapshots and the cost of reading ----------------------------------------


def make_long_history(updates: int) -> tuple[Author, list[tuple[datetime.datetime, dict[str, Any]]]]:
    """A row with ``updates + 1`` events, and after each one a moment and the row then."""
    author = Author.objects.create(name="v1", email="v1@example.com")
    moments = [(moment(), live_state(author))]
    for n in range(2, updates + 2):
        author.name = f"v{n}"
        if n % 3 == 0:
            author.email = f"v{n}@example.com"
        author.save()
        moments.append((moment(), live_state(author)))
    return author, moments


def test_full_state_is_stored_on_create_and_every_snapshot_every_th_version() -> None:
    author, _ = make_long_history(34)
    events = list(history(author))
    assert [e.version for e in events] == list(range(1, 36))
    assert [e.version for e in events if e.state is not None] == [1, 10, 20, 30]
    for event in events:
        if event.state is not None:
            assert event.state["name"] == f"v{event.version}"
    pk = author.pk
    author.delete()
    restore(Author, pk)
    last_two = list(history(Author, pk))[-2:]
    assert [(e.version, e.action, e.state is not None) for e in last_two] == [
        (36, Action.DELETE, True),
        (37, Action.RESTORE, True),
    ]


@override_settings(AUDIT_EVENTS={"MODELS": ["tests.Author"], "SNAPSHOT_EVERY": 3})
def test_snapshot_every_is_read_at_call_time() -> None:
    author, _ = make_long_history(7)
    assert [e.version for e in history(author) if e.state is not None] == [1, 3, 6]


def test_state_at_reads_at_most_snapshot_every_events(django_assert_num_queries: Any) -> None:
    author, moments = make_long_history(34)
    spec = spec_of(Author)
    for at, expected in moments:
        read = list(events_until(spec, author.pk, at))
        assert 1 <= len(read) <= SNAPSHOT_EVERY
        assert read[0].state is not None
        assert recorded_state(spec, author.pk, at) == expected
        with django_assert_num_queries(1):
            past = state_at(Author, author.pk, at=at)
        assert {"id": past.pk, "name": past.name, "email": past.email} == expected


def test_state_at_after_a_restore_reads_from_the_restore() -> None:
    author, moments = make_long_history(14)
    restore(Author, author.pk, at=moments[2][0])
    moments.append((moment(), live_state(author)))
    author.name = "after"
    author.save()
    moments.append((moment(), live_state(author)))
    spec = spec_of(Author)
    for at, expected in moments:
        assert len(events_until(spec, author.pk, at)) <= SNAPSHOT_EVERY
        past = state_at(Author, author.pk, at=at)
        assert {"id": past.pk, "name": past.name, "email": past.email} == expected
    assert moments[-2][1]["name"] == "v3"


def test_deleted_row_reads_from_its_delete() -> None:
    author, _ = make_long_history(14)
    pk = author.pk
    author.delete()
    gone = moment()
    spec = spec_of(Author)
    assert [e.action for e in events_until(spec, pk, gone)] == [Action.DELETE]
    assert state_at(Author, pk, at=gone) is None
    assert recorded_state(spec, pk) is None


# --- rows that existed before they were recorded -------------------------------


@pytest.mark.parametrize("unrecorded", ["paused", "unregistered"])
def test_rows_that_existed_before_registration_replay(unrecorded: str) -> None:
    if unrecorded == "paused":
        with capture_paused():
            author = Author.objects.create(name="old", email="old@example.com")
            Place.objects.create(name="unrelated")
    else:
        with override_settings(AUDIT_EVENTS={"MODELS": ["tests.Book"]}):
            assert spec_for(Author) is None
            author = Author.objects.create(name="old", email="old@example.com")
        assert spec_for(Author) is not None
    assert not history(author).exists()
    unrecorded_then = moment()

    author.name = "new"
    author.save()
    first = moment()

    # The row existed before its first event, but what it held then was never recorded.
    with pytest.raises(NoHistory, match=rf"tests\.Author pk={author.pk} is recorded only from .*unknown"):
        state_at(Author, author.pk, at=unrecorded_then)
    with pytest.raises(RestoreError, match=rf"tests\.Author pk={author.pk} is recorded only from .*unknown"):
        restore(Author, author.pk, at=unrecorded_then)

    event = history(author).get()
    assert (event.version, event.action, event.changes) == (1, Action.UPDATE, {"name": ["old", "new"]})
    assert event.state == {"id": author.pk, "name": "new", "email": "old@example.com"}
    assert recorded_state(spec_of(Author), author.pk) == live_state(author)
    assert state_at(Author, author.pk, at=first).email == "old@example.com"

    pk = author.pk
    author.delete()
    restored = restore(Author, pk)
    assert (restored.name, restored.email) == ("new", "old@example.com")
    assert restore(Author, pk, at=first).name == "new"


def test_first_event_of_an_unrecorded_row_can_be_its_delete() -> None:
    with capture_paused():
        author = Author.objects.create(name="old", email="old@example.com")
    pk = author.pk
    author.delete()
    assert [e.action for e in history(Author, pk)] == [Action.DELETE]
    assert restore(Author, pk).email == "old@example.com"
    assert Event.objects.filter(object_pk=str(pk), content_type__model="author").count() == 2


def test_state_at_takes_a_moment_in_any_zone() -> None:
    author = Author.objects.create(name="one")
    then = moment()
    author.name = "two"
    author.save()
    for zone in ("Asia/Kathmandu", "America/St_Johns", "UTC"):
        local = then.astimezone(zoneinfo.ZoneInfo(zone))
        assert state_at(Author, author.pk, at=local).name == "one"


def _two_versions_around_paris_midnight() -> int:
    """Author 901: "one" at 23:00 on 30 April in Paris, "two" at 01:00 on 1 May in Paris (23:00 UTC)."""
    from audit_events import journal

    spec, utc = spec_of(Author), datetime.UTC
    journal.write(
        [
            journal.Draft.of(
                spec,
                901,
                Action.CREATE,
                state={"id": 901, "name": "one", "email": None},
                created_at=datetime.datetime(2024, 4, 30, 21, tzinfo=utc),
            ),
            journal.Draft.of(
                spec,
                901,
                Action.DELETE,
                state={"id": 901, "name": "two", "email": None},
                created_at=datetime.datetime(2024, 4, 30, 23, tzinfo=utc),
            ),
        ],
        "default",
    )
    return 901


def test_state_at_a_date_is_the_start_of_that_day_in_the_current_time_zone() -> None:
    pk = _two_versions_around_paris_midnight()
    day = datetime.date(2024, 5, 1)
    assert timezone.get_current_timezone_name() == "Europe/Paris"  # tests/settings.py
    one = state_at(Author, pk, at=day)  # 00:00 in Paris: between the two events
    assert one is not None
    assert one.name == "one"
    with timezone.override(zoneinfo.ZoneInfo("UTC")):
        assert state_at(Author, pk, at=day) is None  # 00:00 UTC: after the delete
    assert state_at(Author, pk, at=datetime.date(2024, 4, 30)) is None  # before the create


@pytest.mark.parametrize("at", ["2024-05-01", 1714521600, datetime.time(12)])
def test_state_at_refuses_what_is_not_a_moment_with_a_type_error(at: Any) -> None:
    author = Author.objects.create(name="one")
    with pytest.raises(TypeError, match=r"at= must be a datetime or a date, not"):
        state_at(Author, author.pk, at=at)
