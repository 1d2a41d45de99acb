"""The migrations load in every project layout Django's own apps load in."""

from __future__ import annotations

from django.db.migrations.loader import MigrationLoader
from django.test.utils import override_settings


@override_settings(MIGRATION_MODULES={"contenttypes": None, "auth": None})
def test_the_migrations_load_when_contenttypes_is_not_migrated() -> None:
    # Django's own test suite runs so (runtests.py), as do projects that sync
    # contrib apps in their tests: a dependency on a named migration of an
    # unmigrated app is an error, one on "__first__" is not (django.contrib.admin's way).
    loader = MigrationLoader(None, ignore_no_migrations=True)
    assert ("audit_events", "0003_event_content_type_no_own_index") in loader.graph.nodes
    assert "contenttypes" in loader.unmigrated_apps
