"""Relations over several columns (``ForeignObject``), as Django's own ``foreign_object`` tests use them.

A ``ForeignObject`` has no column: its ``from_fields`` are recorded as the
model's fields. A many-to-many field through a model whose links are
``ForeignObject`` s is not recorded as links (``docs/limits.rst``); the through
rows are recorded as rows of their own when that model is registered, and
everything else behaves as in plain Django.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test.utils import override_settings

from audit_events import history, restore
from audit_events.models import Event
from tests.helpers import settings_with
from tests.models import Club, ClubMembership, HonoraryMember, Member

pytestmark = pytest.mark.django_db

CLUBS = ["tests.Club", "tests.Member", "tests.HonoraryMember", "tests.ClubMembership"]


@pytest.fixture(autouse=True)
def registered() -> Iterator[None]:
    with override_settings(AUDIT_EVENTS=settings_with(*CLUBS)):
        yield


@pytest.fixture
def club() -> Club:
    return Club.objects.create(name="Chess", country="fi")


@pytest.fixture
def member() -> Member:
    return Member.objects.create(name="Ann", country="fi")


def test_through_rows_of_foreign_objects_are_written_and_read_as_in_django(club: Club, member: Member) -> None:
    other = Member.objects.create(name="Bob", country="se")  # its country differs from the club's
    ClubMembership.objects.create(club_id=club.pk, member_id=member.pk, country="fi")
    ClubMembership.objects.create(club_id=club.pk, member_id=other.pk, country="fi")
    assert list(club.members.all()) == [member]
    assert list(member.clubs.all()) == [club]
    assert list(Club.objects.filter(members__name="Ann")) == [club]
    assert [c.members.all()[0] for c in Club.objects.prefetch_related("members")] == [member]


def test_many_to_many_through_foreign_objects_is_not_recorded_as_links(club: Club, member: Member) -> None:
    membership = ClubMembership.objects.create(club_id=club.pk, member_id=member.pk, country="fi")
    assert "members" not in history(club).get().state
    assert history(club).count() == 1, "the link is not recorded on the club"
    assert history(membership).get().state == {
        "id": membership.pk,
        "country": "fi",
        "club_id": club.pk,
        "member_id": member.pk,
    }


def test_through_row_without_one_end(member: Member) -> None:
    membership = ClubMembership.objects.create(club_id=None, member_id=member.pk, country="fi")
    assert list(ClubMembership.objects.filter(club__isnull=True)) == [membership]
    membership.country = "se"
    membership.save()
    assert history(membership).last().changes == {"country": ["fi", "se"]}


def test_foreign_object_is_recorded_by_its_columns(club: Club, member: Member) -> None:
    member.favourite = club
    member.save()
    assert history(member).last().changes == {"favourite_id": [None, club.pk]}
    assert Member.objects.get(favourite=club) == member
    Member.objects.filter(favourite=club).update(favourite_id=None)
    assert history(member).last().changes == {"favourite_id": [club.pk, None]}


def test_child_of_a_model_with_a_foreign_object(club: Club) -> None:
    honorary = HonoraryMember.objects.create(name="Cid", country="fi", title="Sir", favourite=club)
    honorary.title = "Dame"
    honorary.save()
    Member.objects.get(pk=honorary.pk).save()  # the parent's save reads its registered child too
    assert history(honorary).last().changes == {"title": ["Sir", "Dame"]}
    pk = honorary.pk
    honorary.delete()
    restore(HonoraryMember, pk)
    assert HonoraryMember.objects.get().favourite == club


def test_cascade_through_a_foreign_object_from_an_unregistered_model_is_one_operation(
    club: Club, member: Member
) -> None:
    other = Member.objects.create(name="Bob", country="fi")
    for person in (member, other):
        ClubMembership.objects.create(club_id=club.pk, member_id=person.pk, country="fi")
    before = Event.objects.count()
    without_club = [label for label in CLUBS if label != "tests.Club"]
    with override_settings(AUDIT_EVENTS=settings_with(*without_club)):
        club.delete()
    written = list(Event.objects.order_by("id")[before:])
    assert [(e.content_type.model, e.action) for e in written] == [("clubmembership", "delete")] * 2
    assert len({e.operation for e in written}) == 1
