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


def content_type_apart(model: type, using: str = "other") -> int:
    """Make ``model``'s content type on database ``using`` another id than on ``default``; return it."""
    from django.contrib.contenttypes.models import ContentType

    default_id = ContentType.objects.get_for_model(model).pk
    ContentType.objects.using(using).filter(app_label=model._meta.app_label, model=model._meta.model_name).delete()
    ContentType.objects.clear_cache()
    other_id: int = ContentType.objects.db_manager(using).get_for_model(model).pk
    assert other_id != default_id
    ContentType.objects.clear_cache()
    return other_id
