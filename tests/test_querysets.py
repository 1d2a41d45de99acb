"""QuerySet.update(), bulk_create(), bulk_update(), get_or_create/update_or_create and QuerySet.delete()."""

from __future__ import annotations

import pickle
from decimal import Decimal
from typing import Any

import pytest
from django.db import NotSupportedError, connection, transaction
from django.db.models import Case, F, Value, When
from django.test.utils import CaptureQueriesContext

from audit_events import backends, history, restore, state_at
from audit_events.models import Event
from audit_events.replay import recorded_state
from tests.helpers import at_commit, settings_with, spec_of, statements_apart, upsert_on
from tests.models import Author, Book, Code, Everything, Unregistered

pytestmark = pytest.mark.django_db


def updates(model: type, pk: object) -> list[dict[str, list[object]]]:
    return list(history(model, pk).filter(action="update").values_list("changes", flat=True))


def assert_replay_matches_table(model: type) -> None:
    spec = spec_of(model)
    for row in model._base_manager.all():
        state = recorded_state(spec, row.pk)
        assert state is not None
        assert {k: v for k, v in state.items() if k in {f.name for f in spec.fields}} == spec.state_of(row)


@pytest.fixture
def author() -> Author:
    return Author.objects.create(name="Ann", email="ann@example.com")


@pytest.fixture
def books(author: Author) -> list[Book]:
    return [Book.objects.create(author=author, title=f"t{i}", pages=i) for i in range(3)]


class TestUpdate:
    def test_records_each_changed_row_in_one_operation(self, books: list[Book]) -> None:
        count = Book.objects.filter(pages__lt=2).update(title="new")
        assert count == 2
        events = Event.objects.filter(action="update")
        assert sorted(events.values_list("object_pk", flat=True)) == sorted(str(b.pk) for b in books[:2])
        assert len(set(events.values_list("operation", flat=True))) == 1
        assert updates(Book, books[0].pk) == [{"title": ["t0", "new"]}]
        assert updates(Book, books[2].pk) == []
        assert_replay_matches_table(Book)

    def test_rows_that_do_not_change_record_nothing(self, books: list[Book]) -> None:
        Book.objects.update(pages=1)
        assert updates(Book, books[1].pk) == []
        assert updates(Book, books[0].pk) == [{"pages": [0, 1]}]

    def test_f_expressions_record_the_value_the_database_computed(self, books: list[Book]) -> None:
        Book.objects.update(pages=F("pages") * 10 + 1)
        assert updates(Book, books[2].pk) == [{"pages": [2, 21]}]
        assert_replay_matches_table(Book)

    def test_case_expression(self, books: list[Book]) -> None:
        Book.objects.update(title=Case(When(pages=1, then=Value("one")), default=F("title")))
        assert updates(Book, books[1].pk) == [{"title": ["t1", "one"]}]
        assert updates(Book, books[0].pk) == []

    def test_through_a_related_manager(self, author: Author, books: list[Book]) -> None:
        author.books.update(pages=7)
        assert all(updates(Book, b.pk) for b in books)

    def test_foreign_key_given_as_an_instance(self, books: list[Book]) -> None:
        other = Author.objects.create(name="Bob")
        Book.objects.filter(pk=books[0].pk).update(editor=other)
        assert updates(Book, books[0].pk) == [{"editor": [None, other.pk]}]

    def test_decimal_values_are_normalised_like_the_column(self) -> None:
        row = Everything.objects.create(decimal=Decimal("1.5"))
        Everything.objects.update(decimal=Decimal("1.50"))
        assert updates(Everything, row.pk) == []

    def test_unregistered_models_issue_only_their_own_query(self) -> None:
        Unregistered.objects.create(name="x")
        with CaptureQueriesContext(connection) as queries:
            assert Unregistered.objects.filter(name="x").update(name="y") == 1
        assert [q["sql"].split()[0] for q in queries] == ["UPDATE"]
        assert type(Unregistered.objects.all()).__module__ == "django.db.models.query"

    def test_a_failing_update_records_nothing(self, books: list[Book]) -> None:
        from django.db import IntegrityError, transaction

        with pytest.raises(IntegrityError), transaction.atomic():
            Book.objects.update(author_id=None)
        assert not Event.objects.filter(action="update").exists()

    def test_audited_querysets_still_pickle(self, books: list[Book]) -> None:
        qs = Book.objects.filter(pages__gte=1)
        assert list(pickle.loads(pickle.dumps(qs))) == list(qs)


class TestBulkUpdate:
    def test_only_listed_fields_with_old_values_from_the_database(self, books: list[Book]) -> None:
        Book.objects.filter(pk=books[0].pk).update(title="changed elsewhere")
        for book in books:
            book.pages = 100
            book.title = "not saved"  # not listed: must not appear as a change
        assert Book.objects.bulk_update(books, ["pages"]) == 3
        assert updates(Book, books[0].pk)[-1] == {"pages": [0, 100]}
        assert Book.objects.get(pk=books[0].pk).title == "changed elsewhere"
        events = Event.objects.filter(action="update", changes__has_key="pages")
        assert events.count() == 3
        assert len(set(events.values_list("operation", flat=True))) == 1
        assert_replay_matches_table(Book)

    def test_unchanged_rows_record_nothing(self, books: list[Book]) -> None:
        books[0].pages = 50
        Book.objects.bulk_update(books, ["pages"])
        assert Event.objects.filter(action="update").count() == 1


class TestBulkCreate:
    def test_every_row_gets_a_create_event_in_one_operation(self, author: Author) -> None:
        created = Book.objects.bulk_create([Book(author=author, title=f"b{i}") for i in range(5)])
        events = Event.objects.filter(action="create", content_type__model="book")
        assert events.count() == 5
        assert len(set(events.values_list("operation", flat=True))) == 1
        assert history(created[0]).get().state["title"] == "b0"
        assert_replay_matches_table(Book)

    def test_ignore_conflicts_records_only_rows_really_inserted(self) -> None:
        Code.objects.create(code="A", label="first")
        Code.objects.bulk_create([Code(code="A", label="second"), Code(code="B", label="new")], ignore_conflicts=True)
        assert Code.objects.get(code="A").label == "first"
        assert list(history(Code, "A").values_list("action", flat=True)) == ["create"]
        assert list(history(Code, "B").values_list("action", flat=True)) == ["create"]
        assert_replay_matches_table(Code)

    def test_update_conflicts_records_updates_and_creates(self) -> None:
        Code.objects.create(code="A", label="first")
        Code.objects.bulk_create(
            [Code(code="A", label="second"), Code(code="B", label="new")],
            update_conflicts=True,
            **upsert_on("code"),
            update_fields=["label"],
        )
        assert updates(Code, "A") == [{"label": ["first", "second"]}]
        assert list(history(Code, "B").values_list("action", flat=True)) == ["create"]
        assert_replay_matches_table(Code)


class TestOtherPaths:
    def test_get_or_create_and_update_or_create(self, author: Author) -> None:
        book, _ = Book.objects.get_or_create(author=author, title="g", defaults={"pages": 1})
        Book.objects.get_or_create(author=author, title="g")
        Book.objects.update_or_create(pk=book.pk, defaults={"pages": 2})
        assert list(history(book).values_list("action", flat=True)) == ["create", "update"]

    def test_in_bulk_and_save(self, books: list[Book]) -> None:
        found = Book.objects.in_bulk([books[0].pk])
        found[books[0].pk].pages = 9
        found[books[0].pk].save()
        assert updates(Book, books[0].pk) == [{"pages": [0, 9]}]

    def test_queryset_delete_is_one_operation_and_undoable(self, author: Author, books: list[Book]) -> None:
        Book.objects.filter(pages__gte=1).delete()
        deletes = Event.objects.filter(action="delete")
        assert deletes.count() == 2
        assert len(set(deletes.values_list("operation", flat=True))) == 1
        restore(Book, books[1].pk)
        assert Book.objects.count() == 3

    def test_set_null_updates_join_the_deleting_operation(self, author: Author, books: list[Book]) -> None:
        editor = Author.objects.create(name="Ed")
        Book.objects.update(editor=editor)
        editor_pk = editor.pk
        editor.delete()
        delete = history(Author, editor_pk).last()
        nulled = Event.objects.filter(operation=delete.operation, action="update")
        assert nulled.count() == 3
        assert all(c == {"editor": [editor_pk, None]} for c in nulled.values_list("changes", flat=True))
        restore(Author, editor_pk)
        assert set(Book.objects.values_list("editor_id", flat=True)) == {editor_pk}


# Query counts: what auditing adds to Django's own statements (measured with
# capture paused on identical data): one locking SELECT of the rows, and one
# INSERT of events per batch of 500 events, on SQLite too (the events are one
# JSON parameter: Django 5.2's cap of 999 parameters held them to 49 an INSERT).
def _inserts(rows: int) -> int:
    from audit_events.inserts import BATCH_SIZE

    return -(-rows // BATCH_SIZE)


def _insert_batches(model: type, rows: int) -> list[int]:
    """The rows of each INSERT Django's bulk_create sends for ``rows`` new objects without keys."""
    from django.db.models import AutoField

    fields = [f for f in model._meta.concrete_fields if not f.generated and not isinstance(f, AutoField)]
    size = max(connection.ops.bulk_batch_size(fields, [model()] * rows), 1)
    return [min(size, rows - start) for start in range(0, rows, size)]


def _journal_inserts(writes: list[int]) -> int:
    """The event INSERTs of writes recording these numbers of events, in one transaction (``journal.write``)."""
    from audit_events.inserts import BATCH_SIZE

    inserts = waiting = 0
    for events in writes:
        waiting += events
        if waiting >= BATCH_SIZE:
            inserts, waiting = inserts + _inserts(waiting), 0
    return inserts + _inserts(waiting)


def _plain_count(run) -> int:
    from django.db import transaction

    from audit_events.context import capture_paused

    at_commit()  # events waiting from before: not this work's
    with CaptureQueriesContext(connection) as queries, capture_paused(), transaction.atomic():
        run()
        transaction.set_rollback(True)
    savepoints = ("SAVEPOINT", "RELEASE", "ROLLBACK")
    return sum(not q["sql"].upper().startswith(savepoints) for q in queries)


@pytest.mark.parametrize("rows", [1, 10, 1000])
def test_update_query_count(rows: int, author: Author, django_assert_num_queries) -> None:
    Book.objects.bulk_create([Book(author=author, title="t") for _ in range(rows)])
    assert _plain_count(lambda: Book.objects.update(title="u")) == 1
    at_commit()
    # PostgreSQL: one statement updates the rows and inserts their events (JIT compilation turned off
    # for it in the same round trip), whatever the number of rows. SQLite: a SELECT of the old rows,
    # then UPDATE ... WHERE pk IN (the keys read) RETURNING, per 900 rows; the books' links once
    # locked (one SELECT per 900); then the INSERTs of events.
    sqlite = 1 + 2 * -(-rows // 900) + _inserts(rows)
    # MySQL, MariaDB (no UPDATE ... RETURNING): the rows read and locked, their links; per 900 rows the
    # UPDATE by key, the rows and their links read again; then the INSERTs of events.
    mysql = 1 + 4 * -(-rows // 900) + _inserts(rows)
    expected = {"postgresql": 1 + statements_apart(), "mysql": mysql}.get(connection.vendor, sqlite)
    with django_assert_num_queries(expected):
        Book.objects.update(title="u")
        at_commit()
    assert Event.objects.filter(action="update").count() == rows


@pytest.mark.parametrize("rows", [1, 10, 1000])
def test_bulk_update_query_count(rows: int, author: Author, django_assert_num_queries) -> None:
    objs = Book.objects.bulk_create([Book(author=author, title="t") for _ in range(rows)])
    for obj in objs:
        obj.pages = 5
    plain = _plain_count(lambda: Book.objects.bulk_update(objs, ["pages"]))
    at_commit()
    # + locking SELECTs before and after the UPDATEs, the links' SELECT once locked (900 rows each) + INSERTs
    with django_assert_num_queries(plain + 3 * -(-rows // 900) + _inserts(rows)):
        Book.objects.bulk_update(objs, ["pages"])
        at_commit()
    assert Event.objects.filter(action="update").count() == rows


@pytest.mark.parametrize("rows", [1, 10, 1000])
def test_bulk_create_query_count(rows: int, author: Author, django_assert_num_queries) -> None:
    plain = _plain_count(lambda: Book.objects.bulk_create([Book(author=author, title="t") for _ in range(rows)]))
    at_commit()
    # + INSERTs of events, no SELECT: the INSERTs return every column. Each batch of Django's records
    # its events; the journal inserts them when 500 wait, and at COMMIT.
    with django_assert_num_queries(plain + _journal_inserts(_insert_batches(Book, rows))):
        Book.objects.bulk_create([Book(author=author, title="t") for _ in range(rows)])
        at_commit()
    assert Event.objects.filter(action="create", content_type__model="book").count() == rows


def test_a_model_registered_after_being_only_a_deleting_parent_keeps_its_audited_deletes(author: Author) -> None:
    from django.test import override_settings

    # With only Book registered, Author is merely a model whose delete reaches books.
    with override_settings(AUDIT_EVENTS={"MODELS": ["tests.Book"]}):
        pass
    other = Author.objects.create(name="Bob", email="bob@example.com")
    Book.objects.create(author=author, title="b")
    Author.objects.filter(pk__in=[author.pk, other.pk]).delete()
    assert len(set(Event.objects.filter(action="delete").values_list("operation", flat=True))) == 1


def test_update_of_a_multi_table_child_is_recorded_under_its_registered_parent_too() -> None:
    from tests.models import Place, Restaurant

    restaurant = Restaurant.objects.create(name="Luigi's")
    Restaurant.objects.filter(pk=restaurant.pk).update(name="Mario's", serves_pizza=True)
    assert updates(Restaurant, restaurant.pk) == [{"name": ["Luigi's", "Mario's"], "serves_pizza": [False, True]}]
    assert updates(Place, restaurant.pk) == [{"name": ["Luigi's", "Mario's"]}]
    assert_replay_matches_table(Place)
    assert_replay_matches_table(Restaurant)


def test_update_of_only_a_multi_table_childs_own_columns_is_recorded() -> None:
    from tests.models import Place, Restaurant

    restaurant = Restaurant.objects.create(name="Luigi's")
    assert Restaurant.objects.filter(pk=restaurant.pk).update(serves_pizza=True) == 1
    assert updates(Restaurant, restaurant.pk) == [{"serves_pizza": [False, True]}]
    assert updates(Place, restaurant.pk) == []
    assert_replay_matches_table(Restaurant)


# --- querysets of every class, transactions left usable, odd updates ----------------


@pytest.fixture
def shelves_registered():
    from django.test import override_settings

    with override_settings(AUDIT_EVENTS=settings_with("tests.Shelf")):
        yield


class TestAnyQuerySetClass:
    def test_a_manager_building_its_own_queryset_records_update_and_delete(self, shelves_registered) -> None:
        from tests.models import Shelf, ShelfQuerySet

        shelf = Shelf.objects.create(name="a")
        assert type(Shelf.objects.all()) is ShelfQuerySet
        assert Shelf.objects.filter(pk=shelf.pk).update(name="b") == 1
        Shelf.objects.filter(pk=shelf.pk).delete()
        assert list(history(Shelf, shelf.pk).values_list("action", flat=True)) == ["create", "update", "delete"]
        assert history(Shelf, shelf.pk)[1].changes == {"name": ["a", "b"]}

    def test_ordering_over_a_nullable_key_and_an_annotating_base_manager(
        self, shelves_registered, author: Author
    ) -> None:
        from tests.models import Shelf

        shelf = Shelf.objects.create(name="a", writer=author)  # PostgreSQL: the locking SELECT must
        shelf.name = "b"  # read plain rows, or FOR UPDATE is refused
        shelf.save()
        Shelf.objects.filter(name="b").update(name="c")
        Shelf.objects.all().delete()
        assert list(history(Shelf, shelf.pk).values_list("action", flat=True)) == [
            "create",
            "update",
            "update",
            "delete",
        ]

    def test_capture_survives_apps_clear_cache(self, books: list[Book]) -> None:
        from django.apps import apps

        apps.clear_cache()  # managers are rebuilt
        Book.objects.filter(pk=books[0].pk).update(title="after")
        Book.objects.bulk_create([Book(author=books[0].author, title="new")])
        assert updates(Book, books[0].pk) == [{"title": ["t0", "after"]}]
        assert Event.objects.filter(action="create", content_type__model="book").count() == 4

    def test_no_class_of_ours_shows_in_types_or_messages(self, books: list[Book]) -> None:
        from django.db.models import Manager, QuerySet

        assert type(Book.objects) is Manager
        assert type(Book.objects.all()) is QuerySet
        assert type(books[0].tags.all()) is QuerySet
        with pytest.raises(AttributeError) as error:
            Book.objects.no_such_method
        assert "Audited" not in str(error.value)


class TestTransactionLeftUsable:
    def test_a_caught_field_error(self, books: list[Book]) -> None:
        from django.core.exceptions import FieldError
        from django.db import transaction

        with transaction.atomic():
            with pytest.raises(FieldError, match="Joined field references are not permitted"):
                Book.objects.update(title=F("author__name"))
            assert Book.objects.count() == 3
        assert not Event.objects.filter(action="update").exists()

    def test_a_caught_sliced_update(self, books: list[Book]) -> None:
        from django.db import transaction

        with transaction.atomic():
            with pytest.raises(TypeError, match=r"Cannot update a query once a slice has been taken\."):
                Book.objects.all()[:1].update(pages=5)
            assert Book.objects.count() == 3


class TestPrimaryKeyChange:
    def test_the_old_key_history_ends_and_the_new_key_begins_with_the_full_state(self) -> None:
        Code.objects.create(code="old", label="l")
        if not backends.of(connection).update_returns_rows(connection):
            # MySQL, MariaDB: no UPDATE ... RETURNING to pair each old key with its new row: refused, nothing
            # written.
            refused = pytest.raises(NotSupportedError, match="changing primary keys cannot be recorded")
            with refused, transaction.atomic():
                Code.objects.filter(code="old").update(code="new")
            assert list(Code.objects.values_list("code", flat=True)) == ["old"]
            assert [e.action for e in history(Code, "old")] == ["create"]
            return
        assert Code.objects.filter(code="old").update(code="new") == 1
        old, new = list(history(Code, "old")), list(history(Code, "new"))
        assert [e.action for e in old] == ["create", "delete"]
        assert [e.action for e in new] == ["create"]
        assert new[0].state == {"code": "new", "label": "l"}
        assert old[-1].operation == new[0].operation
        state = state_at(Code, "new")
        assert state is not None
        assert state.label == "l"
        assert state_at(Code, "old") is None
        Code.objects.filter(pk="new").delete()
        assert restore(Code, "new").label == "l"
        assert_replay_matches_table(Code)

    def test_several_rows_with_an_expression(self) -> None:
        from django.db.models.functions import Concat

        for code in ["a", "b"]:
            Code.objects.create(code=code, label=code.upper())
        if not backends.of(connection).update_returns_rows(connection):  # MySQL, MariaDB: refused (above)
            with pytest.raises(NotSupportedError, match="changing primary keys cannot be recorded"):
                Code.objects.filter(code__in=["a", "b"]).update(code=Concat(F("code"), Value("2")))
            return
        assert Code.objects.filter(code__in=["a", "b"]).update(code=Concat(F("code"), Value("2"))) == 2
        for code in ["a", "b"]:
            assert [e.action for e in history(Code, code)] == ["create", "delete"]
            assert history(Code, f"{code}2").get().state == {"code": f"{code}2", "label": code.upper()}
        assert_replay_matches_table(Code)


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's update() path")
def test_update_whose_filter_moves_between_statements_updates_the_rows_it_read() -> None:
    """A filter on a value that changes from one statement to the next, as ``Now()`` does:
    the filter is evaluated once, the UPDATE changes the rows read (plain Django: one statement)."""
    from django.db.models import Func, IntegerField

    limit = [5]  # what the database's function answers: 5, then 10 from the first UPDATE on
    connection.ensure_connection()
    connection.connection.create_function("audit_moving_limit", 0, lambda: limit[0])

    def move(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.startswith("UPDATE"):
            limit[0] = 10
        return execute(sql, params, many, context)

    Everything.objects.bulk_create([Everything(integer=i) for i in range(10)])
    moving = Func(function="audit_moving_limit", output_field=IntegerField())
    with connection.execute_wrapper(move):
        assert Everything.objects.filter(integer__lt=moving).update(char="seen") == 5
    at_commit()
    assert sorted(Everything.objects.filter(char="seen").values_list("integer", flat=True)) == [0, 1, 2, 3, 4]
    assert Event.objects.filter(action="update").count() == 5


class _PrimaryReplica:
    """Reads from "other", writes to "default"."""

    def db_for_read(self, model: type, **hints: object) -> str:
        return "other"

    def db_for_write(self, model: type, **hints: object) -> str:
        return "default"

    def allow_relation(self, *args: object, **hints: object) -> bool:
        return True


@pytest.mark.django_db(databases=["default", "other"])
class TestDatabases:
    def test_update_with_a_replica_router_runs_on_the_write_database(self, books: list[Book]) -> None:
        from django.contrib.contenttypes.models import ContentType
        from django.db import connections
        from django.test import override_settings

        ContentType.objects.clear_cache()
        with (
            override_settings(DATABASE_ROUTERS=[_PrimaryReplica()]),
            CaptureQueriesContext(connections["other"]) as on_replica,
        ):
            assert Book.objects.filter(pages__lt=2).update(title="new") == 2
            at_commit()
        assert on_replica.captured_queries == []
        assert Event.objects.using("default").filter(action="update").count() == 2

    def test_events_written_to_another_database_carry_its_content_type(self) -> None:
        from django.contrib.contenttypes.models import ContentType

        from tests.helpers import at_commit, content_type_apart

        default_id = ContentType.objects.get_for_model(Book).pk
        other_id = content_type_apart(Book)
        author = Author.objects.using("other").create(name="a")
        Book.objects.using("other").create(author=author, title="t")
        assert Book.objects.using("other").update(pages=5) == 1
        at_commit("other")
        written = Event.objects.using("other").exclude(
            content_type_id=ContentType.objects.db_manager("other").get_for_model(Author).pk
        )
        assert set(written.values_list("content_type_id", flat=True)) == {other_id}
        assert written.filter(action="update").count() == 1
        assert ContentType.objects.get_for_model(Book).pk == default_id  # Django's cache holds each database's own

    def test_bulk_and_multi_table_writes_on_another_database_carry_its_content_types(self) -> None:
        from django.contrib.contenttypes.models import ContentType

        from tests.models import Place, Restaurant

        other = ContentType.objects.db_manager("other")
        for model in ("author", "restaurant"):  # ids that differ from the default database's
            other.filter(app_label="tests", model=model).delete()
            other.create(app_label="tests", model=f"zz{model}")
            other.create(app_label="tests", model=model)
        ContentType.objects.clear_cache()
        author_id, restaurant_id = (other.get_for_model(m).pk for m in (Author, Restaurant))
        assert author_id != ContentType.objects.get_for_model(Author).pk
        assert restaurant_id != ContentType.objects.get_for_model(Restaurant).pk
        (created,) = Author.objects.using("other").bulk_create([Author(name="bulk")])
        Author.objects.using("other").bulk_update([Author(pk=created.pk, name="bulk2")], ["name"])
        restaurant = Restaurant.objects.using("other").create(name="r")
        assert Place.objects.using("other").filter(pk=restaurant.pk).update(name="rr") == 1
        at_commit("other")
        written = Event.objects.using("other")
        authors = written.filter(object_pk=str(created.pk), content_type_id=author_id)
        assert list(authors.values_list("action", flat=True)) == ["create", "update"]
        restaurants = written.filter(content_type_id=restaurant_id, object_pk=str(restaurant.pk), action="update")
        assert [e.changes for e in restaurants] == [{"name": ["r", "rr"]}]


def test_update_of_a_composite_key_model_records_each_row() -> None:
    from django.test import override_settings

    from tests.models import Line

    with override_settings(AUDIT_EVENTS=settings_with("tests.Line")):
        for number in (1, 2):
            Line.objects.create(order=1, number=number, qty=number)
        Line.objects.create(order=2, number=1)
        assert Line.objects.filter(order=1).update(qty=F("qty") + 10) == 2
        assert updates(Line, (1, 2)) == [{"qty": [2, 12]}]
        assert updates(Line, (2, 1)) == []
        assert_replay_matches_table(Line)


def test_updates_matching_nothing_or_through_a_relation_answer_as_django_does(books: list[Book]) -> None:
    from tests.models import Restaurant

    assert Book.objects.none().update(title="x") == 0
    assert Book.objects.filter(pk__in=[]).update(title="x") == 0
    assert Book.objects.update() == 0
    assert Restaurant.objects.filter(pk__in=[]).update(name="x") == 0
    assert Book.objects.filter(author__name="Ann").order_by("-pages").update(title="y") == 3
    assert all(updates(Book, book.pk) == [{"title": [book.title, "y"]}] for book in books)
    assert_replay_matches_table(Book)


def test_update_assigning_an_annotation_or_alias_records_the_value_the_database_computed(author: Author) -> None:
    book = Book.objects.create(author=author, title="t", pages=3)
    Book.objects.annotate(double=F("pages") * 2).filter(title="t").update(pages=F("double"))
    Book.objects.alias(plus=F("pages") + 1).update(pages=F("plus"))  # an alias is no column of the row
    assert Book.objects.get(pk=book.pk).pages == 7
    assert [e.changes for e in history(book).filter(action="update")] == [{"pages": [3, 6]}, {"pages": [6, 7]}]
