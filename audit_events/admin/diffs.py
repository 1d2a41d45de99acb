"""Diffs to show: what an event changed, or what differs between two recorded states, field by field.

The history page, the restore preview and the Event admin's list and detail
pages show an event's changes through these, each value as
:class:`~audit_events.admin.values.Values` shows it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from django.db import models
from django.utils.safestring import SafeString
from django.utils.text import capfirst

from .. import registry
from ..encoding import JSONValue, State
from ..models import Action, Event
from .values import Values, field_of


@dataclass(frozen=True)
class FieldChange:
    """One line of a diff table, with values ready to display."""

    name: str
    before: SafeString
    after: SafeString


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
    names = _differing(spec, before, after, only)
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


def _differing(spec: registry.ModelSpec | None, before: State, after: State, only: Collection[str] | None) -> list[str]:
    """The fields (of ``only``, when given) recorded on either side with different values, in field order
    (by name for a model not registered)."""
    names = [f.name for f in (*spec.fields, *spec.m2m_fields)] if spec else sorted({*before, *after})
    if only is not None:
        names = [name for name in names if name in only]
    return [name for name in names if (name in before or name in after) and before.get(name) != after.get(name)]


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
