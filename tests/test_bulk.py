"""bulk_create() and bulk_update(): what the database stored, the rows really written, Django's own errors."""

from __future__ import annotations

import contextlib
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import FieldDoesNotExist
from django.db import DatabaseError, connection, connections, transaction
from django.db.models.functions import Now
from django.test.utils import override_settings

from audit_events import history
from audit_events.encoding import encode
from audit_events.models import Event
from tests.helpers import settings_with, upsert_on
from tests.models import Author, Book, Code, Everything
from tests.test_querysets import assert_replay_matches_table, updates

pytestmark = pytest.mark.django_db


def actions(model: type, pk: object) -> list[str]:
    return list(history(model, pk).values_list("action", flat=True))


def created_state(model: type, pk: object) -> dict[str, Any]:
    state: dict[str, Any] = history(model, pk).get(action="create").state
    return state


@pytest.fixture
def author() -> Author:
    return Author.objects.create(name="Ann", email="ann@example.com")


class TestBulkCreateRecordsWhatTheDatabaseStored:
    def test_a_decimal_with_more_places_than_the_column(self) -> None:
        (row,) = Everything.objects.bulk_create([Everything(decimal=Decimal("0.00025"))])
        stored = Everything.objects.get(pk=row.pk).decimal
        assert created_state(Everything, row.pk)["decimal"] == encode(Everything._meta.get_field("decimal"), stored)
        assert_replay_matches_table(Everything)

    def test_an_expression_the_database_computed(self) -> None:
        (row,) = Everything.objects.bulk_create([Everything(moment=Now(), char="now")])
        stored = Everything.objects.get(pk=row.pk).moment
        assert stored is not None
        assert created_state(Everything, row.pk)["moment"] == encode(Everything._meta.get_field("moment"), stored)
        assert_replay_matches_table(Everything)


class TestBulkCreateConflicts:
    def test_ignore_conflicts_without_primary_keys_records_exactly_the_rows_inserted(self, author: Author) -> None:
        objs = [Author(name="Again", email="ann@example.com"), Author(name="Bea", email="bea@example.com")]
        assert Author.objects.bulk_create(objs, ignore_conflicts=True) == objs
        assert [obj.pk for obj in objs] == [None, None]  # as plain Django leaves them
        bea = Author.objects.get(email="bea@example.com")
        assert actions(Author, bea.pk) == ["create"]
        assert created_state(Author, bea.pk)["name"] == "Bea"
        assert actions(Author, author.pk) == ["create"]
        assert Author.objects.get(pk=author.pk).name == "Ann"
        assert Event.objects.filter(action="create", content_type__model="author").count() == 2
        assert_replay_matches_table(Author)

    def test_ignore_conflicts_of_a_single_row_that_conflicts(self, author: Author) -> None:
        Author.objects.bulk_create([Author(name="Again", email="ann@example.com")], ignore_conflicts=True)
        assert actions(Author, author.pk) == ["create"]
        assert Author.objects.count() == 1

    def test_update_conflicts_on_a_unique_field_records_updates_and_creates(self, author: Author) -> None:
        Author.objects.filter(pk=author.pk).update(name="Ann, renamed elsewhere")
        objs = [Author(name="Ann 2", email="ann@example.com"), Author(name="Bea", email="bea@example.com")]
        Author.objects.bulk_create(objs, update_conflicts=True, **upsert_on("email"), update_fields=["name"])
        assert updates(Author, author.pk)[-1] == {"name": ["Ann, renamed elsewhere", "Ann 2"]}
        bea = Author.objects.get(email="bea@example.com")
        assert actions(Author, bea.pk) == ["create"]
        assert_replay_matches_table(Author)

    def test_an_upsert_batch_naming_one_key_twice_records_a_create_then_an_update(self) -> None:
        """SQLite lets one upsert insert a row and then update it; PostgreSQL refuses (found by a review)."""
        objs = [Author(name="a", email="x@example.com"), Author(name="b", email="x@example.com")]
        try:
            Author.objects.bulk_create(objs, update_conflicts=True, **upsert_on("email"), update_fields=["name"])
        except DatabaseError:
            assert connection.vendor == "postgresql"  # "cannot affect row a second time"
            return
        author = Author.objects.get(email="x@example.com")
        assert author.name == "b"
        assert actions(Author, author.pk) == ["create", "update"]
        assert updates(Author, author.pk) == [{"name": ["a", "b"]}]
        assert_replay_matches_table(Author)

    def test_update_conflicts_that_change_nothing_record_nothing(self) -> None:
        Code.objects.create(code="A", label="same")
        Code.objects.bulk_create(
            [Code(code="A", label="same")], update_conflicts=True, **upsert_on("code"), update_fields=["label"]
        )
        assert actions(Code, "A") == ["create"]

    @pytest.mark.parametrize(
        ("kwargs", "error"),
        [
            ({"update_conflicts": True, "update_fields": ["name"]}, ValueError),  # no unique_fields
            ({"update_conflicts": True, "update_fields": ["name"], "unique_fields": ["nope"]}, FieldDoesNotExist),
            ({"update_conflicts": True, "update_fields": ["nope"], "unique_fields": ["email"]}, FieldDoesNotExist),
            ({"update_conflicts": True, "update_fields": ["id"], "unique_fields": ["email"]}, ValueError),
            ({"ignore_conflicts": True, "update_conflicts": True}, ValueError),
            ({"batch_size": 0}, ValueError),
        ],
    )
    def test_django_raises_its_own_errors_and_the_transaction_stays_usable(
        self, kwargs: dict[str, Any], error: type[Exception]
    ) -> None:
        with override_settings(AUDIT_EVENTS={"MODELS": []}), pytest.raises(error) as plain:
            Author.objects.bulk_create([Author(name="x", email="x@example.com")], **kwargs)
        with transaction.atomic():
            with pytest.raises(error) as audited:
                Author.objects.bulk_create([Author(name="x", email="x@example.com")], **kwargs)
            assert str(audited.value) == str(plain.value)
            assert Author.objects.count() == 0  # the transaction is still usable

    def test_an_unsaved_related_object_is_refused_as_django_refuses_it(self) -> None:
        with transaction.atomic():
            with pytest.raises(ValueError, match="unsaved related object"):
                Book.objects.bulk_create([Book(author=Author(name="unsaved"), title="x")])
            assert Book.objects.count() == 0  # the transaction is still usable


class TestBulkUpdate:
    def test_the_same_row_twice_records_the_value_the_database_kept(self, author: Author) -> None:
        book = Book.objects.create(author=author, title="t", pages=0)
        first, second = Book.objects.get(pk=book.pk), Book.objects.get(pk=book.pk)
        first.pages, second.pages = 1, 2
        Book.objects.bulk_update([first, second], ["pages"])
        assert Book.objects.get(pk=book.pk).pages == 1  # Django's CASE: the first WHEN wins
        assert updates(Book, book.pk) == [{"pages": [0, 1]}]
        assert_replay_matches_table(Book)

    def test_a_decimal_with_more_places_than_the_column(self) -> None:
        row = Everything.objects.create()
        row.decimal = Decimal("0.00025")
        Everything.objects.bulk_update([row], ["decimal"])
        stored = Everything.objects.get(pk=row.pk).decimal
        assert updates(Everything, row.pk) == [
            {"decimal": ["0.0000", encode(Everything._meta.get_field("decimal"), stored)]}
        ]
        assert_replay_matches_table(Everything)

    def test_an_expression(self, author: Author) -> None:
        from django.db.models import F

        book = Book.objects.create(author=author, title="t", pages=3)
        book.pages = F("pages") + 4
        Book.objects.bulk_update([book], ["pages"])
        assert updates(Book, book.pk) == [{"pages": [3, 7]}]

    @pytest.mark.parametrize(
        ("fields", "error"),
        [(["nope"], FieldDoesNotExist), (["id"], ValueError), (["tags"], ValueError), ([], ValueError)],
    )
    def test_django_raises_its_own_errors_and_the_transaction_stays_usable(
        self, author: Author, fields: list[str], error: type[Exception]
    ) -> None:
        book = Book.objects.create(author=author, title="t")
        with override_settings(AUDIT_EVENTS={"MODELS": []}), pytest.raises(error) as plain:
            Book.objects.bulk_update([book], fields)
        with transaction.atomic():
            with pytest.raises(error) as audited:
                Book.objects.bulk_update([book], fields)
            assert str(audited.value) == str(plain.value)
            assert Book.objects.count() == 1  # the transaction is still usable

    def test_an_unsaved_related_object_is_refused_as_django_refuses_it(self, author: Author) -> None:
        book = Book.objects.create(author=author, title="t")
        book.editor = Author(name="unsaved")
        with transaction.atomic():
            with pytest.raises(ValueError, match="unsaved related object"):
                Book.objects.bulk_update([book], ["editor"])
            assert Book.objects.count() == 1

    def test_an_unsaved_object_is_refused_as_django_refuses_it(self, author: Author) -> None:
        with transaction.atomic():
            with pytest.raises(ValueError, match="primary key set"):
                Book.objects.bulk_update([Book(author=author, title="t")], ["title"])
            assert Book.objects.count() == 0


class ReadsElsewhere:
    """A primary/replica router: the tests app's reads go to "replica", writes to "default"."""

    def db_for_read(self, model: type, **hints: Any) -> str | None:
        return "replica" if model._meta.app_label == "tests" else None

    def db_for_write(self, model: type, **hints: Any) -> str | None:
        return "default"


@pytest.fixture
def reads_elsewhere() -> Any:
    """The replica is an empty database: any statement sent there instead of the primary fails."""
    replica = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    connections.settings["replica"] = connections.configure_settings({"default": replica})["default"]
    try:
        with override_settings(DATABASE_ROUTERS=[ReadsElsewhere()]):
            yield
    finally:
        connections["replica"].close()
        del connections["replica"]
        del connections.settings["replica"]


@pytest.mark.usefixtures("reads_elsewhere")
class TestWriteDatabase:
    def test_bulk_create_runs_and_records_on_the_write_database(self, author: Author) -> None:
        Book.objects.bulk_create([Book(author=author, title="b")])
        Code.objects.bulk_create(
            [Code(code="A", label="x")], update_conflicts=True, **upsert_on("code"), update_fields=["label"]
        )
        with override_settings(DATABASE_ROUTERS=[]):
            book = Book.objects.get()
            assert actions(Book, book.pk) == ["create"]
            assert actions(Code, "A") == ["create"]

    def test_bulk_update_runs_and_records_on_the_write_database(self, author: Author) -> None:
        with override_settings(DATABASE_ROUTERS=[]):
            book = Book.objects.create(author=author, title="t")
        book.pages = 5
        Book.objects.bulk_update([book], ["pages"])
        with override_settings(DATABASE_ROUTERS=[]):
            assert updates(Book, book.pk) == [{"pages": [0, 5]}]


class TestOtherShapes:
    def test_a_multi_table_child_is_recorded_under_its_registered_parent_too(self) -> None:
        from tests.models import Place, Restaurant

        restaurant = Restaurant.objects.create(name="Luigi's")
        restaurant.name, restaurant.serves_pizza = "Mario's", True
        Restaurant.objects.bulk_update([restaurant], ["name", "serves_pizza"])
        assert updates(Restaurant, restaurant.pk) == [{"name": ["Luigi's", "Mario's"], "serves_pizza": [False, True]}]
        assert updates(Place, restaurant.pk) == [{"name": ["Luigi's", "Mario's"]}]

    def test_a_composite_primary_key(self) -> None:
        from tests.models import Line

        with override_settings(AUDIT_EVENTS=settings_with("tests.Line")):
            lines = Line.objects.bulk_create([Line(order=1, number=1, qty=1), Line(order=1, number=2, qty=2)])
            lines[1].qty = 5
            Line.objects.bulk_update(lines, ["qty"])
            Line.objects.bulk_create(
                [Line(order=1, number=1, qty=7), Line(order=2, number=1, qty=1)],
                update_conflicts=True,
                **upsert_on("order", "number"),
                update_fields=["qty"],
            )
            assert actions(Line, (1, 2)) == ["create", "update"]
            assert actions(Line, (1, 1)) == ["create", "update"]
            assert actions(Line, (2, 1)) == ["create"]
            assert updates(Line, (1, 1)) == [{"qty": [1, 7]}]


@pytest.fixture
def no_bulk_returning(author: Author) -> Any:
    """The database answers as one that cannot return rows from an INSERT (MySQL, Oracle).

    ``author`` is made first, by the real backend: a test's other rows are not what it tests.
    """
    from django.db import connection

    features = connection.features
    names = ("can_return_columns_from_insert", "can_return_rows_from_bulk_insert")
    saved = {name: features.__dict__[name] for name in names if name in features.__dict__}
    for name in names:
        with contextlib.suppress(AttributeError):  # a property deriving it from the other (SQLite)
            setattr(features, name, False)
    assert not features.can_return_rows_from_bulk_insert
    yield
    for name in names:
        features.__dict__.pop(name, None)
    features.__dict__.update(saved)


@pytest.mark.usefixtures("no_bulk_returning")
class TestWithoutReturning:
    def test_rows_with_keys_are_read_back_after_the_insert(self) -> None:
        Code.objects.bulk_create([Code(code="A", label="a"), Code(code="B", label="b")])
        assert created_state(Code, "B") == {"code": "B", "label": "b"}
        assert_replay_matches_table(Code)

    def test_rows_without_keys_are_refused_and_nothing_is_written(self, author: Author) -> None:
        from django.db import NotSupportedError

        with pytest.raises(NotSupportedError, match=r"tests\.Book"), transaction.atomic():
            Book.objects.bulk_create([Book(author=author, title="x")])
        assert not Book.objects.exists()
