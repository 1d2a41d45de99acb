"""Helpers shared by the test modules."""

from __future__ import annotations

import datetime

from django.utils import timezone


def moment() -> datetime.datetime:
    """A moment strictly after every event written so far and strictly before any written later."""
    start = timezone.now()
    while (now := timezone.now()) <= start:
        pass
    while timezone.now() <= now:
        pass
    return now


def at_commit(using: str = "default") -> None:
    """What COMMIT does first: insert the events waiting in the transaction.

    Tests run inside a transaction that is rolled back, never committed; a test
    pinning what a write costs counts this too, as the write's share of COMMIT.
    """
    from audit_events import journal

    journal.flush(using)
