"""The notes ``audit_events.unrecorded(reason)`` leaves, and how ``audit_verify`` reads them."""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

from django.db import connections, router
from django.utils import timezone

from . import registry
from .models import UnrecordedWrite


def note(
    reason: str, started_at: datetime.datetime, models: Iterable[Any], failed: bool, fields: dict[str, Any]
) -> None:
    """One :class:`UnrecordedWrite` per registered model among ``models``, on the database it is written to,
    with the actor and context ``fields`` around the block (``AuditContext.event_fields()``).

    Skipped where the block failed inside a transaction: its writes roll back with it.
    """
    specs = {spec.model: spec for model in models if (spec := registry.spec_for(model)) is not None}
    ended_at = timezone.now()
    by_database: dict[str, list[UnrecordedWrite]] = {}
    for model, spec in specs.items():
        db = router.db_for_write(model)
        if failed and connections[db].in_atomic_block:
            continue
        by_database.setdefault(db, []).append(
            UnrecordedWrite(
                content_type_id=spec.content_type_id(db),
                reason=reason,
                actor_id=fields["actor_id"],
                actor_repr=fields["actor_repr"],
                context=fields["context"],
                started_at=started_at,
                ended_at=ended_at,
            )
        )
    for db, notes in by_database.items():
        UnrecordedWrite.objects.using(db).bulk_create(notes)


def explaining(spec: registry.ModelSpec, db: str, since: datetime.datetime | None) -> UnrecordedWrite | None:
    """The latest note of ``spec``'s model that ended after ``since`` (a row's last event; ``None``: ever)."""
    notes = UnrecordedWrite.objects.using(db).filter(content_type_id=spec.content_type_id(db))
    if since is not None:
        notes = notes.filter(ended_at__gte=since)
    return notes.order_by("-ended_at").first()
