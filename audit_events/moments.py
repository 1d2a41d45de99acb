"""Reading a whole table, or one row between two moments, from the events.

``as_of(Model, at)`` is django-simple-history's ``as_of()``: the rows of a
model as they were at ``at``. ``diff(Model, pk, t1, t2)`` is its
``diff_against()``: what changed in one row between two moments.

Queries: ``as_of`` is one SELECT, streamed; per row it transfers the events
from the row's last full state (or delete) up to ``at``, so at most
``SNAPSHOT_EVERY`` of them however long the history. ``diff`` is
:func:`~audit_events.state_at` twice.
"""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Iterator
from operator import attrgetter
from typing import Any, TypeVar

from django.db import models
from django.db.models import Case, F, Max, Q, When, Window

from .encoding import State, decode
from .models import Action, Event
from .replay import fold, instance_from_state, moment_of, spec_or_error, state_until

M = TypeVar("M", bound=models.Model)


def as_of(model: type[M], at: datetime.date, using: str | None = None) -> Iterator[M]:
    """The rows of ``model`` as they were at ``at``: unsaved instances, one per row that existed then.

    Rows deleted since are included, rows created since are not; a row
    recorded only after it existed (its history starts with a snapshot, not
    a create) is absent before its first event. The rows come ordered by
    their recorded key's text; many-to-many links are not set on the
    instances (:func:`diff` and :func:`~audit_events.history` have them).
    A date ``at`` is the start of that day in the current time zone.
    """
    spec = spec_or_error(model)
    moment = moment_of(model, "*", at)
    anchor = Case(When(Q(state__isnull=False) | Q(action=Action.DELETE), then=F("version")))
    events = (
        Event.objects.using(using)
        .filter(content_type_id=spec.content_type_id(), created_at__lte=moment)
        .annotate(anchor=Window(Max(anchor), partition_by=[F("object_pk")]))
        .filter(version__gte=F("anchor"))
        .order_by("object_pk", "version")
    )
    for _, row in itertools.groupby(events.iterator(chunk_size=2000), key=attrgetter("object_pk")):
        state = fold(row)
        if state is not None:
            yield instance_from_state(model, spec, state)


def diff(
    model: type[models.Model], pk: Any, t1: datetime.date | None, t2: datetime.date | None = None
) -> dict[str, tuple[Any, Any]]:
    """What differs in one row between ``t1`` and ``t2`` (now, when ``None``): ``{field: (then, later)}``.

    Values are as the model holds them (many-to-many fields: the sorted keys
    of the linked rows). Where the row did not exist at one of the moments,
    every field is listed, with ``None`` on that side. Raises
    :class:`~audit_events.NoHistory` as :func:`~audit_events.state_at` does.
    """
    spec = spec_or_error(model)
    before, after = state_until(model, spec, pk, t1), state_until(model, spec, pk, t2)
    if before is None and after is None:
        return {}
    fields = {f.name: f for f in spec.fields}

    def value(state: State | None, name: str) -> Any:
        if state is None or name not in state:
            return None
        return decode(fields[name], state[name]) if name in fields else state[name]

    names = [
        name for name in spec.names if (before or {}).get(name) != (after or {}).get(name) or None in (before, after)
    ]
    return {name: (value(before, name), value(after, name)) for name in names}
