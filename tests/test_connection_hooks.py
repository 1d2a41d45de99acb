"""A connection's transaction methods are wrapped only while its transaction has events waiting
(``pending``, ``wiring.connections``): through savepoints, transactions managed by hand, failed
COMMITs, closes, re-synced settings, ``unrecorded()``, threads and ``on_commit``, the events agree
with the rows committed (``verify_model`` finds no drift) and the methods are given back once the
transaction ends."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import pytest
from django.db import IntegrityError, connection, connections, transaction
from django.test.utils import override_settings

from audit_events import unrecorded
from audit_events.verify import verify_model
from tests.helpers import BASE, events
from tests.models import Author, Book

pytestmark = pytest.mark.django_db(transaction=True)

_METHODS = ("commit", "rollback", "savepoint", "savepoint_rollback", "close", "set_autocommit")


class _Undone(Exception):
    pass


def _wrapped(conn: Any = None) -> list[str]:
    conn = conn or connections["default"]  # the wrapper itself: django.db.connection is a proxy
    return [name for name in _METHODS if name in conn.__dict__]


def _given_back(conn: Any = None) -> bool:
    return _wrapped(conn) == []


def _names() -> list[str]:
    return [e.state["name"] for e in events(Author) if e.action == "create"]


def _no_drift() -> None:
    assert [str(f) for f in verify_model(Author)] == []
    assert [str(f) for f in verify_model(Book)] == []


def test_first_event_in_a_savepoint_rolled_back_then_events_in_the_outer_block() -> None:
    with transaction.atomic():
        with contextlib.suppress(_Undone), transaction.atomic():
            Author.objects.create(name="undone")
            raise _Undone
        Author.objects.create(name="kept")
        with contextlib.suppress(_Undone), transaction.atomic():
            Author.objects.create(name="undone too")
            raise _Undone
        Author.objects.create(name="kept too")
    assert _names() == ["kept", "kept too"]
    _no_drift()


def test_savepoints_taken_before_the_first_event_then_rolled_back_to() -> None:
    with transaction.atomic():
        sid = connection.savepoint()  # before any event: no Pending yet (transaction.savepoint() is deprecated)
        Author.objects.create(name="a")
        with transaction.atomic():  # a savepoint of the Pending: flushes "a"
            Author.objects.create(name="b")
        Author.objects.create(name="c")  # waits
        connection.savepoint_rollback(sid)  # undoes a, b, c
        Author.objects.create(name="d")
    assert list(Author.objects.values_list("name", flat=True)) == ["d"]
    assert _names() == ["d"]
    _no_drift()


def test_by_hand_transaction_committed_twice_and_rolled_back() -> None:
    transaction.set_autocommit(False)
    try:
        Author.objects.create(name="one")
        transaction.commit()
        Author.objects.create(name="two")
        with transaction.atomic():
            Author.objects.create(name="three")
        transaction.commit()
        Author.objects.create(name="dropped")
        transaction.rollback()
    finally:
        transaction.set_autocommit(True)
    assert _names() == ["one", "two", "three"]
    assert _given_back()
    _no_drift()


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite: set_autocommit(True) commits")
def test_set_autocommit_true_by_hand_on_sqlite_commits_the_events() -> None:
    transaction.set_autocommit(False)
    try:
        Author.objects.create(name="by hand")
    finally:
        transaction.set_autocommit(True)
    assert _names() == ["by hand"]
    assert _given_back()
    Author.objects.create(name="after")
    assert _names() == ["by hand", "after"]


def test_a_failed_commit_then_the_missing_row_then_commit() -> None:
    """A deferred foreign key fails COMMIT (SQLite keeps the transaction open; PostgreSQL ends it)."""
    missing = (Author.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 10
    transaction.set_autocommit(False)
    try:
        Author.objects.create(name="first")
        Book.objects.create(author_id=missing, title="orphan")
        with pytest.raises(IntegrityError):
            connection.commit()
        if connection.vendor == "sqlite":
            Author.objects.create(pk=missing, name="late")
            connection.commit()
        else:
            connection.rollback()
    finally:
        transaction.set_autocommit(True)
    Author.objects.create(name="next")
    with transaction.atomic():
        Author.objects.create(name="next in atomic")
    assert _given_back()
    expected = ["first", "late"] if connection.vendor == "sqlite" else []
    assert _names() == [*expected, "next", "next in atomic"]
    _no_drift()


def test_a_failed_commit_of_an_atomic_block() -> None:
    missing = (Author.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 10

    @transaction.atomic
    def write_an_orphan() -> None:
        Author.objects.create(name="gone")
        Book.objects.create(author_id=missing, title="orphan")

    with pytest.raises(IntegrityError):
        write_an_orphan()
    assert _given_back()
    Author.objects.create(name="kept")
    assert _names() == ["kept"]
    _no_drift()


def test_close_inside_a_transaction_with_events_waiting() -> None:
    with contextlib.suppress(Exception), transaction.atomic():
        Author.objects.create(name="lost")
        connection.close()
    assert _given_back()
    Author.objects.create(name="after")
    with transaction.atomic():
        Author.objects.create(name="after in atomic")
    # Django ignores close() of the SQLite suite's in-memory database: that transaction went on and committed.
    kept = ["lost"] if connection.vendor == "sqlite" else []
    assert _names() == [*kept, "after", "after in atomic"]
    _no_drift()


def test_settings_synced_again_while_events_wait() -> None:
    with transaction.atomic():
        Author.objects.create(name="before")
        with override_settings(AUDIT_EVENTS={**BASE}):
            Author.objects.create(name="during")
        Author.objects.create(name="after")
    assert _names() == ["before", "during", "after"]
    _no_drift()


def test_unrecorded_block_inside_a_transaction_with_events_waiting() -> None:
    with transaction.atomic():
        Author.objects.create(name="recorded")
        with unrecorded("data fix"):
            Author.objects.create(name="not recorded")
        Author.objects.create(name="recorded too")
    assert _names() == ["recorded", "recorded too"]


def test_a_thread_writes_in_its_own_transaction() -> None:
    found: list[Any] = []

    def work() -> None:
        try:
            with transaction.atomic():
                Author.objects.create(name="thread")
            found.append(_given_back(connections["default"]))
        except BaseException as error:
            found.append(error)
        finally:
            connections["default"].close()

    with transaction.atomic():
        Author.objects.create(name="main")
    thread = threading.Thread(target=work)
    thread.start()
    thread.join(30)
    assert found == [True], found
    assert sorted(_names()) == ["main", "thread"]


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite: set_autocommit(True) commits")
def test_set_autocommit_refused_inside_atomic_keeps_recording_the_transaction() -> None:
    from django.db.transaction import TransactionManagementError

    @transaction.atomic
    def refused_then_undone() -> None:
        Author.objects.create(name="a")
        with pytest.raises(TransactionManagementError):
            connection.set_autocommit(True)
        Author.objects.create(name="b")
        raise _Undone

    with pytest.raises(_Undone):
        refused_then_undone()
    assert _names() == []
    with transaction.atomic():
        Author.objects.create(name="c")
        with pytest.raises(TransactionManagementError):
            connection.set_autocommit(True)
        Author.objects.create(name="d")
    assert _names() == ["c", "d"]
    _no_drift()


def test_a_write_in_an_on_commit_callback() -> None:
    with transaction.atomic():
        Author.objects.create(name="first")
        transaction.on_commit(lambda: Author.objects.create(name="on commit"))
    assert _given_back()
    with transaction.atomic():
        Author.objects.create(name="third")
    assert _names() == ["first", "on commit", "third"]
    _no_drift()


@pytest.mark.django_db(transaction=False)
def test_in_a_test_case_transaction_with_savepoints() -> None:
    Author.objects.create(name="a")
    with contextlib.suppress(_Undone), transaction.atomic():
        Author.objects.create(name="undone")
        raise _Undone
    with transaction.atomic():
        Author.objects.create(name="b")
    assert _names() == ["a", "b"]
    _no_drift()
