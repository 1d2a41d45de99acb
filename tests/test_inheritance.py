"""Multi-table inheritance: a write through a parent model is a write of the registered child's row.

``Restaurant(Place)`` stores ``name`` in the parent's table. Saving, updating
or deleting the row *as a Place* changes the Restaurant too: its history must
say so, whether or not ``Place`` itself is registered.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import DatabaseError, models, transaction
from django.test.utils import override_settings

from audit_events import restore, state_at
from audit_events.models import Event
from audit_events.verify import verify_model
from tests.helpers import events, moment
from tests.models import Cinema, Hall, Place, Restaurant, Theatre, Venue
from tests.test_concurrency import Worker, wait_until_blocked_on_a_lock

pytestmark = pytest.mark.django_db

CHILD_ONLY = {"MODELS": ["tests.Restaurant"]}
BOTH = {"MODELS": ["tests.Place", "tests.Restaurant"]}


@pytest.fixture(params=[CHILD_ONLY, BOTH], ids=["child-only", "parent-too"])
def registered(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    with override_settings(AUDIT_EVENTS=request.param):
        yield request.param


def changes(model: type[models.Model], pk: Any) -> list[dict[str, Any]]:
    return [e.changes for e in events(model, pk) if e.action == "update"]


def parent_registered(config: dict[str, Any]) -> bool:
    return "tests.Place" in config["MODELS"]


def assert_verified(config: dict[str, Any]) -> None:
    """``audit_verify``: every registered row's replay equals the live row."""
    assert list(verify_model(Restaurant)) == []
    if parent_registered(config):
        assert list(verify_model(Place)) == []


@pytest.fixture
def luigi(registered: dict[str, Any]) -> Restaurant:
    return Restaurant.objects.create(name="Luigi's", serves_pizza=True)


# --- save through the parent --------------------------------------------------


def assert_renamed_through_the_parent(config: dict[str, Any], pk: Any, before: Any, after: Any) -> None:
    """The Restaurant was renamed from Luigi's to Mario's through Place, between ``before`` and ``after``."""
    assert changes(Restaurant, pk) == [{"name": ["Luigi's", "Mario's"]}]
    if parent_registered(config):
        assert changes(Place, pk) == [{"name": ["Luigi's", "Mario's"]}]
        assert events(Place, pk)[-1].operation == events(Restaurant, pk)[-1].operation  # one operation
    past, now = state_at(Restaurant, pk, at=before), state_at(Restaurant, pk, at=after)
    assert past is not None
    assert now is not None
    assert (past.name, now.name, now.serves_pizza) == ("Luigi's", "Mario's", True)
    assert_verified(config)
    # Putting the child back as it is now keeps the parent's field as written through the parent.
    restore(Restaurant, pk, at=after)
    assert Place.objects.get(pk=pk).name == "Mario's"
    restore(Restaurant, pk, at=before)
    assert Place.objects.get(pk=pk).name == "Luigi's"
    assert_verified(config)


def test_save_through_the_parent_is_recorded_on_the_child(registered: dict[str, Any], luigi: Restaurant) -> None:
    before = moment()
    place = Place.objects.get(pk=luigi.pk)
    place.name = "Mario's"
    place.save()
    assert_renamed_through_the_parent(registered, luigi.pk, before, moment())


def test_save_through_the_parent_changing_nothing_records_nothing(
    registered: dict[str, Any], luigi: Restaurant
) -> None:
    recorded = Event.objects.count()
    Place.objects.get(pk=luigi.pk).save()
    Place.objects.get(pk=luigi.pk).save(update_fields=["name"])
    assert Event.objects.count() == recorded


def test_save_through_the_parent_with_update_fields(registered: dict[str, Any], luigi: Restaurant) -> None:
    place = Place.objects.get(pk=luigi.pk)
    place.name = "Mario's"
    place.save(update_fields=["name"])
    assert changes(Restaurant, luigi.pk) == [{"name": ["Luigi's", "Mario's"]}]
    assert_verified(registered)


def test_save_of_a_plain_parent_row_records_no_child(registered: dict[str, Any], luigi: Restaurant) -> None:
    place = Place.objects.create(name="Just a place")
    place.name = "Still a place"
    place.save()
    assert events(Restaurant, place.pk) == []
    assert len(events(Place, place.pk)) == (2 if parent_registered(registered) else 0)


def test_save_through_the_parent_values_come_from_the_database(registered: dict[str, Any], luigi: Restaurant) -> None:
    place = Place.objects.get(pk=luigi.pk)
    place.name = models.functions.Concat(models.F("name"), models.Value(" & sons"))  # type: ignore[assignment]
    place.save()
    assert changes(Restaurant, luigi.pk) == [{"name": ["Luigi's", "Luigi's & sons"]}]
    assert_verified(registered)


def test_a_fixture_of_the_parent_is_recorded_on_the_child(
    registered: dict[str, Any], luigi: Restaurant, tmp_path: Path
) -> None:
    """``loaddata`` saves raw, through ``Model.save_base`` itself."""
    fixture = tmp_path / "places.json"
    fixture.write_text(json.dumps([{"model": "tests.place", "pk": luigi.pk, "fields": {"name": "Fixture's"}}]))
    call_command("loaddata", str(fixture), verbosity=0)
    assert changes(Restaurant, luigi.pk) == [{"name": ["Luigi's", "Fixture's"]}]
    call_command("loaddata", str(fixture), verbosity=0)  # again: nothing changed, nothing recorded
    assert len(changes(Restaurant, luigi.pk)) == 1
    assert_verified(registered)


@pytest.mark.django_db(transaction=True)
@override_settings(AUDIT_EVENTS=CHILD_ONLY)
def test_in_autocommit_mode_a_save_through_the_parent_and_its_event_commit_together() -> None:
    luigi = Restaurant.objects.create(name="Luigi's")
    place = Place.objects.get(pk=luigi.pk)
    place.name = "x" * 101  # too long for PostgreSQL: the UPDATE fails (SQLite stores it)
    try:
        place.save()
    except DatabaseError:
        assert changes(Restaurant, luigi.pk) == []
        assert Place.objects.get(pk=luigi.pk).name == "Luigi's"
    else:
        assert changes(Restaurant, luigi.pk) == [{"name": ["Luigi's", "x" * 101]}]
    previous = Place.objects.get(pk=luigi.pk).name
    place.name = "Mario's"
    place.save()
    assert changes(Restaurant, luigi.pk)[-1] == {"name": [previous, "Mario's"]}
    assert list(verify_model(Restaurant)) == []


# --- QuerySet.update and bulk_update through the parent -----------------------


@pytest.mark.parametrize("by", ["pk", "name"])
def test_update_through_the_parent_is_recorded_on_the_child(
    registered: dict[str, Any], luigi: Restaurant, by: str
) -> None:
    plain = Place.objects.create(name="Luigi's")  # matches the name filter, has no Restaurant row
    before = moment()
    matched = Place.objects.filter(pk=luigi.pk) if by == "pk" else Place.objects.filter(name="Luigi's")
    assert matched.update(name="Mario's") == (1 if by == "pk" else 2)
    assert events(Restaurant, plain.pk) == []
    assert_renamed_through_the_parent(registered, luigi.pk, before, moment())


def test_update_through_the_parent_changing_nothing_records_nothing(
    registered: dict[str, Any], luigi: Restaurant
) -> None:
    recorded = Event.objects.count()
    Place.objects.filter(pk=luigi.pk).update(name="Luigi's")
    assert Event.objects.count() == recorded


def test_bulk_update_through_the_parent_is_recorded_on_the_child(registered: dict[str, Any], luigi: Restaurant) -> None:
    other = Restaurant.objects.create(name="Bruno's")
    plain = Place.objects.create(name="Just a place")
    places = list(Place.objects.filter(pk__in=[luigi.pk, other.pk, plain.pk]).order_by("pk"))
    for place in places:
        place.name = place.name.upper()
    Place.objects.bulk_update(places, ["name"])
    assert changes(Restaurant, luigi.pk) == [{"name": ["Luigi's", "LUIGI'S"]}]
    assert changes(Restaurant, other.pk) == [{"name": ["Bruno's", "BRUNO'S"]}]
    assert events(Restaurant, plain.pk) == []
    assert len({e.operation for e in Event.objects.filter(action="update")}) == 1
    assert_verified(registered)


# --- delete through the parent ------------------------------------------------


@pytest.mark.parametrize("how", ["instance", "queryset"])
def test_delete_through_the_parent_is_recorded_and_undone(
    registered: dict[str, Any], luigi: Restaurant, how: str
) -> None:
    if how == "instance":
        Place.objects.get(pk=luigi.pk).delete()
    else:
        Place.objects.filter(name="Luigi's").delete()
    assert not Place.objects.filter(pk=luigi.pk).exists()
    deleted = events(Restaurant, luigi.pk)[-1]
    assert deleted.action == "delete"
    assert deleted.state == {"id": luigi.pk, "name": "Luigi's", "place_ptr": luigi.pk, "serves_pizza": True}
    assert state_at(Restaurant, luigi.pk) is None
    assert_verified(registered)
    restore(Restaurant, luigi.pk)  # undo: both tables come back
    back = Restaurant.objects.get(pk=luigi.pk)
    assert (back.name, back.serves_pizza) == ("Luigi's", True)
    assert Place.objects.get(pk=luigi.pk).name == "Luigi's"
    assert_verified(registered)


# --- a grandparent chain: Venue <- Theatre <- Cinema, only Cinema registered ------


@override_settings(AUDIT_EVENTS={"MODELS": ["tests.Cinema"]})
def test_writes_through_a_grandparent_are_recorded_on_the_grandchild() -> None:
    cinema = Cinema.objects.create(name="Rex", seats=100, screens=2)
    venue = Venue.objects.get(pk=cinema.pk)
    venue.name = "Grand Rex"
    venue.save()
    Theatre.objects.filter(seats=100).update(seats=120)
    Venue.objects.filter(pk=cinema.pk).update(name="Le Grand Rex")
    assert changes(Cinema, cinema.pk) == [
        {"name": ["Rex", "Grand Rex"]},
        {"seats": [100, 120]},
        {"name": ["Grand Rex", "Le Grand Rex"]},
    ]
    assert list(verify_model(Cinema)) == []
    Venue.objects.filter(pk=cinema.pk).delete()
    assert events(Cinema, cinema.pk)[-1].action == "delete"
    restore(Cinema, cinema.pk)
    back = Cinema.objects.get(pk=cinema.pk)
    assert (back.name, back.seats, back.screens) == ("Le Grand Rex", 120, 2)
    assert list(verify_model(Cinema)) == []


# --- restore of the registered parent --------------------------------------------


@override_settings(AUDIT_EVENTS=BOTH)
def test_restoring_the_parent_row_is_recorded_on_the_child() -> None:
    luigi = Restaurant.objects.create(name="Luigi's", serves_pizza=True)
    before = moment()
    luigi.name = "Mario's"
    luigi.save()
    restore(Place, luigi.pk, at=before)
    assert Restaurant.objects.get(pk=luigi.pk).name == "Luigi's"
    assert changes(Restaurant, luigi.pk) == [{"name": ["Luigi's", "Mario's"]}, {"name": ["Mario's", "Luigi's"]}]
    assert events(Restaurant, luigi.pk)[-1].operation == events(Place, luigi.pk)[-1].operation
    assert_verified(BOTH)


@override_settings(AUDIT_EVENTS={"MODELS": ["tests.Cinema"]})
def test_a_save_of_another_child_sharing_the_parent_row_is_recorded() -> None:
    cinema = Cinema.objects.create(name="Rex", seats=100, screens=2)
    hall = Hall(venue_ptr_id=cinema.pk, name="Rex hall", capacity=10)
    hall.save()  # writes the Venue row the Cinema stands on, then inserts its own
    assert changes(Cinema, cinema.pk) == [{"name": ["Rex", "Rex hall"]}]
    assert list(verify_model(Cinema)) == []


# --- a child row given to an existing parent row -----------------------------------


@override_settings(AUDIT_EVENTS=BOTH)
def test_giving_an_existing_place_a_restaurant_row_records_an_update_of_the_place() -> None:
    """``Restaurant(place_ptr=place, ...).save()``: Django UPDATEs the Place row there was and INSERTs
    the Restaurant's. The Place was updated (its old values read before the save), the Restaurant created."""
    place = Place.objects.create(name="P")
    Restaurant(place_ptr=place, name="P2", serves_pizza=True).save()

    assert [(e.action, e.changes) for e in events(Place, place.pk)][1:] == [("update", {"name": ["P", "P2"]})]
    made = events(Restaurant, place.pk)
    assert [e.action for e in made] == ["create"]
    assert made[0].state == {"id": place.pk, "place_ptr": place.pk, "name": "P2", "serves_pizza": True}
    assert_verified(BOTH)


@override_settings(AUDIT_EVENTS={"MODELS": ["tests.Venue", "tests.Theatre", "tests.Cinema"]})
@pytest.mark.parametrize("existing", [Venue, Theatre])
def test_giving_an_existing_grandparent_row_a_grandchild_row_records_an_update_of_each_existing_row(
    existing: type[models.Model],
) -> None:
    """Each registered ancestor's view of the row is an update if its rows were there, a create if not."""
    row = existing.objects.create(name="V")
    ptr = {"venue_ptr_id": row.pk} if existing is Venue else {"theatre_ptr": row}
    Cinema(**ptr, name="V2", seats=5, screens=3).save()

    for model in (Venue, Theatre):
        recorded = [(e.action, e.changes) for e in events(model, row.pk)]
        if issubclass(existing, model):
            assert recorded[-1] == ("update", {"name": ["V", "V2"], **({"seats": [0, 5]} if model is Theatre else {})})
        else:
            assert [action for action, _ in recorded] == ["create"]
    assert [e.action for e in events(Cinema, row.pk)] == ["create"]
    for model in (Venue, Theatre, Cinema):
        assert list(verify_model(model)) == []


# --- concurrency (PostgreSQL) ---------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@override_settings(AUDIT_EVENTS=CHILD_ONLY)
def test_a_save_through_the_parent_that_waited_records_what_it_overwrote() -> None:
    luigi = Restaurant.objects.create(name="Luigi's")
    place = Place.objects.get(pk=luigi.pk)  # loaded before the other writer's change
    place.name = "Place's"

    def through_the_parent() -> None:
        place.save()

    with transaction.atomic():
        luigi.name = "Mario's"
        luigi.save()
        worker = Worker(through_the_parent)
        worker.start()
        assert worker.started_work.wait(10)
        assert worker.pid is not None
        wait_until_blocked_on_a_lock(worker.pid)
    worker.finish()
    assert changes(Restaurant, luigi.pk) == [{"name": ["Luigi's", "Mario's"]}, {"name": ["Mario's", "Place's"]}]
    assert list(verify_model(Restaurant)) == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_update_through_the_parent_changes_only_the_rows_it_locked(registered: dict[str, Any]) -> None:
    """A row entering the parent's filter between the locking read and the UPDATE (another
    transaction commits it) is left alone: the UPDATE changes the rows read, each recorded."""
    import threading

    from django.db import connection

    from tests.test_concurrency import WAIT

    entering = Restaurant.objects.create(name="y", serves_pizza=True)
    staying = Restaurant.objects.create(name="x", serves_pizza=True)
    locked, renamed = threading.Event(), threading.Event()

    def pause(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        if " FOR " in sql and not locked.is_set():  # the update's first locking read
            locked.set()
            assert renamed.wait(WAIT)
        return result

    def update() -> None:
        with connection.execute_wrapper(pause):
            assert Place.objects.filter(name="x").update(name="z") == 1

    def rename() -> None:
        assert locked.wait(WAIT)
        try:
            Place.objects.filter(pk=entering.pk).update(name="x")
        finally:
            renamed.set()

    updater, renamer = Worker(update), Worker(rename)
    updater.start()
    renamer.start()
    updater.finish()
    renamer.finish()
    assert Place.objects.get(pk=entering.pk).name == "x"
    assert Place.objects.get(pk=staying.pk).name == "z"
    assert state_at(Restaurant, staying.pk).name == "z"  # type: ignore[union-attr]
    assert_verified(registered)
