"""Atomic: a write and its event commit together or not at all (autocommit mode, real transactions)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import ProtectedError

from audit_events.context import capture_paused
from audit_events.models import Event
from tests.helpers import events
from tests.models import Author, Book, Code, Everything, Pin, Review, Unregistered

pytestmark = pytest.mark.django_db(transaction=True)

REFUSED = "event insert refused by the test"

# A trigger makes every event INSERT fail for real, inside the database.
INSTALL = {
    "sqlite": [
        f"""CREATE TRIGGER test_refuse_events BEFORE INSERT ON audit_events_event
        BEGIN SELECT RAISE(ABORT, '{REFUSED}'); END"""
    ],
    "postgresql": [
        f"""CREATE FUNCTION test_refuse_events() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION '{REFUSED}'; END $$""",
        """CREATE TRIGGER test_refuse_events BEFORE INSERT ON audit_events_event
        FOR EACH ROW EXECUTE FUNCTION test_refuse_events()""",
    ],
    "mysql": [
        f"""CREATE TRIGGER test_refuse_events BEFORE INSERT ON audit_events_event
        FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{REFUSED}'"""
    ],
}
REMOVE = {
    "sqlite": ["DROP TRIGGER test_refuse_events"],
    "mysql": ["DROP TRIGGER test_refuse_events"],
    "postgresql": [
        "DROP TRIGGER test_refuse_events ON audit_events_event",
        "DROP FUNCTION test_refuse_events()",
    ],
}


def run(statements: list[str]) -> None:
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


@pytest.fixture
def events_refused() -> Iterator[None]:
    """While active, the database refuses to insert any event."""
    assert connection.get_autocommit(), "these tests need autocommit mode"
    run(INSTALL[connection.vendor])
    try:
        yield
    finally:
        run(REMOVE[connection.vendor])


@pytest.fixture
def hidden_reference() -> Iterator[Book]:
    """A book (with an author and a review) that a foreign key unknown to Django references:
    deleting it fails in the database itself, after Django sent pre_delete."""
    book = Book.objects.create(author=Author.objects.create(name="referenced"), title="t")
    Review.objects.create(book=book)
    run(
        [
            "CREATE TABLE test_hidden_ref (book_id bigint NOT NULL REFERENCES tests_book (id))",
            f"INSERT INTO test_hidden_ref (book_id) VALUES ({int(book.pk)})",
        ]
    )
    try:
        yield book
    finally:
        run(["DROP TABLE test_hidden_ref"])


def test_autocommit_mode_is_what_is_tested() -> None:
    assert connection.get_autocommit()
    assert not connection.in_atomic_block


# --- the write fails: no event ------------------------------------------------


def test_a_create_failing_with_integrity_error_leaves_no_event() -> None:
    Author.objects.create(name="first", email="taken@example.com")
    before = Event.objects.count()
    with pytest.raises(IntegrityError):
        Author.objects.create(name="second", email="taken@example.com")
    assert Event.objects.count() == before
    assert not Author.objects.filter(name="second").exists()


def test_an_update_failing_with_integrity_error_leaves_no_event() -> None:
    Author.objects.create(name="first", email="taken@example.com")
    author = Author.objects.create(name="second", email="mine@example.com")
    author.name = "renamed"
    author.email = "taken@example.com"
    with pytest.raises(IntegrityError):
        author.save()
    assert [e.action for e in events(Author, author.pk)] == ["create"]
    assert Author.objects.get(pk=author.pk).name == "second"


def test_a_failed_save_leaves_nothing_behind_for_a_later_paused_save() -> None:
    Code.objects.create(code="A", label="a")
    duplicate = Code(code="A", label="dup")
    with pytest.raises(IntegrityError):
        duplicate.save(force_insert=True)
    before = Event.objects.count()
    with capture_paused():
        duplicate.save()  # capture is paused: whatever the failed save left must not be written now
    assert Event.objects.count() == before


def test_a_failed_delete_leaves_nothing_behind_for_a_later_paused_save(hidden_reference: Book) -> None:
    with capture_paused():
        author = Author.objects.create(name="a")
    with pytest.raises(IntegrityError):
        hidden_reference.author.delete()
    with pytest.raises(IntegrityError):
        hidden_reference.delete()
    before = Event.objects.count()
    with capture_paused():
        hidden_reference.title = "b"
        hidden_reference.save()
        author.name = "b"
        author.save()
        author.delete()
    assert Event.objects.count() == before


def test_a_delete_refused_by_protect_leaves_no_event() -> None:
    book = Book.objects.create(author=Author.objects.create(name="a"), title="protected")
    Pin.objects.create(book=book)
    before = Event.objects.count()
    with pytest.raises(ProtectedError):
        book.author.delete()
    with pytest.raises(ProtectedError):
        Book.objects.filter(pk=book.pk).delete()
    assert Event.objects.count() == before
    assert Book.objects.filter(pk=book.pk).exists()


def test_a_delete_failing_in_the_database_leaves_no_event(hidden_reference: Book) -> None:
    book = hidden_reference
    before = Event.objects.count()
    with pytest.raises(IntegrityError):
        book.author.delete()
    with pytest.raises(IntegrityError):
        Book.objects.filter(pk=book.pk).delete()
    assert Event.objects.count() == before
    assert Book.objects.filter(pk=book.pk).exists()
    assert Review.objects.filter(book=book).exists()
    assert Author.objects.filter(pk=book.author_id).exists()


# --- the event fails: no write ------------------------------------------------


def test_create_whose_event_is_refused_is_not_written(events_refused: None) -> None:
    with pytest.raises(DatabaseError, match=REFUSED):
        Author.objects.create(name="never")
    assert not Author.objects.filter(name="never").exists()


def test_update_whose_event_is_refused_leaves_the_row_unchanged(events_refused: None) -> None:
    with capture_paused():
        author = Author.objects.create(name="unchanged", email="u@example.com")
    author.name = "changed"
    author.email = "c@example.com"
    with pytest.raises(DatabaseError, match=REFUSED):
        author.save()
    assert Author.objects.filter(pk=author.pk).values_list("name", "email").get() == ("unchanged", "u@example.com")
    with pytest.raises(DatabaseError, match=REFUSED):
        author.save(update_fields=["name"])
    assert Author.objects.get(pk=author.pk).name == "unchanged"


def test_delete_whose_event_is_refused_leaves_the_rows(events_refused: None) -> None:
    with capture_paused():
        author = Author.objects.create(name="kept")
        book = Book.objects.create(author=author, title="kept too")
        edited = Book.objects.create(author=Author.objects.create(name="other"), title="edited", editor=author)
        pointing = Everything.objects.create(author=author)
    with pytest.raises(DatabaseError, match=REFUSED):
        author.delete()
    assert Author.objects.filter(pk=author.pk).exists()
    assert Book.objects.filter(pk=book.pk).exists()
    assert Book.objects.get(pk=edited.pk).editor_id == author.pk  # the SET_NULL was rolled back too
    assert Everything.objects.get(pk=pointing.pk).author_id == author.pk
    with pytest.raises(DatabaseError, match=REFUSED):
        Book.objects.filter(pk=book.pk).delete()
    assert Book.objects.filter(pk=book.pk).exists()


def test_queryset_update_whose_event_is_refused_leaves_the_rows(events_refused: None) -> None:
    with capture_paused():
        author = Author.objects.create(name="unchanged")
    with pytest.raises(DatabaseError, match=REFUSED):
        Author.objects.filter(pk=author.pk).update(name="changed")
    assert Author.objects.get(pk=author.pk).name == "unchanged"


def test_an_event_refused_inside_an_atomic_block_rolls_the_block_back(events_refused: None) -> None:
    with capture_paused():
        author = Author.objects.create(name="unchanged")

    @transaction.atomic
    def rename() -> None:
        Author.objects.create(name="other work in the same transaction")
        author.name = "changed"
        author.save()

    with pytest.raises(DatabaseError, match=REFUSED):
        rename()
    assert not Author.objects.filter(name="other work in the same transaction").exists()
    assert Author.objects.get(pk=author.pk).name == "unchanged"


# --- the transaction is rolled back: neither ----------------------------------


class Abort(Exception):
    pass


def rolled_back(work: Callable[[], object]) -> None:
    """Run ``work`` in an atomic block that is then rolled back by an exception."""

    @transaction.atomic
    def then_abort() -> None:
        work()
        raise Abort

    with pytest.raises(Abort):
        then_abort()


def test_a_rolled_back_atomic_block_leaves_neither_row_nor_event() -> None:
    kept = Author.objects.create(name="kept")
    before = Event.objects.count()

    def work() -> None:
        Author.objects.create(name="rolled back")
        kept.name = "rolled back too"
        kept.save()
        Book.objects.create(author=kept, title="gone")

    rolled_back(work)
    assert Event.objects.count() == before
    assert not Author.objects.filter(name="rolled back").exists()
    assert Author.objects.get(pk=kept.pk).name == "kept"

    kept_pk = kept.pk
    rolled_back(kept.delete)
    assert Event.objects.count() == before
    assert Author.objects.filter(pk=kept_pk).exists()


def test_a_rolled_back_savepoint_keeps_the_outer_work_and_its_events() -> None:
    with transaction.atomic():
        outer = Author.objects.create(name="outer")
        rolled_back(lambda: Author.objects.create(name="inner"))
    assert list(Author.objects.values_list("name", flat=True)) == ["outer"]
    assert [e.object_pk for e in events(Author)] == [str(outer.pk)]


# --- events wait for COMMIT: what a transaction sees, and what it drops -------------


def test_rolling_back_to_a_savepoint_drops_exactly_the_events_made_after_it() -> None:
    with transaction.atomic():
        first = Author.objects.create(name="first")
        try:
            with transaction.atomic():  # savepoint 1
                Author.objects.create(name="inside 1")
                with transaction.atomic():  # savepoint 2, released below
                    Author.objects.create(name="inside 2")
                raise Abort
        except Abort:
            pass
        last = Author.objects.create(name="last")
    assert list(Author.objects.order_by("pk").values_list("name", flat=True)) == ["first", "last"]
    assert [e.object_pk for e in events(Author)] == [str(first.pk), str(last.pk)]
    assert [e.version for e in events(Author)] == [1, 1]


def test_the_transaction_sees_its_own_events_before_commit_through_any_read() -> None:
    table = Event._meta.db_table
    with transaction.atomic():
        author = Author.objects.create(name="a")
        author.name = "b"
        author.save()
        with connection.cursor() as cursor:  # raw SQL too
            cursor.execute(f"SELECT action FROM {table} ORDER BY id")
            assert [row[0] for row in cursor.fetchall()] == ["create", "update"]
        author.name = "c"
        author.save()
        assert Author.objects.filter(pk=author.pk, name="c").exists()  # not a read of events
        assert [e.version for e in events(Author, author.pk)] == [1, 2, 3]


def test_manual_transactions_insert_events_at_once_and_commit_or_roll_back_with_the_writes() -> None:
    transaction.set_autocommit(False)
    try:
        kept = Author.objects.create(name="kept")
        transaction.commit()
        Author.objects.create(name="dropped")
        transaction.rollback()
    finally:
        transaction.set_autocommit(True)
    assert list(Author.objects.values_list("name", flat=True)) == ["kept"]
    assert [e.object_pk for e in events(Author)] == [str(kept.pk)]


@pytest.mark.postgres
def test_a_delete_no_statement_of_which_was_seen_is_refused_and_loses_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On PostgreSQL the DELETE returns the deleted row; if the row were ever deleted by a
    statement this app did not see, it would be gone unrecorded: the delete is refused."""
    from audit_events.backends.postgresql import ReturningDeletes

    author = Author.objects.create(name="kept")
    monkeypatch.setattr(ReturningDeletes, "expect", lambda self, spec, pk: None)  # sees nothing
    with pytest.raises(RuntimeError, match="did not see"):
        author.delete()
    assert Author.objects.filter(pk=author.pk).exists()
    assert [e.action for e in events(Author, author.pk)] == ["create"]


@pytest.mark.postgres
def test_a_delete_of_another_form_reads_the_marked_rows_before_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A DELETE of the table in a form not recognized (a custom compiler adding a filter, say):
    the rows marked for deletion are read, locked, just before it."""
    from audit_events.backends.postgresql import ReturningDeletes

    expect = ReturningDeletes.expect

    def expect_another_form(self: ReturningDeletes, spec: object, pk: object) -> None:
        expect(self, spec, pk)  # type: ignore[arg-type]
        self.expected = {start.replace(" IN (", " = ANY ("): select for start, select in self.expected.items()}

    monkeypatch.setattr(ReturningDeletes, "expect", expect_another_form)
    authors = [Author.objects.create(name=f"author {i}", email=f"{i}@example.com") for i in range(3)]
    Author.objects.filter(pk__in=[a.pk for a in authors[:2]]).delete()
    assert not Author.objects.filter(pk__in=[a.pk for a in authors[:2]]).exists()
    for author in authors[:2]:
        assert events(Author, author.pk)[-1].action == "delete"
        assert events(Author, author.pk)[-1].state == {"id": author.pk, "name": author.name, "email": author.email}
    assert [e.action for e in events(Author, authors[2].pk)] == ["create"]


@pytest.mark.postgres  # Django never closes the test suite's in-memory SQLite database
def test_events_of_a_transaction_whose_connection_closed_are_not_carried_into_the_next() -> None:
    with transaction.atomic():
        Author.objects.create(name="lost with its connection")
        connection.close()  # the transaction is gone with it, rolled back by the database
    kept = Author.objects.create(name="next transaction")
    assert list(Author.objects.values_list("name", flat=True)) == ["next transaction"]
    assert [e.object_pk for e in events(Author)] == [str(kept.pk)]


@pytest.mark.skipif(connection.vendor != "sqlite", reason="an in-memory SQLite database (the SQLite suite's)")
def test_a_close_django_ignores_keeps_the_transaction_and_its_events() -> None:
    # Django ignores close() of an in-memory SQLite database (closing it would destroy it): the
    # transaction goes on and commits, so its events must too.
    with transaction.atomic():
        kept = Author.objects.create(name="kept with its transaction")
        connection.close()
        also = Author.objects.create(name="written after the close")
    assert sorted(Author.objects.values_list("name", flat=True)) == sorted([kept.name, also.name])
    assert [e.object_pk for e in events(Author)] == [str(kept.pk), str(also.pk)]


def test_an_atomic_block_in_a_transaction_managed_by_hand_inserts_its_events_at_once() -> None:
    def events_in_the_table() -> int:
        raw = connection.connection.cursor()  # the DB-API cursor: nothing of Django's runs first
        try:
            raw.execute(f"SELECT count(*) FROM {Event._meta.db_table}")
            return int(raw.fetchone()[0])
        finally:
            raw.close()

    transaction.set_autocommit(False)
    try:
        with transaction.atomic():  # ends without COMMIT (SQLite's set_autocommit(True) commits without one)
            first = Author.objects.create(name="first")
        assert events_in_the_table() == 1
        transaction.commit()
    finally:
        transaction.set_autocommit(True)
    assert [e.object_pk for e in events(Author)] == [str(first.pk)]


def test_a_rollback_refused_inside_an_atomic_block_keeps_the_waiting_events() -> None:
    from django.db.transaction import TransactionManagementError

    with transaction.atomic():
        author = Author.objects.create(name="kept")
        with pytest.raises(TransactionManagementError):
            connection.rollback()  # not allowed here: nothing is rolled back
    assert [e.object_pk for e in events(Author)] == [str(author.pk)]


def test_events_refused_when_a_savepoint_is_made_roll_the_transaction_back(events_refused: None) -> None:
    with transaction.atomic():
        Author.objects.create(name="never")
        try:
            with transaction.atomic():  # the savepoint inserts the waiting event first: refused
                pass
        except DatabaseError:
            pass  # caught, but the transaction cannot commit writes whose events are lost
    assert not Author.objects.filter(name="never").exists()


def _kill_own_backend() -> None:
    """Terminate this connection's server process from another connection, as an operator would."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    other = connection.get_new_connection(connection.get_connection_params())
    try:
        other.autocommit = True
        cursor = other.cursor()
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        for _ in range(500):  # gone within a second or so; never a timing assumption about the write
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
            if cursor.fetchone()[0] == 0:
                return
            time.sleep(0.01)
        raise AssertionError(f"backend {pid} still alive")
    finally:
        other.close()


def _write_then_lose_the_connection(model: type[Any]) -> BaseException:
    def write() -> None:
        with transaction.atomic():
            model.objects.create(name="lost with its backend")
            _kill_own_backend()  # the event waits, to be inserted just before COMMIT

    with pytest.raises(DatabaseError) as caught:
        write()
    return caught.value


@pytest.mark.postgres
def test_a_backend_killed_before_commit_fails_as_in_plain_django_and_the_connection_recovers() -> None:
    plain = _write_then_lose_the_connection(Unregistered)
    assert Unregistered.objects.count() == 0  # plain Django: the next query reconnects

    recorded = _write_then_lose_the_connection(Author)

    assert type(recorded) is type(plain)
    assert Author.objects.count() == 0  # the next query reconnects here too
    author = Author.objects.create(name="after")
    assert [e.object_pk for e in events(Author)] == [str(author.pk)]
