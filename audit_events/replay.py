"""Reading the past: fold a row's events into its state at any moment.

Queries: ``state_at`` is one SELECT that reads at most ``SNAPSHOT_EVERY``
events (it starts from the latest event that carries a full state, or a
delete), whatever the length of the history.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any, TypeVar

from django.conf import settings
from django.db import models
from django.db.models import Q, Subquery
from django.utils import timezone

from . import registry
from .encoding import State, decode
from .exceptions import NoHistory, RestoreError
from .models import Action, Event, EventQuerySet

M = TypeVar("M", bound=models.Model)


def spec_or_error(model: type[models.Model]) -> registry.ModelSpec:
    spec = registry.spec_for(model)
    if spec is None:
        raise RestoreError(f"{model._meta.label} is not registered for auditing: add it to AUDIT_EVENTS['MODELS'].")
    return spec


def start_of_day(day: datetime.date) -> datetime.datetime:
    """00:00 of ``day`` in the current time zone (aware when ``USE_TZ`` is on), as Django's
    ``__date`` lookups read a day."""
    start = datetime.datetime.combine(day, datetime.time())
    return timezone.make_aware(start) if settings.USE_TZ else start


def moment_of(model: type[models.Model], pk: Any, at: datetime.date | None) -> datetime.datetime | None:
    """``at`` as events are compared with: a date is the start of that day; a naive datetime is refused
    while ``USE_TZ`` is on, not guessed."""
    if at is None:
        return None
    if not isinstance(at, datetime.date):
        raise TypeError(f"at= must be a datetime or a date, not {type(at).__name__} {at!r}.")
    if not isinstance(at, datetime.datetime):
        return start_of_day(at)
    if settings.USE_TZ and timezone.is_naive(at):
        raise RestoreError(
            f"{model._meta.label} pk={pk}: at={at.isoformat()} is a naive datetime while USE_TZ is on; "
            "pass an aware datetime (for example with django.utils.timezone.make_aware)."
        )
    return at


def row_events(spec: registry.ModelSpec, pk: Any, using: str | None = None) -> EventQuerySet:
    events = Event.objects.filter(content_type_id=spec.content_type_id(), object_pk=spec.object_pk(pk))
    return events.using(using) if using else events


def history(model_or_instance: type[models.Model] | models.Model, pk: Any = None) -> EventQuerySet:
    """The events of one row, oldest first: ``history(Account, 32)`` or ``history(account)``."""
    if isinstance(model_or_instance, models.Model):
        model: type[models.Model] = type(model_or_instance)
        pk = model_or_instance.pk
    else:
        model = model_or_instance
    return row_events(spec_or_error(model), pk).order_by("version")


def fold(events: Iterable[Event], state: State | None = None) -> State | None:
    """Apply events, oldest first, to a state (``None``: the row does not exist)."""
    for event in events:
        if event.action == Action.DELETE:
            state = None
        elif event.state is not None:
            state = dict(event.state)
        elif state is not None:
            state.update({name: change[1] for name, change in event.changes.items()})
    return state


def events_until(
    spec: registry.ModelSpec, pk: Any, at: datetime.datetime | None, using: str | None = None
) -> EventQuerySet:
    """The events needed to know the row at ``at``: from the last full state on."""
    events = row_events(spec, pk, using)
    if at is not None:
        events = events.filter(created_at__lte=at)
    anchor = events.filter(Q(state__isnull=False) | Q(action=Action.DELETE)).order_by("-version")
    return events.filter(version__gte=Subquery(anchor.values("version")[:1])).order_by("version")


def recorded_state(
    spec: registry.ModelSpec, pk: Any, at: datetime.datetime | None = None, using: str | None = None
) -> State | None:
    """The encoded state of the row at ``at`` (now, when ``None``); ``None`` if absent."""
    return fold(events_until(spec, pk, at, using))


def instance_from_state(model: type[M], spec: registry.ModelSpec, state: State) -> M:
    """An unsaved instance holding exactly the recorded values."""
    instance = model()
    for field in spec.fields:
        if field.name in state:
            setattr(instance, field.attname, decode(field, state[field.name]))
    return instance


def no_history(model: type[models.Model], pk: Any, using: str | None = None) -> NoHistory:
    """The error for a row without events: one that exists was written unrecorded, and can be recorded."""
    label = model._meta.label
    if model._base_manager.db_manager(using).filter(pk=pk).exists():
        return NoHistory(
            f"{label} pk={pk} exists but has no recorded events (written before {label} was registered?): "
            f"run `manage.py audit_snapshot {label}` to record it."
        )
    return NoHistory(f"{label} pk={pk} has no recorded events.")


def absent_at(model: type[models.Model], pk: Any, at: datetime.datetime, using: str | None = None) -> str:
    """Why the row cannot be had at ``at``: its history starts later, or it was deleted then."""
    spec = spec_or_error(model)
    first = row_events(spec, pk, using).order_by("version").first()
    if first is not None and at < first.created_at:
        if first.action != Action.CREATE:
            return unknown_before(model, pk, at, first)
        why = f"its history starts at {_told_as(first.created_at, at)}, when it was created"
    else:
        deletion = row_events(spec, pk, using).filter(action=Action.DELETE, created_at__lte=at).order_by("-version")
        last = deletion.first()
        why = "" if last is None else f"it was deleted at {_told_as(last.created_at, at)}"
    return f"{model._meta.label} pk={pk} did not exist at {at.isoformat()}" + (f": {why}." if why else ".")


def _told_as(moment: datetime.datetime, at: datetime.datetime) -> str:
    """``moment`` in ``at``'s time zone, to read the two side by side."""
    return (moment.astimezone(at.tzinfo) if timezone.is_aware(moment) and timezone.is_aware(at) else moment).isoformat()


def unknown_before(model: type[models.Model], pk: Any, at: datetime.datetime | None, first: Event) -> str:
    """Why a row recorded only after it existed cannot be seen before its first event."""
    moment = "then" if at is None else f"at {at.isoformat()}"
    return (
        f"{model._meta.label} pk={pk} is recorded only from {first.created_at.isoformat()} "
        f"(its first event is a {first.action}, not a create): its state {moment} is unknown."
    )


def state_at(model: type[M], pk: Any, at: datetime.date | None = None) -> M | None:
    """The row as it was at ``at`` (an unsaved instance), or ``None`` if it did not exist then.

    ``at`` is a datetime (aware when ``USE_TZ`` is on), or a date: the start of
    that day in the current time zone. Raises :class:`NoHistory` when the row
    has no events at all, or none up to ``at`` while its first event shows it
    existed before it was recorded.
    """
    spec = spec_or_error(model)
    state = state_until(model, spec, pk, at)
    return None if state is None else instance_from_state(model, spec, state)


def state_until(model: type[models.Model], spec: registry.ModelSpec, pk: Any, at: datetime.date | None) -> State | None:
    """The recorded state of :func:`state_at` (``None``: the row did not exist then), with its errors."""
    at = moment_of(model, pk, at)
    events = list(events_until(spec, pk, at))
    if not events:
        first = row_events(spec, pk).order_by("version").first()
        if first is None:
            raise no_history(model, pk)
        if first.action != Action.CREATE:
            raise NoHistory(unknown_before(model, pk, at, first))
    return fold(events)
