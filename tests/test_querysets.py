"""QuerySet.update(), bulk_create(), bulk_update(), get_or_create/update_or_create and QuerySet.delete()."""

from __future__ import annotations

import pickle
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Case, F, Value, When
from django.test.utils import CaptureQueriesContext

from audit_events import history, restore
from audit_events.models import Event
from audit_events.registry import spec_for
from audit_events.replay import recorded_state
from tests.helpers import at_commit
from tests.models import Author, Book, Code, Everything, Unregistered

pytestmark = pytest.mark.django_db


def updates(model: type, pk: object) -> list[dict[str, list[object]]]:
    return list(history(model, pk).filter(action="update").values_list("changes", flat=True))


def assert_replay_matches_table(model: type) -> None:
    spec = spec_for(model)
    assert spec is not None
    for row in model._base_manager.all():
        state = recorded_state(spec, row.pk)
        assert state is not None
        assert {k: v for k, v in state.items() if k in {f.name for f in spec.fields}} == spec.snapshot(row)


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
            unique_fields=["code"],
            update_fields=["label"],
        )
        assert updates(Code, "A") == [{"label": ["first", "second"]}]
        assert list(history(Code, "B").values_list("action", flat=True)) == ["create"]
        assert_replay_matches_table(Code)

    def test_ignore_conflicts_without_keys_is_refused_and_writes_nothing(self, author: Author) -> None:
        from django.db import NotSupportedError

        with pytest.raises(NotSupportedError, match=r"tests\.Book"):
            Book.objects.bulk_create([Book(author=author, title="x")], ignore_conflicts=True)
        assert not Book.objects.exists()


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
# INSERT of events per batch: 500 events, fewer where the backend caps bound
# parameters (Django 5.2 caps SQLite at 999: 49 events per INSERT).
def _inserts(rows: int) -> int:
    from audit_events.journal import BATCH_SIZE

    limit = connection.features.max_query_params
    per_insert = BATCH_SIZE if limit is None else min(BATCH_SIZE, limit // 20)
    return -(-rows // per_insert)


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
    # SELECT ... FOR UPDATE, the books' links once locked (one SELECT per 900), UPDATE, INSERTs
    with django_assert_num_queries(1 + -(-rows // 900) + 1 + _inserts(rows)):
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
    # + locking SELECTs and the links' SELECTs after them (per 900 objects) + INSERTs
    with django_assert_num_queries(plain + 2 * -(-rows // 900) + _inserts(rows)):
        Book.objects.bulk_update(objs, ["pages"])
        at_commit()
    assert Event.objects.filter(action="update").count() == rows


@pytest.mark.parametrize("rows", [1, 10, 1000])
def test_bulk_create_query_count(rows: int, author: Author, django_assert_num_queries) -> None:
    plain = _plain_count(lambda: Book.objects.bulk_create([Book(author=author, title="t") for _ in range(rows)]))
    at_commit()
    with django_assert_num_queries(plain + _inserts(rows)):  # + INSERTs of events, no SELECT
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
