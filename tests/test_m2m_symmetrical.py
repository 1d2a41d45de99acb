"""Symmetrical links to rows of the same model (``ManyToManyField("self")``): Django writes both
directions of each link, and each row's history holds its links as the database holds them."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from django.test.utils import override_settings
from django.utils import timezone

from audit_events import history, restore, state_at
from audit_events.registry import spec_for
from audit_events.replay import recorded_state, state_until
from audit_events.verify import verify_model
from tests.models import Person
from tests.test_capture import BASE

pytestmark = pytest.mark.django_db

PEOPLE = {**BASE, "MODELS": [*BASE["MODELS"], "tests.Person"]}
ALLIANCES = {**BASE, "MODELS": [*BASE["MODELS"], "tests.Person", "tests.Alliance"]}


@pytest.fixture(params=["friends", "allies", "allies, through registered"])
def field(request: pytest.FixtureRequest) -> Iterator[str]:
    """The field under test: through an auto-created table, or an explicit one (registered or not)."""
    with override_settings(AUDIT_EVENTS=ALLIANCES if "registered" in request.param else PEOPLE):
        yield request.param.split(",")[0]


def live(person: Person | int, field: str) -> list[int]:
    pk = person if isinstance(person, int) else person.pk
    return sorted(getattr(Person.objects.get(pk=pk), field).values_list("pk", flat=True))


def recorded(person: Person | int, field: str) -> list[Any]:
    spec = spec_for(Person)
    assert spec is not None
    state = recorded_state(spec, person if isinstance(person, int) else person.pk)
    assert state is not None
    return sorted(state[field])  # type: ignore[arg-type]


def assert_recorded_as_live(field: str, *people: Person | int) -> None:
    """Each row's history holds the links the database holds, in both directions; audit_verify agrees."""
    for person in people:
        assert recorded(person, field) == live(person, field), person
    assert [str(finding) for finding in verify_model(Person)] == []


def registered_through(field: str) -> bool:
    through: Any = Person._meta.get_field(field).remote_field.through
    return spec_for(through) is not None


def trio() -> tuple[Person, Person, Person]:
    a, b, c = (Person.objects.create(name=name) for name in "abc")
    return a, b, c


def test_add_remove_set_clear_are_recorded_on_both_rows(field: str) -> None:
    a, b, c = trio()
    getattr(a, field).add(b, c)
    assert (live(a, field), live(b, field), live(c, field)) == ([b.pk, c.pk], [a.pk], [a.pk])
    assert_recorded_as_live(field, a, b, c)
    getattr(a, field).remove(b)
    assert live(b, field) == []
    assert_recorded_as_live(field, a, b, c)
    getattr(b, field).set([a, c])
    assert live(c, field) == [a.pk, b.pk]
    assert_recorded_as_live(field, a, b, c)
    getattr(c, field).clear()
    assert (live(a, field), live(b, field), live(c, field)) == ([b.pk], [a.pk], [])
    assert_recorded_as_live(field, a, b, c)
    getattr(b, field).set([c])
    assert_recorded_as_live(field, a, b, c)


def test_each_row_is_recorded_once_per_call(field: str) -> None:
    a, b, c = trio()
    getattr(a, field).add(b, c)
    getattr(a, field).clear()
    for person in (a, b, c):
        updates = history(person).filter(action="update")
        assert len(updates) == 2, person
        assert updates[0].operation != updates[1].operation


def test_state_at_and_restore_at_of_either_row_give_both_directions(field: str) -> None:
    a, b, c = trio()
    getattr(a, field).add(b)
    moment = timezone.now()
    getattr(a, field).set([c])
    spec = spec_for(Person)
    assert spec is not None
    assert (state_until(Person, spec, a.pk, moment) or {})[field] == [b.pk]
    assert (state_until(Person, spec, b.pk, moment) or {})[field] == [a.pk]
    assert state_at(Person, c.pk, at=moment) is not None

    restore(Person, b.pk, at=moment)  # b had a: a has b again; c keeps a
    if registered_through(field):  # its rows are restored as rows of their own: links stay as they are
        assert (live(a, field), live(b, field), live(c, field)) == ([c.pk], [], [a.pk])
        assert_recorded_as_live(field, a, b, c)
        return
    assert (live(a, field), live(b, field), live(c, field)) == ([b.pk, c.pk], [a.pk], [a.pk])
    assert_recorded_as_live(field, a, b, c)
    assert history(a).last().operation == history(b).last().operation  # one restore

    restore(Person, a.pk, at=moment)  # a had b only: c loses a
    assert (live(a, field), live(b, field), live(c, field)) == ([b.pk], [a.pk], [])
    assert_recorded_as_live(field, a, b, c)
    assert history(c).last().operation == history(a).last().operation


def test_undo_delete_brings_the_links_back_in_both_directions(field: str) -> None:
    a, b, c = trio()
    getattr(a, field).add(b, c)
    getattr(b, field).add(c)
    pk = a.pk
    a.delete()
    assert history(Person, pk).last().state[field] == [b.pk, c.pk]
    assert (live(b, field), live(c, field)) == ([c.pk], [b.pk])
    assert_recorded_as_live(field, b, c)

    restore(Person, pk)

    assert (live(pk, field), live(b, field), live(c, field)) == ([b.pk, c.pk], [pk, c.pk], [pk, b.pk])
    assert_recorded_as_live(field, pk, b, c)
    assert_each_delete_is_followed_by_its_restore(pk)


def test_a_delete_of_linked_rows_together_is_undone_with_their_links(field: str) -> None:
    a, b, c = trio()
    getattr(a, field).add(b, c)
    Person.objects.filter(pk__in=[a.pk, b.pk]).delete()
    assert live(c, field) == []
    assert_recorded_as_live(field, c)

    restore(Person, a.pk)

    assert (live(a, field), live(b, field), live(c, field)) == ([b.pk, c.pk], [a.pk], [a.pk])
    assert_recorded_as_live(field, a, b, c)
    assert_each_delete_is_followed_by_its_restore(a.pk, b.pk)


def test_a_through_row_written_directly_changes_both_rows(field: str) -> None:
    a, b, c = trio()
    getattr(a, field).add(b)
    through: Any = Person._meta.get_field(field).remote_field.through
    source, target = ("from_person", "to_person") if field == "friends" else ("person", "ally")
    through.objects.filter(**{source: b, target: a}).update(**{source: c})  # b's link to a is now c's
    assert (live(b, field), live(c, field)) == ([], [a.pk])
    assert_recorded_as_live(field, a, b, c)
    through.objects.filter(**{target: a}).delete()
    assert_recorded_as_live(field, a, b, c)


def test_unchanged_symmetrical_links_cost_no_event(field: str) -> None:
    a, b, _ = trio()
    getattr(a, field).add(b)
    before = history(b).count(), history(a).count()
    getattr(b, field).add(a)  # both rows exist already
    assert (history(b).count(), history(a).count()) == before


def assert_each_delete_is_followed_by_its_restore(*pks: int) -> None:
    """A row restored with its group has no event between its delete and its restore."""
    for pk in pks:
        actions = [event.action for event in history(Person, pk)]
        assert all(after == "restore" for before, after in itertools.pairwise(actions) if before == "delete"), actions


def test_a_group_restore_records_each_row_restored_before_its_links_change(field: str) -> None:
    a, b, c = trio()
    getattr(a, field).add(b, c)
    getattr(b, field).add(c)
    Person.objects.filter(pk__in=[a.pk, b.pk]).delete()
    restore(Person, b.pk)
    assert (live(a, field), live(b, field), live(c, field)) == ([b.pk, c.pk], [a.pk, c.pk], [a.pk, b.pk])
    assert_recorded_as_live(field, a, b, c)
    assert_each_delete_is_followed_by_its_restore(a.pk, b.pk)


# --- two writers (PostgreSQL), as tests/test_concurrency.py does for other links ---------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("removal", ["remove", "clear"])
def test_a_removal_that_waited_for_a_symmetrical_add_records_both_rows(field: str, removal: str) -> None:
    """``b.<field>.add(a)`` holds its transaction (both directions written) while ``a``'s remove or
    clear waits for it. Through the auto-created table (``m2m_changed`` locks ``a`` before the
    DELETE) the removal then takes both directions of the new link; through the explicit model,
    whose rows are locked first and the DELETE narrowed to them, it runs as before the add, and
    the new link stays (as plain Django's DELETE, which waits for nothing). Either way each row's
    history holds the links it has."""
    from tests.test_concurrency import run_blocked_pair

    a, b, c = trio()
    getattr(a, field).add(c)

    def removal_of_a() -> None:
        links = getattr(Person.objects.get(pk=a.pk), field)
        links.remove(b, c) if removal == "remove" else links.clear()

    run_blocked_pair(lambda: getattr(b, field).add(a), removal_of_a)

    kept = [] if field == "friends" else [a.pk]
    assert (live(a, field), live(b, field), live(c, field)) == ([b.pk] if kept else [], kept, [])
    assert_recorded_as_live(field, a, b, c)
    assert [e.changes for e in history(b).filter(action="update")] == [
        {field: [[], [a.pk]]},
        *([] if kept else [{field: [[a.pk], []]}]),
    ]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_add_that_waited_for_a_symmetrical_clear_records_both_rows(field: str) -> None:
    from tests.test_concurrency import run_blocked_pair

    a, b, c = trio()
    getattr(a, field).add(b)

    run_blocked_pair(lambda: getattr(a, field).clear(), lambda: getattr(Person.objects.get(pk=c.pk), field).add(a))

    assert (live(a, field), live(b, field), live(c, field)) == ([c.pk], [], [a.pk])
    assert_recorded_as_live(field, a, b, c)
