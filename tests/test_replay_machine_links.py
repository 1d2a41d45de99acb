"""The replay invariant for the QuerySet, bulk and many-to-many write paths, as a state machine.

Books (with a many-to-many ``tags`` field) and tags go through random saves,
``bulk_create``, ``QuerySet.update`` with F(), ``bulk_update``, links added,
removed, set and cleared from either side, deletes of books and of tags, and
restores (undo-delete, and back to an earlier moment). After every step a
moment is recorded with the rows and links a SELECT returns then; replay must
give them back, now and at every recorded moment.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from audit_events import NoHistory, RestoreError, restore
from audit_events.encoding import State
from audit_events.models import Event
from audit_events.registry import spec_for
from audit_events.replay import recorded_state
from tests.helpers import spec_of
from tests.models import Author, Book, Tag

pytestmark = pytest.mark.django_db

# Text PostgreSQL can store (no NUL) and that round-trips (no lone surrogates).
_title = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8)


def _live(model: type) -> dict[Any, State]:
    """Every row of ``model`` as its recorded state looks (links included), read independently."""
    spec = spec_of(model)
    rows = {}
    for row in model.objects.all():
        state = spec.state_of(row)
        for field in spec.m2m_fields:
            state[field.name] = sorted(getattr(row, field.name).values_list("pk", flat=True))
        rows[row.pk] = state
    return rows


class LinksMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.atomic = transaction.atomic()
        self.atomic.__enter__()
        self.author = Author.objects.create(name="Ann")
        self.tags = [Tag.objects.create(name=f"t{i}") for i in range(3)]
        first = Book.objects.create(author=self.author, title="first")
        first.tags.set(self.tags)  # so that every tag deletion takes links with it
        self.book_pks: set[Any] = {first.pk}
        self.tag_pks = {t.pk for t in self.tags}
        self.moments: list[tuple[Any, dict[Any, State], dict[Any, State]]] = []
        self._remember()

    def teardown(self) -> None:
        try:
            spec = spec_for(Book)
            for moment, books, _ in self.moments:  # later writes never change the past
                for pk in self.book_pks:
                    assert recorded_state(spec, pk, moment) == books.get(pk), (pk, moment)
        finally:
            transaction.set_rollback(True)
            self.atomic.__exit__(None, None, None)

    # --- helpers ---------------------------------------------------------

    def _remember(self) -> None:
        moment = timezone.now()
        while timezone.now() <= moment:  # strictly after this step, strictly before the next
            pass
        self.moments.append((moment, _live(Book), _live(Tag)))

    def _books(self) -> list[Book]:
        return list(Book.objects.order_by("pk"))

    def _pick(self, data: st.DataObject, items: list[Any]) -> Any:
        return items[data.draw(st.integers(0, len(items) - 1))]

    def _some_tags(self, data: st.DataObject) -> list[Tag]:
        live = list(Tag.objects.order_by("pk"))
        return data.draw(st.lists(st.sampled_from(live), max_size=3, unique_by=lambda t: t.pk)) if live else []

    def _deleted(self, model: type, known: set[Any]) -> list[Any]:
        live = set(model.objects.values_list("pk", flat=True))
        return sorted(known - live)

    # --- rules -----------------------------------------------------------

    @rule(title=_title, pages=st.integers(0, 500))
    def create(self, title: str, pages: int) -> None:
        self.book_pks.add(Book.objects.create(author=self.author, title=title, pages=pages).pk)
        self._remember()

    @rule(count=st.integers(1, 3))
    def bulk_create(self, count: int) -> None:
        created = Book.objects.bulk_create([Book(author=self.author, title=f"b{i}") for i in range(count)])
        self.book_pks.update(b.pk for b in created)
        self._remember()

    @precondition(lambda self: Book.objects.exists())
    @rule(data=st.data(), title=_title)
    def save(self, data: st.DataObject, title: str) -> None:
        book = self._pick(data, self._books())
        book.title = title
        book.save()
        self._remember()

    @precondition(lambda self: Book.objects.exists())
    @rule(step=st.integers(-3, 3), below=st.integers(0, 600))
    def queryset_update(self, step: int, below: int) -> None:
        Book.objects.filter(pages__lte=below).update(pages=F("pages") + step)
        self._remember()

    @precondition(lambda self: Book.objects.exists())
    @rule(data=st.data())
    def bulk_update(self, data: st.DataObject) -> None:
        books = data.draw(st.lists(st.sampled_from(self._books()), min_size=1, max_size=3, unique_by=lambda b: b.pk))
        for book in books:
            book.pages = data.draw(st.integers(0, 500))
        Book.objects.bulk_update(books, ["pages"])
        self._remember()

    @precondition(lambda self: Book.objects.exists())
    @rule(data=st.data(), how=st.sampled_from(["add", "remove", "set", "clear"]))
    def links_forward(self, data: st.DataObject, how: str) -> None:
        book = self._pick(data, self._books())
        tags = self._some_tags(data)
        if how == "clear":
            book.tags.clear()
        elif how == "set":
            book.tags.set(tags)
        else:
            getattr(book.tags, how)(*tags)
        self._remember()

    @precondition(lambda self: Book.objects.exists() and Tag.objects.exists())
    @rule(data=st.data(), how=st.sampled_from(["add", "remove", "clear"]))
    def links_reverse(self, data: st.DataObject, how: str) -> None:
        tag = self._pick(data, list(Tag.objects.order_by("pk")))
        books = data.draw(st.lists(st.sampled_from(self._books()), max_size=3, unique_by=lambda b: b.pk))
        if how == "clear":
            tag.books.clear()
        else:
            getattr(tag.books, how)(*books)
        self._remember()

    @precondition(lambda self: Book.objects.exists())
    @rule(data=st.data())
    def delete_book(self, data: st.DataObject) -> None:
        self._pick(data, self._books()).delete()
        self._remember()

    @precondition(lambda self: Tag.objects.exists())
    @rule(data=st.data())
    def delete_tag(self, data: st.DataObject) -> None:
        self._pick(data, list(Tag.objects.order_by("pk"))).delete()
        self._remember()

    @rule(data=st.data(), model=st.sampled_from(["book", "tag"]))
    def undo_delete(self, data: st.DataObject, model: str) -> None:
        klass, known = (Book, self.book_pks) if model == "book" else (Tag, self.tag_pks)
        gone = self._deleted(klass, known)
        if not gone:
            return
        count = Event.objects.count()
        try:
            restore(klass, self._pick(data, gone))
        except RestoreError:
            assert Event.objects.count() == count  # refused: nothing written
        self._remember()

    @precondition(lambda self: len(self.moments) > 1)
    @rule(data=st.data())
    def restore_earlier(self, data: st.DataObject) -> None:
        moment, books, _ = self._pick(data, self.moments[:-1])
        if not self.book_pks:
            return
        pk = self._pick(data, sorted(self.book_pks))
        count = Event.objects.count()
        try:
            restore(Book, pk, at=moment)
        except (RestoreError, NoHistory):
            assert Event.objects.count() == count
        else:
            assert _live(Book)[pk] == books[pk]
        self._remember()

    # --- invariants ------------------------------------------------------

    @invariant()
    def replay_equals_the_live_rows(self) -> None:
        for model, known in ((Book, self.book_pks), (Tag, self.tag_pks)):
            spec = spec_for(model)
            live = _live(model)
            for pk in known:
                assert recorded_state(spec, pk) == live.get(pk), (model, pk)

    @invariant()
    def replay_at_recorded_moments(self) -> None:
        spec = spec_for(Book)
        for moment, books, _ in self.moments[-3:]:  # the newest moments each step; all of them at teardown
            for pk in self.book_pks:
                assert recorded_state(spec, pk, moment) == books.get(pk), (pk, moment)


def test_links_and_bulk_paths_replay() -> None:
    run_state_machine_as_test(
        LinksMachine,
        settings=settings(
            max_examples=40,
            stateful_step_count=15,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
