"""``QuerySet.update()`` whose events PostgreSQL makes in the UPDATE's own statement (``statement_events``).

The SQL that encodes each value must write exactly what Python's encoder and
``canonical_json`` write, or the recorded values and the hash chain break:
hypothesis holds the two equal for every field type it covers, and an update
of random old and new values records the same events Python would (its
changes, and a hash ``audit_verify`` recomputes). The rows the statement
leaves to Python (a snapshot due, a version taken meanwhile) are recorded too.
"""

from __future__ import annotations

import datetime
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, connections, models, transaction
from django.db.models import F, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Concat
from django.test import override_settings
from hypothesis import given
from hypothesis import strategies as st

from audit_events import history, restore
from audit_events.backends import postgresql_events
from audit_events.encoding import canonical_json, encode
from audit_events.links import read_links
from audit_events.models import Event
from audit_events.recording import diff
from audit_events.verify import verify_model
from tests.helpers import at_commit, events, settings_with, settings_without, spec_of, statements_apart
from tests.models import (
    Album,
    Author,
    Book,
    Code,
    Everything,
    Loan,
    Person,
    Reader,
    Stamped,
    Tag,
    Ticket,
    Typed,
)
from tests.test_encoding import PROPERTY, VALUES

MAKE = {
    Typed: lambda i: Typed(integer=i),
    Ticket: lambda i: Ticket(title=f"r{i}"),
    Code: lambda i: Code(code=f"k{i}", label=f"r{i}"),
    Stamped: lambda i: Stamped(name=f"r{i}"),
}

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL makes these events in SQL"),
]

FIELDS = {f.name: f for f in Everything._meta.concrete_fields if f.name != "id"}
COVERED = set(FIELDS) - {"ip"}
COVERED_VALUES = {name: VALUES[name] for name in sorted(COVERED)}


def test_the_types_encoded_in_sql() -> None:
    covered = {name for name, field in FIELDS.items() if postgresql_events.json_text(field, "x") is not None}
    assert covered == COVERED  # IP addresses: Python's


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
        value = encode(field, getattr(stored, field.attname))
        assert text == (None if _extreme(value) else canonical_json(value)), name  # None: Python writes it


@PROPERTY
@given(old=st.fixed_dictionaries(COVERED_VALUES), new=st.fixed_dictionaries(COVERED_VALUES))
def test_an_update_records_what_python_would(old: dict[str, Any], new: dict[str, Any]) -> None:
    author = Author.objects.get_or_create(name="encoded")[0]
    row = Everything.objects.create(**_row(old, author))
    spec = spec_of(Everything)
    names = [f.attname for f in spec.fields]
    before = Everything.objects.filter(pk=row.pk).values(*names).get()  # as stored (a file: its name)
    assert Everything.objects.filter(pk=row.pk).update(**_row(new, author)) == 1
    after = Everything.objects.filter(pk=row.pk).values(*names).get()
    state = {f.name: encode(f, before[f.attname]) for f in spec.fields}
    expected = diff(state, {f.name: encode(f, after[f.attname]) for f in spec.fields})
    recorded = events(Everything, row.pk)
    if expected:
        assert recorded[-1].action == "update"
        assert recorded[-1].changes == json.loads(canonical_json(expected))  # as stored
        assert recorded[-1].version == 2
    else:
        assert len(recorded) == 1  # nothing changed: nothing recorded
    assert list(verify_model(Everything)) == []  # each hash recomputes, replay gives the live rows


def test_many_rows_one_statement_each_event_its_own_chain(django_assert_num_queries: Any) -> None:
    author = Author.objects.create(name="a")
    books = Book.objects.bulk_create([Book(author=author, title=f"t{i}", pages=i) for i in range(30)])
    Book.objects.filter(pk=books[0].pk).update(pages=100)  # one row a version ahead
    # BEGIN, the UPDATE and the INSERT of every event (after JIT turned off, in the same round trip), COMMIT
    with django_assert_num_queries(3 + statements_apart()):
        assert Book.objects.filter(pk__in=[b.pk for b in books[:20]]).update(pages=F("pages") + 1, title="u") == 20
    for book in books[1:20]:
        event = events(Book, book.pk)[-1]
        assert (event.version, event.action) == (2, "update")
        assert event.changes == {"pages": [book.pages, book.pages + 1], "title": [book.title, "u"]}
    last = events(Book, books[0].pk)[-1]
    assert (last.version, last.changes) == (3, {"pages": [100, 101], "title": ["t0", "u"]})
    assert events(Book, books[20].pk)[-1].version == 1
    assert list(verify_model(Book)) == []


def test_a_snapshot_due_is_written_by_the_database_with_the_links(django_assert_num_queries: Any) -> None:
    # SNAPSHOT_EVERY is 10 in the tests: the 10th event stores the whole row, links included.
    author = Author.objects.create(name="a")
    book = Book.objects.create(author=author, title="t", pages=0)
    other = Book.objects.create(author=author, title="o", pages=0)
    book.tags.create(name="x")
    at_commit()
    first = len(events(Book, book.pk))
    for _ in range(9 - first):
        Book.objects.filter(pk__in=[book.pk, other.pk]).update(pages=F("pages") + 1)
    at_commit()
    with django_assert_num_queries(3 + statements_apart()):  # no row comes back for Python to record
        Book.objects.filter(pk__in=[book.pk, other.pk]).update(pages=F("pages") + 1)
    due = events(Book, book.pk)[-1]
    assert due.version == 10
    assert due.action == "update"
    assert due.state == {**_python_state(Book, book.pk), "tags": [book.tags.get().pk], "readers": []}
    assert due.state["pages"] == 10 - first
    assert events(Book, other.pk)[-1].state is None  # its 10th event is not due yet
    assert list(verify_model(Book)) == []


def _python_state(model: Any, pk: Any) -> dict[str, Any]:
    """The row's fields as Python's encoder writes them, as stored (no links)."""
    spec = spec_of(model)
    row = model.objects.filter(pk=pk).values(*[f.attname for f in spec.fields]).get()
    return json.loads(canonical_json({f.name: encode(f, row[f.attname]) for f in spec.fields}))


def _unrecorded(*labels: str) -> Any:
    """Rows written while ``labels`` are not recorded: they have no history (adopted rows)."""
    return override_settings(AUDIT_EVENTS=settings_without(*labels))


@PROPERTY
@given(old=st.fixed_dictionaries(COVERED_VALUES), new=st.fixed_dictionaries(COVERED_VALUES))
def test_a_first_event_records_the_whole_row_as_python_would(old: dict[str, Any], new: dict[str, Any]) -> None:
    author = Author.objects.get_or_create(name="encoded")[0]
    with _unrecorded("tests.Typed"):
        row = Typed.objects.create(**_row(old, author))
    before = _python_state(Typed, row.pk)
    assert Typed.objects.filter(pk=row.pk).update(**_row(new, author)) == 1
    after = _python_state(Typed, row.pk)
    recorded = events(Typed, row.pk)
    expected = diff(before, after)
    if not expected:
        assert recorded == []  # nothing changed: nothing recorded
        with _unrecorded("tests.Typed"):
            Typed.objects.filter(pk=row.pk).delete()  # a row without history: audit_verify would say so
        return
    (event,) = recorded
    assert (event.action, event.version) == ("update", 1)
    assert event.changes == expected
    assert event.state == after  # the whole row: its first event
    assert list(verify_model(Typed)) == []  # each hash recomputes, replay gives the live rows


def test_rows_with_no_history_never_come_to_python(django_assert_num_queries: Any) -> None:
    with _unrecorded("tests.Typed"):
        rows = Typed.objects.bulk_create([Typed(integer=i, char=f"c{i}", data={"i": i}) for i in range(40)])
    # BEGIN, the UPDATE and the INSERT of every event (after JIT turned off, in the same round trip), COMMIT:
    # no INSERT of events from Python after it
    with django_assert_num_queries(3 + statements_apart()):
        assert Typed.objects.update(integer=F("integer") + 1, note="n") == 40
    for row in rows:
        (event,) = events(Typed, row.pk)
        assert (event.action, event.version) == ("update", 1)
        assert event.changes == {"integer": [row.integer, row.integer + 1], "note": [None, "n"]}
        assert event.state == _python_state(Typed, row.pk)
    assert list(verify_model(Typed)) == []


def test_links_in_a_first_event_are_python_sorted_related_keys(django_assert_num_queries: Any) -> None:
    tags = Tag.objects.bulk_create([Tag(name=f"t{i}") for i in range(12)])  # keys past 9: sorted as numbers
    readers = Reader.objects.bulk_create([Reader(name=f"r{i}") for i in range(3)])
    with _unrecorded("tests.Book", "tests.Tag", "tests.Reader", "tests.Loan", "tests.Author"):
        author = Author.objects.create(name="a")
        books = Book.objects.bulk_create([Book(author=author, title=f"b{i}") for i in range(3)])
        books[0].tags.add(*reversed(tags))  # written in the reverse order of their keys
        books[1].tags.add(tags[10], tags[2])
        Loan.objects.bulk_create([Loan(book=books[0], reader=readers[2]), Loan(book=books[0], reader=readers[0])])
    with django_assert_num_queries(3 + statements_apart()):
        assert Book.objects.update(pages=F("pages") + 7) == 3
    links = {
        books[0].pk: (sorted(t.pk for t in tags), [readers[0].pk, readers[2].pk]),
        books[1].pk: (sorted([tags[2].pk, tags[10].pk]), []),
        books[2].pk: ([], []),
    }
    for pk, (tagged, read) in links.items():
        (event,) = events(Book, pk)
        assert (event.action, event.version, event.changes) == ("update", 1, {"pages": [0, 7]})
        assert event.state == {**_python_state(Book, pk), "tags": tagged, "readers": read}
    assert list(verify_model(Book)) == []


def test_a_field_python_encodes_sends_the_rows_back(django_assert_num_queries: Any) -> None:
    row = Everything.objects.create(ip="10.0.0.1")
    at_commit()
    with django_assert_num_queries(4):  # BEGIN, the UPDATE returning both rows, the event INSERT, COMMIT
        Everything.objects.filter(pk=row.pk).update(ip="10.0.0.2", integer=3)
    assert events(Everything, row.pk)[-1].changes == {"ip": ["10.0.0.1", "10.0.0.2"], "integer": [0, 3]}


@pytest.mark.parametrize("number", [1e16, -7.15811643937393e16, 1e301, -1e-301, 5e-324])
def test_a_value_the_sql_cannot_write_is_recorded_by_python(number: float) -> None:
    row = Everything.objects.create(floating=1.5, data={"n": 1})
    Everything.objects.filter(pk=row.pk).update(floating=number, data={"n": number, "m": [1.0]})
    event = events(Everything, row.pk)[-1]
    expected = {"floating": [1.5, number], "data": [{"n": 1}, {"m": [1.0], "n": number}]}
    assert event.changes == json.loads(canonical_json(expected))  # as stored: 1e16 and above as integers
    assert list(verify_model(Everything)) == []


FLOATS = st.floats(allow_nan=False, allow_infinity=False)
TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8)  # jsonb refuses NUL
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | FLOATS | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=10,
)


def _extreme(value: Any) -> bool:
    """Whether ``value`` holds a float the SQL leaves to Python (from 1e16 on, under 1e-300)."""
    if isinstance(value, float):
        return value != 0 and not 1e-300 <= abs(value) < 1e16
    if isinstance(value, dict):
        return any(_extreme(v) for v in value.values())
    return isinstance(value, list) and any(_extreme(v) for v in value)


@PROPERTY
@given(number=FLOATS)
def test_sql_writes_a_float_as_python(number: float) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT audit_events_float(%s::float8)", [number])
        text = cursor.fetchone()[0]
    if 1e-300 <= abs(number) < 1e16 or number == 0:
        assert text == canonical_json(number)
    else:
        assert text is None  # left to Python


@PROPERTY
@given(value=JSON)
def test_sql_writes_a_json_value_as_python_reads_it_back(value: Any) -> None:
    row = Everything.objects.create(data=value)
    stored = Everything.objects.get(pk=row.pk).data  # as json.loads reads the jsonb text back
    with connection.cursor() as cursor:
        sql = postgresql_events.json_text(FIELDS["data"], "data")
        cursor.execute(f"SELECT {sql} FROM tests_everything WHERE id = %s", [row.pk])
        text = cursor.fetchone()[0]
    assert text == (None if _extreme(stored) else canonical_json(stored))


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


def test_links_of_a_symmetrical_relation_in_a_first_event() -> None:
    people = Person.objects.bulk_create([Person(name=f"p{i}") for i in range(12)])
    people[11].friends.add(people[0], people[9], people[10])  # Django writes both directions
    people[11].allies.add(people[2])
    with override_settings(AUDIT_EVENTS=settings_with("tests.Person")):
        assert Person.objects.update(name="x") == 12
        expected = read_links(spec_of(Person), "default", [p.pk for p in people])
        for person in people:
            (event,) = events(Person, person.pk)
            assert event.state == {"id": person.pk, "name": "x", **expected[person.pk]}
        assert events(Person, people[11].pk)[0].state["friends"] == sorted(p.pk for p in [*people[9:11], people[0]])
        assert list(verify_model(Person)) == []


def test_links_through_another_column_than_the_related_key_are_python_s() -> None:
    # Fandom holds the fan's name (to_field), which Python maps to the fan's key: snapshots are Python's.
    assert postgresql_events.links_text(Album._meta.get_field("fans"), "x") is None
    assert postgresql_events.links_text(Book._meta.get_field("tags"), "x") is not None


def _while_another_writes(model: Any, pk: Any, write: Callable[[Any], None], statement: Callable[[], Any]) -> Any:
    """Run ``statement`` while another transaction holds the row's lock: that one then ``write``s the row
    and commits, an event the statement's snapshot cannot see (READ COMMITTED). What it returned."""
    locked, go, done = threading.Event(), threading.Event(), threading.Event()

    def other() -> None:
        try:
            with transaction.atomic():
                row = model.objects.select_for_update().get(pk=pk)
                locked.set()
                go.wait(10)
                write(row)
        finally:
            connections.close_all()
            done.set()

    thread = threading.Thread(target=other)
    thread.start()
    assert locked.wait(10)
    timer = threading.Timer(0.5, go.set)  # while the statement waits for the lock
    timer.start()
    answer = statement()
    done.wait(10)
    thread.join()
    return answer


def _rename(row: Any) -> None:
    row.name = "other"
    row.save()


def test_a_version_taken_while_the_update_waited_is_recorded_after_it() -> None:
    """The UPDATE waits for a row another transaction locked; that one commits an event the
    statement's snapshot cannot see: its lookup's version is taken, and Python records the row."""
    author = Author.objects.create(name="a")
    update = Author.objects.filter(pk=author.pk).update
    assert _while_another_writes(Author, author.pk, _rename, lambda: update(name=Concat(F("name"), Value("!")))) == 1
    assert [(e.version, e.changes) for e in events(Author, author.pk)[1:]] == [
        (2, {"name": ["a", "other"]}),
        (3, {"name": ["other", "other!"]}),
    ]
    assert list(verify_model(Author)) == []


def test_links_added_while_the_update_waited_are_not_recorded_stale() -> None:
    """The statement's snapshot predates links another transaction added and committed while the
    UPDATE waited: that transaction's event took the version, and Python records the row after it."""
    tag = Tag.objects.create(name="x")
    with _unrecorded("tests.Book", "tests.Author"):
        book = Book.objects.create(author=Author.objects.create(name="a"), title="t")
    update = Book.objects.filter(pk=book.pk).update
    assert _while_another_writes(Book, book.pk, lambda row: row.tags.add(tag), lambda: update(pages=5)) == 1
    first, second = events(Book, book.pk)
    assert (first.version, first.changes, first.state["tags"]) == (1, {"tags": [[], [tag.pk]]}, [tag.pk])
    assert (second.version, second.changes, second.state) == (2, {"pages": [0, 5]}, None)
    assert list(verify_model(Book)) == []


def test_a_first_event_with_a_value_the_sql_cannot_write_is_python_s() -> None:
    with _unrecorded("tests.Typed"):
        row = Typed.objects.create(floating=1e16, data=[1e301])
    Typed.objects.filter(pk=row.pk).update(integer=3)
    (event,) = events(Typed, row.pk)
    assert (event.version, event.changes) == (1, {"integer": [0, 3]})
    assert event.state == _python_state(Typed, row.pk)
    assert list(verify_model(Typed)) == []


def test_history_reads_the_events_of_the_statement() -> None:
    author = Author.objects.create(name="a")
    Author.objects.filter(pk=author.pk).update(name="b")
    assert [e.action for e in history(author)] == ["create", "update"]
    assert Event.objects.filter(action="update").count() == 1


# --- QuerySet.delete() ---------------------------------------------------------------


@PROPERTY
@given(values=st.lists(st.fixed_dictionaries(COVERED_VALUES), min_size=1, max_size=3))
def test_a_delete_records_each_row_as_python_would(values: list[dict[str, Any]]) -> None:
    author = Author.objects.get_or_create(name="encoded")[0]
    rows = [Typed.objects.create(**_row(v, author)) for v in values]
    spec = spec_of(Typed)
    names = [f.attname for f in spec.fields]
    stored = {r["id"]: r for r in Typed.objects.filter(pk__in=[r.pk for r in rows]).values(*names)}
    assert Typed.objects.filter(pk__in=list(stored)).delete() == (len(rows), {"tests.Typed": len(rows)})
    for pk, row in stored.items():
        event = events(Typed, pk)[-1]
        assert (event.action, event.version, event.changes) == ("delete", 2, {})
        expected = {f.name: encode(f, row[f.attname]) for f in spec.fields}
        assert event.state == json.loads(canonical_json(expected))  # as stored
    assert list(verify_model(Typed)) == []
    pk = next(iter(stored))
    restored = restore(Typed, pk)
    assert (
        Typed.objects.filter(pk=pk).values(*names).get()
        == stored[pk]
        == {
            f.attname: getattr(restored, f.attname) if not isinstance(f, models.FileField) else stored[pk][f.attname]
            for f in spec.fields
        }
    )


@pytest.mark.parametrize("model", [Ticket, Code, Stamped, Typed])  # keys: a UUID, a text, integers
def test_a_delete_django_would_fast_delete_is_one_statement(model: Any, django_assert_num_queries: Any) -> None:
    made = [MAKE[model](i) for i in range(20)]
    for row in made:
        row.save()
    at_commit()
    doomed = [r.pk for r in made[:10]]
    # BEGIN, the DELETE and the INSERT of every event (after JIT turned off, in the same round trip), COMMIT
    with django_assert_num_queries(3 + statements_apart()):
        assert model.objects.filter(pk__in=doomed).delete() == (10, {model._meta.label: 10})
    assert [events(model, r.pk)[-1].action for r in made] == ["delete"] * 10 + ["create"] * 10
    operations = {events(model, r.pk)[-1].operation for r in made[:10]}
    assert len(operations) == 1  # one operation: undone together
    assert list(verify_model(model)) == []
    restored = restore(model, made[0].pk)
    assert model.objects.filter(pk=made[0].pk).exists()
    assert restored.pk == made[0].pk


def test_a_delete_with_receivers_or_cascades_is_the_collectors() -> None:
    heard: list[int] = []

    def receiver(sender: Any, instance: Any, **kwargs: Any) -> None:
        heard.append(instance.pk)

    row = Everything.objects.create(integer=1)
    models.signals.pre_delete.connect(receiver, sender=Everything)
    try:
        Everything.objects.filter(pk=row.pk).delete()
    finally:
        models.signals.pre_delete.disconnect(receiver, sender=Everything)
    assert heard == [row.pk]  # sent, as Django sends it
    assert events(Everything, row.pk)[-1].action == "delete"
    author = Author.objects.create(name="a")
    book = Book.objects.create(author=author, title="t")
    Author.objects.filter(pk=author.pk).delete()  # cascades to the book: the Collector's
    assert events(Book, book.pk)[-1].action == "delete"


def test_what_django_refuses_it_still_refuses() -> None:
    Everything.objects.create(integer=1)
    with pytest.raises(TypeError, match="limit"):
        Everything.objects.all()[:1].delete()
    with pytest.raises(TypeError, match="values"):
        Everything.objects.values("integer").delete()
    assert Everything.objects.count() == 1


@pytest.mark.parametrize("number", [1e16, 1e301])
def test_a_deleted_value_the_sql_cannot_write_is_recorded_by_python(number: float) -> None:
    row = Everything.objects.create(floating=number, data=[number])
    Everything.objects.filter(pk=row.pk).delete()
    event = events(Everything, row.pk)[-1]
    assert event.action == "delete"
    assert event.state["floating"] == json.loads(canonical_json(number))
    assert list(verify_model(Everything)) == []


def test_a_version_taken_while_the_delete_waited_is_recorded_after_it() -> None:
    row = Everything.objects.create(integer=1)

    def change(mine: Any) -> None:
        mine.integer = 2
        mine.save()

    assert _while_another_writes(Everything, row.pk, change, Everything.objects.filter(integer__gte=1).delete)[0] == 1
    recorded = [(e.version, e.action) for e in events(Everything, row.pk)]
    assert recorded == [(1, "create"), (2, "update"), (3, "delete")]
    assert events(Everything, row.pk)[-1].state["integer"] == 2  # as the DELETE found it
    assert list(verify_model(Everything)) == []


# --- bulk_create() -----------------------------------------------------------------


@PROPERTY
@given(values=st.lists(st.fixed_dictionaries(COVERED_VALUES), min_size=1, max_size=4))
def test_bulk_create_records_each_row_as_python_would(values: list[dict[str, Any]]) -> None:
    author = Author.objects.get_or_create(name="encoded")[0]
    made = Typed.objects.bulk_create([Typed(**_row(v, author)) for v in values])
    spec = spec_of(Typed)
    names = [f.attname for f in spec.fields]
    for obj in made:
        row = Typed.objects.filter(pk=obj.pk).values(*names).get()
        event = only_event(Typed, obj.pk)
        assert (event.action, event.version, event.changes) == ("create", 1, {})
        expected = {f.name: encode(f, row[f.attname]) for f in spec.fields}
        assert event.state == json.loads(canonical_json(expected))  # as stored
    assert list(verify_model(Typed)) == []


def test_bulk_create_is_one_statement_and_gives_django_each_key_in_order(django_assert_num_queries: Any) -> None:
    objs = [Code(code=f"k{i:03}", label=f"l{i}") for i in range(30)]
    with django_assert_num_queries(3 + statements_apart()):  # BEGIN, the INSERT and the INSERT of the events, COMMIT
        Code.objects.bulk_create(objs)
    typed = Typed.objects.bulk_create([Typed(integer=i, char=f"c{i}") for i in range(50)])
    assert [(t.pk, t.char) for t in typed] == list(Typed.objects.order_by("pk").values_list("pk", "char"))
    assert [only_event(Typed, t.pk).state["char"] for t in typed] == [f"c{i}" for i in range(50)]
    assert [only_event(Code, o.pk).state["label"] for o in objs] == [f"l{i}" for i in range(30)]
    assert list(verify_model(Code)) == list(verify_model(Typed)) == []


def test_bulk_create_ignoring_conflicts_records_the_rows_written() -> None:
    Code.objects.create(code="A", label="first")
    Code.objects.bulk_create([Code(code="A", label="x"), Code(code="B", label="y")], ignore_conflicts=True)
    assert [e.action for e in events(Code, "A")] == ["create"]
    assert only_event(Code, "B").state == {"code": "B", "label": "y"}
    Code.objects.bulk_create([Code(code="A", label="z")], ignore_conflicts=True)  # nothing written
    assert len(events(Code, "A")) == 1
    assert list(verify_model(Code)) == []


def test_a_key_used_before_continues_its_history() -> None:
    first = Code.objects.create(code="K", label="old")
    first.delete()
    Code.objects.bulk_create([Code(code="K", label="new")])
    assert [(e.version, e.action) for e in events(Code, "K")] == [(1, "create"), (2, "delete"), (3, "create")]
    assert list(verify_model(Code)) == []


def only_event(model: Any, pk: Any) -> Event:
    found = events(model, pk)
    assert len(found) == 1
    return found[0]


def test_the_statement_sets_jit_float_digits_and_sorts_for_itself_only() -> None:
    row = Typed.objects.create(floating=0.1)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL extra_float_digits = 0")  # floats cut to 15 digits: not Python's
        cursor.execute("SET LOCAL jit = on")
        Typed.objects.filter(pk=row.pk).update(floating=0.30000000000000004)
        cursor.execute(
            "SELECT current_setting('extra_float_digits'), current_setting('jit'), current_setting('enable_sort')"
        )
        assert cursor.fetchone() == ("0", "on", "on")
    assert events(Typed, row.pk)[-1].changes == {"floating": [0.1, 0.30000000000000004]}
    assert list(verify_model(Typed)) == []


def test_each_row_s_latest_event_is_looked_up_by_the_index_even_on_a_table_analyzed_small() -> None:
    """A table the planner believes empty or tiny would be scanned once per row: the scan reads the
    events the same statement inserted so far too (invisible, still read), quadratic in the rows."""
    with _unrecorded("tests.Typed"):
        Typed.objects.bulk_create([Typed(integer=i) for i in range(50)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE audit_events_event")  # empty: a sequential scan looks cheapest
    plan = _plan(lambda: Typed.objects.update(integer=F("integer") + 1))
    assert "Index Scan Backward using audit_events_row_version" in plan
    assert "Seq Scan on audit_events_event" not in plan


def test_each_value_is_encoded_once() -> None:
    """Each stage of the statement is computed once (MATERIALIZED): inlined, PostgreSQL would encode a
    value again in each expression naming it (15 calls of the JSON encoder here instead of 3, the
    update of 10,000 rows 3.6 times slower)."""
    Typed.objects.create(data={"a": 0})  # its first event is a snapshot: old, new and the whole row
    plan = _plan(lambda: Typed.objects.update(data={"a": 1}))
    assert plan.count("audit_events_json(") == 3


def _plan(write: Callable[[], Any]) -> str:
    """EXPLAIN VERBOSE of the statement ``write`` sends, which is not run."""
    captured: list[tuple[str, Any]] = []

    def capture(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if "WITH w(" not in sql:  # the settings sent apart (server-side binding)
            return execute(sql, params, many, context)
        captured.append((sql, params))
        raise _Captured

    with pytest.raises(_Captured), connection.execute_wrapper(capture):
        write()
    sql, params = captured[-1]
    statement = sql[sql.index("WITH w(") :]  # after the settings, where they go in the same round trip
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(postgresql_events.JIT_OFF)
        cursor.execute(f"EXPLAIN VERBOSE {statement}", params)
        return "\n".join(line for (line,) in cursor.fetchall())


class _Captured(Exception):
    pass


# --- the review's probes (each failed before its fix) -----------------------------------


@pytest.mark.parametrize("days", [106_751_992, -106_751_992, 999_999_999])  # 2**63 µs is 106,751,991 days
def test_a_duration_beyond_64_bits_of_microseconds(days: int) -> None:
    row = Typed.objects.create()
    assert Typed.objects.filter(pk=row.pk).update(span=datetime.timedelta(days=days)) == 1
    assert events(Typed, row.pk)[-1].changes == {"span": [None, days * 86_400 * 10**6]}
    Typed.objects.filter(pk=row.pk).delete()
    assert events(Typed, row.pk)[-1].state["span"] == days * 86_400 * 10**6
    assert list(verify_model(Typed)) == []


@pytest.mark.parametrize(("interval", "days"), [("1 year", 365), ("1 mon", 30), ("1 year 2 mons 3 days", 428)])
def test_an_interval_with_months_is_recorded_as_the_driver_reads_it(interval: str, days: int) -> None:
    row = Typed.objects.create()
    span = RawSQL(f"interval '{interval}'", [], output_field=Typed._meta.get_field("span"))
    Typed.objects.filter(pk=row.pk).update(span=span)
    assert events(Typed, row.pk)[-1].changes == {"span": [None, days * 86_400 * 10**6]}
    assert list(verify_model(Typed)) == []


def test_a_delete_of_nothing_answers_as_django() -> None:
    assert Ticket.objects.filter(title="none").delete() == (0, {})
    assert Ticket.objects.filter(pk__in=[]).delete() == (0, {})  # no statement at all


@pytest.mark.parametrize(
    ("old", "new"), [({"a": 1}, {"a": 1.0}), ({"a": 1}, {"a": True}), ([0], [False]), ({"a": 0}, {"a": -0.0})]
)
def test_json_equal_in_python_but_not_as_json_is_a_change_on_every_path(old: Any, new: Any) -> None:
    row = Typed.objects.create(data=old)
    Typed.objects.filter(pk=row.pk).update(data=new)  # the database's events
    row.refresh_from_db()
    row.data = old
    row.save()  # Python's
    expected = json.loads(canonical_json([old, new]))
    assert [e.changes["data"] for e in events(Typed, row.pk)[1:]] == [expected, expected[::-1]]
    assert list(verify_model(Typed)) == []


def test_a_decimal_nan_the_database_computes_is_refused_as_before() -> None:
    row = Typed.objects.create()
    nan = RawSQL("'NaN'::numeric", [], output_field=Typed._meta.get_field("decimal"))
    with pytest.raises(ValidationError):
        Typed.objects.filter(pk=row.pk).update(decimal=nan)
    assert Typed.objects.get(pk=row.pk).decimal == 0
    assert len(events(Typed, row.pk)) == 1


def test_an_update_of_excluded_fields_only_writes_the_rows_and_records_nothing() -> None:
    author = Author.objects.create(name="a")
    seen = datetime.datetime(2024, 1, 2, tzinfo=datetime.UTC)
    assert Author.objects.filter(pk=author.pk).update(last_seen=seen) == 1
    assert Author.objects.get(pk=author.pk).last_seen == seen
    assert Event.objects.filter(object_pk=str(author.pk), content_type__model="author").count() == 1
