"""PostgreSQL: the save's UPDATE and the event INSERT are prepared once per connection (``prepared``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext, override_settings

from audit_events import history, prepared
from tests.helpers import BASE, at_commit
from tests.models import Author, Book

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(os.environ.get("TEST_DB") != "postgres", reason="PostgreSQL only"),
]
# TEST_PG_PREPARED=1: psycopg 3 binds on the server and prepares by itself; this app then does not.
PSYCOPG_PREPARES = os.environ.get("TEST_PG_PREPARED") == "1"


def ours() -> dict[str, str]:
    """This session's prepared statements of this app: name -> statement."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, statement FROM pg_prepared_statements WHERE name LIKE 'audit_events_%%'")
        return dict(cursor.fetchall())


def statements(work: Any) -> list[str]:
    """The statements ``work`` sends, as sent: not through query logging (``CaptureQueriesContext``),
    under which this app prepares nothing (see ``test_logged_statements_are_sent_as_they_are``)."""
    sent: list[str] = []

    def observe(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        sent.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(observe):
        work()
    return sent


def rename(author: Author, name: str) -> None:
    with transaction.atomic():
        author.name = name
        author.save()


@pytest.fixture(autouse=True)
def fresh_session() -> Iterator[None]:
    connection.close()  # each test starts on a session with nothing prepared
    yield
    connection.close()


@pytest.mark.skipif(PSYCOPG_PREPARES, reason="psycopg prepares by itself here")
def test_the_update_and_the_insert_are_prepared_on_first_use_then_executed() -> None:
    ContentType.objects.get_for_model(Author)  # cached: not what is counted
    made: list[Author] = []
    first = statements(lambda: (made.append(Author.objects.create(name="Ada")), rename(made[0], "Ada L.")))
    author = made[0]
    second = statements(lambda: rename(author, "Ada Lovelace"))
    # A first use prepares and executes in one string: as many statements as unprepared. The create, in
    # autocommit mode, is one statement with its event (``single_statement``); the save, in a transaction,
    # its UPDATE, then the event INSERT at COMMIT.
    assert [prepared.statement(s).split()[0] for s in first] == ["WITH", "UPDATE", "INSERT"]
    assert first[0].startswith("PREPARE audit_events_")
    assert " AS WITH w(c0, " in first[0]
    assert first[1].startswith("PREPARE audit_events_")
    assert " AS UPDATE " in first[1]
    assert first[2].startswith("PREPARE audit_events_")
    assert " AS INSERT INTO " in first[2]
    assert len(second) == 2, second
    assert second[0].startswith("EXECUTE audit_events_")
    assert second[1].startswith("EXECUTE audit_events_")
    assert prepared.statement(second[0]).startswith('UPDATE "tests_author" SET')
    assert prepared.statement(second[1]).startswith('INSERT INTO "audit_events_event"')
    assert len(ours()) == 3
    alone = statements(lambda: Author.objects.create(name="Grace"))  # executed, as prepared the first time
    assert [s.split()[0] for s in alone] == ["EXECUTE"]
    assert prepared.statement(alone[0]).startswith("WITH w(c0, ")
    # And what they recorded is what the plain statements record.
    assert [(e.version, e.changes) for e in history(author)] == [
        (1, {}),
        (2, {"name": ["Ada", "Ada L."]}),
        (3, {"name": ["Ada L.", "Ada Lovelace"]}),
    ]


def test_off_by_the_setting_or_behind_a_transaction_pooler() -> None:
    ContentType.objects.get_for_model(Author)  # cached: not what is looked at
    author = Author.objects.create(name="Ada")
    with override_settings(AUDIT_EVENTS={**BASE, "PREPARE_STATEMENTS": False}):
        sent = statements(lambda: rename(author, "Ada L."))
    assert sent[0].startswith('UPDATE "tests_author" SET')
    assert sent[1].startswith('INSERT INTO "audit_events_event"')
    connection.settings_dict["DISABLE_SERVER_SIDE_CURSORS"] = True  # what Django asks of PgBouncer's pooling
    try:
        connection.close()
        sent = statements(lambda: rename(author, "Ada Lovelace"))
    finally:
        del connection.settings_dict["DISABLE_SERVER_SIDE_CURSORS"]
    assert sent[0].startswith('UPDATE "tests_author" SET')
    assert sent[1].startswith('INSERT INTO "audit_events_event"')
    assert ours() == {}
    assert [e.version for e in history(author)] == [1, 2, 3]


def test_a_new_session_prepares_again() -> None:
    author = Author.objects.create(name="Ada")
    rename(author, "Ada L.")
    connection.close()  # the session, and its prepared statements, are gone
    rename(author, "Ada Lovelace")
    assert [e.changes for e in history(author)][-1] == {"name": ["Ada L.", "Ada Lovelace"]}


def test_a_failed_first_use_leaves_the_next_save_working() -> None:
    """PREPARE survives a rollback, so a failed first use must not make the next one collide."""
    Author.objects.create(name="Grace", email="grace@example.com")
    ada = Author.objects.create(name="Ada", email="ada@example.com")
    ada.email = "grace@example.com"
    with pytest.raises(IntegrityError), transaction.atomic():
        ada.save()  # the UPDATE's first use: prepared, then refused by the unique constraint
    ada.refresh_from_db()
    ada.name = "Ada L."
    with transaction.atomic():
        ada.save()
    at_commit()
    assert [e.changes for e in history(ada)] == [{}, {"name": ["Ada", "Ada L."]}]


def other_session(sql: str) -> None:
    """Run ``sql`` on a session of its own, as another process (a deploy's migration) would."""
    other = connection.copy()
    try:
        with other.cursor() as cursor:
            cursor.execute(sql)
    finally:
        other.close()


def test_a_statement_found_gone_fails_one_write_and_is_prepared_again() -> None:
    author = Author.objects.create(name="Ada")
    rename(author, "Ada L.")
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")  # as a pooler's reset query, or DISCARD ALL, would
    done = ["Ada L."]
    for name in ("Ada Lovelace", "Countess", "Ada"):
        try:
            rename(author, name)
        except DatabaseError:
            continue
        done.append(name)
    assert [e.changes["name"][1] for e in history(author)[1:]] == done  # what failed recorded nothing
    if not PSYCOPG_PREPARES:  # this app's statements were gone: one write failed, the next prepared again
        assert done == ["Ada L.", "Countess", "Ada"]


@pytest.mark.skipif(PSYCOPG_PREPARES, reason="this app prepares nothing here")
def test_a_column_type_changed_elsewhere_fails_one_write_and_is_prepared_again() -> None:
    author = Author.objects.create(name="Ada")
    rename(author, "Ada L.")
    other_session('ALTER TABLE "tests_author" ALTER COLUMN "name" TYPE varchar(200)')
    try:
        with pytest.raises(DatabaseError, match="cached plan must not change result type"):
            rename(author, "Ada Lovelace")
        rename(author, "Countess")
    finally:
        connection.close()
        other_session('ALTER TABLE "tests_author" ALTER COLUMN "name" TYPE varchar(100)')
    assert [e.changes["name"][1] for e in history(author)[1:]] == ["Ada L.", "Countess"]


@pytest.mark.skipif(PSYCOPG_PREPARES, reason="this app prepares nothing here")
def test_failed_first_uses_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each failed first use may leave its statement on the session: no more than _MOST are ever sent."""
    monkeypatch.setattr(prepared, "_MOST", 3)
    Author.objects.create(name="Grace", email="grace@example.com")
    ada = Author.objects.create(name="Ada", email="ada@example.com")
    for _ in range(10):
        ada.email = "grace@example.com"
        with pytest.raises(IntegrityError), transaction.atomic():
            ada.save()
    ada.refresh_from_db()
    rename(ada, "Ada L.")  # past the bound: sent as it is, recorded all the same
    assert len(ours()) <= 3
    assert [e.changes for e in history(ada)][-1] == {"name": ["Ada", "Ada L."]}


@pytest.mark.skipif(PSYCOPG_PREPARES, reason="this app prepares nothing here")
def test_each_session_keeps_its_statements_when_a_pool_hands_out_another() -> None:
    """A pool gives the same Django connection a different session on each checkout."""
    author = Author.objects.create(name="Ada")
    rename(author, "Ada L.")  # prepared on the first session
    first = connection.connection
    connection.connection = None
    try:
        connection.connect()  # a second session
        rename(author, "Ada Lovelace")
        second = connection.connection
        connection.connection = first  # back to the first: its statements are still there
        assert [s.split()[0] for s in statements(lambda: rename(author, "Countess"))] == ["EXECUTE", "EXECUTE"]
        connection.connection = second
        assert [s.split()[0] for s in statements(lambda: rename(author, "Ada"))] == ["EXECUTE", "EXECUTE"]
    finally:
        first.close()
    assert len(history(author)) == 5


@pytest.mark.skipif(PSYCOPG_PREPARES, reason="this app prepares nothing here")
def test_logged_statements_are_sent_as_they_are() -> None:
    """Where queries are logged (``DEBUG``, ``CaptureQueriesContext``, ``assertNumQueries``), nothing
    is prepared: what a test captures reads as Django's SQL, an ``UPDATE`` as ``UPDATE``, not
    ``EXECUTE``. The shape of Django's own
    ``UpdateOrCreateTests.test_update_only_defaults_and_pre_save_fields_when_local_fields``."""
    ada, grace = Author.objects.create(name="Ada"), Author.objects.create(name="Grace")
    book = Book.objects.create(author=ada, title="Notes")
    for model in (Author, Book):
        ContentType.objects.get_for_model(model)  # cached: not what is looked at
    before = ours()  # the event INSERT, prepared by the creates
    for defaults in [{"author": grace}, {"author_id": ada}, {"author": grace}]:
        with CaptureQueriesContext(connection) as captured:
            book, created = Book.objects.update_or_create(pk=book.pk, defaults=defaults)
        assert created is False
        logged = [q["sql"] for q in captured.captured_queries]
        assert [s for s in logged if s.startswith(("PREPARE", "EXECUTE"))] == []
        updates = [s for s in logged if s.startswith("UPDATE")]
        assert len(updates) == 1, logged
        assert updates[0].startswith('UPDATE "tests_book" SET "author_id" = ')
        assert '"title" =' not in updates[0]  # only the defaults are written
        assert sum(s.startswith('INSERT INTO "audit_events_event"') for s in logged) == 1
    assert ours() == before
    # Once queries are no longer logged, the save's UPDATE is prepared on its first use.
    assert [s.split()[0] for s in statements(lambda: rename(ada, "Ada L."))] == ["PREPARE", "EXECUTE"]
    assert len(ours()) == len(before) + 1
    assert [e.changes for e in history(book)][1:] == [
        {"author": [ada.pk, grace.pk]},
        {"author": [grace.pk, ada.pk]},
        {"author": [ada.pk, grace.pk]},
    ]
