"""The gap-free cursor over committed events (``audit_events.stream``).

The harness at the end runs many writers (threads, each with its own
connection) with random transaction lengths, rolled-back writes and waits on
each other's row locks while a reader streams, and checks that the reader saw
every committed event exactly once, nothing else, and each row's versions in
order.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import DatabaseError, IntegrityError, NotSupportedError, connection, transaction
from django.test.utils import CaptureQueriesContext

from audit_events import stream
from audit_events.models import Event
from tests.models import Author, Book

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 30  # seconds before a stuck thread fails the test


def read_all(position: stream.Position, limit: int = 1000) -> tuple[list[Event], stream.Position]:
    events: list[Event] = []
    while True:
        batch = stream.read(position, limit=limit)
        events += batch.events
        position = batch.position
        if not batch.events:
            return events, position


def test_a_read_costs_the_queries_docs_relay_rst_gives() -> None:
    """docs/relay.rst, "What a read costs", measured: PostgreSQL 4 to open a window, 2 per page after that,
    an idle read 1, or 2 when any transaction committed since the last (the relay's own UPDATE does); SQLite 1."""
    postgres = connection.vendor == "postgresql"

    def queries(position: stream.Position, limit: int = 2) -> tuple[int, stream.Position]:
        with CaptureQueriesContext(connection) as captured:
            position = stream.read(position, limit=limit).position
        return len(captured), position

    Author.objects.create(name="first")
    count, position = queries(stream.Position.start())
    # The first window: no previous snapshot, no first id to find. On PostgreSQL one query more when another
    # session of the server commits during the read (the snapshot moves; other test runs share the server).
    assert count in ((3, 4) if postgres else (1,))
    for i in range(3):
        Author.objects.create(name=f"a{i}")
    opening, position = queries(position)
    following, position = queries(position)
    if postgres:  # (one more when another session commits during the read, as above)
        assert (opening in (4, 5), following in (2, 3)) == (True, True), (opening, following)
    else:
        assert (opening, following) == (1, 1)

    def idle(position: stream.Position) -> stream.Position:
        """1 query, or on PostgreSQL 2 when the snapshot moved (any commit in the cluster, other tests' too)."""
        count, after = queries(position)
        assert count == (1 if after == position or not postgres else 2)
        return after

    position = idle(position)
    with connection.cursor() as cursor:  # a write elsewhere in the database: the snapshot moves
        cursor.execute(
            "UPDATE django_content_type SET model = model WHERE id = (SELECT MIN(id) FROM django_content_type)"
        )
    moved = idle(position)
    assert moved != position or not postgres
    idle(moved)


@pytest.mark.parametrize("ids_per_range", [10_000, 2])
def test_partitions_by_content_type_read_every_event_once_between_them(
    ids_per_range: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream, "_RANGE", ids_per_range)
    author = Author.objects.create(name="a")
    for i in range(5):
        book = Book.objects.create(author=author, title=f"b{i}")
        book.pages = i
        book.save()
        author.name += "!"
        author.save()
    authors = ContentType.objects.get_for_model(Author).pk

    def partition(**which: object) -> list[int]:
        position, seen = stream.Position.start(), []
        while True:
            batch = stream.read(position, limit=2, **which)  # type: ignore[arg-type]
            seen += [e.id for e in batch.events]
            position = batch.position
            if not batch.events:
                return seen

    only, others = partition(content_types={authors}), partition(content_types={authors}, exclude=True)
    assert Event.objects.filter(id__in=only).exclude(content_type_id=authors).count() == 0
    assert Event.objects.filter(id__in=others, content_type_id=authors).count() == 0
    assert only == sorted(only)
    assert others == sorted(others)
    assert sorted(only + others) == list(Event.objects.order_by("id").values_list("id", flat=True))
    with pytest.raises(ValueError, match="content_types"):
        stream.read(stream.Position.start(), content_types=set())


@pytest.mark.parametrize("ids_per_range", [10_000, 2])
def test_reads_every_event_in_order_and_resumes_after_a_position(
    ids_per_range: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream, "_RANGE", ids_per_range)  # PostgreSQL's pages walk the key range by range
    authors = [Author.objects.create(name=f"a{i}") for i in range(7)]
    for author in authors:
        author.name += "!"
        author.save()
    events, position = read_all(stream.Position.start(), limit=3)
    assert [e.id for e in events] == list(Event.objects.order_by("id").values_list("id", flat=True))
    assert len(events) == 14
    Author.objects.create(name="later")
    more, position = read_all(position, limit=3)
    assert [(e.action, e.object_pk) for e in more] == [("create", str(Author.objects.get(name="later").pk))]
    assert stream.read(position).events == []


def test_now_is_after_every_committed_event() -> None:
    Author.objects.create(name="before")
    position = stream.now()
    assert stream.read(position).events == []
    after = Author.objects.create(name="after")
    events, _ = read_all(position)
    assert [e.object_pk for e in events] == [str(after.pk)]


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="limit must be at least 1"):
        stream.read(stream.Position.start(), limit=0)


def test_an_unsupported_database_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "vendor", "mysql")
    with pytest.raises(NotSupportedError, match="no gap-free order of committed events"):
        stream.read(stream.Position.start())


class Held(threading.Thread):
    """A transaction on a connection of its own that writes, then waits to be told to commit."""

    def __init__(self, write: Callable[[], None]) -> None:
        super().__init__(daemon=True)
        self.write = write
        self.wrote = threading.Event()
        self.go = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with transaction.atomic():
                self.write()
                Event.objects.exists()  # the events are inserted now (before COMMIT), taking their ids
                self.wrote.set()
                assert self.go.wait(WAIT)
        except BaseException as error:
            self.error = error
            self.wrote.set()
        finally:
            connection.close()

    def commit(self) -> None:
        self.go.set()
        self.join(WAIT)
        assert not self.is_alive()
        if self.error is not None:
            raise self.error


@pytest.mark.postgres
def test_an_event_committed_after_a_larger_id_is_not_skipped() -> None:
    """Polling ``id > last`` would skip the held transaction's event: it has the smaller id."""
    start = stream.now()
    held = Held(lambda: Author.objects.create(name="slow"))
    held.start()
    assert held.wrote.wait(WAIT)
    fast = Author.objects.create(name="fast")
    first, position = read_all(start)
    assert [e.object_pk for e in first] == [str(fast.pk)]  # never the uncommitted one
    held.commit()
    slow = Author.objects.get(name="slow")
    later, _ = read_all(position)
    assert [e.object_pk for e in later] == [str(slow.pk)]
    assert later[0].id < first[0].id  # the case that loses events when polling by id


def in_thread(work: Callable[[], None]) -> threading.Thread:
    """Run ``work`` on a connection of its own; its error is raised by :func:`finish`."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.errors = errors  # type: ignore[attr-defined]
    thread.start()
    return thread


def finish(thread: threading.Thread) -> None:
    thread.join(WAIT)
    assert not thread.is_alive(), "thread is stuck"
    errors = thread.errors  # type: ignore[attr-defined]
    if errors:
        raise errors[0]


@pytest.mark.postgres
def test_a_rows_versions_come_in_order_when_transaction_ids_do_not() -> None:
    """A transaction takes its id at its first write; the next version of a row may come from an older one."""
    book = Book.objects.create(author=Author.objects.create(name="Ann"), title="v1")
    start = stream.now()
    older_wrote, younger_done = threading.Event(), threading.Event()

    def older() -> None:  # takes its transaction id first, writes the book last
        with transaction.atomic():
            Author.objects.create(name="first write")
            older_wrote.set()
            assert younger_done.wait(WAIT)
            Book.objects.filter(pk=book.pk).update(title="v3")

    def younger() -> None:
        assert older_wrote.wait(WAIT)
        with transaction.atomic():
            Book.objects.filter(pk=book.pk).update(title="v2")
        younger_done.set()

    threads = [in_thread(older), in_thread(younger)]
    for thread in threads:
        finish(thread)
    events, _ = read_all(start, limit=1)
    book_type = ContentType.objects.get_for_model(Book).pk
    versions = [e.version for e in events if (e.content_type_id, e.object_pk) == (book_type, str(book.pk))]
    assert versions == [2, 3]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT version, xid::text::bigint FROM {Event._meta.db_table} "
            "WHERE content_type_id = %s AND object_pk = %s AND version > 1",
            [book_type, str(book.pk)],
        )
        xids = dict(cursor.fetchall())
    assert xids[3] < xids[2]  # ordering by transaction id would have given version 3 first


@pytest.mark.postgres
def test_events_written_before_the_xid_column_are_read_first() -> None:
    """Events from before migration 0006 have no xid: the first window holds them, in id order."""
    Author.objects.create(name="new")
    with connection.cursor() as cursor:
        # As an event row looked before the column existed: an INSERT naming xid NULL.
        cursor.execute(
            f"INSERT INTO {Event._meta.db_table} (content_type_id, object_pk, version, action, changes, state, "
            "created_at, operation, actor_id, actor_repr, context, hash, xid) "
            f"SELECT content_type_id, object_pk, version + 1, 'update', changes, state, created_at, operation, "
            f"actor_id, actor_repr, context, hash, NULL FROM {Event._meta.db_table}"
        )
    events, position = read_all(stream.Position.start(), limit=1)
    assert [e.version for e in events] == [1, 2]
    assert stream.read(position).events == []


@pytest.mark.postgres
def test_the_xid_column_is_filled_by_the_database_and_append_only_too() -> None:
    Author.objects.create(name="Ada")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT xid IS NOT NULL FROM {Event._meta.db_table}")
        assert cursor.fetchone() == (True,)
        with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
            cursor.execute(f"UPDATE {Event._meta.db_table} SET xid = NULL")


# --- the many-writers harness -------------------------------------------------

SECONDS = float(os.environ.get("STREAM_SECONDS", "6"))
WRITERS = int(os.environ.get("STREAM_WRITERS", "6"))


class Rollback(Exception):
    pass


def writer(seed: int, deadline: float, books: list[int], errors: list[BaseException]) -> None:
    rng = random.Random(seed)
    try:
        while time.monotonic() < deadline:
            try:
                with transaction.atomic():
                    for _ in range(rng.randrange(1, 5)):
                        choice = rng.random()
                        if choice < 0.5:  # hot rows: writers wait on each other's locks
                            Book.objects.filter(pk=rng.choice(books)).update(pages=rng.randrange(1000))
                        elif choice < 0.8:
                            Author.objects.create(name=f"w{seed}")
                        else:
                            book = Book.objects.get(pk=rng.choice(books))
                            book.title = rng.choice("abc")
                            book.save()
                        if rng.random() < 0.3:  # insert the events now, taking their ids long before COMMIT
                            Event.objects.filter(pk=0).exists()
                        time.sleep(rng.random() * rng.choice([0.001, 0.01, 0.05]))  # short and long transactions
                    if rng.random() < 0.15:
                        raise Rollback
            except Rollback:
                pass
            except DatabaseError as error:  # deadlocks between writers of the same rows
                if "deadlock detected" not in str(error):
                    raise
    except BaseException as error:
        errors.append(error)
    finally:
        connection.close()


def reader(stop: threading.Event, seen: list[tuple[int, int, str, int]], errors: list[BaseException]) -> None:
    rng = random.Random(0)
    position = stream.Position.start()
    try:
        while True:
            finishing = stop.is_set()
            batch = stream.read(position, limit=rng.choice([1, 7, 50, 500]))
            seen += [(e.id, e.content_type_id, e.object_pk, e.version) for e in batch.events]
            position = batch.position
            if finishing and not batch.events:
                return  # the writers had stopped before this read began, and it found nothing more
            time.sleep(rng.random() / 100)
    except BaseException as error:
        errors.append(error)
    finally:
        connection.close()


@pytest.mark.postgres
def test_many_writers_one_reader_every_committed_event_exactly_once_in_row_order() -> None:
    author = Author.objects.create(name="Ann")
    books = [Book.objects.create(author=author, title="t", pages=0).pk for _ in range(20)]
    deadline = time.monotonic() + SECONDS
    errors: list[BaseException] = []
    seen: list[tuple[int, int, str, int]] = []
    stop = threading.Event()
    writers = [threading.Thread(target=writer, args=(seed, deadline, books, errors)) for seed in range(WRITERS)]
    read = threading.Thread(target=reader, args=(stop, seen, errors))
    read.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(SECONDS + WAIT)
    stop.set()
    read.join(WAIT)
    assert not errors, errors
    committed = list(Event.objects.order_by("id").values_list("id", "content_type_id", "object_pk", "version"))
    check_stream(seen, committed)


def check_stream(seen: list[tuple[int, int, str, int]], committed: list[tuple[int, int, str, int]]) -> None:
    """Every committed event exactly once, nothing else, each row's versions 1, 2, 3... in order."""
    assert len(committed) > 100  # the harness did make many events
    ids = [event[0] for event in seen]
    assert len(ids) == len(set(ids)), "an event was read twice"
    assert sorted(seen) == committed, "the reader skipped an event, or saw one that never committed"
    last: dict[tuple[int, str], int] = {}
    for _, content_type, pk, version in seen:
        assert version == last.get((content_type, pk), 0) + 1, f"row {content_type}/{pk}: v{version} out of order"
        last[content_type, pk] = version
    if connection.vendor == "postgresql":
        assert ids != sorted(ids), "no event was read out of id order: the harness proved nothing"


@pytest.mark.django_db(transaction=False)
def test_sqlite_many_writers_one_reader_by_id(tmp_path: Path) -> None:
    """SQLite's one writer at a time: reading by id is gap-free (writers and reader on a file, own process)."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's rule: run by the SQLite suite (its own file, whatever the suite's database)")
    result = subprocess.run(
        [sys.executable, "tests/sqlite_stream.py", str(tmp_path / "stream.sqlite3"), str(SECONDS)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "tests.settings"},
        capture_output=True,
        text=True,
        timeout=SECONDS + 120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["errors"] == []
    check_stream([tuple(e) for e in report["seen"]], [tuple(e) for e in report["table"]])
