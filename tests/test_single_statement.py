"""A save, create or delete in autocommit mode: one statement writes the row and its event (PostgreSQL)."""

from __future__ import annotations

import datetime
import decimal
import json
import threading
import uuid
from typing import Any

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction
from django.db.models import F, signals
from django.test.utils import CaptureQueriesContext, override_settings
from hypothesis import given
from hypothesis import strategies as st

from audit_events.encoding import canonical_json, decode, encode
from audit_events.models import Event
from audit_events.recording import diff
from audit_events.registry import spec_for
from audit_events.replay import recorded_state
from audit_events.verify import verify_model
from tests.helpers import BASE
from tests.models import Author, Review, Typed
from tests.test_concurrency import Worker, run_blocked_pair
from tests.test_encoding import PROPERTY, VALUES

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def content_types() -> None:
    for model in (Author, Review, Typed):
        ContentType.objects.get_for_model(model)


def statements(work: Any) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        work()
    return [q["sql"] for q in captured.captured_queries]


def alone(work: Any) -> bool:
    """Whether ``work`` was one statement that wrote its event, no transaction around it."""
    sent = statements(work)
    return len(sent) == 1 and sent[0].startswith("WITH w(")


def events(model: type[Any], pk: Any) -> list[Event]:
    return list(Event.objects.filter(content_type__model=model._meta.model_name, object_pk=str(pk)).order_by("version"))


def assert_recorded(model: type[Any], pk: Any) -> None:
    """Versions 1..n, hashes as Python computes them (audit_verify), replay equal to the live row."""
    found = events(model, pk)
    assert [e.version for e in found] == list(range(1, len(found) + 1))
    assert [str(finding) for finding in verify_model(model)] == []
    spec = spec_for(model)
    assert spec is not None
    live = model.objects.filter(pk=pk).values(*(f.attname for f in spec.fields)).first()
    state = recorded_state(spec, pk)
    if live is None:
        assert found[-1].action == "delete"
        return
    assert state is not None
    live = {name: bytes(v) if isinstance(v, memoryview) else v for name, v in live.items()}
    assert {f.attname: decode(f, state[f.name]) for f in spec.fields} == live


def typed(**fields: Any) -> Typed:
    values = {
        "char": "é'%s",
        "text": 'quote " and \\ backslash',
        "small": -3,
        "big": 2**62,
        "floating": 0.1,
        "decimal": decimal.Decimal("12.3400"),
        "flag": True,
        "day": datetime.date(2024, 2, 29),
        "moment": datetime.datetime(2024, 1, 2, 3, 4, 5, 600, tzinfo=datetime.UTC),
        "clock": datetime.time(23, 59, 58, 1),
        "span": datetime.timedelta(days=2, microseconds=5),
        "ident": uuid.uuid4(),
        "blob": b"\x00\xffbytes",
        "data": {"b": [1, 2.5, None, True], "a": "x"},
        "document": "files/a.txt",
        **fields,
    }
    return Typed(**values)


# Every field but the binary one, whose value Django 5.2 compiles itself (its placeholder): a save writing
# it goes the usual way there (Django 6 gives BinaryField no placeholder of its own: alone too).
FIELDS = [f.name for f in Typed._meta.concrete_fields if f.name not in ("id", "blob")]
BINARY_ALONE = not hasattr(Typed._meta.get_field("blob"), "get_placeholder")


def test_every_write_of_a_model_of_every_encoded_type_is_one_statement_recorded_as_python_would() -> None:
    row = typed()
    assert alone(row.save)
    assert events(Typed, row.pk)[0].action == "create"
    row.char, row.floating, row.data = "changed", 2.0, {"a": [1, {"z": 1.5}]}
    assert alone(lambda: row.save(update_fields=FIELDS))
    row.span = datetime.timedelta(0)
    assert alone(lambda: row.save(update_fields=["span"]))
    assert alone(lambda: row.save(update_fields=FIELDS))  # nothing changed: no event
    assert [e.action for e in events(Typed, row.pk)] == ["create", "update", "update"]
    assert events(Typed, row.pk)[1].changes["char"] == ["é'%s", "changed"]
    row.blob = b"other"
    assert alone(row.save) is BINARY_ALONE
    assert_recorded(Typed, row.pk)
    pk = row.pk
    assert alone(row.delete)
    assert [e.action for e in events(Typed, pk)][-1] == "delete"
    assert_recorded(Typed, pk)


def test_values_equal_in_sql_but_not_as_json_are_a_change() -> None:
    """The statement encodes a written field only where its old and new values differ (``same``): JSON
    ``1`` and ``1.0`` are equal ``jsonb`` but not the same JSON; an equal decimal or time is one text."""
    row = typed(data={"a": 1})
    row.save()
    row.data = {"a": 1.0}
    assert alone(lambda: row.save(update_fields=["data"]))
    row.decimal, row.moment = (
        decimal.Decimal("12.34"),
        row.moment.astimezone(datetime.timezone(datetime.timedelta(hours=2))),
    )
    assert alone(lambda: row.save(update_fields=["decimal", "moment"]))  # the same values: no event
    row.text = row.text.upper()
    assert alone(lambda: row.save(update_fields=["text"]))
    assert [e.changes for e in events(Typed, row.pk)][1:] == [
        {"data": [{"a": 1}, {"a": 1.0}]},
        {"text": ['quote " and \\ backslash', 'QUOTE " AND \\ BACKSLASH']},
    ]
    assert_recorded(Typed, row.pk)


def test_a_snapshot_due_is_written_by_the_statement() -> None:
    author = Author.objects.create(name="a")
    with override_settings(AUDIT_EVENTS={**BASE, "SNAPSHOT_EVERY": 3}):
        for i in range(5):
            author.name = f"name {i}"
            assert alone(author.save)
    found = events(Author, author.pk)
    assert [e.version for e in found if e.state is not None] == [1, 3, 6]
    assert found[2].state == {"id": author.pk, "name": "name 1", "email": None}
    assert found[2].changes == {"name": ["name 0", "name 1"]}
    assert_recorded(Author, author.pk)


def test_a_value_the_statement_cannot_encode_is_saved_the_usual_way() -> None:
    row = typed()
    row.save()
    row.floating = 1e20  # beyond what the SQL writes exactly: the statement fails, nothing is written
    sent = statements(lambda: row.save(update_fields=["floating"]))
    assert sent[0].startswith("WITH w(")
    assert (sent[1], sent[-1]) == ("BEGIN", "COMMIT")
    assert events(Typed, row.pk)[-1].changes == {"floating": [0.1, 1e20]}
    row.char = "then"  # the old value cannot be encoded either, in the snapshot the statement would write
    with override_settings(AUDIT_EVENTS={**BASE, "SNAPSHOT_EVERY": 3}):
        assert not alone(lambda: row.save(update_fields=["char"]))
    row.char = "and then"  # no snapshot due: the old float is not written
    assert alone(lambda: row.save(update_fields=["char"]))
    assert_recorded(Typed, row.pk)
    pk = row.pk
    assert not alone(row.delete)
    assert events(Typed, pk)[-1].state["floating"] == 1e20
    assert_recorded(Typed, pk)
    created = typed(floating=-1e30)
    assert not alone(created.save)
    assert_recorded(Typed, created.pk)


def test_a_session_writing_floats_otherwise_saves_the_usual_way() -> None:
    row = typed()
    row.save()
    with connection.cursor() as cursor:
        cursor.execute("SET extra_float_digits = 0")
    try:
        row.floating = 0.3
        assert not alone(lambda: row.save(update_fields=["floating"]))
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET extra_float_digits = 1")
    assert events(Typed, row.pk)[-1].changes == {"floating": [0.1, 0.3]}
    assert_recorded(Typed, row.pk)


def test_writes_the_statement_cannot_make_go_the_usual_way() -> None:
    author = Author.objects.create(name="a")
    author.name = F("name")  # Django compiles the expression
    assert not alone(author.save)
    author.refresh_from_db()
    with transaction.atomic():  # inside a transaction: as before
        author.name = "in a transaction"
        assert not alone(author.save)
    pk = author.pk
    assert not alone(author.delete)  # its books would cascade: Django's Collector
    assert [e.action for e in events(Author, pk)] == ["create", "update", "delete"]


def test_another_receiver_keeps_the_signals_and_the_transaction() -> None:
    seen: list[str] = []

    def receiver(sender: Any, instance: Any, **kwargs: Any) -> None:
        seen.append(type(instance).__name__)

    author = Author.objects.create(name="a")
    review = Review.objects.create(book=author.books.create(title="t"))
    for signal in (signals.post_save, signals.pre_delete):
        signal.connect(receiver, sender=Review)
    try:
        review.stars = 5
        assert not alone(review.save)
        assert not alone(review.delete)
    finally:
        signals.post_save.disconnect(receiver, sender=Review)
        signals.pre_delete.disconnect(receiver, sender=Review)
    assert seen == ["Review", "Review"]
    assert [e.action for e in Event.objects.filter(content_type__model="review")] == ["create", "update", "delete"]


def test_a_writer_that_waited_for_the_row_is_recorded_after_the_one_it_waited_for() -> None:
    """The second writer's statement waits for the first's lock; the first commits version 2, which
    the statement's snapshot cannot see: the statement fails on the version, writes nothing, and the
    save goes the usual way. Versions gap-free, the diff from the first writer's values."""
    author = Author.objects.create(name="orig")

    def first() -> None:
        mine = Author.objects.get(pk=author.pk)
        mine.name = "first"
        mine.save()

    def second() -> None:
        assert connection.get_autocommit()
        mine = Author.objects.get(pk=author.pk)
        mine.name = "second"
        mine.save()

    run_blocked_pair(first, second)
    found = events(Author, author.pk)
    assert [(e.version, e.changes) for e in found] == [
        (1, {}),
        (2, {"name": ["orig", "first"]}),
        (3, {"name": ["first", "second"]}),
    ]
    assert_chain_intact_of(Author, found)


def assert_chain_intact_of(model: type[Any], found: list[Event]) -> None:
    import hashlib

    from audit_events.hashing import event_hash_content

    previous = ""
    for event in found:
        assert event.hash == hashlib.sha256((previous + event_hash_content(event)).encode()).hexdigest()
        previous = event.hash
    assert [str(finding) for finding in verify_model(model)] == []


def test_two_writers_in_autocommit_on_one_row_leave_a_gap_free_chain() -> None:
    review = Review.objects.create(book=Author.objects.create(name="a").books.create(title="t"))
    start = threading.Barrier(2)

    def writer(stars: int) -> None:
        start.wait(10)
        mine = Review.objects.get(pk=review.pk)
        for i in range(40):
            mine.stars = stars * 1000 + i
            mine.save(update_fields=["stars"])

    workers = [Worker(lambda s=s: writer(s)) for s in (1, 2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.finish()
    found = events(Review, review.pk)
    assert [e.version for e in found] == list(range(1, 82))
    value = found[0].state["stars"]
    for event in found[1:]:  # each change starts where the one before ended
        assert event.changes["stars"][0] == value
        value = event.changes["stars"][1]
    assert_recorded(Review, review.pk)
    assert_chain_intact_of(Review, found)


def test_a_row_written_alone_then_deleted_in_a_transaction_by_another_writer() -> None:
    review = Review.objects.create(book=Author.objects.create(name="a").books.create(title="t"))

    def first() -> None:
        Review.objects.get(pk=review.pk).delete()

    def second() -> None:
        mine = Review.objects.get(pk=review.pk)
        assert mine.delete() == (0, {"tests.Review": 0})  # gone once it had the lock: nothing recorded

    run_blocked_pair(first, second)
    assert [e.action for e in events(Review, review.pk)] == ["create", "delete"]


TYPED = {f.name: f for f in Typed._meta.concrete_fields if f.name != "id"}
TYPED_VALUES = {name: VALUES[name] for name in sorted(TYPED) if name in VALUES}


@PROPERTY
@given(old=st.fixed_dictionaries(TYPED_VALUES), new=st.fixed_dictionaries(TYPED_VALUES))
def test_a_create_save_and_delete_alone_record_what_python_would(old: dict[str, Any], new: dict[str, Any]) -> None:
    """Random values of every encoded type: the events the statements write (or, for a value their SQL
    cannot write, the usual way's) are what Python encodes, hashes ``audit_verify`` recomputes."""
    author = Author.objects.get_or_create(name="encoded")[0]
    spec = spec_for(Typed)
    assert spec is not None
    row = Typed(**{**old, "author": author if old["author"] else None})
    row.save()
    before = Typed.objects.filter(pk=row.pk).values(*(f.attname for f in spec.fields)).get()
    for name, value in new.items():
        setattr(row, name, author if name == "author" and value else None if name == "author" else value)
    row.save(update_fields=[name for name in TYPED if name != "blob"])
    after = Typed.objects.filter(pk=row.pk).values(*(f.attname for f in spec.fields)).get()
    expected = diff(
        {f.name: encode(f, before[f.attname]) for f in spec.fields},
        {f.name: encode(f, after[f.attname]) for f in spec.fields},
    )
    recorded = events(Typed, row.pk)
    assert recorded[0].state == json.loads(canonical_json({f.name: encode(f, before[f.attname]) for f in spec.fields}))
    assert [e.changes for e in recorded[1:]] == ([json.loads(canonical_json(expected))] if expected else [])
    pk = row.pk
    row.delete()
    assert events(Typed, pk)[-1].action == "delete"
    assert list(verify_model(Typed)) == []


# --- the review's probes (each failed before its fix) -----------------------------------


def test_use_tz_switched_off_after_a_write_alone_records_what_the_usual_way_records() -> None:
    """What a model's statement may write is decided again when USE_TZ changes: a naive time has no SQL
    encoding here (Python's), and one compiled for aware times would write another text."""
    first = Typed.objects.create(moment=datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC))
    first.save()
    naive = datetime.datetime(2024, 1, 2, 3, 4, 5)
    with override_settings(USE_TZ=False):
        row = Typed.objects.create(moment=naive)
        row.char = "changed"
        row.save()
        row_pk = row.pk
        row.delete()
        found = events(Typed, row_pk)
        assert [(e.version, e.action) for e in found] == [(1, "create"), (2, "update"), (3, "delete")]
        assert found[0].state["moment"] == found[2].state["moment"] == "2024-01-02T03:04:05"
        assert found[1].changes == {"char": ["", "changed"]}


def test_a_save_alone_of_excluded_fields_only_writes_the_row_and_records_nothing() -> None:
    author = Author.objects.create(name="a")
    seen = datetime.datetime(2024, 1, 2, tzinfo=datetime.UTC)
    author.last_seen = seen
    author.save(update_fields=["last_seen"])
    assert Author.objects.get(pk=author.pk).last_seen == seen
    assert [e.action for e in events(Author, author.pk)] == ["create"]
