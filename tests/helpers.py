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
