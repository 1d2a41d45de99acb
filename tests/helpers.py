"""Helpers shared by the test modules: the recording settings, events read back, moments, specs."""

from __future__ import annotations

import contextlib
import copy
import datetime
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from django.contrib.contenttypes.models import ContentType
from django.db import connection, models, transaction
from django.test.utils import override_settings
from django.utils import timezone

from audit_events.models import Event
from tests import settings as test_settings

if TYPE_CHECKING:
    from audit_events.registry import ModelSpec

# AUDIT_EVENTS of tests/settings.py without its relay's settings: what the recording tests start from.
BASE: dict[str, Any] = copy.deepcopy(
    {key: value for key, value in test_settings.AUDIT_EVENTS.items() if key != "RELAY"}
)


def settings_with(*labels: str) -> dict[str, Any]:
    """``BASE`` recording ``labels`` too."""
    return {**BASE, "MODELS": [*BASE["MODELS"], *labels]}


def settings_without(*labels: str) -> dict[str, Any]:
    """``BASE`` recording none of ``labels``."""
    return {**BASE, "MODELS": [m for m in BASE["MODELS"] if m not in labels]}


def registering(*labels: str) -> Any:
    """``override_settings`` recording ``labels`` on top of ``BASE``."""
    return override_settings(AUDIT_EVENTS=settings_with(*labels))


def events(model: type[models.Model], pk: Any = None) -> list[Event]:
    """The events of a model (of one row, given ``pk``), in the order they were written."""
    found = Event.objects.filter(content_type=ContentType.objects.get_for_model(model))
    if pk is not None:
        found = found.filter(object_pk=str(pk))
    return list(found.order_by("id"))


def only(model: type[models.Model], pk: Any = None) -> Event:
    """The one event of a model (of one row, given ``pk``)."""
    found = events(model, pk)
    assert len(found) == 1, found
    return found[0]


def spec_of(model: type[models.Model]) -> ModelSpec:
    """What the registry holds of ``model``, which the test's settings record."""
    from audit_events.registry import spec_for

    spec = spec_for(model)
    assert spec is not None, f"{model._meta.label} is not registered"
    return spec


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


def statements_apart(using: str = "default") -> int:
    """1 where the driver sends the statement turning JIT off on its own (psycopg 3's server-side binding),
    0 where it goes in the same round trip as the statement making events (``prepared.execute_after``)."""
    from django.db import connections

    from audit_events import prepared

    with connections[using].cursor() as cursor:
        return 0 if prepared.sends_together(cursor) else 1


# The event table's triggers that refuse UPDATE and DELETE, per vendor (migration 0002).
_REFUSING = {
    "sqlite": ("audit_events_no_update", "audit_events_no_delete"),
    "postgresql": ("audit_events_no_update_delete",),
    "mysql": ("audit_events_no_update", "audit_events_no_delete"),
}


@contextlib.contextmanager
def tampering(*names: str) -> Iterator[None]:
    """Inside, the event table's triggers ``names`` (by default those refusing UPDATE and DELETE) are
    gone; everything done inside is rolled back on exit, and the triggers are back.

    MySQL and MariaDB commit at ``DROP TRIGGER`` and ``CREATE TRIGGER``: there the test must be
    transactional (``django_db(transaction=True)``), and the triggers are made again after the rollback.
    """
    from audit_events.backends.mysql import without_definer

    names = names or _REFUSING[connection.vendor]
    on = f" ON {Event._meta.db_table}" if connection.vendor == "postgresql" else ""
    made_again = []
    if connection.vendor == "mysql":  # DDL commits: dropped before the transaction, made again after it
        with connection.cursor() as cursor:
            for name in names:
                cursor.execute(f"SHOW CREATE TRIGGER {name}")
                made_again.append(without_definer(cursor.fetchone()[2]))
                cursor.execute(f"DROP TRIGGER {name}")
    try:
        with transaction.atomic():
            if connection.vendor != "mysql":
                with connection.cursor() as cursor:
                    for name in names:
                        cursor.execute(f"DROP TRIGGER {name}{on}")
            yield
            transaction.set_rollback(True)
    finally:
        with connection.cursor() as cursor:
            for sql in made_again:
                cursor.execute(sql)


def upsert_on(*fields: str) -> dict[str, Any]:
    """``bulk_create(update_conflicts=True)``'s ``unique_fields``: none where Django's backend takes none
    (MySQL and MariaDB: ``ON DUPLICATE KEY UPDATE`` applies to any unique key the row meets)."""
    return {"unique_fields": list(fields)} if connection.features.supports_update_conflicts_with_target else {}


def storable_uuids() -> Any:
    """UUIDs the database stores: MariaDB's uuid column (Django 5+, MariaDB 10.7+) refuses a version
    over 5 without RFC 4122's variant, as it does from plain Django; any elsewhere."""
    from hypothesis import strategies as st

    if connection.vendor == "mysql":
        return st.sampled_from([1, 3, 4, 5]).flatmap(lambda version: st.uuids(version=version))
    return st.uuids()
