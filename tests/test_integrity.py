"""Integrity: the database refuses edits, each row's hash chain recomputes, verify finds and repairs drift."""

from __future__ import annotations

import contextlib
import datetime
import decimal
import hashlib
import json
import math
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command, get_commands
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_events import AppendOnlyError, RestoreError, restore, snapshot_rows, state_at
from audit_events.context import audit_context, capture_paused
from audit_events.models import Action, Event
from audit_events.protection import installed_triggers
from audit_events.verify import Kind, total_work, verify_model
from tests.helpers import at_commit, settings_with, tampering
from tests.models import Author, Code, Everything, Ticket, Unregistered

pytestmark = pytest.mark.django_db

TABLE = Event._meta.db_table
TRIGGERS = {
    "sqlite": ["audit_events_no_delete", "audit_events_no_replace", "audit_events_no_update"],
    "postgresql": ["audit_events_no_truncate", "audit_events_no_update_delete"],
    "mysql": ["audit_events_no_delete", "audit_events_no_update"],
}


def raw(sql: str, params: list[Any] | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


@contextlib.contextmanager
def triggers_dropped() -> Iterator[None]:
    """Tamper freely inside; everything (the tampering and the DROP) is rolled back on exit. The test must be
    transactional for MySQL (``tests.helpers.tampering``)."""
    with tampering():
        yield
    assert installed_triggers(connection) == TRIGGERS[connection.vendor]


def findings(model: type[Any], **kwargs: Any) -> list[tuple[str, str, Kind]]:
    return [(f.model, f.pk, f.kind) for f in verify_model(model, **kwargs)]


def event_of(author: Author, version: int) -> Event:
    return Event.objects.get(object_pk=str(author.pk), version=version, content_type__model="author")


def history_of_three() -> Author:
    """An author with versions 1 (create), 2 (name), 3 (email)."""
    author = Author.objects.create(name="Ada")
    author.name = "Ada L."
    author.save()
    author.email = f"ada{author.pk}@example.com"
    author.save()
    return author


# --- the database refuses edits ------------------------------------------


def test_the_migration_installs_the_triggers() -> None:
    assert installed_triggers(connection) == TRIGGERS[connection.vendor]


@pytest.mark.parametrize(
    "sql",
    [
        f"UPDATE {TABLE} SET action = 'update'",
        f"UPDATE {TABLE} SET hash = '0' WHERE version = 1",
        f"DELETE FROM {TABLE} WHERE version = 1",
        f"DELETE FROM {TABLE}",
    ],
)
def test_raw_update_and_delete_are_refused_by_the_database(sql: str) -> None:
    history_of_three()
    before = list(Event.objects.values_list("id", "action", "hash"))
    with pytest.raises(IntegrityError, match=f"{TABLE} is append-only"), transaction.atomic():
        raw(sql)
    assert list(Event.objects.values_list("id", "action", "hash")) == before


_COLUMNS = "content_type_id, object_pk, version, action, changes, state, created_at, operation, actor_id, context, hash"


@pytest.mark.parametrize(
    "sql",
    [
        # The same id: SQLite deletes the event, then inserts the rewritten one.
        f"REPLACE INTO {TABLE} (id, actor_repr, {_COLUMNS}) SELECT id, 'mallory', {_COLUMNS} FROM {TABLE}",
        f"INSERT OR REPLACE INTO {TABLE} (id, actor_repr, {_COLUMNS}) "
        f"SELECT id, 'mallory', {_COLUMNS} FROM {TABLE} WHERE version = 2",
        # A new id, the same row and version: the old event is deleted by the unique constraint.
        f"INSERT OR REPLACE INTO {TABLE} (actor_repr, {_COLUMNS}) SELECT 'mallory', {_COLUMNS} FROM {TABLE}",
        f"UPDATE OR REPLACE {TABLE} SET actor_repr = 'mallory'",
    ],
)
def test_sqlite_replace_cannot_rewrite_nor_delete_events(sql: str) -> None:
    """SQLite's REPLACE deletes the rows it conflicts with without firing DELETE triggers."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's REPLACE conflict resolution")
    history_of_three()
    before = list(Event.objects.values_list("id", "version", "actor_repr", "hash"))
    with pytest.raises(IntegrityError, match=f"{TABLE} is append-only"), transaction.atomic():
        raw(sql)
    assert list(Event.objects.values_list("id", "version", "actor_repr", "hash")) == before


@pytest.mark.postgres
def test_postgresql_upsert_cannot_rewrite_events() -> None:
    history_of_three()
    before = list(Event.objects.values_list("id", "version", "actor_repr", "hash"))
    with pytest.raises(IntegrityError, match=f"{TABLE} is append-only"), transaction.atomic():
        raw(
            f"INSERT INTO {TABLE} (id, actor_repr, {_COLUMNS}) SELECT id, 'mallory', {_COLUMNS} FROM {TABLE} "
            "ON CONFLICT (id) DO UPDATE SET actor_repr = EXCLUDED.actor_repr"
        )
    assert list(Event.objects.values_list("id", "version", "actor_repr", "hash")) == before


def test_erasing_the_whole_table_is_refused() -> None:
    """TRUNCATE on PostgreSQL; SQLite has none, its DELETE without WHERE is the same operation."""
    Author.objects.create(name="Ada")
    if connection.vendor == "postgresql":
        raw("SET CONSTRAINTS ALL IMMEDIATE")  # else the test's own pending FK checks refuse TRUNCATE first
        statement = f"TRUNCATE {TABLE}"
    else:
        statement = f"DELETE FROM {TABLE}"
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        raw(statement)
    assert Event.objects.count() == 1


def test_the_orm_refuses_too() -> None:
    history_of_three()
    event = Event.objects.first()
    assert event is not None
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        Event.objects.update(action="x")
    with pytest.raises(AppendOnlyError):
        Event.objects.all().delete()


@pytest.mark.django_db(transaction=True)
def test_flush_still_empties_the_table_and_keeps_it_protected() -> None:
    """Django's flush (run between transactional tests) lifts the triggers for itself only."""
    history_of_three()
    call_command("flush", interactive=False, verbosity=0)
    assert Event.objects.count() == 0
    assert installed_triggers(connection) == TRIGGERS[connection.vendor]
    Author.objects.create(name="Grace")
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        raw(f"DELETE FROM {TABLE}")
    assert Event.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_flush_of_a_test_case_whose_available_apps_leave_this_app_out() -> None:
    """A ``TransactionTestCase`` with ``available_apps`` that names contenttypes but not audit_events
    flushes with Django's own command (only those apps' commands are found then), and its
    ``TRUNCATE ... CASCADE`` (a ``DELETE`` of every referencing table on SQLite) reaches the event
    table through its foreign key to the content types: the flush must still go through."""
    history_of_three()
    apps.set_available_apps(["django.contrib.contenttypes", "tests"])  # as TransactionTestCase._pre_setup
    get_commands.cache_clear()
    try:
        assert get_commands()["flush"] == "django.core"
        call_command("flush", interactive=False, verbosity=0, allow_cascade=True, inhibit_post_migrate=True)
    finally:
        apps.unset_available_apps()
        get_commands.cache_clear()
        ContentType.objects.clear_cache()  # the flush emptied the content types too
    # MySQL: Django's flush turns foreign key checks off and cascades nothing; the events stay, untouched.
    assert Event.objects.count() == (3 if connection.vendor == "mysql" else 0)
    assert installed_triggers(connection) == TRIGGERS[connection.vendor]
    Author.objects.create(name="Grace")
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        raw(f"DELETE FROM {TABLE}")


@pytest.mark.django_db(transaction=True)
def test_a_flush_of_some_apps_erases_the_history_of_the_rows_it_empties() -> None:
    """A ``TransactionTestCase`` whose ``available_apps`` leave out this app and the content types
    flushes only its apps' tables, not the event table: the history of the rows it erased outlived
    them (a later test deleting content types failed on the events' foreign key; a row made again
    with an erased row's key would continue its history). It goes with them; other apps' stays."""
    group_spec = settings_with("auth.Group")
    with override_settings(AUDIT_EVENTS=group_spec):
        author = history_of_three()
        Code.objects.create(code="x")
        group = Group.objects.create(name="editors")
        apps.set_available_apps(["tests"])  # as TransactionTestCase._pre_setup
        get_commands.cache_clear()
        try:
            call_command("flush", interactive=False, verbosity=0, allow_cascade=True, inhibit_post_migrate=True)
        finally:
            apps.unset_available_apps()
            get_commands.cache_clear()
        assert not Author.objects.exists()
        assert list(Event.objects.values_list("content_type__model", "object_pk")) == [("group", str(group.pk))]
        assert installed_triggers(connection) == TRIGGERS[connection.vendor]
        with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
            raw(f"DELETE FROM {TABLE}")
        again = Author.objects.create(pk=author.pk, name="Grace")
        assert [e.version for e in Event.objects.filter(object_pk=str(again.pk), content_type__model="author")] == [1]


@pytest.mark.django_db(transaction=True)
def test_the_migration_is_reversible() -> None:
    try:
        call_command("migrate", "audit_events", "0001", verbosity=0)
        assert installed_triggers(connection) == []
        Author.objects.create(name="Ada")
        raw(f"UPDATE {TABLE} SET actor_repr = 'x'")  # unprotected now
        assert Event.objects.get().actor_repr == "x"
    finally:
        call_command("migrate", "audit_events", verbosity=0)
    assert installed_triggers(connection) == TRIGGERS[connection.vendor]
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        raw(f"UPDATE {TABLE} SET actor_repr = 'y'")


# --- the hash chain ------------------------------------------------------


def stable(value: Any) -> Any:
    """The two number rules of docs/integrity.rst."""
    if isinstance(value, float):
        if value == 0:
            return 0.0
        if math.isfinite(value) and abs(value) >= 1e16:
            return int(decimal.Decimal(repr(value)))
        return value
    if isinstance(value, dict):
        return {k: stable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [stable(v) for v in value]
    return value


def check_chain(events: list[dict[str, Any]], content_type: str) -> str:
    """docs/integrity.rst's recomputation, verbatim: the standard library only."""
    previous = ""
    for e in events:
        created = e["created_at"].astimezone(datetime.UTC)
        content = {
            "action": e["action"],
            "actor_id": e["actor_id"],
            "actor_repr": e["actor_repr"],
            "changes": e["changes"],
            "content_type": content_type,
            "context": e["context"],
            "created_at": created.isoformat(timespec="microseconds"),
            "object_pk": e["object_pk"],
            "operation": str(e["operation"]),
            "state": e["state"],
        }
        text = json.dumps(stable(content), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        text = re.sub("[\ud800-\udfff]", lambda m: f"\\u{ord(m.group()):04x}", text)  # lone surrogates
        expected = hashlib.sha256((previous + text).encode("utf-8")).hexdigest()
        if expected != e["hash"]:
            return f"version {e['version']} does not match"
        previous = e["hash"]
    return "ok"


def test_the_hash_chain_recomputes_from_the_documented_format() -> None:
    author = history_of_three()
    pk = author.pk
    with audit_context(actor="Grace", reason='r\u00e9sum\u00e9 "quoted"\n'):
        author.delete()
    events = list(Event.objects.filter(object_pk=str(pk), content_type__model="author").order_by("version").values())
    assert [e["action"] for e in events] == ["create", "update", "update", "delete"]
    assert check_chain(events, "tests.author") == "ok"
    row = Everything.objects.create(floating=1e16, data={"n": [-0.0, 2.5e300, 0.1]})
    row.floating = -0.0
    row.save()
    events = list(Event.objects.filter(object_pk=str(row.pk), content_type__model="everything").values())
    assert len(events) == 2
    assert check_chain(events, "tests.everything") == "ok"
    events[1]["actor_repr"] = "forged"
    assert check_chain(events, "tests.everything") == "version 2 does not match"
    if connection.vendor == "sqlite":  # PostgreSQL's jsonb refuses lone surrogates
        row = Everything.objects.create(data={"\udc00": "a\ud800"})
        events = list(Event.objects.filter(object_pk=str(row.pk), content_type__model="everything").values())
        assert check_chain(events, "tests.everything") == "ok"


# PostgreSQL text and jsonb refuse NUL; surrogates are not text at all.
TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)


@settings(deadline=None, max_examples=150)
@given(
    action=st.sampled_from(Action.values),
    object_pk=TEXT,
    label=TEXT,
    changes=st.dictionaries(TEXT, st.lists(JSON_VALUES, min_size=2, max_size=2), max_size=4),
    actor=st.none() | TEXT,
    extra=st.dictionaries(TEXT, JSON_VALUES, max_size=3),
    moment=st.datetimes(timezones=st.sampled_from([datetime.UTC, datetime.timezone(-datetime.timedelta(hours=7))])),
)
def test_the_content_head_written_is_the_hashed_content_up_to_its_state(
    action: str, object_pk: str, label: str, changes: dict[str, Any], actor: str | None,
    extra: dict[str, Any], moment: datetime.datetime,
) -> None:  # fmt: skip
    """The INSERT hashes a head built member by member: it must be hash_content's text, to the byte."""
    from audit_events.hashing import hash_content
    from audit_events.journal import Author, Draft, _record

    draft = Draft(1, label, object_pk, action, changes=changes, created_at=moment)
    with audit_context(actor=actor, extra=extra):
        author = Author.now()
        record = _record(draft, author, connection)
    # An author named by the caller (audit_import: the peer's actor and comment) writes the same head.
    given = Author.given(author.actor_id, author.actor_repr, json.loads(author.context))
    assert _record(draft, given, connection) == record
    expected = hash_content(
        content_type=label, object_pk=object_pk, action=action, changes=changes, state=None,
        created_at=moment, operation=draft.operation, actor_id=author.actor_id, actor_repr=author.actor_repr,
        context=json.loads(author.context),
    )  # fmt: skip
    assert record["content_head"] + "null}" == expected
    # Stored as PostgreSQL's jsonb would give them back, on every backend (the two number rules).
    assert json.loads(record["changes"]) == stable(changes)


@pytest.mark.parametrize("number", [1e16, -2.5e17, 1.5e300, -0.0, 0.1, 1.0, 1e-7, 9007199254740993.0])
def test_every_field_type_and_awkward_floats_verify_clean(number: float) -> None:
    """PostgreSQL's jsonb gives 1e16 back as 10000000000000000: the hash and the replay must not mind."""
    row = Everything.objects.create(
        floating=number,
        data={"x": number, "\u00e9": [1, "\u00fc", None]},
        decimal=decimal.Decimal("1.5"),
        moment=datetime.datetime(2020, 1, 1, 12, 30, 0, 123456, tzinfo=datetime.UTC),
        blob=b"\x00\xff",
        span=datetime.timedelta(days=1, microseconds=1),
        ident=uuid.uuid4(),
        char="\u65e5\u672c",
        day=datetime.date(2020, 2, 29),
    )
    row.floating = number * 2
    row.save()
    assert findings(Everything) == []


# --- verify: clean, tampered, gap ----------------------------------------


def test_an_honest_history_verifies_clean() -> None:
    author = history_of_three()
    pk = author.pk
    author.delete()
    restore(Author, pk)
    Author.objects.create(name="Grace").delete()
    Code.objects.create(code="a/b", label="x")
    Ticket.objects.create(title="t").delete()
    for model in (Author, Code, Ticket):
        assert findings(model) == []


@pytest.mark.django_db(transaction=True)  # MySQL: DROP TRIGGER commits (tests.helpers.tampering)
def test_a_tampered_event_is_named() -> None:
    author = history_of_three()
    other = history_of_three()
    with triggers_dropped():
        raw(f"UPDATE {TABLE} SET changes = %s WHERE id = %s", ['{"name": ["Ada", "Eve"]}', event_of(author, 2).pk])
        found = list(verify_model(Author))
        assert [(f.pk, f.kind) for f in found if f.kind is Kind.TAMPERED] == [(str(author.pk), Kind.TAMPERED)]
        assert "version 2" in found[0].detail
        assert str(found[0]).startswith(f"tests.Author pk={author.pk} tampered: version 2")
        assert all(f.pk != str(other.pk) for f in found)
    assert findings(Author) == []


@pytest.mark.django_db(transaction=True)  # MySQL: DROP TRIGGER commits (tests.helpers.tampering)
def test_a_rehashed_event_breaks_the_next_link() -> None:
    """An attacker who recomputes the altered event's own hash is caught by the next event."""
    author = history_of_three()
    second = event_of(author, 2)
    with triggers_dropped():
        raw(f"UPDATE {TABLE} SET actor_repr = 'someone else' WHERE id = %s", [second.pk])
        second.actor_repr = "someone else"
        from audit_events.hashing import event_hash_content

        rehashed = hashlib.sha256((event_of(author, 1).hash + event_hash_content(second)).encode()).hexdigest()
        raw(f"UPDATE {TABLE} SET hash = %s WHERE id = %s", [rehashed, second.pk])
        found = list(verify_model(Author))
        assert [(f.kind, f.detail.split(" (")[0]) for f in found] == [(Kind.TAMPERED, "version 3")]


@pytest.mark.django_db(transaction=True)  # MySQL: DROP TRIGGER commits (tests.helpers.tampering)
def test_a_deleted_event_is_a_gap() -> None:
    author = history_of_three()
    author.name = "Ada King"
    author.save()
    with triggers_dropped():
        raw(f"DELETE FROM {TABLE} WHERE id = %s", [event_of(author, 2).pk])
        found = list(verify_model(Author))
        assert [(f.pk, f.kind) for f in found] == [(str(author.pk), Kind.GAP)]
        assert "version 2 is missing" in found[0].detail


@pytest.mark.django_db(transaction=True)  # MySQL: DROP TRIGGER commits (tests.helpers.tampering)
def test_a_deleted_first_event_is_a_gap_too() -> None:
    author = history_of_three()
    with triggers_dropped():
        raw(f"DELETE FROM {TABLE} WHERE id = %s", [event_of(author, 1).pk])
        # Replay is still right (version 3 carries no state, but nothing before it is left to fold).
        kinds = [f.kind for f in verify_model(Author)]
        assert kinds[0] is Kind.GAP
        assert Kind.TAMPERED not in kinds


# --- verify: drift and repair --------------------------------------------


def test_a_change_made_by_raw_sql_is_drift_then_repaired() -> None:
    author = history_of_three()
    raw(f"UPDATE {Author._meta.db_table} SET name = 'Mallory' WHERE id = %s", [author.pk])
    found = list(verify_model(Author))
    assert [(f.pk, f.kind, f.repaired) for f in found] == [(str(author.pk), Kind.DRIFT, "")]
    assert found[0].detail == "name: recorded 'Ada L.', live 'Mallory'"
    assert Event.objects.filter(action=Action.SYNC).count() == 0  # finding is not repairing

    repaired = list(verify_model(Author, repair=True))
    assert [(f.kind, f.repaired) for f in repaired] == [(Kind.DRIFT, "sync")]
    sync = Event.objects.get(action=Action.SYNC)
    assert sync.changes == {"name": ["Ada L.", "Mallory"]}
    assert sync.state is not None
    assert sync.state["name"] == "Mallory"
    assert sync.version == 4
    assert sync.context["reason"].startswith("audit_verify --repair")
    assert findings(Author) == []
    then = state_at(Author, author.pk)
    assert then is not None
    assert then.name == "Mallory"


def test_a_row_deleted_by_raw_sql_is_drift_repaired_by_a_delete_event() -> None:
    author = history_of_three()
    raw(f"DELETE FROM {Author._meta.db_table} WHERE id = %s", [author.pk])
    found = list(verify_model(Author, repair=True))
    assert [(f.kind, f.repaired) for f in found] == [(Kind.DRIFT, "delete")]
    assert "gone from the table" in found[0].detail
    assert findings(Author) == []
    # The repair's delete can be undone (a raw delete left the instance its pk).
    assert restore(Author, author.pk).email == f"ada{author.pk}@example.com"


def test_a_row_with_no_event_is_drift_repaired_by_a_full_state() -> None:
    with capture_paused():
        ghost = Author.objects.create(name="Ghost")
    found = list(verify_model(Author))
    assert [(f.pk, f.kind) for f in found] == [(str(ghost.pk), Kind.DRIFT)]
    assert "no events" in found[0].detail
    list(verify_model(Author, repair=True))
    event = Event.objects.get(object_pk=str(ghost.pk))
    assert (event.action, event.version, event.state["name"]) == (Action.SYNC, 1, "Ghost")  # type: ignore[index]
    assert findings(Author) == []


@pytest.mark.django_db(transaction=True)  # MySQL: DROP TRIGGER commits (tests.helpers.tampering)
def test_repair_never_touches_a_tampered_row() -> None:
    author = history_of_three()
    with triggers_dropped():
        raw(f"UPDATE {TABLE} SET actor_repr = 'x' WHERE id = %s", [event_of(author, 1).pk])
        raw(f"UPDATE {Author._meta.db_table} SET name = 'Mallory' WHERE id = %s", [author.pk])
        count = Event.objects.count()
        found = list(verify_model(Author, repair=True))
        assert sorted((f.kind.value, f.repaired) for f in found) == [("drift", ""), ("tampered", "")]
        assert Event.objects.count() == count


def test_verify_streams_in_batches_across_rows_and_chains() -> None:
    """Batches smaller than one row's history: a chain split across batches still verifies."""
    authors = [history_of_three() for _ in range(4)]
    for _ in range(3):
        authors[1].name += "!"
        authors[1].save()
    done: list[int] = []
    assert findings(Author, batch_size=2) == []
    list(verify_model(Author, batch_size=2, progress=done.append))
    assert max(done) <= 2
    assert sum(done) == total_work(Author) == Event.objects.filter(content_type__model="author").count() + 4
    raw(f"UPDATE {Author._meta.db_table} SET name = 'x' WHERE id = %s", [authors[3].pk])
    assert findings(Author, batch_size=2) == [("tests.Author", str(authors[3].pk), Kind.DRIFT)]


def queries_of(function: Any) -> int:
    at_commit()  # the events of the histories just made: not the work measured
    with CaptureQueriesContext(connection) as queries:
        function()
    return len(queries)


def test_verify_and_snapshot_cost_queries_per_batch_not_per_row() -> None:
    """Memory and queries follow the batch, never the table: 2 rows or 30 cost the same."""
    ContentType.objects.clear_cache()
    few = [history_of_three() for _ in range(2)]
    with capture_paused():
        Author.objects.bulk_create([Author(name="silent") for _ in range(2)])
    assert snapshot_rows(Author) == 2
    few_verify = queries_of(lambda: list(verify_model(Author)))
    with capture_paused():
        Author.objects.bulk_create([Author(name="silent") for _ in range(2)])
    few_snapshot = queries_of(lambda: snapshot_rows(Author))
    many = [history_of_three() for _ in range(28)]
    with capture_paused():
        Author.objects.bulk_create([Author(name="silent") for _ in range(30)])
    assert queries_of(lambda: snapshot_rows(Author)) == few_snapshot
    assert queries_of(lambda: list(verify_model(Author))) == few_verify
    assert len(few) + len(many) == 30


def test_verify_since_checks_only_rows_written_since() -> None:
    old = history_of_three()
    cutoff = timezone.now()
    while timezone.now() <= cutoff:
        pass
    recent = history_of_three()
    raw(f"UPDATE {Author._meta.db_table} SET name = 'x' WHERE id IN (%s, %s)", [old.pk, recent.pk])
    assert findings(Author, since=cutoff) == [("tests.Author", str(recent.pk), Kind.DRIFT)]
    assert len(findings(Author)) == 2


def test_verify_refuses_an_unregistered_model() -> None:
    with pytest.raises(LookupError, match=r"tests\.Unregistered is not registered"):
        list(verify_model(Unregistered))


# --- snapshot_rows ----------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "make"), [(Author, lambda i: {"name": f"a{i}"}), (Code, lambda i: {"code": f"c{i}"})]
)
def test_snapshot_rows_records_rows_without_events_once(model: Any, make: Any) -> None:
    with capture_paused():
        silent = [model.objects.create(**make(i)) for i in range(5)]
    recorded = model.objects.create(**make(99))
    assert snapshot_rows(model, batch_size=2) == 5
    snapshots = Event.objects.filter(action=Action.SNAPSHOT).order_by("object_pk")
    assert sorted(e.object_pk for e in snapshots) == sorted(str(row.pk) for row in silent)
    assert all(e.version == 1 and e.state is not None for e in snapshots)
    assert Event.objects.filter(object_pk=str(recorded.pk)).count() == 1  # untouched
    assert snapshot_rows(model, batch_size=2) == 0  # idempotent
    assert snapshot_rows(model) == 0
    assert findings(model) == []
    again = state_at(model, silent[0].pk)
    assert again is not None
    assert again.pk == silent[0].pk


def test_snapshot_rows_refuses_an_unregistered_model() -> None:
    with pytest.raises(RestoreError, match="not registered"):
        snapshot_rows(Unregistered)


def test_snapshot_rows_is_public() -> None:
    import audit_events

    assert "snapshot_rows" in audit_events.__all__
    assert audit_events.snapshot_rows is snapshot_rows
