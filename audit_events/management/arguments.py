"""Parsing what the management commands are given; every bad value becomes a one-line CommandError."""

from __future__ import annotations

import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.db import models
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from .. import registry
from ..replay import start_of_day


def registered_model(label: str) -> type[models.Model]:
    """The registered model named ``app_label.ModelName``."""
    model = registry.resolve_label(label)
    if model is None:
        raise CommandError(f"Unknown model {label!r}: expected app_label.ModelName of an installed model.")
    if registry.spec_for(model) is None:
        raise CommandError(f"{model._meta.label} is not registered for auditing: add it to AUDIT_EVENTS['MODELS'].")
    return model


def registered_models(labels: list[str]) -> list[type[models.Model]]:
    """The models named, or every registered model when none is named."""
    if labels:
        return [registered_model(label) for label in labels]
    return sorted((spec.model for spec in registry.registered_specs()), key=lambda m: m._meta.label)


def primary_key(model: type[models.Model], text: str) -> Any:
    field = model._meta.pk
    assert field is not None
    try:
        return field.to_python(text)
    except ValidationError as error:
        raise CommandError(
            f"{model._meta.label}: {text!r} is not a valid primary key ({' '.join(error.messages)})."
        ) from None


def moment(text: str, option: str) -> datetime.datetime:
    """An ISO-8601 datetime, aware when ``USE_TZ`` is on (a naive one is refused, not guessed), or a
    date: the start of that day in the current time zone."""
    try:
        day = parse_date(text)  # first: parse_datetime() reads a date alone as a naive midnight
        value = start_of_day(day) if day is not None else parse_datetime(text)
    except ValueError:
        value = None
    if value is None:
        raise CommandError(
            f"{option} {text!r} is not an ISO-8601 date or datetime (for example 2024-05-01T12:00+00:00)."
        )
    if settings.USE_TZ and timezone.is_naive(value):
        raise CommandError(
            f"{option} {text!r} has no time zone while USE_TZ is on: add one (for example 2024-05-01T12:00+00:00)."
        )
    return value
