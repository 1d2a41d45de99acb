"""unrecorded(reason): writes that leave no event, a note that says so, and audit_verify --repair that records them."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.db import transaction
from django.db.migrations.state import ProjectState

from audit_events import audit_context, restore, unrecorded
from audit_events.models import Action, Event, UnrecordedWrite
from audit_events.verify import Kind, verify_model
from tests.helpers import at_commit
from tests.models import Author, Book, Tag

pytestmark = pytest.mark.django_db


def test_writes_inside_leave_no_event_and_one_note_per_model_written() -> None:
    user = User.objects.create_user("importer")
    tag = Tag.objects.create(name="x")
    with audit_context(actor=user, ticket="OPS-7"), unrecorded(reason="import of the 2024 ledger"):
        ann = Author.objects.create(name="Ann")
        Author.objects.bulk_create([Author(name="Bob"), Author(name="Cy")])
        Author.objects.filter(name="Bob").update(name="Bobby")
        book = Book.objects.create(author=ann, title="t")
        book.tags.add(tag)
    at_commit()

    assert list(Event.objects.values_list("content_type__model", flat=True)) == ["tag"]  # created before
    notes = {note.content_type.model_class(): note for note in UnrecordedWrite.objects.all()}
    assert set(notes) == {Author, Book}
    note = notes[Author]
    assert (note.reason, note.actor_id, note.actor_repr) == ("import of the 2024 ledger", str(user.pk), "importer")
    assert note.context == {"ticket": "OPS-7"}
    assert note.started_at <= note.ended_at


def test_audit_verify_names_the_note_and_repair_records_the_rows_with_its_reason() -> None:
    author = Author.objects.create(name="Ann")
    with unrecorded(reason="data fix #12"):
        Author.objects.filter(pk=author.pk).update(name="Anne")
        Author.objects.create(name="Bob")
    at_commit()
    note = UnrecordedWrite.objects.get()

    found = list(verify_model(Author))
    assert [f.kind for f in found] == [Kind.DRIFT, Kind.DRIFT]
    assert all(f"written unrecorded: {note}" in f.detail for f in found)

    assert [f.repaired for f in verify_model(Author, repair=True)] == ["sync", "sync"]
    syncs = list(Event.objects.filter(action=Action.SYNC).order_by("id"))
    assert {(e.context["reason"], e.context["unrecorded_write"]) for e in syncs} == {("data fix #12", note.pk)}
    assert syncs[0].changes == {"name": ["Ann", "Anne"]}
    assert list(verify_model(Author)) == []


def test_a_drift_older_than_every_note_is_not_put_on_one() -> None:
    author = Author.objects.create(name="Ann")
    with unrecorded(reason="long ago"):
        Author.objects.create(name="Bob")
    at_commit()
    UnrecordedWrite.objects.update(ended_at=Event.objects.get(object_pk=str(author.pk)).created_at.replace(year=2000))
    Author.objects.filter(pk=author.pk)._raw_delete("default")  # by other means, after the note

    details = [f.detail for f in verify_model(Author)]
    assert len(details) == 2
    assert sum("written unrecorded" in d for d in details) == 1  # Bob's row has no event: the note may explain it


def test_a_block_that_fails_inside_a_transaction_leaves_no_note() -> None:
    def half_an_import() -> None:
        with transaction.atomic(), unrecorded(reason="half an import"):
            Author.objects.create(name="Ann")
            raise RuntimeError("the import failed")

    with pytest.raises(RuntimeError):
        half_an_import()
    assert not UnrecordedWrite.objects.exists()
    assert not Author.objects.exists()


def test_a_restore_inside_records_itself_and_leaves_no_note() -> None:
    author = Author.objects.create(name="Ann")
    pk = author.pk
    author.delete()
    with unrecorded(reason="not this"):
        restore(Author, pk)
    at_commit()
    assert [e.action for e in Event.objects.filter(object_pk=str(pk)).order_by("version")] == [
        "create",
        "delete",
        "restore",
    ]
    assert not UnrecordedWrite.objects.exists()


def test_nothing_written_leaves_no_note_and_a_reason_is_required() -> None:
    with unrecorded(reason="nothing"):
        Author.objects.count()
    assert not UnrecordedWrite.objects.exists()
    with pytest.raises(ValueError, match="needs a reason"):
        unrecorded(reason=" ")


def test_the_writes_inside_cost_what_plain_django_s_cost(django_assert_num_queries: object) -> None:
    with unrecorded(reason="import"):
        with django_assert_num_queries(1):  # type: ignore[operator]
            Author.objects.create(name="Ann")
        with django_assert_num_queries(1):  # type: ignore[operator]
            Author.objects.filter(name="Ann").update(name="Anne")


def test_a_data_migration_s_writes_through_historical_models_are_not_recorded() -> None:
    """RunPython gets historical models, which are not registered: its writes are drift, for --repair."""
    historical = ProjectState.from_apps(apps).apps.get_model("tests", "Author")
    historical.objects.create(name="from a migration")
    at_commit()
    assert not Event.objects.exists()
    assert [f.kind for f in verify_model(Author)] == [Kind.DRIFT]
