"""What the admin needs on top of ``restore``: undoing one deletion, a row at one version, diffs to show.

Kept apart from ``admin.py`` so that views and the Event admin's action share
one way of undoing and reporting it; who may undo is ``admin_rules``' answer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from django.db import models, router, transaction
from django.db.models import Q, Subquery
from django.utils.safestring import SafeString
from django.utils.text import capfirst

from . import capture, registry
from .display import Values, field_of
from .encoding import JSONValue
from .exceptions import NoHistory, RestoreError
from .models import Action, Event
from .replay import State, fold, instance_from_state
from .restoration import restore


@dataclass(frozen=True)
class Outcome:
    """What became of one requested undo: done, or why not."""

    ok: bool
    message: str


@dataclass(frozen=True)
class FieldChange:
    """One line of a diff table, with values ready to display."""

    name: str
    before: SafeString
    after: SafeString


def is_latest(event: Event) -> bool:
    return not Event.objects.filter(
        content_type_id=event.content_type_id, object_pk=event.object_pk, version__gt=event.version
    ).exists()


def undo_deletion(event: Event) -> Outcome:
    """Restore the row deleted by ``event`` with its whole deletion group; never raises for a refusal."""
    model = event.content_type.model_class()
    label = f"{event.content_type.app_label}.{event.content_type.model} {event.object_pk}"
    if event.action != Action.DELETE:
        return Outcome(False, f"{label}: event #{event.pk} is a {event.action}, not a deletion.")
    if model is None:
        return Outcome(False, f"{label}: the model is no longer installed.")
    if not is_latest(event):
        return Outcome(False, f"{model._meta.label} pk={event.object_pk} was written again since (already restored?).")
    try:
        instance = restore(model, event.object_pk)
    except (RestoreError, NoHistory) as error:
        return Outcome(False, str(error))
    return Outcome(True, f"Restored {model._meta.verbose_name} “{instance}”{_group_summary(event)}.")


def _group_summary(event: Event) -> str:
    counts = Counter(
        Event.objects.filter(operation=event.operation, action=Action.DELETE)
        .exclude(pk=event.pk)
        .order_by("-id")  # Django deletes children first: reversed, parents come first
        .values_list("content_type_id", flat=True)
    )
    parts = []
    for ct_id, count in counts.items():
        model = model_for(ct_id)
        if model is not None:
            name = model._meta.verbose_name if count == 1 else model._meta.verbose_name_plural
            parts.append(f"{count} {name}")
    return f" together with {', '.join(parts)}" if parts else ""


def model_for(content_type_id: int) -> type[models.Model] | None:
    from django.contrib.contenttypes.models import ContentType

    return ContentType.objects.get_for_id(content_type_id).model_class()


def version_state(event: Event) -> State | None:
    """The row as ``event`` left it (``None`` after a deletion): one query, from the last full state on."""
    events = Event.objects.filter(
        content_type_id=event.content_type_id, object_pk=event.object_pk, version__lte=event.version
    )
    anchor = events.filter(Q(state__isnull=False) | Q(action=Action.DELETE)).order_by("-version")
    return fold(events.filter(version__gte=Subquery(anchor.values("version")[:1])).order_by("version"))


def live_state(spec: registry.ModelSpec, pk: Any) -> State | None:
    """The row as the database holds it now (many-to-many links included), as ``restore`` reads it."""
    db = router.db_for_write(spec.model)
    with transaction.atomic(using=db):  # the read locks where it can, which needs a transaction
        return capture.live_state(spec, db, pk)


def state_label(model: type[models.Model], state: State | None) -> str:
    """``str()`` of the row a recorded state describes."""
    spec = registry.spec_for(model)
    if spec is None or state is None:
        return ""
    try:
        return str(instance_from_state(model, spec, state))
    except Exception:  # a __str__ that needs related rows the state does not carry
        return ""


def changes_between(
    model: type[models.Model] | None,
    before: State | None,
    after: State | None,
    only: Collection[str] | None = None,
    values: Values | None = None,
) -> list[FieldChange]:
    """The fields (of ``only``, when given) whose value differs between two recorded states, in field order.

    ``values`` shows them (one shared by a page reads related rows once); a new one by default.
    """
    before, after = before or {}, after or {}
    spec = registry.spec_for(model) if model is not None else None
    names = [f.name for f in (*spec.fields, *spec.m2m_fields)] if spec else sorted({*before, *after})
    if only is not None:
        names = [name for name in names if name in only]
    names = [name for name in names if (name in before or name in after) and before.get(name) != after.get(name)]
    if values is None:
        values = Values()
        values.want(model, before)
        values.want(model, after)
    return [
        FieldChange(
            _verbose(spec, name), values.show(model, name, before.get(name)), values.show(model, name, after.get(name))
        )
        for name in names
    ]


def event_changes(event: Event, values: Values | None = None, only: Collection[str] | None = None) -> list[FieldChange]:
    """The diff an event records (of the fields in ``only``, when given): its ``changes``, or its full state on
    create, delete and recreation."""
    before, after = _sides(event)
    return changes_between(event.content_type.model_class(), before, after, only=only, values=values)


def changes_hidden(event: Event, shown: Collection[str]) -> bool:
    """Whether the event changes a field outside ``shown`` (what :func:`event_changes` leaves out, unnamed)."""
    before, after = _sides(event)
    before, after = before or {}, after or {}
    return any(name not in shown and before.get(name) != after.get(name) for name in {*before, *after})


def _sides(event: Event) -> tuple[State | None, State | None]:
    """The values an event records before and after it, by field name."""
    if event.action == Action.DELETE:
        return event.state, None
    if event.changes:
        old = {name: change[0] for name, change in event.changes.items()}
        new = {name: change[1] for name, change in event.changes.items()}
        return old, new
    if event.action in (Action.CREATE, Action.RESTORE):
        return None, event.state
    return None, None


def short_diff(event: Event, limit: int = 80, only: Collection[str] | None = None, values: Values | None = None) -> str:
    """One line for a changelist: ``title: 'Old' → 'New'; pages: 1 → 2`` (the fields in ``only``, when given;
    each value as ``values`` masks it, see :func:`diff_lines`)."""
    if event.action == Action.DELETE:
        return "deleted"
    lines = diff_lines(event, only, values)
    text = "; ".join(lines) if event.changes else ", ".join(lines)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def diff_lines(event: Event, only: Collection[str] | None = None, values: Values | None = None) -> list[str]:
    """``short_diff`` unabridged, one line per field; with ``values``, a value its model admin's
    ``display_recorded_value`` shows its own way is shown so (a masked field stays masked)."""
    model = event.content_type.model_class() if values is not None else None

    def short(name: str, value: JSONValue) -> str:
        text = values.text(model, name, value) if values is not None else None
        if text is not None:
            return text
        return "∅" if value is None else repr(value) if isinstance(value, str) else str(value)

    if event.changes:
        changes = [(name, old, new) for name, (old, new) in event.changes.items() if only is None or name in only]
        return [f"{name}: {short(name, old)} → {short(name, new)}" for name, old, new in changes]
    state = (event.state or {}).items()
    return [f"{name}={short(name, value)}" for name, value in state if only is None or name in only]


def _verbose(spec: registry.ModelSpec | None, name: str) -> str:
    field = field_of(spec, name)
    return str(capfirst(field.verbose_name)) if field is not None else name
