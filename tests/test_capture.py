"""Capture: every save and delete of a registered model becomes an event with the field-level diff."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db import connection, transaction
from django.db.models import F
from django.test.utils import CaptureQueriesContext, override_settings

from audit_events import audit_context, history
from audit_events.context import capture_paused
from audit_events.models import Event
from audit_events.verify import verify_model
from tests.helpers import BASE, at_commit, events, only, settings_with, settings_without
from tests.models import (
    Author,
    Book,
    BookProxy,
    Code,
    Everything,
    Place,
    Restaurant,
    Review,
    Stamped,
    Ticket,
    Unregistered,
)

pytestmark = pytest.mark.django_db

# --- save -----------------------------------------------------------------


def test_create_records_the_full_state() -> None:
    author = Author.objects.create(name="Ursula", email="ursula@example.com")
    event = only(Author, author.pk)
    assert (event.action, event.version, event.changes) == ("create", 1, {})
    assert event.state == {"id": author.pk, "name": "Ursula", "email": "ursula@example.com"}
    assert event.object_pk == str(author.pk)
    assert event.created_at is not None


def test_full_save_records_only_what_changed() -> None:
    author = Author.objects.create(name="Ursula", email="u@example.com")
    author.name = "Ursula K."
    author.save()
    update = events(Author, author.pk)[-1]
    assert (update.action, update.version) == ("update", 2)
    assert update.changes == {"name": ["Ursula", "Ursula K."]}
    assert update.state is None  # not a snapshot: SNAPSHOT_EVERY is 10


def test_save_with_update_fields_records_only_the_saved_fields() -> None:
    author = Author.objects.create(name="Ursula", email="u@example.com")
    author.name = "Octavia"
    author.email = "not-saved@example.com"
    author.save(update_fields=["name"])
    assert events(Author, author.pk)[-1].changes == {"name": ["Ursula", "Octavia"]}
    assert Author.objects.get(pk=author.pk).email == "u@example.com"

    book = Book.objects.create(author=author, title="Kindred")
    other = Author.objects.create(name="Other")
    book.author_id = other.pk
    book.save(update_fields=["author_id"])  # an attname is accepted too
    assert events(Book, book.pk)[-1].changes == {"author": [author.pk, other.pk]}


def test_a_save_that_changes_nothing_records_nothing() -> None:
    author = Author.objects.create(name="Ursula")
    author.save()
    author.save(update_fields=["name"])
    Author.objects.get(pk=author.pk).save()
    assert [e.action for e in events(Author, author.pk)] == ["create"]


def test_old_values_come_from_the_database_not_from_memory() -> None:
    author = Author.objects.create(name="Ursula")
    stale = Author.objects.get(pk=author.pk)
    author.name = "Changed elsewhere"
    author.save()
    stale.name = "Stale writer"
    stale.save()
    assert [e.changes for e in events(Author, author.pk)[1:]] == [
        {"name": ["Ursula", "Changed elsewhere"]},
        {"name": ["Changed elsewhere", "Stale writer"]},
    ]


def test_every_tenth_event_carries_the_full_state() -> None:
    author = Author.objects.create(name="v1")
    for version in range(2, 12):
        author.name = f"v{version}"
        author.save()
    states = [e.version for e in events(Author, author.pk) if e.state is not None]
    assert states == [1, 10]
    assert events(Author, author.pk)[9].state == {"id": author.pk, "name": "v10", "email": None}


def test_f_expressions_are_recorded_as_the_resulting_value() -> None:
    book = Book.objects.create(author=Author.objects.create(name="A"), title="T", pages=10)
    book.pages = F("pages") + 5
    book.save()
    assert events(Book, book.pk)[-1].changes == {"pages": [10, 15]}
    book.refresh_from_db()
    assert book.pages == 15


def test_auto_now_and_custom_save_are_recorded_as_written() -> None:
    stamped = Stamped.objects.create(name="s")
    first = only(Stamped, stamped.pk).state
    assert first is not None
    assert first["saves"] == 1
    stamped.name = "t"
    stamped.save()
    changes = events(Stamped, stamped.pk)[-1].changes
    assert set(changes) == {"name", "saves", "modified"}
    stored = Stamped.objects.get(pk=stamped.pk)
    assert changes["modified"][1] == stored.modified.isoformat()


def test_saving_a_deleted_instance_again_continues_its_history() -> None:
    author = Author.objects.create(name="Phoenix")
    pk = author.pk
    author.delete()
    author.pk = pk
    author.save()
    assert [(e.action, e.version) for e in events(Author, pk)] == [("create", 1), ("delete", 2), ("create", 3)]
    assert events(Author, pk)[-1].state == {"id": pk, "name": "Phoenix", "email": None}


def test_get_or_create_and_update_or_create() -> None:
    author, _ = Author.objects.get_or_create(name="G", defaults={"email": "g@example.com"})
    Author.objects.get_or_create(name="G")
    Author.objects.update_or_create(pk=author.pk, defaults={"email": "h@example.com"})
    Author.objects.update_or_create(pk=author.pk, defaults={"email": "h@example.com"})
    assert [(e.action, e.changes) for e in events(Author, author.pk)] == [
        ("create", {}),
        ("update", {"email": ["g@example.com", "h@example.com"]}),
    ]


# --- delete -----------------------------------------------------------------


def test_delete_records_the_full_state_as_it_was_in_the_database() -> None:
    author = Author.objects.create(name="Ursula", email="u@example.com")
    author.name = "unsaved change"
    author.delete()
    event = events(Author)[-1]
    assert (event.action, event.version, event.object_pk) == ("delete", 2, str(event.object_pk))
    assert event.state == {"id": int(event.object_pk), "name": "Ursula", "email": "u@example.com"}


def test_cascade_delete_is_one_operation_with_set_null_children_updated() -> None:
    author = Author.objects.create(name="Doomed")
    editor_of = Author.objects.create(name="Survivor")
    books = [Book.objects.create(author=author, title=f"B{i}") for i in range(2)]
    reviews = [Review.objects.create(book=book) for book in books]
    edited = Book.objects.create(author=editor_of, title="Edited", editor=author)
    pointing = Everything.objects.create(author=author)
    before = Event.objects.count()
    author_pk = author.pk

    author.delete()

    written = list(Event.objects.order_by("id")[before:])
    assert len({e.operation for e in written}) == 1, "one operation for the whole cascade"
    deleted = {(e.content_type.model, int(e.object_pk)) for e in written if e.action == "delete"}
    assert deleted == {
        ("author", author_pk),
        *(("book", b.pk) for b in books),
        *(("review", r.pk) for r in reviews),
    }
    updates = {(e.content_type.model, int(e.object_pk)): e.changes for e in written if e.action == "update"}
    assert updates == {
        ("book", edited.pk): {"editor": [author_pk, None]},
        ("everything", pointing.pk): {"author": [author_pk, None]},
    }
    assert all(e.state is not None for e in written if e.action == "delete")


@pytest.mark.parametrize("how", ["instance", "queryset"])
def test_a_foreign_key_set_by_on_delete_SET_callable_is_recorded(how: str) -> None:
    """``SET(callable)`` is not lazy: Django's Collector loads the referencing rows and sets them through
    ``UpdateQuery.update_batch``, not ``QuerySet.update()`` (found by a review)."""
    from tests.models import Memo, fallback_author

    with override_settings(AUDIT_EVENTS=settings_with("tests.Memo")):
        fallback = fallback_author()
        ann = Author.objects.create(name="Ann")
        memo = Memo.objects.create(writer=ann, text="x")
        ann_pk = ann.pk
        if how == "instance":
            ann.delete()
        else:
            Author.objects.filter(pk=ann_pk).delete()

        memo.refresh_from_db()
        assert memo.writer_id == fallback
        update = events(Memo, memo.pk)[-1]
        assert (update.action, update.changes) == ("update", {"writer": [ann_pk, fallback]})
        assert update.operation == events(Author, ann_pk)[-1].operation  # one operation with the delete
        assert [str(finding) for finding in verify_model(Memo)] == []


def test_queryset_delete_is_one_operation() -> None:
    authors = [Author.objects.create(name=f"A{i}") for i in range(3)]
    Book.objects.create(author=authors[0], title="child")
    before = Event.objects.count()
    deleted, _ = Author.objects.filter(name__startswith="A").delete()
    assert deleted == 4
    written = list(Event.objects.order_by("id")[before:])
    assert len(written) == 4
    assert {e.action for e in written} == {"delete"}
    assert len({e.operation for e in written}) == 1


def test_separate_deletes_are_separate_operations() -> None:
    first, second = Author.objects.create(name="1"), Author.objects.create(name="2")
    pks = [first.pk, second.pk]
    first.delete()
    second.delete()
    assert events(Author, pks[0])[-1].operation != events(Author, pks[1])[-1].operation


# --- model shapes -------------------------------------------------------------


def test_proxy_model_events_are_recorded_under_the_concrete_model() -> None:
    author = Author.objects.create(name="A")
    proxy = BookProxy.objects.create(author=author, title="Via proxy")
    proxy.title = "Renamed"
    proxy.save()
    BookProxy.objects.get(pk=proxy.pk).delete()
    assert [e.action for e in events(Book, proxy.pk)] == ["create", "update", "delete"]
    assert events(Book, proxy.pk)[1].changes == {"title": ["Via proxy", "Renamed"]}
    assert not Event.objects.filter(content_type=ContentType.objects.get_for_model(BookProxy, for_concrete_model=False))
    assert list(history(BookProxy, proxy.pk)) == events(Book, proxy.pk)


def test_multi_table_inheritance_records_parent_fields() -> None:
    restaurant = Restaurant.objects.create(name="Luigi's", serves_pizza=True)
    created = only(Restaurant, restaurant.pk)
    assert created.state == {"id": restaurant.pk, "name": "Luigi's", "place_ptr": restaurant.pk, "serves_pizza": True}
    restaurant.name = "Mario's"  # a field of the parent table
    restaurant.save()
    assert events(Restaurant, restaurant.pk)[-1].changes == {"name": ["Luigi's", "Mario's"]}
    place = Place.objects.create(name="Just a place")
    assert only(Place, place.pk).state == {"id": place.pk, "name": "Just a place"}


def test_saving_a_multi_table_child_records_the_registered_parent_too() -> None:
    restaurant = Restaurant.objects.create(name="Luigi's")
    restaurant.name = "Mario's"
    restaurant.save()
    assert [e.action for e in events(Place, restaurant.pk)] == ["create", "update"]


def test_uuid_primary_key_is_canonical_text() -> None:
    ticket = Ticket.objects.create(title="T")
    assert isinstance(ticket.pk, uuid.UUID)
    assert only(Ticket).object_pk == str(ticket.pk)
    same_row = Ticket.objects.get(pk=str(ticket.pk).upper())
    same_row.title = "U"
    same_row.save()
    assert [e.version for e in history(Ticket, str(ticket.pk).upper())] == [1, 2]
    assert [e.version for e in history(Ticket, ticket.pk.hex)] == [1, 2]


def test_char_primary_key() -> None:
    code = Code.objects.create(code="EUR-1", label="Euro")
    code.label = "euro"
    code.save()
    code.delete()
    assert [(e.object_pk, e.action) for e in events(Code)] == [
        ("EUR-1", "create"),
        ("EUR-1", "update"),
        ("EUR-1", "delete"),
    ]


def test_char_primary_key_given_on_a_new_instance_of_an_existing_row_is_an_update() -> None:
    Code.objects.create(code="X", label="one")
    Code(code="X", label="two").save()
    assert [(e.action, e.changes) for e in events(Code, "X")] == [("create", {}), ("update", {"label": ["one", "two"]})]


def test_composite_primary_key_is_canonical_text() -> None:
    from tests.models import Line

    with override_settings(AUDIT_EVENTS=settings_with("tests.Line")):
        line = Line.objects.create(order=1, number=2, qty=3)
        line.qty = 4
        line.save()
        Line.objects.get(pk=(1, 2)).delete()
        assert [(e.object_pk, e.action) for e in events(Line)] == [
            ("[1, 2]", "create"),
            ("[1, 2]", "update"),
            ("[1, 2]", "delete"),
        ]
        assert events(Line)[0].state == {"order": 1, "number": 2, "qty": 3}
        assert events(Line)[1].changes == {"qty": [3, 4]}
        assert [e.version for e in history(Line, (1, 2))] == [1, 2, 3]


@pytest.mark.parametrize("load", ["only", "defer"])
def test_deferred_instances_save_without_lazy_loads_and_diff_correctly(load: str) -> None:
    author = Author.objects.create(name="Ursula", email="u@example.com")
    partial = (
        Author.objects.only("name").get(pk=author.pk)
        if load == "only"
        else Author.objects.defer("email").get(pk=author.pk)
    )
    partial.name = "Octavia"
    at_commit()
    with CaptureQueriesContext(connection) as queries:
        partial.save()
        at_commit()
    assert "email" in partial.get_deferred_fields()  # nothing loaded it
    # the locking SELECT (but on PostgreSQL, where the UPDATE returns the old row), the UPDATE, (MySQL: the
    # row read again, its UPDATE returning nothing), the event INSERT
    expected = {"postgresql": 2, "mysql": 4}.get(connection.vendor, 3)
    assert len(queries) == expected, [q["sql"] for q in queries.captured_queries]
    assert events(Author, author.pk)[-1].changes == {"name": ["Ursula", "Octavia"]}
    assert Author.objects.get(pk=author.pk).email == "u@example.com"


def test_deferred_instance_with_nothing_changed_records_nothing() -> None:
    Everything.objects.create(char="c", data={"k": 1})
    partial = Everything.objects.defer("data", "blob", "text").get()
    partial.save()
    assert len(events(Everything)) == 1


# --- raw saves, registration -------------------------------------------------


def test_loaddata_raw_saves_are_recorded(tmp_path: Path) -> None:
    existing = Author.objects.create(name="Before fixture")
    fixture = tmp_path / "authors.json"
    fixture.write_text(
        json.dumps(
            [
                {"model": "tests.author", "pk": existing.pk, "fields": {"name": "From fixture", "email": None}},
                {"model": "tests.author", "pk": 9001, "fields": {"name": "New", "email": "new@example.com"}},
                {"model": "tests.code", "pk": "FIX", "fields": {"label": "fixture"}},
            ]
        )
    )
    call_command("loaddata", str(fixture), verbosity=0)
    assert events(Author, existing.pk)[-1].changes == {"name": ["Before fixture", "From fixture"]}
    created = only(Author, 9001)
    assert (created.action, created.state) == ("create", {"id": 9001, "name": "New", "email": "new@example.com"})
    assert only(Code, "FIX").state == {"code": "FIX", "label": "fixture"}
    call_command("loaddata", str(fixture), verbosity=0)  # loading it again changes nothing
    assert len(events(Author, 9001)) == 1


@pytest.mark.django_db(transaction=True)
def test_a_deserialized_object_saved_outside_a_transaction_is_recorded_with_its_save() -> None:
    """``DeserializedObject.save()`` calls ``Model.save_base`` itself, past the model's own; outside a
    transaction (autocommit) PostgreSQL refused the locking read (found by a review)."""
    from django.core import serializers

    existing = Author.objects.create(name="Before")
    data = serializers.serialize("json", [existing]).replace('"Before"', '"After"')
    for deserialized in serializers.deserialize("json", data):
        deserialized.save()

    assert Author.objects.get(pk=existing.pk).name == "After"
    assert events(Author, existing.pk)[-1].changes == {"name": ["Before", "After"]}


def test_loaddata_of_a_multi_table_child_records_its_parent_fields_from_the_database(tmp_path: Path) -> None:
    """A fixture holds the parent and the child as two objects; the child's raw save writes its own table only."""
    fixture = tmp_path / "restaurants.json"
    fixture.write_text(
        json.dumps(
            [
                {"model": "tests.place", "pk": 50, "fields": {"name": "Fixture place"}},
                {"model": "tests.restaurant", "pk": 50, "fields": {"serves_pizza": True}},
            ]
        )
    )
    call_command("loaddata", str(fixture), verbosity=0)
    full = {"id": 50, "name": "Fixture place", "place_ptr": 50, "serves_pizza": True}
    assert only(Restaurant, 50).state == full
    assert only(Place, 50).state == {"id": 50, "name": "Fixture place"}
    call_command("loaddata", str(fixture), verbosity=0)  # again: nothing changed, nothing recorded
    assert len(events(Restaurant, 50)) == 1


def test_first_event_of_a_row_that_existed_before_capture_carries_the_full_state() -> None:
    with capture_paused():
        author = Author.objects.create(name="Old", email="old@example.com")
        author.name = "Paused"
        author.save()
    assert not events(Author)
    author.name = "Recorded"
    author.save()
    first = only(Author, author.pk)
    assert (first.action, first.version) == ("update", 1)
    assert first.changes == {"name": ["Paused", "Recorded"]}
    assert first.state == {"id": author.pk, "name": "Recorded", "email": "old@example.com"}


def test_capture_paused_works_as_a_decorator() -> None:
    @capture_paused()
    def quietly() -> Author:
        return Author.objects.create(name="quiet")

    quietly()
    assert not events(Author)


def test_registering_and_unregistering_through_override_settings() -> None:
    with override_settings(AUDIT_EVENTS=settings_with("tests.Unregistered")):
        row = Unregistered.objects.create(name="now recorded")
        row.name = "still"
        row.save()
    assert [e.action for e in events(Unregistered, row.pk)] == ["create", "update"]
    row.name = "after"
    row.save()
    row.delete()
    assert len(events(Unregistered, row.pk)) == 2

    with override_settings(AUDIT_EVENTS=settings_without("tests.Author")):
        author = Author.objects.create(name="unrecorded")
        author.name = "also unrecorded"
        author.save()
    assert not events(Author)
    author.name = "recorded"  # registered again: the first event carries the full state
    author.save()
    assert only(Author).state == {"id": author.pk, "name": "recorded", "email": None}


def test_exclude_fields_set_through_override_settings() -> None:
    with override_settings(AUDIT_EVENTS={**BASE, "EXCLUDE_FIELDS": {"tests.Book": ["pages"]}}):
        book = Book.objects.create(author=Author.objects.create(name="A", last_seen=None), title="T", pages=3)
        assert only(Book).state is not None
        assert "pages" not in only(Book).state
        book.pages = 4
        book.save()  # only an excluded field changed: nothing to record
        assert len(events(Book)) == 1
    author = Author.objects.create(name="back to settings")
    assert "last_seen" not in (only(Author, author.pk).state or {})


def test_excluded_fields_are_never_recorded() -> None:
    from django.utils import timezone

    author = Author.objects.create(name="A", last_seen=timezone.now())
    author.last_seen = timezone.now()
    author.save()  # only an excluded field changed
    author.name = "B"
    author.last_seen = None
    author.save()
    author.delete()
    recorded = events(Author, author.pk)
    assert [e.action for e in recorded] == ["create", "update", "delete"]
    for event in recorded:
        assert "last_seen" not in event.changes
        assert "last_seen" not in (event.state or {})


def test_unregistered_models_record_nothing() -> None:
    before = Event.objects.count()
    row = Unregistered.objects.create(name="x")
    row.name = "y"
    row.save()
    Unregistered.objects.filter(pk=row.pk).update(name="z")
    row.delete()
    assert Event.objects.count() == before


# --- history and context -------------------------------------------------------


def test_history_of_a_row_oldest_first_from_a_model_or_an_instance() -> None:
    author = Author.objects.create(name="1")
    other = Author.objects.create(name="other")
    for name in ["2", "3"]:
        author.name = name
        author.save()
    assert [e.version for e in history(author)] == [1, 2, 3]
    assert list(history(Author, author.pk)) == list(history(author))
    assert list(history(Author, str(author.pk))) == list(history(author))
    assert [e.version for e in history(other)] == [1]
    author_pk = author.pk
    author.delete()
    assert [e.action for e in history(Author, author_pk)] == ["create", "update", "update", "delete"]


def test_audit_context_actor_reason_and_extra_are_stored() -> None:
    user = User.objects.create(username="alice")
    with audit_context(actor=user, reason="refund #991", ticket=991, request_id="r-1"):
        author = Author.objects.create(name="A")
        author.delete()
    for event in events(Author, author.pk):
        assert (event.actor_id, event.actor_repr) == (str(user.pk), "alice")
        assert event.context == {"reason": "refund #991", "ticket": 991, "request_id": "r-1"}


def test_no_actor_outside_a_context_and_for_an_anonymous_user() -> None:
    Author.objects.create(name="nobody")
    with audit_context(actor=AnonymousUser(), reason="anonymous"):
        Author.objects.create(name="anonymous")
    first, second = events(Author)
    assert (first.actor_id, first.actor_repr, first.context) == (None, "", {})
    assert (second.actor_id, second.actor_repr, second.context) == (None, "", {"reason": "anonymous"})


WITHOUT_AUTHOR = settings_without("tests.Author")


def delete_unregistered_parent(how: str) -> tuple[dict[str, int], list[Event]]:
    author = Author.objects.create(name="parent")
    book = Book.objects.create(author=author, title="child")
    rows = {
        "book": book.pk,
        "review": Review.objects.create(book=book).pk,
        "edited": Book.objects.create(author=Author.objects.create(name="o"), title="e", editor=author).pk,
        "pointing": Everything.objects.create(author=author).pk,
    }
    before = Event.objects.count()
    with override_settings(AUDIT_EVENTS=WITHOUT_AUTHOR):
        if how == "instance":
            author.delete()
        else:
            Author.objects.filter(name="parent").delete()
    return rows, list(Event.objects.order_by("id")[before:])


@pytest.mark.parametrize("how", ["instance", "queryset"])
def test_cascade_from_an_unregistered_parent_records_the_registered_rows_in_one_operation(how: str) -> None:
    rows, written = delete_unregistered_parent(how)
    assert {(e.content_type.model, e.action, int(e.object_pk)) for e in written} == {
        ("book", "delete", rows["book"]),
        ("review", "delete", rows["review"]),
        ("book", "update", rows["edited"]),
        ("everything", "update", rows["pointing"]),
    }
    assert len({e.operation for e in written if e.action == "delete"}) == 1


@pytest.mark.parametrize("how", ["instance", "queryset"])
def test_cascade_from_an_unregistered_parent_set_null_updates_join_the_operation(how: str) -> None:
    _, written = delete_unregistered_parent(how)
    assert len({e.operation for e in written}) == 1


def test_both_views_of_a_multi_table_row_replay_to_the_live_rows_through_saves_and_restores() -> None:
    from django.utils import timezone

    from audit_events import restore
    from audit_events.registry import spec_for
    from audit_events.replay import recorded_state

    restaurant = Restaurant.objects.create(name="Luigi's")
    moment = timezone.now()
    restaurant.name = "Mario's"
    restaurant.serves_pizza = True
    restaurant.save()
    restore(Restaurant, restaurant.pk, at=moment)
    for model in (Place, Restaurant):
        spec = spec_for(model)
        live = spec.state_of(model.objects.get(pk=restaurant.pk))
        assert recorded_state(spec, restaurant.pk) == live
    assert [e.action for e in events(Place, restaurant.pk)] == ["create", "update", "restore"]
    assert events(Place, restaurant.pk)[-1].changes == {"name": ["Mario's", "Luigi's"]}


@pytest.mark.parametrize("label", ["tests.Prepared", "tests.SelectOnSave"])
def test_saves_django_must_compile_itself_read_the_old_row_first(label: str) -> None:
    """On PostgreSQL an UPDATE usually brings back the old row; where Django must build the
    UPDATE itself (values that are expressions, select_on_save), the row is read first."""
    from django.apps import apps

    model = apps.get_model(label)
    with override_settings(AUDIT_EVENTS=settings_with(label)):
        row = model.objects.create(name="first")
        with capture_paused():
            model.objects.filter(pk=row.pk).update(name="changed elsewhere")
        row.name = "second"
        row.save()
        assert [e.changes for e in events(model, row.pk)][1:] == [{"name": ["changed elsewhere", "second"]}]
        assert model.objects.get(pk=row.pk).name == "second"


def test_a_models_own_do_update_still_runs() -> None:
    from tests.models import OwnUpdate

    with override_settings(AUDIT_EVENTS=settings_with("tests.OwnUpdate")):
        row = OwnUpdate.objects.create(name="first")
        row.name = "refused"
        with pytest.raises(ValueError, match="own _do_update"), transaction.atomic():
            row.save()
        row.name = "second"
        row.save()
        assert [e.changes for e in events(OwnUpdate, row.pk)][1:] == [{"name": ["first", "second"]}]


def test_a_parents_excluded_field_is_absent_from_its_childrens_events() -> None:
    with override_settings(AUDIT_EVENTS={**BASE, "EXCLUDE_FIELDS": {"tests.Place": ["name"]}}):
        restaurant = Restaurant.objects.create(name="secret one", serves_pizza=False)
        restaurant.name = "secret two"
        restaurant.serves_pizza = True
        restaurant.save()
        restaurant.name = "secret three"
        restaurant.save()  # only the excluded field changed: nothing to record
        pk = restaurant.pk
        restaurant.delete()
        recorded = events(Restaurant, pk) + events(Place, pk)
        assert [e.action for e in events(Restaurant, pk)] == ["create", "update", "delete"]
        for event in recorded:
            assert "name" not in event.changes
            assert "name" not in (event.state or {})
            assert "secret" not in json.dumps([event.changes, event.state])
        out = _verify_output()
        assert "secret" not in out


def test_a_childs_exclusion_of_an_inherited_field_applies_to_the_childs_events() -> None:
    with override_settings(AUDIT_EVENTS={**BASE, "EXCLUDE_FIELDS": {"tests.Restaurant": ["name"]}}):
        restaurant = Restaurant.objects.create(name="secret", serves_pizza=False)
        restaurant.name = "still secret"
        restaurant.save()
        assert [e.action for e in events(Restaurant, restaurant.pk)] == ["create"]
        assert "name" not in (only(Restaurant, restaurant.pk).state or {})


def _verify_output() -> str:
    from io import StringIO

    out = StringIO()
    call_command("audit_verify", stdout=out, stderr=out)
    return out.getvalue()


def test_a_primary_key_of_any_length_is_recorded() -> None:
    from audit_events import restore, state_at
    from audit_events.verify import verify_model
    from tests.models import LongKey

    # MySQL and MariaDB index at most 3072 bytes: a key there is at most 760 characters (tests.models.LongKey).
    key = "k" * 300 + "é" * (460 if connection.vendor == "mysql" else 700)
    with override_settings(AUDIT_EVENTS=settings_with("tests.LongKey")):
        row = LongKey.objects.create(key=key, name="one")
        row.name = "two"
        row.save()
        LongKey.objects.filter(pk=key).update(name="three")
        row.delete()
        assert [(e.object_pk, e.action) for e in events(LongKey)] == [
            (key, "create"),
            (key, "update"),
            (key, "update"),
            (key, "delete"),
        ]
        assert restore(LongKey, key).name == "three"
        assert state_at(LongKey, key).name == "three"  # type: ignore[union-attr]
        assert list(verify_model(LongKey)) == []
