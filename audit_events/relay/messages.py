"""The message a relay publishes for each event, and the consumer's de-duplication.

One message per event, its body UTF-8 JSON (format 1, docs/relay.rst)::

    {"format": 1, "id": 1234, "model": "bank.account", "pk": "32", "version": 5,
     "action": "update", "changes": {"balance": ["10.00", "25.00"]}, "state": null,
     "created_at": "2024-05-01T12:00:00.123456+00:00",
     "operation": "6f1c...", "actor": {"id": "7", "repr": "alice"},
     "context": {"reason": "refund #991"}, "hash": "9a0b..."}

Values inside ``changes`` and ``state`` are as stored in the event table
(docs/concepts.rst: Decimals and datetimes as text, and so on). ``id`` is the
event's id in the source database: it orders nothing across transactions; a
row's ``version`` does, and ``(model, pk, version)`` names the event wherever
it travels (its ``key``).
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from django.contrib.contenttypes.models import ContentType, ContentTypeManager
from django.utils import timezone

from ..models import Event

FORMAT = 1
#: The longest message id a broker is handed: AMQP's ``message_id`` is a short string, 255 bytes at most.
MESSAGE_ID_BYTES = 255
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class Message:
    """One event, ready for a broker: where it goes and what it says."""

    model: str  # "app_label.modelname", the content type's natural key
    pk: str
    version: int
    action: str
    body: bytes

    @property
    def key(self) -> str:
        """``model:pk:version``: the event's identity, for brokers' de-duplication (message id)."""
        return f"{self.model}:{self.pk}:{self.version}"

    @property
    def id(self) -> str:
        """The id given to the broker, the :attr:`key` or ``sha256:<hex of the key>`` (a long or odd key).

        The key is kept when it is printable ASCII of at most
        ``MESSAGE_ID_BYTES`` bytes; a long primary key (a ``TextField``), or
        one with other characters (which a NATS header could not carry), is
        replaced by its digest: still one id per event, the same each time.
        """
        key = self.key
        if key.isascii() and key.isprintable() and len(key) <= MESSAGE_ID_BYTES:
            return key
        return f"sha256:{hashlib.sha256(key.encode()).hexdigest()}"

    @property
    def topic(self) -> str:
        """``app_label.modelname.action``: a routing key or subject suffix consumers can filter on."""
        return f"{self.model}.{self.action}"


def message(event: Event, content_types: ContentTypeManager | None = None) -> Message:
    """The message for ``event``.

    Its content type comes from Django's cache (no query once warm), through
    ``content_types``, the manager of the event's database, if given (a batch
    passes one, made once).
    """
    manager = content_types or ContentType.objects.db_manager(event._state.db)
    content_type = manager.get_for_id(event.content_type_id)
    model = f"{content_type.app_label}.{content_type.model}"
    created_at = event.created_at
    if isinstance(created_at, datetime.datetime):
        if timezone.is_naive(created_at):  # USE_TZ = False: a naive datetime is in the current time zone
            created_at = timezone.make_aware(created_at)
        created_at = created_at.astimezone(datetime.UTC)
    body = {
        "format": FORMAT,
        "id": event.id,
        "model": model,
        "pk": event.object_pk,
        "version": event.version,
        "action": event.action,
        "changes": event.changes,
        "state": event.state,
        "created_at": created_at.isoformat(timespec="microseconds"),
        "operation": str(event.operation),
        "actor": {"id": event.actor_id, "repr": event.actor_repr},
        "context": event.context,
        "hash": event.hash,
    }
    return Message(model, event.object_pk, event.version, event.action, _ENCODER.encode(body).encode())


def decode(body: bytes | str) -> dict[str, Any]:
    """A message body as a dict (raises ``ValueError`` on a body that is not a format-1 message)."""
    data = json.loads(body)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"not an audit_events message of format {FORMAT}: {str(body)[:80]!r}")
    return data


class Deduplicator:
    """Drops the messages a consumer has handled already, by (model, pk, version).

    The relay delivers at least once, each row's versions in order: a message
    whose version is not above the last one handled for its row is a
    duplicate. ``seen`` holds that last version per row (key ``"model:pk"``); pass a
    persistent mapping (a ``shelve``, a table written in the same transaction as
    what the handler does) to survive the consumer's restarts.

    An event is marked as handled only once its handler has returned: a
    handler that raises leaves it unmarked, so the broker's redelivery of it
    (the consumer did not acknowledge it) is handled, not dropped.
    """

    def __init__(self, seen: MutableMapping[str, int] | None = None) -> None:
        self.seen: MutableMapping[str, int] = {} if seen is None else seen
        self.duplicates = 0

    def accept(self, message: Mapping[str, Any] | bytes | str, handler: Callable[[Mapping[str, Any]], object]) -> bool:
        """Handle ``message`` with ``handler`` unless it is a duplicate: check, handle, then mark.

        True if it was handled, False for a duplicate (``handler`` not called).
        An exception from ``handler`` propagates and marks nothing: do not
        acknowledge the message, and the broker delivers it again.
        """
        data = _data(message)
        if self.is_duplicate(data):
            self.duplicates += 1
            return False
        handler(data)
        self.mark(data)
        return True

    def is_duplicate(self, message: Mapping[str, Any] | bytes | str) -> bool:
        """True if an event of this row with this version or a later one was handled (marked)."""
        data = _data(message)
        return int(data["version"]) <= self.seen.get(_row(data), 0)

    def mark(self, message: Mapping[str, Any] | bytes | str) -> None:
        """Record ``message`` as handled (after its handler succeeded; :meth:`accept` does it)."""
        data = _data(message)
        row, version = _row(data), int(data["version"])
        if version > self.seen.get(row, 0):
            self.seen[row] = version


def _data(message: Mapping[str, Any] | bytes | str) -> Mapping[str, Any]:
    return decode(message) if isinstance(message, (bytes, str)) else message


def _row(data: Mapping[str, Any]) -> str:
    return f"{data['model']}:{data['pk']}"
