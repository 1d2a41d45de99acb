"""Many writers on a few hot rows, for real (PostgreSQL): the history is what the database did.

Each run starts ``STRESS_THREADS`` threads, each with its own connection, that
draw random writes from every write path (saves, ``update_fields`` and ``F()``
saves, ``QuerySet.update`` by key and by a filter other writers change under
it, ``bulk_update``, deletes and creates, many-to-many changes from both
sides, restores and undo-deletes, and writes rolled back) on a handful of
rows, so that they wait on each other's locks. Afterwards, for every row:

* the recorded history replays to the live row, links included (``state_at``);
* its versions are gapless and its hash chain intact (``audit_verify`` clean);
* no event carries a value that only a rolled-back write ever wrote.

The operations each thread draws come from its seed; the interleaving is the
machine's. CI runs a fixed seed and a random one (printed, and repeatable
with ``STRESS_SEED``); ``make stress`` runs longer (``STRESS_SECONDS``,
``STRESS_ROUNDS``).
"""

from __future__ import annotations

import os
import random
import threading
import time
from typing import Any

import pytest
from django.core.exceptions import ObjectDoesNotExist
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from audit_events import NoHistory, RestoreError, restore, state_at
from audit_events.models import Event
from audit_events.replay import recorded_state
from audit_events.verify import verify_model
from tests.helpers import spec_of
from tests.models import Author, Book, Tag

pytestmark = [pytest.mark.postgres, pytest.mark.stress, pytest.mark.django_db(transaction=True)]

THREADS = int(os.environ.get("STRESS_THREADS", "4"))
SECONDS = float(os.environ.get("STRESS_SECONDS", "12"))  # per round, wall clock
TITLES = ["match", "other"]
ROLLED_BACK = "rolled-back"  # only ever written by writes that roll back


class Rollback(Exception):
    """Raised inside an atomic block to undo a write on purpose."""


def _deadlock_or_serialization(error: DatabaseError) -> bool:
    cause = error.__cause__
    return getattr(cause, "pgcode", None) in {"40P01", "40001"} or getattr(cause, "sqlstate", None) in {
        "40P01",
        "40001",
    }


class Writer(threading.Thread):
    """One connection drawing random writes until the deadline; unexpected errors are kept for the test."""

    def __init__(self, seed: int, deadline: float, books: list[int], authors: list[int], tags: list[int]) -> None:
        super().__init__(daemon=True)
        self.rng = random.Random(seed)
        self.deadline = deadline
        self.books, self.authors, self.tags = books, authors, tags
        self.error: BaseException | None = None
        self.done: dict[str, int] = {}
        self.moments: list[Any] = []

    def run(self) -> None:
        self.operations = [getattr(self, name) for name in dir(self) if name.startswith("op_")]
        operations = [*self.operations, self.several_in_one_transaction]
        try:
            while time.monotonic() < self.deadline:
                operation = self.rng.choice(operations)
                try:
                    operation()
                    self.done[operation.__name__] = self.done.get(operation.__name__, 0) + 1
                except (ObjectDoesNotExist, IntegrityError, RestoreError, NoHistory, Rollback):
                    pass  # a row another writer deleted, a parent gone, a write undone on purpose
                except DatabaseError as error:
                    # Deadlocks, and Django's own answer to a save of a row another writer deleted.
                    if not _deadlock_or_serialization(error) and "did not affect any rows" not in str(error):
                        raise
        except BaseException as error:
            self.error = error
        finally:
            connection.close()

    def several_in_one_transaction(self) -> None:
        """Writes that hold their locks a while, so that others wait on them and see their commit."""
        with transaction.atomic():
            for _ in range(self.rng.randrange(2, 4)):
                self.rng.choice(self.operations)()
                time.sleep(self.rng.random() / 50)

    # --- what a writer draws -------------------------------------------------

    def book(self) -> int:
        return self.rng.choice(self.books)

    def op_save(self) -> None:
        with transaction.atomic():
            book = Book.objects.get(pk=self.book())
            book.title = self.rng.choice(TITLES)
            book.pages = self.rng.randrange(1000)
            book.save()

    def op_save_stale(self) -> None:  # a copy read outside the transaction: its other fields may be stale
        book = Book.objects.get(pk=self.book())
        book.pages = self.rng.randrange(1000)
        book.save()

    def op_save_update_fields(self) -> None:
        book = Book.objects.get(pk=self.book())
        book.title = self.rng.choice(TITLES)
        book.save(update_fields=["title"])

    def op_save_f(self) -> None:
        book = Book.objects.get(pk=self.book())
        book.pages = F("pages") + 1
        book.save(update_fields=["pages"])

    def op_update_by_filter(self) -> None:
        Book.objects.filter(title=self.rng.choice(TITLES)).update(pages=self.rng.randrange(1000))

    def op_update_by_key(self) -> None:
        Book.objects.filter(pk__in=self.rng.sample(self.books, 2)).update(title=self.rng.choice(TITLES))

    def op_update_f(self) -> None:
        Book.objects.filter(title=self.rng.choice(TITLES)).update(pages=F("pages") + 7)

    def op_bulk_update(self) -> None:
        books = list(Book.objects.filter(pk__in=self.rng.sample(self.books, 2)))
        for book in books:
            book.pages = self.rng.randrange(1000)
        Book.objects.bulk_update(books, ["pages"])

    def op_tags_add(self) -> None:
        Book.objects.get(pk=self.book()).tags.add(self.rng.choice(self.tags))

    def op_tags_remove(self) -> None:
        Book.objects.get(pk=self.book()).tags.remove(self.rng.choice(self.tags))

    def op_tag_books_add(self) -> None:  # the same links, from the other side
        Tag.objects.get(pk=self.rng.choice(self.tags)).books.add(self.book())

    def op_tag_books_remove(self) -> None:
        Tag.objects.get(pk=self.rng.choice(self.tags)).books.remove(self.book())

    def op_tags_set(self) -> None:
        Book.objects.get(pk=self.book()).tags.set(self.rng.sample(self.tags, self.rng.randrange(len(self.tags) + 1)))

    def op_delete(self) -> None:
        Book.objects.get(pk=self.book()).delete()

    def op_queryset_delete(self) -> None:
        Book.objects.filter(title=self.rng.choice(TITLES), pages__lt=300).delete()

    def op_undo_delete(self) -> None:
        pk = self.book()
        if not Book.objects.filter(pk=pk).exists():
            restore(Book, pk)

    def op_restore_at(self) -> None:
        if self.moments:
            restore(Book, self.book(), at=self.rng.choice(self.moments))
        self.moments.append(timezone.now())

    def op_rolled_back_save(self) -> None:
        with transaction.atomic():
            book = Book.objects.get(pk=self.book())
            book.title = ROLLED_BACK
            book.save()
            raise Rollback

    def op_rolled_back_update(self) -> None:
        with transaction.atomic():
            Book.objects.filter(pk=self.book()).update(title=ROLLED_BACK)
            raise Rollback

    def op_rolled_back_savepoint(self) -> None:  # the outer write stays, the inner one goes
        with transaction.atomic():
            book = Book.objects.get(pk=self.book())
            book.pages = self.rng.randrange(1000)
            book.save()
            try:
                with transaction.atomic():
                    Book.objects.filter(pk=book.pk).update(title=ROLLED_BACK)
                    raise Rollback
            except Rollback:
                pass

    def op_author_cascade_and_undo(self) -> None:  # a cascade, then the undo of the whole group
        pk = self.rng.choice(self.authors)
        Author.objects.get(pk=pk).delete()
        restore(Author, pk)

    def op_author_rename(self) -> None:
        author = Author.objects.get(pk=self.rng.choice(self.authors))
        author.name = f"author {self.rng.randrange(100)}"
        author.save()


def _links(book: Book) -> list[int]:
    return sorted(book.tags.values_list("pk", flat=True))


def _events_of(pk: int) -> str:
    """The book's recorded events, one a line, for the failure message."""
    events = Event.objects.filter(content_type__model="book", object_pk=str(pk)).order_by("version")
    rows = events.values_list("id", "version", "action", "operation", "changes", "state")
    return "".join(f"\n  {row}" for row in rows)


def _check_history(book_pks: list[int], author_pks: list[int]) -> None:
    spec = spec_of(Book)
    attnames = [f.attname for f in spec.fields]
    for pk in book_pks:
        live = Book.objects.filter(pk=pk).first()
        replayed = state_at(Book, pk)
        if live is None:
            assert replayed is None, f"book {pk}: deleted, but its history replays to a row{_events_of(pk)}"
            continue
        assert replayed is not None, f"book {pk}: live, but its history replays to no row"
        assert {a: getattr(replayed, a) for a in attnames} == {a: getattr(live, a) for a in attnames}, (
            f"book {pk}{_events_of(pk)}"
        )
        recorded = recorded_state(spec, pk)
        assert recorded is not None
        assert recorded["tags"] == _links(live), f"book {pk}: links"
    for pk in author_pks:
        live_author = Author.objects.filter(pk=pk).values("name").first()
        replayed_author = state_at(Author, pk)
        assert (replayed_author and replayed_author.name) == (live_author and live_author["name"]), f"author {pk}"
    for model in (Book, Author):
        versions: dict[str, list[int]] = {}
        ct_events = Event.objects.filter(content_type__model=model._meta.model_name).order_by("id")
        for object_pk, version in ct_events.values_list("object_pk", "version"):
            versions.setdefault(object_pk, []).append(version)
        for object_pk, seen in versions.items():
            assert seen == list(range(1, len(seen) + 1)), f"{model.__name__} {object_pk}: versions {seen}"
        assert [str(finding) for finding in verify_model(model)] == []  # drift, gaps, broken chains
    assert not any(ROLLED_BACK in str(e.changes) or ROLLED_BACK in str(e.state) for e in Event.objects.all()), (
        "an event records a value only a rolled-back write wrote"
    )


def _round(seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    authors = [Author.objects.create(name=f"author {i}") for i in range(2)]
    tags = [Tag.objects.create(name=f"tag {i}") for i in range(3)]
    books = [
        Book.objects.create(author=rng.choice(authors), title=rng.choice(TITLES), pages=rng.randrange(1000))
        for _ in range(3)
    ]
    book_pks = [b.pk for b in books]
    deadline = time.monotonic() + SECONDS
    writers = [
        Writer(seed * 1000 + i, deadline, book_pks, [a.pk for a in authors], [t.pk for t in tags])
        for i in range(THREADS)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(SECONDS + 60)
        assert not writer.is_alive(), "a writer is stuck"
    for writer in writers:
        if writer.error is not None:
            raise AssertionError(f"seed {seed}: a writer failed: {writer.error!r}") from writer.error
    _check_history(book_pks, [a.pk for a in authors])
    totals: dict[str, int] = {}
    for writer in writers:
        for name, count in writer.done.items():
            totals[name] = totals.get(name, 0) + count
    return totals


def _seeds() -> list[int]:
    if "STRESS_SEED" in os.environ:
        return [int(s) for s in os.environ["STRESS_SEED"].split(",")]
    rounds = int(os.environ.get("STRESS_ROUNDS", "1"))
    # Under pytest-xdist every worker collects the same seeds: drawn from the run's id, which they share.
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    draw = random.Random(run) if run else random.SystemRandom()
    return [20261207] + [draw.randrange(10**6) for _ in range(rounds)]


@pytest.mark.parametrize("seed", _seeds())
def test_many_writers_leave_a_history_that_is_what_the_database_did(seed: int) -> None:
    print(f"stress seed {seed} (repeat with STRESS_SEED={seed})")
    totals = _round(seed)
    assert sum(totals.values()) > 0, "no write succeeded"
    print(f"stress seed {seed}: {sum(totals.values())} writes: {sorted(totals.items())}")
