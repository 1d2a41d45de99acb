"""Shipping events elsewhere: ``manage.py audit_relay`` publishes every committed event to a broker.

Importing this package needs no broker client; a publisher imports its own
when it connects. See docs/relay.rst.
"""

from __future__ import annotations

from .messages import FORMAT, Deduplicator, Message, decode, message
from .publishers import NATSJetStream, Publisher, PublishError, RabbitMQ, Unpublishable
from .runner import Unrecoverable

__all__ = [
    "FORMAT",
    "Deduplicator",
    "Message",
    "NATSJetStream",
    "PublishError",
    "Publisher",
    "RabbitMQ",
    "Unpublishable",
    "Unrecoverable",
    "decode",
    "message",
]
