"""The replay invariant, as a hypothesis state machine.

Random sequences of create / update / delete / restore on ``Everything`` (one
field of each type). After each step a moment is recorded together with what a
``SELECT`` returns then; the invariants say that for every recorded moment and
every row, ``state_at`` gives that row back, and that replaying the events
gives the live table.
"""

from __future__ import annotations

import datetime
import decimal
import ipaddress
import math
import zoneinfo
from typing import Any

import pytest
from django.db import connection, models, transaction
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from audit_events import RestoreError, restore, state_at
from audit_events.encoding import decode
from audit_events.models import Event
from audit_events.replay import recorded_state
from audit_events.verify import verify_model
from tests.helpers import spec_of, storable_uuids
from tests.models import Author, Everything

pytestmark = pytest.mark.django_db

FIELDS = [f for f in Everything._meta.concrete_fields if not f.primary_key]
ATTNAMES = [f.attname for f in Everything._meta.concrete_fields]
MAX_ROWS = 6

# --- values the databases store exactly --------------------------------------

_text = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
_zones = st.sampled_from(
    [
        datetime.UTC,
        datetime.timezone(datetime.timedelta(hours=5, minutes=45)),
        zoneinfo.ZoneInfo("Europe/Paris"),
    ]
)
_json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(_text, max_size=10)
_json = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(_text, max_size=5), inner, max_size=3),
    max_leaves=6,
)
_ips = st.ip_addresses(v=4).map(str) | st.ip_addresses(v=6).map(lambda ip: ipaddress.ip_address(ip).compressed)


def _floats() -> st.SearchStrategy[float]:
    finite = st.floats(allow_nan=False, allow_infinity=False)
    if connection.vendor == "postgresql":  # double precision keeps NaN and ±Infinity; SQLite turns NaN into NULL
        return finite | st.sampled_from([math.nan, math.inf, -math.inf])
    return finite


def field_values() -> dict[str, st.SearchStrategy[Any]]:
    return {
        "char": st.text(_text, max_size=100),
        "text": st.text(_text, max_size=300),
        "slug": st.from_regex(r"[a-z0-9_-]{0,50}", fullmatch=True),
        "email": st.emails().filter(lambda e: len(e) <= 254),
        "url": st.sampled_from(["", "https://example.com/", "http://example.org/a?b=c#d"]),
        "small": st.integers(-(2**15), 2**15 - 1),
        "integer": st.integers(-(2**31), 2**31 - 1),
        "big": st.integers(-(2**63), 2**63 - 1),
        "positive": st.integers(0, 2**31 - 1),
        "positive_small": st.integers(0, 2**15 - 1),
        "positive_big": st.integers(0, 2**63 - 1),
        "floating": _floats(),
        "decimal": st.decimals(
            min_value=-(10**8) + 1, max_value=10**8 - 1, places=4, allow_nan=False, allow_infinity=False
        ),
        "flag": st.booleans(),
        "maybe": st.none() | st.booleans(),
        "day": st.none() | st.dates(datetime.date(1000, 1, 1), datetime.date(9998, 12, 31)),
        "moment": st.none()
        | st.datetimes(
            datetime.datetime(1900, 1, 1), datetime.datetime(2200, 1, 1), timezones=_zones, allow_imaginary=False
        ),
        "clock": st.none() | st.times(),
        "span": st.none() | st.timedeltas(datetime.timedelta(days=-99_999), datetime.timedelta(days=99_999)),
        "ident": st.none() | storable_uuids(),
        "blob": st.none() | st.binary(max_size=40),
        "data": st.none() | _json,
        "ip": st.none() | _ips,
        "document": st.none() | st.sampled_from(["", "a.txt", "reports/2026/q1.pdf"]),
        "note": st.none() | st.text(_text, max_size=50),
        "author_id": st.none() | st.integers(0, 2),  # an index into the machine's live authors
    }


# --- comparing rows -----------------------------------------------------------


def normal(field: models.Field[Any, Any], value: Any) -> Any:
    """A value in a form that compares equal exactly when the database values are the same."""
    if value is None:
        return None
    if isinstance(field, models.FileField):
        return getattr(value, "name", value)
    if isinstance(field, models.BinaryField):
        return bytes(value)
    if isinstance(field, models.FloatField) and math.isnan(value):
        return "nan"
    if isinstance(field, models.DateTimeField):
        return value.astimezone(datetime.UTC)
    if isinstance(field, models.DecimalField):
        return decimal.Decimal(value).quantize(decimal.Decimal("0.0001"))
    return value


Row = dict[str, Any]


def select_rows() -> dict[int, Row]:
    """What a SELECT returns now, normalised."""
    fields = Everything._meta.concrete_fields
    return {
        values["id"]: {f.attname: normal(f, values[f.attname]) for f in fields}
        for values in Everything.objects.values(*ATTNAMES)
    }


def instance_row(instance: Everything) -> Row:
    return {f.attname: normal(f, getattr(instance, f.attname)) for f in Everything._meta.concrete_fields}


def same(actual: Row | None, expected: Row | None) -> bool:
    if actual is None or expected is None:
        return actual is expected
    return all(_same_value(actual[name], expected[name]) for name in ATTNAMES)


def differences(actual: Row | None, expected: Row | None) -> Any:
    """What differs, for assertion messages."""
    if actual is None or expected is None:
        return (actual, expected)
    return {name: (actual[name], expected[name]) for name in ATTNAMES if not _same_value(actual[name], expected[name])}


def _same_value(a: Any, b: Any) -> bool:
    return a == b and isinstance(a, bool) == isinstance(b, bool)


# --- the machine ----------------------------------------------------------------


class Replay(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.atomic = transaction.atomic()
        self.atomic.__enter__()
        self.authors = [Author.objects.create(name=f"author {i}").pk for i in range(3)]
        self.deleted_authors: dict[int, set[int]] = {}  # author pk -> rows its delete set to NULL
        self.deleted_with: dict[int, dict[int, Row]] = {}  # row pk -> the rows its last delete took, before it
        self.pks: list[int] = []  # every row ever created, alive or not
        self.seen_events = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
        self.moments: list[tuple[datetime.datetime, dict[int, Row]]] = []
        self.record()

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self.atomic.__exit__(None, None, None)

    @initialize()
    def nothing(self) -> None:
        pass

    # --- helpers ---

    def record(self) -> None:
        """Note a moment strictly after this step's events and strictly before the next step's."""
        start = timezone.now()
        while (now := timezone.now()) <= start:
            pass
        self.moments.append((now, select_rows()))
        while timezone.now() <= now:
            pass

    def live(self) -> dict[int, Row]:
        return self.moments[-1][1]

    def resolve(self, values: dict[str, Any]) -> dict[str, Any]:
        """Drawn values with the author index turned into a live author's pk."""
        resolved = dict(values)
        if resolved.get("author_id") is not None:
            live = self.live_authors()
            resolved["author_id"] = live[resolved["author_id"] % len(live)] if live else None
        return resolved

    def assign(self, instance: Everything, values: dict[str, Any]) -> None:
        for name, value in self.resolve(values).items():
            setattr(instance, name, value)

    def live_authors(self) -> list[int]:
        return [pk for pk in self.authors if pk not in self.deleted_authors]

    def regroup(self, group: dict[int, Row]) -> None:
        """The rows one delete took: each row's last delete (a group keeps every row it took)."""
        for pk in group:
            self.deleted_with[pk] = group

    def undone_with(self, pk: int) -> dict[int, Row]:
        """The rows undoing the last delete of ``pk`` writes back, as they were just before it.

        A row of that group deleted again since, by a delete of its own, is left to that
        later delete while it is deleted now. One that exists now is not left out, however
        it came back (restore at a moment, or the undo of its own later delete): it is in
        the way of the undo, which cannot recreate it."""
        group = self.deleted_with[pk]
        return {other: row for other, row in group.items() if other in self.live() or self.deleted_with[other] is group}

    def parent_gone(self, row: Row) -> bool:
        return row["author_id"] in self.deleted_authors

    def assert_unchanged(self, before: dict[int, Row], but: int | None = None) -> None:
        for pk in set(self.live()) | set(before):
            if pk != but:
                assert same(self.live().get(pk), before.get(pk)), f"pk={pk} changed"

    def event_count(self) -> int:
        return Event.objects.count()

    # --- rules ---

    @precondition(lambda self: len(self.pks) < MAX_ROWS)
    @rule(data=st.data())
    def create(self, data: st.DataObject) -> None:
        values = data.draw(st.fixed_dictionaries({}, optional=field_values()))
        instance = Everything()
        self.assign(instance, values)
        instance.save()
        self.pks.append(instance.pk)
        self.record()
        assert self.live()[instance.pk]["id"] == instance.pk

    @precondition(lambda self: bool(self.live()))
    @rule(data=st.data(), how=st.sampled_from(["save", "update_fields", "only"]))
    def update(self, data: st.DataObject, how: str) -> None:
        pk = data.draw(st.sampled_from(sorted(self.live())))
        values = data.draw(st.fixed_dictionaries({}, optional=field_values()))
        if how == "only":
            # A deferred instance: Django saves the loaded fields only.
            instance = Everything.objects.only(*values).get(pk=pk)
            self.assign(instance, values)
            instance.save()
        else:
            instance = Everything.objects.get(pk=pk)
            self.assign(instance, values)
            saved = data.draw(st.sets(st.sampled_from(sorted(values)))) if values and how == "update_fields" else None
            instance.save(update_fields=saved)
        before = self.live()[pk]
        self.record()
        if same(self.live()[pk], before):
            # A save that changes nothing records nothing.
            assert not Event.objects.filter(
                created_at__gt=self.moments[-2][0], content_type__model="everything", object_pk=str(pk)
            ).exists()

    @precondition(lambda self: bool(self.live()))
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        pk = data.draw(st.sampled_from(sorted(self.live())))
        before = self.live()
        Everything.objects.get(pk=pk).delete()
        self.record()
        self.regroup({pk: before[pk]})

    @precondition(lambda self: bool(self.live()))
    @rule(data=st.data())
    def queryset_delete(self, data: st.DataObject) -> None:
        chosen = data.draw(st.sets(st.sampled_from(sorted(self.live())), min_size=1, max_size=3))
        before = self.live()
        Everything.objects.filter(pk__in=chosen).delete()
        self.record()
        self.regroup({pk: before[pk] for pk in chosen})  # one operation: restored together

    @precondition(lambda self: bool(self.live()))
    @rule(data=st.data())
    def queryset_update(self, data: st.DataObject) -> None:
        chosen = data.draw(st.sets(st.sampled_from(sorted(self.live())), min_size=1, max_size=3))
        values = data.draw(st.fixed_dictionaries({}, optional=field_values()).filter(bool))
        Everything.objects.filter(pk__in=chosen).update(**self.resolve(values))
        self.record()

    @precondition(lambda self: bool(self.live()))
    @rule(data=st.data())
    def bulk_update(self, data: st.DataObject) -> None:
        chosen = data.draw(st.sets(st.sampled_from(sorted(self.live())), min_size=1, max_size=3))
        names = data.draw(st.sets(st.sampled_from(sorted(field_values())), min_size=1, max_size=5))
        rows = list(Everything.objects.filter(pk__in=chosen))
        for instance in rows:
            self.assign(instance, data.draw(st.fixed_dictionaries({n: field_values()[n] for n in names})))
        Everything.objects.bulk_update(rows, fields=sorted(names))
        self.record()

    @precondition(lambda self: len(self.live()) < len(self.pks))
    @rule(data=st.data())
    def restore_deleted(self, data: st.DataObject) -> None:
        pk = data.draw(st.sampled_from(sorted(set(self.pks) - set(self.live()))))
        group = self.undone_with(pk)
        if any(other in self.live() or self.parent_gone(row) for other, row in group.items()):
            before = (self.live(), self.event_count())
            with pytest.raises(RestoreError, match=r"tests\.Everything pk=\d+"):
                restore(Everything, pk)
            assert (select_rows(), self.event_count()) == before
            return
        before = self.live()
        restored = restore(Everything, pk)
        self.record()
        assert same(instance_row(restored), group[pk]), differences(instance_row(restored), group[pk])
        for other in set(before) | set(self.live()):
            expected = group.get(other, before.get(other))
            assert same(self.live().get(other), expected), (
                f"pk={other}: {differences(self.live().get(other), expected)}"
            )

    @precondition(lambda self: bool(self.pks))
    @rule(data=st.data())
    def restore_at(self, data: st.DataObject) -> None:
        pk = data.draw(st.sampled_from(self.pks))
        at, rows = data.draw(st.sampled_from(self.moments))
        before = (self.live(), self.event_count())
        if pk in rows and not self.parent_gone(rows[pk]):
            restored = restore(Everything, pk, at=at)
            self.record()
            assert same(self.live()[pk], rows[pk])
            assert same(instance_row(restored), rows[pk])
            self.assert_unchanged(before[0], but=pk)
        else:
            with pytest.raises(RestoreError, match="no longer exists" if pk in rows else "did not exist"):
                restore(Everything, pk, at=at)
            assert (select_rows(), self.event_count()) == before

    @precondition(lambda self: bool(self.live_authors()))
    @rule(data=st.data())
    def delete_author(self, data: st.DataObject) -> None:
        author = data.draw(st.sampled_from(self.live_authors()))
        before = self.live()
        Author.objects.get(pk=author).delete()
        self.record()
        nulled = {pk for pk, row in before.items() if row["author_id"] == author}
        for pk in before:  # SET_NULL: its rows lose their author, nothing else changes
            assert same(self.live().get(pk), {**before[pk], "author_id": None} if pk in nulled else before[pk])
        self.deleted_authors[author] = nulled

    @precondition(lambda self: bool(self.deleted_authors))
    @rule(data=st.data())
    def restore_author(self, data: st.DataObject) -> None:
        author = data.draw(st.sampled_from(sorted(self.deleted_authors)))
        before = self.live()
        restore(Author, author)
        self.record()
        nulled = self.deleted_authors.pop(author)
        for pk in set(before) | set(self.live()):
            expected = before.get(pk)
            if pk in nulled and expected is not None and expected["author_id"] is None:
                expected = {**expected, "author_id": author}  # re-attached where it is still NULL
            assert same(self.live().get(pk), expected), f"pk={pk}"

    @precondition(lambda self: bool(self.live()))
    @rule(data=st.data())
    def restore_a_live_row(self, data: st.DataObject) -> None:
        pk = data.draw(st.sampled_from(sorted(self.live())))
        before = (self.live(), self.event_count())
        with pytest.raises(RestoreError, match="not deleted"):
            restore(Everything, pk)
        assert (select_rows(), self.event_count()) == before

    # --- invariants ---

    @invariant()
    def state_at_every_moment(self) -> None:
        # state_at(pk, t) can only change when pk gets events: after each step, every
        # earlier moment is checked for the rows the step wrote events for, the newest
        # moment for every row, and every fifth step all of them (the sweep keeps the
        # shortcut honest).
        new_events = Event.objects.filter(id__gt=self.seen_events, content_type__model="everything")
        touched = set(new_events.values_list("object_pk", flat=True))
        self.seen_events = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
        sweep = len(self.moments) % 5 == 0
        if sweep:  # and audit_verify finds every chain intact and every row as replayed
            assert [str(finding) for finding in verify_model(Everything)] == []
        for index, (at, rows) in enumerate(self.moments):
            newest = index == len(self.moments) - 1
            for pk in self.pks:
                if not (sweep or newest or str(pk) in touched):
                    continue
                past = state_at(Everything, pk, at=at)
                expected = rows.get(pk)
                actual = None if past is None else instance_row(past)
                assert same(actual, expected), f"pk={pk} at={at.isoformat()}: {differences(actual, expected)}"

    @invariant()
    def replay_is_the_live_table(self) -> None:
        spec = spec_of(Everything)
        live = select_rows()
        assert set(live) <= set(self.pks)
        for pk in self.pks:
            state = recorded_state(spec, pk)
            replayed = None
            if state is not None:
                replayed = {f.attname: normal(f, decode(f, state[f.name])) for f in spec.fields}
            assert same(replayed, live.get(pk)), f"pk={pk}: replay vs live {differences(replayed, live.get(pk))}"


@pytest.mark.django_db
def test_replay_machine() -> None:
    run_state_machine_as_test(
        Replay,
        settings=settings(
            max_examples=30,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        ),
    )


# --- sequences the machine found, replayed step by step ---------------------------


class Script:
    """The draws of one step, in order, instead of hypothesis's: a value, or a function of the machine."""

    def __init__(self, machine: Replay, *values: Any) -> None:
        self.machine = machine
        self.values = list(values)

    def draw(self, strategy: Any, label: Any = None) -> Any:
        value = self.values.pop(0)
        return value(self.machine) if callable(value) else value


def at_moment(index: int) -> Any:
    """A draw of the machine's moment ``index``: 0 is before the first step, then one per step that wrote."""
    return lambda machine: machine.moments[index]


def replay_steps(steps: list[tuple[str, tuple[Any, ...]]]) -> None:
    """Run the rules named, each with its draws, checking the invariants after each as hypothesis does."""
    machine = Replay()
    try:
        machine.replay_is_the_live_table()
        machine.state_at_every_moment()
        for name, draws in steps:
            script = Script(machine, *draws)
            getattr(machine, name)(data=script)
            assert not script.values, f"{name} left draws unused: {script.values}"
            machine.replay_is_the_live_table()
            machine.state_at_every_moment()
    finally:
        machine.teardown()


# Rows and authors by the order the machine created them: their pks are 1, 2… only on a
# fresh table (PostgreSQL's sequences do not roll back). An author in a row's values is
# drawn as an index into the live authors, as the machine draws it.
def row(index: int) -> Any:
    return lambda machine: machine.pks[index]


def rows(*indexes: int) -> Any:
    return lambda machine: {machine.pks[index] for index in indexes}


def author(index: int) -> Any:
    return lambda machine: machine.authors[index]


# restore_deleted of the second row after its group's other member, the first, was brought back
# (restore_at), deleted on its own and that deletion undone: the first exists again, so undoing
# the deletion of the second is refused (it cannot recreate the first), as after restore_at alone.
EXISTS_AGAIN_AFTER_ITS_OWN_UNDO = [
    ("create", ({"char": "one"},)),
    ("create", ({"char": "two"},)),
    ("queryset_delete", (rows(0, 1),)),
    ("restore_at", (row(0), at_moment(2))),
    ("delete", (row(0),)),
    ("restore_deleted", (row(0),)),
    ("restore_deleted", (row(1),)),
]

# The sequence as hypothesis shrank it (seed 315634767057960635583934166840626648030, SQLite),
# with the drawn values cut to those that matter (the authors).
FOUND_ON_SQLITE = [
    ("create", ({"slug": "4x", "big": 335140396, "author_id": None},)),
    ("delete", (row(0),)),
    ("delete_author", (author(0),)),
    ("restore_author", (author(0),)),
    ("restore_deleted", (row(0),)),
    ("queryset_update", (rows(0), {"char": "", "author_id": 1})),  # the second author
    ("create", ({"char": "Ú", "author_id": 0},)),  # the first author
    ("queryset_delete", (rows(0, 1),)),
    ("delete_author", (author(1),)),
    ("restore_deleted", (row(0),)),  # refused: its author is gone
    ("restore_at", (row(1), at_moment(0))),  # refused: it did not exist then
    ("restore_at", (row(0), at_moment(1))),  # back, as created
    ("queryset_update", (rows(0), {"char": "§\t"})),
    ("restore_a_live_row", (row(0),)),
    ("queryset_delete", (rows(0),)),
    ("restore_deleted", (row(0),)),
    ("restore_author", (author(1),)),
    ("restore_deleted", (row(1),)),
]


@pytest.mark.parametrize(
    "steps", [EXISTS_AGAIN_AFTER_ITS_OWN_UNDO, FOUND_ON_SQLITE], ids=["exists-again", "found-on-sqlite"]
)
def test_replay_machine_sequences(steps: list[tuple[str, tuple[Any, ...]]]) -> None:
    replay_steps(steps)
