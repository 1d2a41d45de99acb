"""Lossless encoding: encode -> JSON column in the database -> decode gives the value back.

Every concrete field type Django ships is held by one field of ``Everything``.
Saving a row makes capture write its ``create`` event, whose ``state`` is the
encoded row in the real ``Event.state`` JSON column; the property reads both
back from the database (SQLite, or PostgreSQL with ``TEST_DB=postgres``).
"""

from __future__ import annotations

import datetime
import decimal
import ipaddress
import math
import uuid
import zoneinfo
from typing import Any

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import DataError, IntegrityError, ProgrammingError, connection, models, transaction
from django.db.models.fields.files import FieldFile
from django.test.utils import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit_events.encoding import decode, encode
from audit_events.models import Event
from tests.helpers import BASE, storable_uuids
from tests.models import Author, Everything

pytestmark = pytest.mark.django_db

FIELDS = {f.name: f for f in Everything._meta.concrete_fields}
PROPERTY = settings(
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# PostgreSQL text and jsonb refuse NUL; surrogates are not text at all.
text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)
ZONES = [
    datetime.UTC,
    datetime.timezone(datetime.timedelta(hours=5, minutes=45)),
    datetime.timezone(-datetime.timedelta(hours=3, minutes=30)),
    zoneinfo.ZoneInfo("Europe/Paris"),
    zoneinfo.ZoneInfo("Pacific/Kiritimati"),
]
SPAN = datetime.timedelta(days=10**5)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    # jsonb turns 1e16 and above into integers: keep floats where JSON text is exact.
    | st.floats(min_value=-1e15, max_value=1e15, allow_nan=False)
    | text
)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3), max_leaves=8
)


def nullable(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


def bounded(bits: int, signed: bool = True) -> st.SearchStrategy[int]:
    if signed:
        return st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return st.integers(0, 2 ** (bits - 1) - 1)


VALUES: dict[str, st.SearchStrategy[Any]] = {
    "char": text,
    "text": st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=300),
    "slug": st.from_regex(r"[-a-zA-Z0-9_]{0,50}", fullmatch=True),
    "email": st.emails().filter(lambda e: len(e) <= 254),
    "url": text,
    "small": bounded(16),
    "integer": bounded(32),
    "big": bounded(64),
    "positive": bounded(32, signed=False),
    "positive_small": bounded(16, signed=False),
    "positive_big": bounded(64, signed=False),
    "floating": st.floats(allow_nan=False, allow_infinity=False),
    # max_digits=12, decimal_places=4; fewer places too (the database pads them).
    "decimal": st.integers(0, 4).flatmap(
        lambda places: st.decimals(
            min_value=-(10**8) + 1, max_value=10**8 - 1, places=places, allow_nan=False, allow_infinity=False
        )
    ),
    "flag": st.booleans(),
    "maybe": nullable(st.booleans()),
    "day": nullable(st.dates()),
    "moment": nullable(
        st.datetimes(
            min_value=datetime.datetime(2, 1, 1),
            max_value=datetime.datetime(9998, 12, 31),
            timezones=st.sampled_from(ZONES),
            allow_imaginary=False,
        )
    ),
    "clock": nullable(st.times()),
    # SQLite stores a duration as 64-bit microseconds.
    "span": nullable(st.timedeltas(min_value=-SPAN, max_value=SPAN)),
    "ident": nullable(storable_uuids()),
    "blob": nullable(st.binary(max_size=64)),
    "data": nullable(json_values),
    "ip": nullable(st.ip_addresses().map(str)),
    "document": nullable(st.from_regex(r"[a-z0-9_]{1,20}/[a-z0-9_]{1,20}\.(txt|pdf|png)", fullmatch=True)),
    "note": nullable(text.map(lambda s: s[:50])),
    "author": st.booleans(),  # True: an existing author (a foreign key is encoded as its pk)
}
assert set(VALUES) == set(FIELDS) - {"id"}, "every field of Everything needs a strategy"


def plain(value: Any) -> Any:
    """What a field value means, whatever Python object holds it (a FieldFile, a memoryview)."""
    if isinstance(value, FieldFile):
        return value.name or ""  # Django writes a FieldFile without a name as ""
    if isinstance(value, memoryview):
        return bytes(value)
    return value


def same(field: models.Field[Any, Any], a: Any, b: Any) -> bool:
    a, b = plain(a), plain(b)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(field, models.DecimalField) and a is not None and b is not None:
        return bool(a == b)
    if isinstance(field, models.GenericIPAddressField) and a is not None and b is not None:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)  # "::ffff:0:0" is "::ffff:0.0.0.0"
    if isinstance(field, models.JSONField) or a is None or b is None:
        return bool(a == b)
    if isinstance(a, datetime.datetime) and isinstance(b, datetime.datetime) and a.tzinfo and b.tzinfo:
        # PEP 495: a time in a DST fold (02:00 on a night clocks go back) never equals
        # a time of another zone, even the same instant: compare the instants.
        return a.astimezone(datetime.UTC) == b.astimezone(datetime.UTC)
    return type(a) is type(b) and bool(a == b)


@pytest.fixture
def author(db: None) -> Author:
    return Author.objects.create(name="encoded")


def event_state(row: models.Model) -> dict[str, Any]:
    ct = ContentType.objects.get_for_model(row)
    event = Event.objects.get(content_type=ct, object_pk=str(row.pk), version=1)
    assert event.action == "create"
    assert isinstance(event.state, dict)
    return event.state


@PROPERTY
@given(values=st.fixed_dictionaries(VALUES))
def test_every_field_type_round_trips_through_the_event_json_column(author: Author, values: dict[str, Any]) -> None:
    kwargs = dict(values)
    kwargs["author"] = author if values["author"] else None
    original = Everything.objects.create(**kwargs)
    stored = Everything.objects.get(pk=original.pk)  # what the database really holds
    state = event_state(original)  # the encoded row, read back from Event.state

    for name, field in FIELDS.items():
        given_value = getattr(original, field.attname)
        db_value = getattr(stored, field.attname)
        decoded = decode(field, state[name])
        assert same(field, decoded, db_value), f"{name}: {decoded!r} decoded, {db_value!r} in the database"
        assert same(field, decode(field, encode(field, given_value)), given_value), name
        # The value in memory and the value the database gives back encode alike:
        # that is what lets a save that changes nothing record nothing.
        assert encode(field, given_value) == encode(field, db_value), name

    original.save()
    stored.save()
    assert Event.objects.filter(object_pk=str(original.pk), content_type__model="everything").count() == 1


def test_decimal_is_exact_to_its_places(db: None) -> None:
    field = FIELDS["decimal"]
    row = Everything.objects.create(decimal=decimal.Decimal("12345678.1234"))
    assert event_state(row)["decimal"] == "12345678.1234"
    assert decode(field, event_state(row)["decimal"]) == decimal.Decimal("12345678.1234")
    # "1.5" is stored as 1.5000: both must encode the same, or a no-op save would record a change.
    padded = Everything.objects.create(decimal=decimal.Decimal("1.5"))
    assert encode(field, Everything.objects.get(pk=padded.pk).decimal) == encode(field, decimal.Decimal("1.5"))
    assert str(decode(field, event_state(padded)["decimal"])) == "1.5000"
    assert encode(field, decimal.Decimal("-0")) == encode(field, decimal.Decimal("0.0000")) == "0.0000"


def test_datetime_keeps_microseconds_and_the_instant_whatever_the_zone(db: None) -> None:
    field = FIELDS["moment"]
    paris = datetime.datetime(2024, 7, 1, 12, 30, 15, 123456, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
    row = Everything.objects.create(moment=paris)
    decoded = decode(field, event_state(row)["moment"])
    assert decoded == paris
    assert decoded.microsecond == 123456
    assert decoded.utcoffset() is not None
    assert encode(field, paris) == encode(field, Everything.objects.get(pk=row.pk).moment)


def test_time_duration_uuid_bytes_ip_file_and_foreign_key(author: Author) -> None:
    values = {
        "clock": datetime.time(23, 59, 59, 999999),
        "span": -datetime.timedelta(days=3, microseconds=7),
        "ident": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "blob": b"\x00\xffbinary\x80",
        "ip": "2001:db8::1",
        "document": "docs/report.pdf",
        "data": {"nested": [1, 2.5, None, True, "text"], "empty": {}},
    }
    row = Everything.objects.create(author=author, **values)
    state = event_state(row)
    assert state["author"] == author.pk
    assert state["document"] == "docs/report.pdf"
    assert state["ident"] == "12345678-1234-5678-1234-567812345678"
    for name, value in values.items():
        assert same(FIELDS[name], decode(FIELDS[name], state[name]), value), name
    assert decode(FIELDS["author"], state["author"]) == author.pk


def test_null_variants(db: None) -> None:
    row = Everything.objects.create()
    state = event_state(row)
    for name in ["maybe", "day", "moment", "clock", "span", "ident", "blob", "data", "ip", "note", "author"]:
        assert state[name] is None, name
        assert decode(FIELDS[name], None) is None
    assert state["char"] == ""  # an empty string is not NULL


@pytest.mark.parametrize("number", [math.inf, -math.inf, math.nan])
def test_non_finite_floats_round_trip_through_a_json_column(db: None, number: float) -> None:
    field = FIELDS["floating"]
    holder = Everything.objects.create(data={"floating": encode(field, number)})
    assert same(field, decode(field, Everything.objects.get(pk=holder.pk).data["floating"]), number)


@pytest.mark.parametrize("number", [math.inf, -math.inf, math.nan])
def test_non_finite_floats_in_a_row(db: None, number: float) -> None:
    if math.isnan(number) and connection.vendor == "sqlite":
        # SQLite stores NaN as NULL: the row itself cannot hold it (NOT NULL column).
        with pytest.raises(IntegrityError, match="NOT NULL"):
            Everything.objects.create(floating=number)
        return
    if connection.vendor == "mysql":
        # MySQL and MariaDB have no infinity nor NaN: the driver refuses them, with or without the app.
        plain = override_settings(AUDIT_EVENTS={**BASE, "MODELS": []})
        with plain, pytest.raises(ProgrammingError, match="can not be used with MySQL"), transaction.atomic():
            Everything.objects.create(floating=number)
        with pytest.raises(ProgrammingError, match="can not be used with MySQL"), transaction.atomic():
            Everything.objects.create(floating=number)  # Django's own error, unchanged
        assert not Event.objects.filter(content_type__model="everything").exists()
        return
    row = Everything.objects.create(floating=number)
    field = FIELDS["floating"]
    assert same(field, decode(field, event_state(row)["floating"]), number)
    assert encode(field, Everything.objects.get(pk=row.pk).floating) == encode(field, number)


ACCEPTED = [
    ("flag", "0"),
    ("flag", 1),
    ("maybe", "1"),
    ("integer", "5"),
    ("floating", "1.5"),
    ("floating", decimal.Decimal("0.1")),
    ("decimal", "1.5"),
    ("decimal", 1.5),
    ("day", "2024-01-02"),
    ("moment", "2024-01-02T03:04:05.123456+02:00"),
    ("clock", "12:34:56.789"),
    ("ident", "12345678123456781234567812345678"),
    ("ident", "12345678-1234-5678-1234-567812345678".upper()),
    ("ip", "2001:0db8:0000::1"),
    ("char", 5),
    ("blob", bytearray(b"ab")),
    ("data", {"b": 1, "a": (1, 2)}),
]


@pytest.mark.parametrize(("name", "value"), ACCEPTED, ids=[f"{n}={v!r}" for n, v in ACCEPTED])
def test_values_in_any_form_django_accepts_encode_as_what_is_stored(db: None, name: str, value: Any) -> None:
    """A form or a fixture may set "0" on a BooleanField or "5" on an IntegerField: Django converts it."""
    field = FIELDS[name]
    row = Everything.objects.create(**{name: value})
    stored = getattr(Everything.objects.get(pk=row.pk), field.attname)
    assert encode(field, value) == encode(field, stored)
    assert same(field, decode(field, event_state(row)[name]), stored)


LONE_SURROGATES = {"k": "\ud800", "\udc00": ["x\udfff", {"pair as two": "\ud83d\ude00"}]}


def _write_surrogates() -> Everything:
    row = Everything.objects.create(data=LONE_SURROGATES)
    row.data = {**LONE_SURROGATES, "k": "\udbff"}
    row.save()
    return row


def test_a_json_value_with_lone_surrogates_is_recorded_as_the_database_holds_it(db: None) -> None:
    """SQLite's JSONField stores lone surrogates as \\u escapes; PostgreSQL's jsonb refuses them (plain Django too)."""

    from audit_events import restore, state_at
    from audit_events.verify import verify_model

    if connection.vendor == "postgresql":
        plain = override_settings(AUDIT_EVENTS={**BASE, "MODELS": []})
        with plain, pytest.raises(DataError, match="Unicode"), transaction.atomic():
            _write_surrogates()
        with pytest.raises(DataError, match="Unicode"), transaction.atomic():
            _write_surrogates()  # Django's own error, unchanged
        return
    if connection.vendor == "mysql":  # its JSONField's CHECK (JSON_VALID(...)) refuses them, plain Django's too
        plain = override_settings(AUDIT_EVENTS={**BASE, "MODELS": []})
        with plain, pytest.raises(IntegrityError, match="CONSTRAINT"), transaction.atomic():
            _write_surrogates()
        with pytest.raises(IntegrityError, match="CONSTRAINT"), transaction.atomic():
            _write_surrogates()  # Django's own error, unchanged
        return
    row = _write_surrogates()
    stored = Everything.objects.get(pk=row.pk).data
    assert stored == {**LONE_SURROGATES, "k": "\udbff", "\udc00": ["x\udfff", {"pair as two": "\U0001f600"}]}
    first, second = Event.objects.filter(object_pk=str(row.pk)).order_by("version")
    assert second.changes["data"][1] == stored
    assert state_at(Everything, row.pk).data == stored  # type: ignore[union-attr]
    assert list(verify_model(Everything)) == []  # no drift, hashes recompute
    restore(Everything, row.pk, at=first.created_at)
    assert Everything.objects.get(pk=row.pk).data == first.state["data"]  # type: ignore[index]


def test_a_field_holding_objects_of_its_own_encodes_what_the_database_stores() -> None:
    from tests.models import Key, Player, Team

    team, key = Player._meta.get_field("team"), Player._meta.get_field("id")
    assert encode(team, Team("x")) == "x"
    assert decode(team, "x") == Team("x")
    assert encode(key, Key(5)) == encode(key, 5) == 5
