"""``QuerySet.update()`` whose events PostgreSQL makes in the UPDATE's own statement (``update_events``).

The SQL that encodes each value must write exactly what Python's encoder and
``canonical_json`` write, or the recorded values and the hash chain break:
hypothesis holds the two equal for every field type it covers, and an update
of random old and new values records the same events Python would (its
changes, and a hash ``audit_verify`` recomputes). The rows the statement
leaves to Python (a snapshot due, a version taken meanwhile) are recorded too.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection, connections, models, transaction
from django.db.models import F
from hypothesis import given
from hypothesis import strategies as st

from audit_events import history
from audit_events.backends import postgresql_events
from audit_events.encoding import canonical_json, encode
from audit_events.models import Event
from audit_events.recording import diff
from audit_events.verify import verify_model
from tests.helpers import at_commit, events, spec_of
from tests.models import Author, Book, Everything
from tests.test_encoding import PROPERTY, VALUES

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL makes these events in SQL"),
]

FIELDS = {f.name: f for f in Everything._meta.concrete_fields if f.name != "id"}
COVERED = {
    "char", "text", "slug", "email", "url", "small", "integer", "big", "positive", "positive_small",
    "positive_big", "decimal", "flag", "maybe", "day", "moment", "ident", "note", "author",
}  # fmt: skip
COVERED_VALUES = {name: VALUES[name] for name in sorted(COVERED)}


def test_the_types_encoded_in_sql() -> None:
    covered = {name for name, field in FIELDS.items() if postgresql_events.json_text(field, "x") is not None}
    assert covered == COVERED  # floats, JSON, times, durations, binary, IPs, files: Python's


def _row(values: dict[str, Any], author: Author) -> dict[str, Any]:
    return {**values, "author": author if values["author"] else None}


@PROPERTY
@given(values=st.fixed_dictionaries(COVERED_VALUES))
def test_sql_writes_each_value_as_python_encodes_it(values: dict[str, Any]) -> None:
    author = Author.objects.get_or_create(name="encoded")[0]
    row = Everything.objects.create(**_row(values, author))
    stored = Everything.objects.get(pk=row.pk)
    quote = connection.ops.quote_name
    selects = [postgresql_events.json_text(FIELDS[name], quote(FIELDS[name].column)) for name in COVERED_VALUES]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(selects)} FROM tests_everything WHERE id = %s", [row.pk])  # type: ignore[arg-type]
        texts = cursor.fetchone()
    for name, text in zip(COVERED_VALUES, texts, strict=True):
        field = FIELDS[name]
        assert text == canonical_json(encode(field, getattr(stored, field.attname))), name


@PROPERTY
@given(old=st.fixed_dictionaries(COVERED_VALUES), new=st.fixed_dictionaries(COVERED_VALUES))
def test_an_update_records_what_python_would(old: dict[str, Any], new: dict[str, Any]) -> None:
    author = Author.objects.get_or_create(name="encoded")[0]
    row = Everything.objects.create(**_row(old, author))
    before = Everything.objects.get(pk=row.pk)
    assert Everything.objects.filter(pk=row.pk).update(**_row(new, author)) == 1
    after = Everything.objects.get(pk=row.pk)
    spec = spec_of(Everything)
    state = {f.name: encode(f, getattr(before, f.attname)) for f in spec.fields}
    expected = diff(state, {f.name: encode(f, getattr(after, f.attname)) for f in spec.fields})
    recorded = events(Everything, row.pk)
    if expected:
        assert recorded[-1].action == "update"
        assert recorded[-1].changes == expected
        assert recorded[-1].version == 2
    else:
        assert len(recorded) == 1  # nothing changed: nothing recorded
    assert list(verify_model(Everything)) == []  # each hash recomputes, replay gives the live rows


def test_many_rows_one_statement_each_event_its_own_chain(django_assert_num_queries: Any) -> None:
    author = Author.objects.create(name="a")
    books = Book.objects.bulk_create([Book(author=author, title=f"t{i}", pages=i) for i in range(30)])
    Book.objects.filter(pk=books[0].pk).update(pages=100)  # one row a version ahead
    # BEGIN, JIT off for the next statement, the UPDATE and the INSERT of every event, COMMIT
    with django_assert_num_queries(4):
        assert Book.objects.filter(pk__in=[b.pk for b in books[:20]]).update(pages=F("pages") + 1, title="u") == 20
    for book in books[1:20]:
        event = events(Book, book.pk)[-1]
        assert (event.version, event.action) == (2, "update")
        assert event.changes == {"pages": [book.pages, book.pages + 1], "title": [book.title, "u"]}
    last = events(Book, books[0].pk)[-1]
    assert (last.version, last.changes) == (3, {"pages": [100, 101], "title": ["t0", "u"]})
    assert events(Book, books[20].pk)[-1].version == 1
    assert list(verify_model(Book)) == []


def test_a_snapshot_due_is_written_by_python_with_the_links() -> None:
    # SNAPSHOT_EVERY is 10 in the tests: the 10th event stores the whole row, links included.
    author = Author.objects.create(name="a")
    book = Book.objects.create(author=author, title="t", pages=0)
    other = Book.objects.create(author=author, title="o", pages=0)
    book.tags.create(name="x")
    at_commit()
    first = len(events(Book, book.pk))
    for _ in range(10 - first):
        Book.objects.filter(pk__in=[book.pk, other.pk]).update(pages=F("pages") + 1)
    due = events(Book, book.pk)[-1]
    assert due.version == 10
    assert due.action == "update"
    assert due.state is not None
    assert due.state["tags"] == [book.tags.get().pk]
    assert due.state["pages"] == 10 - first
    assert events(Book, other.pk)[-1].state is None  # its 10th event is not due yet
    assert list(verify_model(Book)) == []


def test_a_field_python_encodes_sends_the_rows_back() -> None:
    row = Everything.objects.create(floating=1.5)
    Everything.objects.filter(pk=row.pk).update(floating=2.5, integer=3)
    assert events(Everything, row.pk)[-1].changes == {"floating": [1.5, 2.5], "integer": [0, 3]}


def test_inside_a_transaction_after_waiting_saves() -> None:
    author = Author.objects.create(name="a")
    with transaction.atomic():
        author.name = "b"
        author.save()  # its event waits for COMMIT: the statement's lookup must see it
        Author.objects.filter(pk=author.pk).update(name="c")
        author.refresh_from_db()
        author.name = "d"
        author.save()
    assert [(e.version, e.changes) for e in events(Author, author.pk)[1:]] == [
        (2, {"name": ["a", "b"]}),
        (3, {"name": ["b", "c"]}),
        (4, {"name": ["c", "d"]}),
    ]
    assert list(verify_model(Author)) == []


def test_a_version_taken_while_the_update_waited_is_recorded_after_it() -> None:
    """The UPDATE waits for a row another transaction locked; that one commits an event the
    statement's snapshot cannot see: its lookup's version is taken, and Python records the row."""
    author = Author.objects.create(name="a")
    locked, go, done = threading.Event(), threading.Event(), threading.Event()

    def other() -> None:
        try:
            with transaction.atomic():
                row = Author.objects.select_for_update().get(pk=author.pk)
                locked.set()
                go.wait(10)
                row.name = "other"
                row.save()
        finally:
            connections.close_all()
            done.set()

    thread = threading.Thread(target=other)
    thread.start()
    assert locked.wait(10)
    timer = threading.Timer(0.5, go.set)  # while the UPDATE below waits for the lock
    timer.start()
    assert Author.objects.filter(pk=author.pk).update(name=models.functions.Concat(F("name"), models.Value("!"))) == 1
    done.wait(10)
    thread.join()
    assert [(e.version, e.changes) for e in events(Author, author.pk)[1:]] == [
        (2, {"name": ["a", "other"]}),
        (3, {"name": ["other", "other!"]}),
    ]
    assert list(verify_model(Author)) == []


def test_history_reads_the_events_of_the_statement() -> None:
    author = Author.objects.create(name="a")
    Author.objects.filter(pk=author.pk).update(name="b")
    assert [e.action for e in history(author)] == ["create", "update"]
    assert Event.objects.filter(action="update").count() == 1
