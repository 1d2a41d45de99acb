"""A save records what the database answered for it, never what Python believes it sent."""

from __future__ import annotations

import datetime
import decimal
import json
import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.db import DatabaseError, models, transaction
from django.test.utils import override_settings

from audit_events import history, state_at
from audit_events.models import Event
from tests.helpers import events, only, registering, settings_without
from tests.models import Author, Book, DbDefaultKey, Everything, Player, Stamp, Team

pytestmark = pytest.mark.django_db


# --- values as stored ---------------------------------------------------------


def stored_decimal(row: Everything) -> str:
    return str(Everything.objects.get(pk=row.pk).decimal)


def test_a_created_decimal_with_extra_places_is_recorded_as_stored() -> None:
    """SQLite rounds 0.00025 half-even to 0.0002, PostgreSQL half away from zero to 0.0003."""
    row = Everything.objects.create(decimal=decimal.Decimal("0.00025"))
    assert only(Everything, row.pk).state["decimal"] == stored_decimal(row)


@pytest.mark.parametrize(
    "write",
    [
        lambda row: row.save(),
        lambda row: row.save(update_fields=["decimal"]),
    ],
    ids=["save", "update_fields"],
)
def test_a_saved_decimal_with_extra_places_is_recorded_as_stored(write: Callable[[Everything], Any]) -> None:
    row = Everything.objects.create(decimal=decimal.Decimal("1"))
    row.decimal = decimal.Decimal("0.00025")
    write(row)
    assert events(Everything, row.pk)[-1].changes == {"decimal": ["1.0000", stored_decimal(row)]}
    # Saving what the database holds again changes nothing, and records nothing.
    Everything.objects.get(pk=row.pk).save()
    assert len(events(Everything, row.pk)) == 2


def test_a_database_default_primary_key_and_field_are_recorded_as_the_database_chose() -> None:
    with registering("tests.DbDefaultKey"):
        DbDefaultKey().save()
        event = only(DbDefaultKey, 1)
        assert event.state == {"id": 1, "number": 7}
        DbDefaultKey.objects.create(id=5)
        assert only(DbDefaultKey, 5).state == {"id": 5, "number": 7}


def test_a_database_default_primary_key_behaves_as_plain_django() -> None:
    plain = DbDefaultKey()
    plain.save()
    plain_pk = plain.pk
    DbDefaultKey.objects.all().delete()
    with registering("tests.DbDefaultKey"):
        audited = DbDefaultKey()
        audited.save()
        assert (type(audited.pk), audited.pk) == (type(plain_pk), plain_pk)
        assert type(audited.number) is type(plain.number)


# --- values that are objects in Python ----------------------------------------


def test_a_custom_field_holding_an_object_records_what_the_database_stored() -> None:
    with registering("tests.Player"):
        player = Player.objects.create(team=Team("x"))
        assert isinstance(player.team, Team)
        event = only(Player, player.pk.value)
        assert event.state == {"id": player.pk.value, "team": "x", "author": None}
        player.team = Team("y")
        player.save()
        assert events(Player, player.pk.value)[-1].changes == {"team": ["x", "y"]}
        old = state_at(Player, player.pk, at=event.created_at)
        assert old is not None
        assert old.team == Team("x")


def test_a_custom_auto_field_returning_a_wrapper_behaves_as_plain_django() -> None:
    plain = Player.objects.create(team=Team("p"))
    with registering("tests.Player"):
        audited = Player.objects.create(team=Team("a"))
        assert type(audited.pk) is type(plain.pk)
        assert type(audited.team) is type(plain.team)
        assert only(Player, audited.pk.value).object_pk == str(audited.pk.value)


def test_a_foreign_key_attname_given_an_instance_records_its_key() -> None:
    first, second = Author.objects.create(name="first"), Author.objects.create(name="second")
    book = Book.objects.create(author=first, title="t")
    book.author_id = second  # type: ignore[assignment]  # Django accepts it on an update
    book.save()
    assert events(Book, book.pk)[-1].changes == {"author": [first.pk, second.pk]}


# --- composite keys -----------------------------------------------------------


def test_a_composite_key_with_a_datetime_and_a_uuid_part() -> None:
    with registering("tests.Stamp"):
        stamp = Stamp.objects.create(id=1)
        assert isinstance(stamp.at, datetime.datetime)
        event = only(Stamp)
        key = json.loads(event.object_pk)
        assert key[0] == 1
        assert datetime.datetime.fromisoformat(key[1]) == stamp.at
        assert uuid.UUID(key[2]) == stamp.key
        assert event.state["note"] == ""
        stamp.note = "n"
        stamp.save()
        assert [e.action for e in history(Stamp, stamp.pk)] == ["create", "update"]
        assert events(Stamp)[-1].changes == {"note": ["", "n"]}


# --- same exceptions as plain Django ------------------------------------------


def outcome(save: Callable[[], Any]) -> tuple[str, str]:
    try:
        with transaction.atomic():
            save()
    except DatabaseError as error:
        return type(error).__name__, str(error)
    return "saved", ""


def vanished(model: type[models.Model]) -> models.Model:
    """A row deleted behind the instance's back, or one whose base manager says no row matched (lying)."""
    row = model.objects.create(name="gone")
    if model._meta.model_name != "selectonsavelying":
        model._base_manager.filter(pk=row.pk).delete()
    row.name = "again"  # type: ignore[attr-defined]
    return row


SAVES = {
    "save": lambda row: row.save(),
    "force_update": lambda row: row.save(force_update=True),
    "update_fields": lambda row: row.save(update_fields=["name"]),
}


@pytest.mark.parametrize("how", list(SAVES))
@pytest.mark.parametrize("label", ["tests.SelectOnSave", "tests.SelectOnSaveLying", "tests.Author"])
def test_a_save_of_a_vanished_row_raises_what_plain_django_raises(label: str, how: str) -> None:
    """Compared with the same model unregistered: same exception, same rows left.

    ``SelectOnSaveLying``'s row is still there, but its base manager's
    ``_update`` says it matched none, as Django's own select_on_save test has it.
    """
    from django.apps import apps

    model = apps.get_model(label)
    with override_settings(AUDIT_EVENTS=settings_without(label)):
        plain_row = vanished(model)
        plain = outcome(lambda: SAVES[how](plain_row))
        plain_rows = sorted(model._base_manager.values_list("name", flat=True))
        model._base_manager.all().delete()
    with registering(label):
        audited_row = vanished(model)
        assert outcome(lambda: SAVES[how](audited_row)) == plain
        assert sorted(model._base_manager.values_list("name", flat=True)) == plain_rows
        recorded = [e.action for e in Event.objects.filter(content_type__model=model._meta.model_name).order_by("id")]
        if model._meta.model_name != "selectonsavelying":
            assert recorded == ["create", "delete", *(["create"] if plain[0] == "saved" else [])]


@pytest.mark.parametrize("how", list(SAVES))
def test_a_save_of_a_row_the_base_manager_leaves_out_does_what_plain_django_does(how: str) -> None:
    """Django's save updates through the base manager: a row it filters out is not updated."""
    from tests.models import Hideable

    def hidden_row() -> Hideable:
        row = Hideable.objects.create(name="kept")
        Hideable.objects.filter(pk=row.pk).update(hidden=True)
        row.name = "again"
        return row

    plain_row = hidden_row()
    with transaction.atomic():
        plain = outcome(lambda: SAVES[how](plain_row))
    plain_rows = sorted(Hideable.objects.values_list("name", "hidden"))
    Hideable.objects.all().delete()
    with registering("tests.Hideable"):
        audited_row = hidden_row()
        with transaction.atomic():
            audited = outcome(lambda: SAVES[how](audited_row))
        assert [re.sub(r"\d+", "N", text) for text in audited] == [re.sub(r"\d+", "N", text) for text in plain]  # keys
        assert sorted(Hideable.objects.values_list("name", "hidden")) == plain_rows
        assert state_at(Hideable, audited_row.pk).name == "kept"  # type: ignore[union-attr]


def test_values_a_field_cannot_prepare_again_are_recorded_as_the_database_stores_them() -> None:
    from tests.models import Crew, Sailor, Wrapped

    with registering("tests.Sailor"):
        sailor = Sailor.objects.create(crew=Crew("x"))
        assert isinstance(sailor.pk, Wrapped)
        key = sailor.pk.value
        assert only(Sailor, key).state == {"id": key, "crew": "x"}
        Sailor.objects.filter(pk=key).update(crew=Crew("y"))
        assert events(Sailor, key)[-1].changes == {"crew": ["x", "y"]}
        (other,) = Sailor.objects.bulk_create([Sailor(crew=Crew("z"))])
        if transaction.get_connection().features.can_return_rows_from_bulk_insert:
            assert isinstance(other.pk, Wrapped)
        newest = Sailor.objects.order_by("-pk").first()
        assert newest is not None
        assert only(Sailor, newest.pk.value).state == {"id": newest.pk.value, "crew": "z"}
        old = state_at(Sailor, key, at=events(Sailor, key)[0].created_at)
        assert old is not None
        assert old.crew == Crew("x")


# --- a save or delete of the same instance inside a receiver ---------------------


@pytest.fixture
def receiver_before_ours() -> Any:
    """Connect a post_save receiver for Book and Author before this app's (as one in a models.py is)."""
    connected: list[Callable[..., Any]] = []

    def connect(receiver: Callable[..., Any]) -> Any:
        for sender in (Author, Book):
            models.signals.post_save.connect(receiver, sender=sender, weak=False)
        connected.append(receiver)
        return registering("tests.Stamp")  # registering again connects this app's receivers after it

    yield connect
    for receiver in connected:
        for sender in (Author, Book):
            models.signals.post_save.disconnect(receiver, sender=sender)


def assert_replay_is_live(model: type[models.Model], pk: Any) -> None:
    from audit_events.verify import verify_model

    live = model._base_manager.get(pk=pk)
    replayed = state_at(model, pk)
    assert replayed is not None
    assert {f.attname: getattr(replayed, f.attname) for f in model._meta.concrete_fields} == {
        f.attname: getattr(live, f.attname) for f in model._meta.concrete_fields
    }
    assert list(verify_model(model)) == []


@pytest.mark.django_db(transaction=True)
def test_a_save_inside_an_earlier_post_save_receiver_keeps_the_outer_update(receiver_before_ours: Any) -> None:
    def shout(sender: Any, instance: Any, created: bool, update_fields: Any = None, **kwargs: Any) -> None:
        if sender is Book and not created and update_fields is None:
            instance.title = instance.title.upper()
            instance.save(update_fields=["title"])

    with receiver_before_ours(shout):
        author = Author.objects.create(name="Ann")
        book = Book.objects.create(author=author, title="t", pages=1)
        book.title, book.pages = "x", 2
        book.save()
        assert [(e.action, e.changes) for e in events(Book, book.pk)] == [
            ("create", {}),
            ("update", {"title": ["t", "x"], "pages": [1, 2]}),
            ("update", {"title": ["x", "X"]}),
        ]
        assert_replay_is_live(Book, book.pk)


@pytest.mark.django_db(transaction=True)
def test_a_save_inside_an_earlier_post_save_receiver_keeps_the_create(receiver_before_ours: Any) -> None:
    def exclaim(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
        if sender is Author and created:
            instance.name += "!"
            instance.save(update_fields=["name"])

    with receiver_before_ours(exclaim):
        author = Author.objects.create(name="Ann")
        found = events(Author, author.pk)
        assert [e.action for e in found] == ["create", "update"]
        assert (found[0].state or {}).get("name") == "Ann"
        assert found[1].changes == {"name": ["Ann", "Ann!"]}
        assert_replay_is_live(Author, author.pk)


@pytest.mark.parametrize("how", ["queryset_update", "queryset_delete", "other_instance"])
def test_a_write_of_the_saved_row_by_an_earlier_post_save_receiver_is_recorded_after_the_save(
    receiver_before_ours: Any, how: str
) -> None:
    """A receiver in a models.py writes the row just saved (``filter(pk=).update()``, the usual way to
    avoid recursion; a delete; another instance's save): its event comes after the save's, as the
    writes did, whichever event carries a full state (found by a review)."""

    done: list[bool] = []

    def denormalize(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
        if sender is Book and instance.title == "x" and not done:
            done.append(True)
            if how == "queryset_update":
                Book.objects.filter(pk=instance.pk).update(pages=999)
            elif how == "queryset_delete":
                Book.objects.filter(pk=instance.pk).delete()
            else:
                other = Book.objects.get(pk=instance.pk)
                other.pages = 999
                other.save(update_fields=["pages"])

    book = Book.objects.create(author=Author.objects.create(name="Ann"), title="t", pages=1)
    for pages in range(2, 9):  # versions 2 to 8: the receiver's write is v9 or v10, one of them a full state
        book.pages = pages
        book.save()
    with receiver_before_ours(denormalize):
        book.title = "x"
        book.save()

    found = events(Book, book.pk)
    assert (found[-2].action, found[-2].changes) == ("update", {"title": ["t", "x"]})
    if how == "queryset_delete":
        assert found[-1].action == "delete"
        assert state_at(Book, book.pk) is None
    else:
        assert (found[-1].action, found[-1].changes) == ("update", {"pages": [8, 999]})
        assert_replay_is_live(Book, book.pk)


@pytest.mark.parametrize("label", ["tests.Restaurant", "tests.Book"])
def test_a_save_whose_row_a_later_pre_save_receiver_wrote_records_the_row_it_overwrote(label: str) -> None:
    """A pre_save receiver connected after this app's writes the row (recorded): where the save's old row
    was read before it (SQLite; multi-table models on PostgreSQL), it is read again (found by a review)."""
    from django.apps import apps
    from django.db.models.signals import pre_save

    model = apps.get_model(label)
    if label == "tests.Book":
        row = model.objects.create(author=Author.objects.create(name="Ann"), title="orig")
        field = "title"
    else:
        row = model.objects.create(name="orig", serves_pizza=True)
        field = "name"

    def meddle(sender: Any, instance: Any, **kwargs: Any) -> None:
        if instance.pk == row.pk:
            model.objects.filter(pk=row.pk).update(**{field: "by receiver"})

    pre_save.connect(meddle, sender=model)
    try:
        model.objects.get(pk=row.pk).save()  # writes "orig" over "by receiver"
    finally:
        pre_save.disconnect(meddle, sender=model)

    assert [e.changes for e in events(model, row.pk)][1:] == [
        {field: ["orig", "by receiver"]},
        {field: ["by receiver", "orig"]},
    ]
    assert_replay_is_live(model, row.pk)


def test_a_delete_whose_row_a_later_pre_delete_receiver_wrote_records_the_row_it_deleted() -> None:
    from django.db.models.signals import pre_delete

    book = Book.objects.create(author=Author.objects.create(name="Ann"), title="orig", pages=1)

    def meddle(sender: Any, instance: Any, **kwargs: Any) -> None:
        if instance.pk == book.pk:
            Book.objects.filter(pk=book.pk).update(pages=2)

    pre_delete.connect(meddle, sender=Book)
    try:
        Book.objects.get(pk=book.pk).delete()
    finally:
        pre_delete.disconnect(meddle, sender=Book)

    found = events(Book, book.pk)
    assert [(e.action, e.changes) for e in found] == [("create", {}), ("update", {"pages": [1, 2]}), ("delete", {})]
    assert (found[-1].state or {})["pages"] == 2


def test_a_failed_save_leaves_nothing_a_later_save_records() -> None:
    author = Author.objects.create(name="Ann")
    book = Book.objects.create(author=author, title="t", pages=1)
    book.title = None
    with pytest.raises(DatabaseError), transaction.atomic():
        book.save()
    book.title = "u"
    book.save()
    assert [(e.action, e.changes) for e in events(Book, book.pk)] == [("create", {}), ("update", {"title": ["t", "u"]})]
    assert "_audit_events_handoffs" not in book.__dict__  # nothing kept on the instance once its saves are done
