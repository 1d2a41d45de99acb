"""The migrations load in every project layout Django's own apps load in."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import DatabaseError, transaction
from django.db.migrations.loader import MigrationLoader
from django.test.utils import override_settings

from audit_events.models import Event
from tests.models import Author


# django-reversion and django-auditlog (installed for tests/test_import.py) name contenttypes' first migration:
# unmigrated too.
@override_settings(MIGRATION_MODULES={"contenttypes": None, "auth": None, "reversion": None, "auditlog": None})
def test_the_migrations_load_when_contenttypes_is_not_migrated() -> None:
    # Django's own test suite runs so (runtests.py), as do projects that sync
    # contrib apps in their tests: a dependency on a named migration of an
    # unmigrated app is an error, one on "__first__" is not (django.contrib.admin's way).
    loader = MigrationLoader(None, ignore_no_migrations=True)
    assert ("audit_events", "0003_event_content_type_no_own_index") in loader.graph.nodes
    assert "contenttypes" in loader.unmigrated_apps


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("atomic", [False, True], ids=["autocommit", "atomic"])
def test_a_write_before_migrate_says_to_run_it_and_is_not_kept(atomic: bool) -> None:
    # A new user adds the app and forgets `migrate`: the write fails, telling them what to do.
    call_command("migrate", "audit_events", "zero", verbosity=0)
    try:
        with pytest.raises(DatabaseError, match=r"run `manage\.py migrate audit_events`") as info:
            _write(atomic)
        assert "audit_events_event" in str(info.value)
        assert not Author.objects.exists()  # not silently unrecorded: not written at all
    finally:
        call_command("migrate", "audit_events", verbosity=0)
    Author.objects.create(name="Grace")  # and once migrated, recorded
    assert Event.objects.filter(action="create").count() == 1


def _write(atomic: bool) -> None:
    if atomic:
        with transaction.atomic():
            Author.objects.create(name="Ada")
    else:
        Author.objects.create(name="Ada")
