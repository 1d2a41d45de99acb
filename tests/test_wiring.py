"""What audit_events changes in Django, and that it gives each change back: unregistering every model
leaves Django as it found it, and a connection's transaction methods are wrapped only while its
transaction has events waiting. (The flush of the append-only event table, ``wiring.flush``, stays
while the app is installed, as the table's triggers do.)"""

from __future__ import annotations

from typing import Any

import pytest
from django.apps import apps
from django.core.serializers.base import DeserializedObject
from django.db import connections, models, transaction
from django.db.models import signals
from django.db.models.sql import UpdateQuery
from django.test.utils import override_settings

from tests.helpers import BASE, events
from tests.models import Author, Book, Tag

_TRANSACTION_METHODS = ("commit", "rollback", "savepoint", "savepoint_rollback", "close", "set_autocommit")
_SIGNALS = {
    "pre_save": signals.pre_save,
    "post_save": signals.post_save,
    "pre_delete": signals.pre_delete,
    "post_delete": signals.post_delete,
    "m2m_changed": signals.m2m_changed,
}


def _ours(value: Any) -> bool:
    """A function of this app's, or one it wrapped (``functools.wraps`` keeps the wrapped one's name)."""
    function = getattr(value, "__func__", value)
    return hasattr(function, "__wrapped__") or str(getattr(function, "__module__", "")).startswith("audit_events")


def patches() -> list[str]:
    """Every change of audit_events' to Django's classes, the models' classes, the signals and the connection."""
    found = []
    classes: list[type] = [models.QuerySet, UpdateQuery, DeserializedObject]
    classes += [
        model for model in apps.get_models(include_auto_created=True) if model._meta.app_label != "audit_events"
    ]
    for cls in classes:
        found += [f"{cls.__name__}.{name}" for name, value in vars(cls).items() if callable(value) and _ours(value)]
    for signal_name, signal in _SIGNALS.items():
        keys = [key for key, *_ in signal.receivers]
        found += [f"{signal_name} {key[0]}" for key in keys if str(key[0]).startswith("audit_events.")]
    return found + [f"connection.{name}" for name in wrapped_methods()]


def wrapped_methods() -> list[str]:
    """The transaction methods of the default connection replaced on the instance."""
    return [name for name in _TRANSACTION_METHODS if name in connections["default"].__dict__]


@pytest.mark.django_db(transaction=True)
def test_unregistering_every_model_gives_back_everything_it_changed() -> None:
    book = Book.objects.create(author=Author.objects.create(name="A"), title="T", pages=1)
    book.tags.add(Tag.objects.create(name="t"))
    registered = patches()
    assert any(p.startswith("Author.save_base") for p in registered), registered
    assert "QuerySet.update" in registered, registered
    assert "UpdateQuery.update_batch" in registered, registered
    assert any(p.startswith("m2m_changed") for p in registered), registered
    assert not [p for p in registered if p.startswith("connection.")], registered  # its transaction ended

    with override_settings(AUDIT_EVENTS={**BASE, "MODELS": []}):
        assert patches() == []
        Author.objects.create(name="unrecorded")
        assert patches() == []
    assert sorted(patches()) == sorted(registered)  # registered again: the same changes
    assert len(events(Author)) == 1


@transaction.atomic
def rolled_back() -> None:
    Author.objects.create(name="rolled back")
    raise ZeroDivisionError


@pytest.mark.django_db(transaction=True)
def test_a_connection_is_wrapped_only_while_its_transaction_has_events_waiting() -> None:
    Author.objects.create(name="autocommit")  # its own transaction: committed, given back
    assert wrapped_methods() == []
    with transaction.atomic():
        Author.objects.filter(name="nothing").update(name="none")  # no event: nothing wrapped
        assert wrapped_methods() == []
        Author.objects.create(name="waits for the COMMIT")
        assert wrapped_methods() == list(_TRANSACTION_METHODS)
    assert wrapped_methods() == []
    with pytest.raises(ZeroDivisionError):
        rolled_back()
    assert wrapped_methods() == []
    assert [e.state["name"] for e in events(Author) if e.state] == ["autocommit", "waits for the COMMIT"]
