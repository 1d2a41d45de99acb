"""What an event's hash covers: the canonical text of its content.

Hash format (documented in docs/integrity.rst)::

    hash = sha256_hex(previous_hash_of_the_same_row + canonical_json(content))

with ``previous_hash`` empty for a row's first event, and ``content`` the
event's fields as in :func:`hash_content`. The database computes the hash
inside the event INSERT (``inserts``), from the text ``journal`` writes;
verification recomputes it from a stored event (:func:`event_hash_content`).
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from django.utils import timezone

from .encoding import canonical_json
from .models import Event


def hash_content(
    *,
    content_type: str,
    object_pk: str,
    action: str,
    changes: Any,
    state: Any,
    created_at: datetime.datetime,
    operation: uuid.UUID | str,
    actor_id: str | None,
    actor_repr: str,
    context: Any,
) -> str:
    """The canonical text of an event's content, which the hash chain covers."""
    return canonical_json(
        {
            "action": action,
            "actor_id": actor_id,
            "actor_repr": actor_repr,
            "changes": changes,
            "content_type": content_type,
            "context": context,
            "created_at": canonical_time(created_at),
            "object_pk": object_pk,
            "operation": str(operation),
            "state": state,
        }
    )


def event_hash_content(event: Event) -> str:
    """Recompute :func:`hash_content` from a stored event (used by verification)."""
    ct = event.content_type
    return hash_content(
        content_type=f"{ct.app_label}.{ct.model}",
        object_pk=event.object_pk,
        action=event.action,
        changes=event.changes,
        state=event.state,
        created_at=event.created_at,
        operation=event.operation,
        actor_id=event.actor_id,
        actor_repr=event.actor_repr,
        context=event.context,
    )


def canonical_time(moment: datetime.datetime) -> str:
    """A time as the hashed content writes it: UTC when aware, to the microsecond."""
    if timezone.is_aware(moment):
        moment = moment.astimezone(datetime.UTC)
    return moment.isoformat(timespec="microseconds")
