"""Lossless JSON encoding of model field values.

Each value is encoded by the field that holds it, so decoding needs no type
tags: the field says what the JSON means. ``decode(field, encode(field, v))``
gives back a value equal to ``v`` after the database round trip, for every
concrete field type Django ships (a hypothesis test holds this).
"""

from __future__ import annotations

import base64
import datetime
import decimal
import functools
import json
import math
import re
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

JSONValue = Any  # what json.loads can return
# A row as recorded: each field's name and its encoded value (a state, a snapshot, a row read live).
State = dict[str, JSONValue]

_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
_EXACT = decimal.Context(prec=1000)  # quantizing must never round an integer part away


def value_field(field: models.Field[Any, Any]) -> models.Field[Any, Any]:
    """The field whose type a value really has (a foreign key holds its target's)."""
    while field.is_relation and (field.many_to_one or field.one_to_one):
        target = field.target_field  # type: ignore[attr-defined]
        if target is field:
            break
        field = target
    return field


def encode(field: models.Field[Any, Any], value: Any) -> JSONValue:
    """Encode ``value`` (as held in ``field``'s attname) into plain JSON."""
    if value is None:
        return None
    return encoder(field)(value)


def encoder(field: models.Field[Any, Any]) -> Callable[[Any], JSONValue]:
    """:func:`encode` for ``field``'s values that are not ``None``, chosen once per field."""
    entry = _ENCODERS.get(id(field))
    if entry is None or entry[0] is not field:
        if len(_ENCODERS) > 10_000:  # fields made on the fly (tests): never hold them all
            _ENCODERS.clear()
        entry = _ENCODERS[id(field)] = (field, _encoder(field))
    return entry[1]


# id(field) -> (field, its encoder): which branch of _encoder a field takes is
# decided once, not on every value (capture encodes every field of every write).
_ENCODERS: dict[int, tuple[models.Field[Any, Any], Callable[[Any], JSONValue]]] = {}


def _encoder(field: models.Field[Any, Any]) -> Callable[[Any], JSONValue]:
    if isinstance(field, models.JSONField):
        # Round-trip through the field's own encoder, as the database does.
        json_encoder = field.encoder
        return lambda value: json.loads(json.dumps(value, cls=json_encoder))
    field = value_field(field)
    if converts(field):
        # Python holds the field's own objects (a value object, a wrapped key): what the
        # database stores is what the field prepares of them.
        prepare, plain = field.get_prep_value, _plain_encoder(field, _as_prepared)
        return lambda value: plain(prepare(value))
    return _plain_encoder(field, field.to_python)


def stored_encoder(field: models.Field[Any, Any]) -> Callable[[Any], JSONValue]:
    """:func:`encoder` for a value as the database gives it back: through the backend's converters,
    not the field's own ``from_db_value`` (a row read or returned, before Django makes it the field's
    object). It is what the database stores, so no method of the field is called on it."""
    if _plain_json(field):
        # The field's from_db_value (a backend converter here) made it with json.loads, no
        # decoder: plain JSON already, which encoding again through the field's encoder gives back.
        return _same
    target = value_field(field)
    if converts(target) and not isinstance(field, models.JSONField):
        return _plain_encoder(target, _as_prepared)
    return encoder(field)


def _plain_json(field: models.Field[Any, Any]) -> bool:
    """A JSONField whose values read from the database are ``json.loads`` of the stored text."""
    return (
        isinstance(field, models.JSONField)
        and field.decoder is None
        and type(field).from_db_value is models.JSONField.from_db_value
    )


def _same(value: JSONValue) -> JSONValue:
    return value


def converts(field: models.Field[Any, Any]) -> bool:
    """Whether ``field`` turns what the database gives into objects of its own (``from_db_value``)."""
    return hasattr(field, "from_db_value") and not isinstance(field, models.JSONField)


def _as_prepared(value: Any) -> JSONValue:
    return value if isinstance(value, (str, int, float)) else str(value)


def _plain_encoder(field: models.Field[Any, Any], otherwise: Callable[[Any], JSONValue]) -> Callable[[Any], JSONValue]:
    """The encoder of ``field``'s type; ``otherwise`` for types it does not know."""
    if isinstance(field, models.FileField):
        return lambda value: str(getattr(value, "name", value) or "")
    if isinstance(field, models.BinaryField):
        return lambda value: base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(field, models.DurationField):
        return functools.partial(_duration, field)
    if isinstance(field, models.DecimalField):
        return functools.partial(_decimal, field)
    if isinstance(field, models.FloatField):
        return _float
    if isinstance(field, models.DateTimeField):
        return functools.partial(_datetime, field)
    if isinstance(field, (models.DateField, models.TimeField)):
        to_python = field.to_python
        return lambda value: to_python(value).isoformat()
    if isinstance(field, (models.UUIDField, models.GenericIPAddressField)):
        to_python = field.to_python
        return lambda value: str(to_python(value))
    if isinstance(field, models.BooleanField):
        return field.to_python  # as Django reads "0" before writing it: False, where bool() says True
    if isinstance(field, (models.IntegerField, models.AutoField)):
        return int
    return otherwise


def _duration(field: models.Field[Any, Any], value: Any) -> int:
    if not isinstance(value, datetime.timedelta):
        value = field.to_python(value)
    return int((value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds)


def _decimal(field: models.DecimalField[Any, Any], value: Any) -> str:
    number = field.to_python(value)
    if number.is_finite() and field.decimal_places is not None:
        # The column holds exactly decimal_places digits: 1.5 is stored, and read back,
        # as 1.5000; both must encode alike or a no-op save would record a change.
        exponent = decimal.Decimal(1).scaleb(-field.decimal_places)
        number = number.quantize(exponent, rounding=decimal.ROUND_HALF_UP, context=_EXACT)
        if number.is_zero():
            number = number.copy_abs()  # PostgreSQL has no -0
    return str(number)


def _float(value: Any) -> float | str:
    number = float(value)
    if math.isfinite(number):
        return number
    return "nan" if math.isnan(number) else ("inf" if number > 0 else "-inf")


def _datetime(field: models.Field[Any, Any], value: Any) -> str:
    if type(value) is datetime.datetime and value.utcoffset() is not None:  # as read from the database
        return value.astimezone(datetime.UTC).isoformat()
    moment = field.to_python(value)
    if settings.USE_TZ and timezone.is_naive(moment):
        moment = timezone.make_aware(moment)  # as Django does before writing it
    if timezone.is_aware(moment):
        # One instant, one text: the database gives it back in UTC whatever zone it was saved in.
        moment = moment.astimezone(datetime.UTC)
    return str(moment.isoformat())


def decode(field: models.Field[Any, Any], data: JSONValue) -> Any:
    """Turn what :func:`encode` produced back into the Python value."""
    if data is None:
        return None
    if isinstance(field, models.JSONField):
        return data
    return _decode_value(value_field(field), data)


def _decode_value(field: models.Field[Any, Any], data: JSONValue) -> Any:
    """:func:`decode` by the type of the field that holds the value (:func:`value_field`)."""
    if isinstance(field, models.FileField):
        return data
    if isinstance(field, models.BinaryField):
        return base64.b64decode(data)
    if isinstance(field, models.DurationField):
        return datetime.timedelta(microseconds=data)
    if isinstance(field, models.DecimalField):
        return decimal.Decimal(data)
    if isinstance(field, models.FloatField):
        return _NON_FINITE[data] if isinstance(data, str) else float(data)
    if isinstance(field, models.DateTimeField):
        return datetime.datetime.fromisoformat(data)
    if isinstance(field, models.DateField):
        return datetime.date.fromisoformat(data)
    if isinstance(field, models.TimeField):
        return datetime.time.fromisoformat(data)
    if isinstance(field, models.UUIDField):
        return uuid.UUID(data)
    return field.to_python(data)


def canonical_json(value: JSONValue) -> str:
    """The one text form used for hashing: sorted keys, fixed separators, UTF-8.

    Numbers are written as every backend gives them back: PostgreSQL's jsonb
    keeps a number's digits but not a float's exponent nor the sign of zero,
    so a float of magnitude 1e16 or more is written as the integer it denotes
    (``1e16`` as ``10000000000000000``) and ``-0.0`` as ``0.0``. Otherwise
    an event read back would no longer match its own hash.

    A lone surrogate (a JSONField holds one where the database stores
    Django's ``\\ud800`` escape, as SQLite does) is written as that escape:
    it is not UTF-8, and ``json.loads`` gives it back exactly.
    """
    text = _CANONICAL.encode(value)
    if "e+" in text or "-0.0" in text:  # a float written with an exponent or a negative zero
        text = _CANONICAL.encode(_stable_numbers(value))
    if not text.isascii() and _SURROGATE.search(text):
        text = _SURROGATE.sub(_escape, text)
    return text


# Surrogates only occur inside JSON strings, where their \u escape means the same.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


# Made once: json.dumps with these options would build an encoder on every call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _stable_numbers(value: JSONValue) -> JSONValue:
    if isinstance(value, float):
        if value == 0:
            return 0.0
        if math.isfinite(value) and abs(value) >= 1e16:
            return int(decimal.Decimal(repr(value)))
        return value
    if isinstance(value, dict):
        return {key: _stable_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_stable_numbers(item) for item in value]
    return value
