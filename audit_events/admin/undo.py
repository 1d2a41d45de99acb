"""Undoing one deletion with its whole group, and reporting it in one line.

Kept apart from the views so that they and the Event admin's action share one
way of undoing and reporting it; who may undo is :mod:`.rules`' answer.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from django.db import models

from ..exceptions import NoHistory, RestoreError
from ..models import Action, Event
from ..restoration import restore


@dataclass(frozen=True)
class Outcome:
    """What became of one requested undo: done, or why not."""

    ok: bool
    message: str


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
            parts.append(counted(model, count))
    return f" together with {', '.join(parts)}" if parts else ""


def model_for(content_type_id: int) -> type[models.Model] | None:
    from django.contrib.contenttypes.models import ContentType

    return ContentType.objects.get_for_id(content_type_id).model_class()


def counted(model: type[models.Model], n: int) -> str:
    """``1 book``, ``2 books``: ``n`` rows of ``model``, by its verbose name."""
    name = model._meta.verbose_name if n == 1 else model._meta.verbose_name_plural
    return f"{n} {name}"
