"""Which models ``MODELS`` registers: labels, and the wildcards ``"app_label.*"`` and ``"*"``."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, Permission, User
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.test.utils import override_settings

from audit_events import registry
from audit_events.models import Event
from tests.models import Author, BookProxy, Unregistered

pytestmark = pytest.mark.django_db


def registered(models_setting: list[str]) -> set[type[models.Model]]:
    with override_settings(AUDIT_EVENTS={"MODELS": models_setting}):
        return {spec.model for spec in registry.registered_specs()}


def concrete_models_of(app_label: str) -> set[type[models.Model]]:
    found = set()
    for model in apps.get_app_config(app_label).get_models():
        concrete = model._meta.concrete_model
        assert concrete is not None
        found.add(concrete)
    return found


def test_an_app_wildcard_registers_every_model_of_that_app() -> None:
    tests_models = registered(["tests.*"])
    assert tests_models == concrete_models_of("tests")
    assert {Author, Unregistered} <= tests_models
    assert BookProxy not in tests_models  # a proxy registers its concrete model
    assert registered(["auth.*"]) == {User, Group, Permission}


def every_app_but_contrib() -> set[type[models.Model]]:
    """What "*" covers in tests/settings.py: the test apps' models and the peers' (tests/test_import.py)."""
    peers = concrete_models_of("peers") | concrete_models_of("reversion") | concrete_models_of("auditlog")
    peers |= concrete_models_of("pghistory") | concrete_models_of("pgtrigger")
    return concrete_models_of("tests") | peers


def test_the_wildcard_leaves_out_contrib_apps_and_the_event_model() -> None:
    everything = registered(["*"])
    assert everything == every_app_but_contrib()
    assert not {User, Group, Permission, ContentType, Event} & everything


def test_contrib_models_named_beside_the_wildcard_are_registered() -> None:
    assert registered(["*", "auth.User"]) == every_app_but_contrib() | {User}
    assert registered(["*", "auth.*"]) == every_app_but_contrib() | {User, Group, Permission}


def test_labels_and_wildcards_that_name_nothing_register_nothing_more() -> None:
    assert registered(["tests.Author", "nosuchapp.*", "tests.Nope", "audit_events.*"]) == {Author}


def test_models_under_the_wildcard_are_recorded_and_contrib_ones_not() -> None:
    with override_settings(AUDIT_EVENTS={"MODELS": ["*"]}):
        row = Unregistered.objects.create(name="recorded through '*'")
        user = User.objects.create(username="not recorded")
    recorded = Event.objects.values_list("content_type", "object_pk", "action")
    assert list(recorded) == [(ContentType.objects.get_for_model(Unregistered).pk, str(row.pk), "create")]
    assert user.pk is not None
