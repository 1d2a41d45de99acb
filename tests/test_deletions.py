"""The public reading of deletions: ``deleted(Model)``, ``operation_events(uuid)`` and an undo's plan."""

from __future__ import annotations

import pytest

import audit_events
from audit_events import deleted, operation_events, restore
from audit_events.deletions import undo_plan
from audit_events.models import Action
from tests.models import Author, Book, Review, Tag
from tests.test_admin import delete_family, make_family

pytestmark = pytest.mark.django_db


def test_deleted_lists_the_rows_deleted_now_newest_first() -> None:
    first = delete_family(make_family("First", "f@example.com"))
    second = delete_family(make_family("Second", "s@example.com"))
    Author.objects.create(name="Alive")
    assert list(deleted(Author)) == [second, first]
    assert [e.state["name"] for e in deleted(Author)] == ["Second", "First"]  # type: ignore[index]
    restore(Author, first.object_pk)
    assert list(deleted(Author)) == [second]  # brought back: no longer deleted
    assert deleted(Tag).count() == 0
    assert "deleted" in audit_events.__all__
    assert "operation_events" in audit_events.__all__


def test_operation_events_are_what_was_deleted_together() -> None:
    deletion = delete_family(make_family())
    events = operation_events(deletion.operation)
    assert [e.action for e in events] == [Action.DELETE] * 6
    assert sorted(e.content_type.model for e in events) == ["author", "book", "book", "review", "review", "review"]
    assert list(operation_events(str(deletion.operation))) == list(events)


def test_undo_plan_reads_what_restore_writes() -> None:
    author = make_family()
    other = Book.objects.create(author=Author.objects.create(name="Other"), title="Edited", editor=author)
    deletion = delete_family(author)
    plan = undo_plan(deletion)
    assert [(g.model, len(g.rows)) for g in plan.recreated] == [(Author, 1), (Book, 2), (Review, 3)]
    assert [(g.model, [r.pk for r in g.rows], [r.fields for r in g.rows]) for g in plan.reattached] == [
        (Book, [other.pk], [("editor",)])
    ]
    assert plan.conflicts == ()
    Author.objects.create(name="Newcomer", email="ursula@example.com")
    assert [c for c in undo_plan(deletion).conflicts if "email" in c.message.lower()]
