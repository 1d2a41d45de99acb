"""manage.py audit_import: the history django-simple-history, django-reversion, django-auditlog, django-pghistory kept.

The peers' tables are written through the peers' own API (their real packages), before the models are
registered here, as in a project that switches; then the models are registered and the history imported.
"""

from __future__ import annotations

import datetime
import decimal
import io
import json
from collections.abc import Iterator
from typing import Any

import pghistory
import pytest
import reversion
from auditlog.context import set_actor
from auditlog.models import LogEntry
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from reversion.models import Version

from audit_events import history, restore, state_at
from audit_events.importing import import_model, peer
from audit_events.models import Action, Event
from tests.helpers import moment
from tests.peers.models import Card, CardEvent, Entry, Ledger, Memo, Note, NoteBodyEvent, NoteEvent

pytestmark = pytest.mark.django_db

UTC = datetime.UTC
T = [datetime.datetime(2024, 5, day, 12, 0, tzinfo=UTC) for day in range(1, 11)]


def run(*args: Any) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


PEER_MODELS = ["peers.Ledger", "peers.Memo", "peers.Entry", "peers.Card", "peers.Note"]


def registered() -> Any:
    config = dict(settings.AUDIT_EVENTS)
    return override_settings(AUDIT_EVENTS={**config, "MODELS": [*config["MODELS"], *PEER_MODELS]})


def verify_clean() -> None:
    out = run("audit_verify", *PEER_MODELS)
    assert out.startswith("audit_verify: OK ("), out


def imported(model: type, pk: Any) -> list[tuple[Any, ...]]:
    return [
        (e.version, e.action, e.created_at, e.actor_id, e.actor_repr, e.context.get("reason"), e.changes)
        for e in history(model, pk)
    ]


def interrupted_after_one_batch(name: str, model: type, batch_size: int) -> None:
    """An import stopped (Ctrl-C) once its first batch is committed."""

    def interrupt(count: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_model(peer(name), model, batch_size=batch_size, progress=interrupt)


# --- django-simple-history ---------------------------------------------------------


def save_ledger(ledger: Ledger, at: datetime.datetime, user: User | None = None, reason: str | None = None) -> None:
    ledger._history_date = at  # type: ignore[attr-defined]
    ledger._history_user = user  # type: ignore[attr-defined]
    ledger._change_reason = reason  # type: ignore[attr-defined]
    ledger.save()


def delete_ledger(ledger: Ledger, at: datetime.datetime, user: User | None = None) -> None:
    ledger._history_date = at  # type: ignore[attr-defined]
    ledger._history_user = user  # type: ignore[attr-defined]
    ledger.delete()


@pytest.fixture
def ledgers() -> Iterator[dict[str, Any]]:
    """Two ledgers' simple-history: one created and changed twice, one created and deleted."""
    ada = User.objects.create(username="ada")
    kept = Ledger(name="kept", balance=decimal.Decimal("10.00"))
    save_ledger(kept, T[0], ada, "opened")
    kept.balance = decimal.Decimal("12.50")
    save_ledger(kept, T[2], ada, "deposit")
    kept.name, kept.opened, kept.owner = "kept!", datetime.date(2024, 1, 2), ada
    save_ledger(kept, T[4])
    gone = Ledger(name="gone")
    save_ledger(gone, T[1], ada)
    gone_pk = gone.pk
    delete_ledger(gone, T[3], ada)
    assert Ledger.history.count() == 5
    with registered():
        yield {"kept": kept, "gone_pk": gone_pk, "ada": ada}


def test_simple_history_import(ledgers: dict[str, Any]) -> None:
    kept, gone_pk, ada = ledgers["kept"], ledgers["gone_pk"], ledgers["ada"]
    assert not Event.objects.exists()
    out = run("audit_import", "simple_history")
    assert "peers.Ledger: 5 event(s) written." in out

    assert imported(Ledger, kept.pk) == [
        (1, Action.CREATE, T[0], str(ada.pk), "ada", "opened", {}),
        (2, Action.UPDATE, T[2], str(ada.pk), "ada", "deposit", {"balance": ["10.00", "12.50"]}),
        (3, Action.UPDATE, T[4], None, "", None, {
            "name": ["kept", "kept!"], "opened": [None, "2024-01-02"], "owner": [None, ada.pk],
        }),
    ]  # fmt: skip
    assert [e.action for e in history(Ledger, gone_pk)] == [Action.CREATE, Action.DELETE]
    ids = {h.history_id for h in Ledger.history.all()}
    contexts = [e.context for e in Event.objects.order_by("id")]
    assert {c["simple_history_id"] for c in contexts} == ids
    assert {c["imported_from"] for c in contexts} == {"simple_history"}
    # Every event carries the peer's full copy.
    assert all(e.state is not None for e in Event.objects.all())

    # The past reads back as simple-history's own as_of() gives it.
    for when in (T[0], T[1], T[2], T[3], T[4]):
        then = state_at(Ledger, kept.pk, at=when)
        peer_then = kept.history.as_of(when)
        assert then is not None
        assert (then.name, then.balance, then.opened, then.owner_id) == (
            peer_then.name, peer_then.balance, peer_then.opened, peer_then.owner_id,
        )  # fmt: skip
    assert state_at(Ledger, gone_pk, at=T[2]).name == "gone"  # type: ignore[union-attr]
    assert state_at(Ledger, gone_pk, at=T[3]) is None
    verify_clean()

    back = restore(Ledger, kept.pk, at=T[2])
    assert (back.name, back.balance) == ("kept", decimal.Decimal("12.50"))
    assert restore(Ledger, gone_pk).name == "gone"
    verify_clean()


def test_simple_history_second_run_imports_nothing(ledgers: dict[str, Any]) -> None:
    run("audit_import", "simple_history")
    events = list(Event.objects.values_list("id", "hash"))
    out = run("audit_import", "simple_history")
    assert "peers.Ledger: 0 event(s) written; 5 simple_history row(s) already imported." in out
    assert list(Event.objects.values_list("id", "hash")) == events


def test_simple_history_resumes_after_interruption(ledgers: dict[str, Any]) -> None:
    interrupted_after_one_batch("simple_history", Ledger, batch_size=2)
    assert Event.objects.count() == 2  # the first batch committed: T[0] and T[1]
    out = run("audit_import", "simple_history")
    assert "peers.Ledger: 3 event(s) written; 2 simple_history row(s) already imported." in out
    kept = [(e.version, e.action, e.created_at) for e in history(Ledger, ledgers["kept"].pk)]
    assert kept == [(1, Action.CREATE, T[0]), (2, Action.UPDATE, T[2]), (3, Action.UPDATE, T[4])]
    assert history(Ledger, ledgers["kept"].pk)[1].changes == {"balance": ["10.00", "12.50"]}  # from the state before
    assert [e.action for e in history(Ledger, ledgers["gone_pk"])] == [Action.CREATE, Action.DELETE]
    verify_clean()


def test_simple_history_dry_run_writes_nothing(ledgers: dict[str, Any]) -> None:
    out = run("audit_import", "simple_history", "peers.Ledger", "--dry-run")
    assert "peers.Ledger: 5 event(s) would be written." in out
    assert not Event.objects.exists()


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_counts_the_peer_rows(ledgers: dict[str, Any]) -> None:
    tty = TTY()
    call_command("audit_import", "simple_history", "--batch-size", "2", stdout=io.StringIO(), stderr=tty)
    bar = "\rpeers.Ledger [{}] {}/5"
    assert (
        tty.getvalue()
        == bar.format("#" * 12 + "." * 18, 2) + bar.format("#" * 24 + "." * 6, 4) + bar.format("#" * 30, 5) + "\n"
    )
    assert Event.objects.count() == 5


def test_row_with_events_of_its_own_is_skipped(ledgers: dict[str, Any]) -> None:
    kept = ledgers["kept"]
    kept.balance = decimal.Decimal("99.00")
    kept.save()  # recorded now: a row with events of its own (and a fourth simple-history row)
    out = run("audit_import", "simple_history")
    assert f"peers.Ledger pk={kept.pk}: skipped (4 simple_history row(s)): it already has events of its own" in out
    assert "peers.Ledger: 2 event(s) written." in out
    assert [e.action for e in history(Ledger, kept.pk)] == [Action.UPDATE]  # its first event: the whole row


def test_unknown_or_untracked_model_is_refused(ledgers: dict[str, Any]) -> None:
    with pytest.raises(CommandError, match=r"peers\.Memo has no simple_history history to import"):
        run("audit_import", "simple_history", "peers.Memo")
    with pytest.raises(CommandError, match="not registered for auditing"):
        run("audit_import", "simple_history", "tests.Unregistered")


# --- django-reversion --------------------------------------------------------------


def save_memo(memo: Memo, at: datetime.datetime, user: User | None = None, comment: str = "") -> None:
    with reversion.create_revision():
        memo.save()
        reversion.set_date_created(at)
        if user is not None:
            reversion.set_user(user)
        reversion.set_comment(comment)


@pytest.fixture
def memos() -> Iterator[dict[str, Any]]:
    """Two memos' reversion history: one saved three times, one saved twice then deleted."""
    bob = User.objects.create(username="bob")
    kept = Memo(title="kept", amount=decimal.Decimal("1.00"))
    save_memo(kept, T[0], bob, "Added.")
    kept.amount = decimal.Decimal("2.00")
    save_memo(kept, T[2], bob, "Changed amount.")
    kept.title, kept.due = "kept!", T[9]
    save_memo(kept, T[4])
    gone = Memo(title="gone")
    save_memo(gone, T[1], bob)
    gone.body = "later"
    save_memo(gone, T[3], bob)
    gone_pk = gone.pk
    gone.delete()  # reversion records no delete
    assert Version.objects.count() == 5
    with registered():
        yield {"kept": kept, "gone_pk": gone_pk, "bob": bob}


def test_reversion_import(memos: dict[str, Any]) -> None:
    kept, gone_pk, bob = memos["kept"], memos["gone_pk"], memos["bob"]
    out = run("audit_import", "reversion")
    assert "peers.Memo: 5 event(s) written, and 1 delete event(s) for rows gone from the table." in out
    assert imported(Memo, kept.pk) == [
        (1, Action.CREATE, T[0], str(bob.pk), "bob", "Added.", {}),
        (2, Action.UPDATE, T[2], str(bob.pk), "bob", "Changed amount.", {"amount": ["1.00", "2.00"]}),
        (3, Action.UPDATE, T[4], None, "", None, {"title": ["kept", "kept!"], "due": [None, T[9].isoformat()]}),
    ]
    gone_events = list(history(Memo, gone_pk))
    assert [e.action for e in gone_events] == [Action.CREATE, Action.UPDATE, Action.DELETE]
    assert "records no deletes" in gone_events[-1].context["reason"]
    versions = {v.pk for v in Version.objects.all()}
    assert {e.context["reversion_version_id"] for e in gone_events[:2] + list(history(Memo, kept.pk))} == versions
    # One revision, one operation.
    assert len({e.operation for e in history(Memo, kept.pk)}) == 3

    then = state_at(Memo, kept.pk, at=T[3])
    assert then is not None
    assert (then.title, then.amount, then.due) == ("kept", decimal.Decimal("2.00"), None)
    assert state_at(Memo, gone_pk, at=T[3]).body == "later"  # type: ignore[union-attr]
    verify_clean()
    assert restore(Memo, kept.pk, at=T[0]).amount == decimal.Decimal("1.00")
    assert restore(Memo, gone_pk).body == "later"
    verify_clean()

    events = Event.objects.count()
    out = run("audit_import", "reversion")
    assert "peers.Memo: 0 event(s) written; 5 reversion row(s) already imported." in out
    assert Event.objects.count() == events


def test_reversion_dry_run_writes_nothing(memos: dict[str, Any]) -> None:
    out = run("audit_import", "reversion", "--dry-run")
    assert "peers.Memo: 5 event(s) would be written, and 1 delete event(s) for rows gone from the table." in out
    assert not Event.objects.exists()


def test_reversion_resumes_after_interruption(memos: dict[str, Any]) -> None:
    interrupted_after_one_batch("reversion", Memo, batch_size=3)
    assert Event.objects.count() == 3
    out = run("audit_import", "reversion")
    assert "peers.Memo: 2 event(s) written, and 1 delete event(s) for rows gone from the table; 3 reversion" in out
    assert [e.version for e in history(Memo, memos["kept"].pk)] == [1, 2, 3]
    verify_clean()


# --- django-auditlog ---------------------------------------------------------------


@pytest.fixture
def entries() -> Iterator[dict[str, Any]]:
    """Two entries' auditlog history, at the real times of their writes: one created and changed, one deleted."""
    cy = User.objects.create(username="cy")
    times = []
    with set_actor(cy, remote_addr="10.0.0.1"):
        kept = Entry.objects.create(title="kept", amount=decimal.Decimal("3.00"), data={"a": [1, 2]})
        times.append(moment())
        kept.amount, kept.flag, kept.due, kept.owner = decimal.Decimal("4.50"), True, T[9], cy
        kept.save()
        times.append(moment())
    kept.title, kept.data = "kept!", {"b": None}
    kept.save()
    times.append(moment())
    gone = Entry.objects.create(title="gone")
    gone_pk = gone.pk
    gone.delete()
    assert LogEntry.objects.count() == 5
    with registered():
        yield {"kept": kept, "gone_pk": gone_pk, "cy": cy, "times": times}


def test_auditlog_import(entries: dict[str, Any]) -> None:
    kept, gone_pk, cy, times = entries["kept"], entries["gone_pk"], entries["cy"], entries["times"]
    out = run("audit_import", "auditlog")
    assert "peers.Entry: 5 event(s) written." in out
    events = list(history(Entry, kept.pk))
    logged = LogEntry.objects.filter(object_pk=str(kept.pk)).order_by("timestamp")
    assert [(e.version, e.action, e.created_at, e.actor_id, e.actor_repr) for e in events] == [
        (1, Action.CREATE, logged[0].timestamp, str(cy.pk), "cy"),
        (2, Action.UPDATE, logged[1].timestamp, str(cy.pk), "cy"),
        (3, Action.UPDATE, logged[2].timestamp, None, ""),
    ]
    assert events[0].context == {"imported_from": "auditlog", "auditlog_id": logged[0].pk, "remote_addr": "10.0.0.1"}
    assert events[1].changes == {
        "amount": ["3.00", "4.50"], "flag": [False, True], "due": [None, T[9].isoformat()], "owner": [None, cy.pk],
    }  # fmt: skip
    assert events[2].changes == {"title": ["kept", "kept!"], "data": [{"a": [1, 2]}, {"b": None}]}
    assert [e.action for e in history(Entry, gone_pk)] == [Action.CREATE, Action.DELETE]

    # The text auditlog kept reads back as the values written.
    first = state_at(Entry, kept.pk, at=times[0])
    assert first is not None
    assert (first.title, first.amount, first.flag, first.due, first.data) == (
        "kept", decimal.Decimal("3.00"), False, None, {"a": [1, 2]},
    )  # fmt: skip
    second = state_at(Entry, kept.pk, at=times[1])
    assert second is not None
    assert (second.amount, second.flag, second.due, second.owner_id) == (decimal.Decimal("4.50"), True, T[9], cy.pk)
    verify_clean()
    assert restore(Entry, kept.pk, at=times[0]).amount == decimal.Decimal("3.00")
    assert restore(Entry, gone_pk).title == "gone"
    verify_clean()

    count = Event.objects.count()
    out = run("audit_import", "auditlog", "peers.Entry")
    assert "peers.Entry: 0 event(s) written; 5 auditlog row(s) already imported." in out
    assert Event.objects.count() == count


def test_auditlog_dry_run_and_resume(entries: dict[str, Any]) -> None:
    out = run("audit_import", "auditlog", "--dry-run")
    assert "peers.Entry: 5 event(s) would be written." in out
    assert not Event.objects.exists()

    interrupted_after_one_batch("auditlog", Entry, batch_size=2)
    assert Event.objects.count() == 2
    out = run("audit_import", "auditlog")
    assert "peers.Entry: 3 event(s) written; 2 auditlog row(s) already imported." in out
    assert history(Entry, entries["kept"].pk)[2].changes == {
        "title": ["kept", "kept!"],
        "data": [{"a": [1, 2]}, {"b": None}],
    }
    verify_clean()


# --- django-pghistory (PostgreSQL: its events are written by triggers) -------------
#
# pghistory stamps an event with the time of its transaction (NOW()): these tests commit each write
# (transaction=True), so that the writes have times of their own, as in a running project.


def context_works() -> None:
    """pghistory.context() sends its SET and the write as one query of two statements, which PostgreSQL refuses
    with server-side binding (psycopg 3 ``server_side_binding``, as ``TEST_PG_PREPARED=1`` runs): pghistory's
    limit, not the import's."""
    if settings.DATABASES["default"].get("OPTIONS", {}).get("server_side_binding"):
        pytest.skip("pghistory.context() cannot run with server-side binding (a query of two statements)")


@pytest.fixture
def cards() -> Iterator[dict[str, Any]]:
    """Two cards' pghistory events: one created and changed twice, one created and deleted."""
    context_works()
    dan = User.objects.create(username="dan")
    times = []
    with pghistory.context(user=dan.pk, url="/cards/new/") as created:
        kept = Card.objects.create(title="kept", amount=decimal.Decimal("1.00"), data={"a": [1]})
    times.append(moment())
    with pghistory.context(user=dan.pk, reason="raise"):
        kept.amount, kept.due, kept.owner = decimal.Decimal("2.50"), T[9], dan
        kept.save()
    times.append(moment())
    kept.title, kept.data = "kept!", {"b": None}
    kept.save()  # no context: no actor
    times.append(moment())
    gone = Card.objects.create(title="gone")
    gone_pk = gone.pk
    times.append(moment())
    with pghistory.context(user=dan.pk):
        gone.delete()
    times.append(moment())
    assert list(CardEvent.objects.order_by("pgh_id").values_list("pgh_label", flat=True)) == [
        "insert", "update", "update", "insert", "delete",
    ]  # fmt: skip
    with registered():
        yield {"kept": kept, "gone_pk": gone_pk, "dan": dan, "times": times, "created": created}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_pghistory_import(cards: dict[str, Any]) -> None:
    kept, gone_pk, dan, times = cards["kept"], cards["gone_pk"], cards["dan"], cards["times"]
    out = run("audit_import", "pghistory", "peers.Card")
    assert "peers.Card: 5 event(s) written." in out

    logged = list(CardEvent.objects.filter(pgh_obj_id=kept.pk).order_by("pgh_id"))
    assert imported(Card, kept.pk) == [
        (1, Action.CREATE, logged[0].pgh_created_at, str(dan.pk), "dan", None, {}),
        (2, Action.UPDATE, logged[1].pgh_created_at, str(dan.pk), "dan", "raise", {
            "amount": ["1.00", "2.50"], "due": [None, T[9].isoformat()], "owner": [None, dan.pk],
        }),
        (3, Action.UPDATE, logged[2].pgh_created_at, None, "", None, {
            "title": ["kept", "kept!"], "data": [{"a": [1]}, {"b": None}],
        }),
    ]  # fmt: skip
    first = history(Card, kept.pk)[0]
    assert first.context == {
        "imported_from": "pghistory",
        "pghistory_event": f"peers.CardEvent:{logged[0].pgh_id}",
        "path": "/cards/new/",
        "pghistory_context_id": str(cards["created"].id),
    }
    assert first.state is not None
    assert first.state["title"] == "kept"
    # Each pghistory context is one operation; events outside any context have one each.
    assert len({e.operation for e in Event.objects.all()}) == 5
    gone_events = list(history(Card, gone_pk))
    assert [(e.action, e.actor_repr) for e in gone_events] == [(Action.CREATE, ""), (Action.DELETE, "dan")]
    assert gone_events[1].state is not None
    assert gone_events[1].state["title"] == "gone"

    then = state_at(Card, kept.pk, at=times[0])
    assert then is not None
    assert (then.title, then.amount, then.due, then.owner_id, then.data) == (
        "kept", decimal.Decimal("1.00"), None, None, {"a": [1]},
    )  # fmt: skip
    then = state_at(Card, kept.pk, at=times[1])
    assert then is not None
    assert (then.title, then.amount, then.due, then.owner_id) == ("kept", decimal.Decimal("2.50"), T[9], dan.pk)
    assert state_at(Card, gone_pk, at=times[3]).title == "gone"  # type: ignore[union-attr]
    assert state_at(Card, gone_pk, at=times[4]) is None
    verify_clean()

    back = restore(Card, kept.pk, at=times[0])
    assert (back.title, back.amount, back.owner_id) == ("kept", decimal.Decimal("1.00"), None)
    assert restore(Card, gone_pk).title == "gone"
    verify_clean()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_pghistory_second_run_imports_nothing(cards: dict[str, Any]) -> None:
    run("audit_import", "pghistory")
    events = list(Event.objects.values_list("id", "hash"))
    assert len(events) == 5
    out = run("audit_import", "pghistory")
    assert "peers.Card: 0 event(s) written; 5 pghistory row(s) already imported." in out
    assert list(Event.objects.values_list("id", "hash")) == events


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_pghistory_dry_run_and_resume(cards: dict[str, Any]) -> None:
    out = run("audit_import", "pghistory", "peers.Card", "--dry-run")
    assert "peers.Card: 5 event(s) would be written." in out
    assert not Event.objects.exists()

    interrupted_after_one_batch("pghistory", Card, batch_size=2)
    assert Event.objects.count() == 2  # the first batch committed: kept's insert and update
    out = run("audit_import", "pghistory", "peers.Card")
    assert "peers.Card: 3 event(s) written; 2 pghistory row(s) already imported." in out
    kept = list(history(Card, cards["kept"].pk))
    assert [(e.version, e.action) for e in kept] == [(1, Action.CREATE), (2, Action.UPDATE), (3, Action.UPDATE)]
    assert kept[2].changes == {"title": ["kept", "kept!"], "data": [{"a": [1]}, {"b": None}]}  # from the state before
    assert [e.action for e in history(Card, cards["gone_pk"])] == [Action.CREATE, Action.DELETE]
    verify_clean()


@pytest.fixture
def notes() -> Iterator[dict[str, Any]]:
    """Notes tracked by two event models, each of some fields (``views`` by neither), with no delete tracker."""
    note = Note.objects.create(title="note", amount=decimal.Decimal("1.00"), body="first", views=3)
    times = [moment()]  # NoteEvent "insert": title and amount
    note.body = "second"
    note.save()  # NoteBodyEvent "body_changed"; NoteEvent's update tracks title and amount only: nothing
    times.append(moment())
    note.amount, note.views = decimal.Decimal("2.00"), 4
    note.save()  # NoteEvent "update" (and "before_update", the values before: not imported)
    times.append(moment())
    note.views = 5
    note.save()  # tracked by no event model
    gone = Note.objects.create(title="gone", body="unsaid")
    gone_pk = gone.pk
    gone.delete()  # no delete tracker
    assert NoteEvent.objects.count() == 4
    assert NoteBodyEvent.objects.count() == 1
    with registered():
        yield {"note": note, "gone_pk": gone_pk, "times": times}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_pghistory_subset_of_fields_several_event_models_no_deletes(notes: dict[str, Any]) -> None:
    note, gone_pk, times = notes["note"], notes["gone_pk"], notes["times"]
    out = run("audit_import", "pghistory", "peers.Note", "--dry-run")
    assert "peers.Note: 4 event(s) would be written, and 1 delete event(s) for rows gone from the table." in out
    assert not Event.objects.exists()
    out = run("audit_import", "pghistory", "peers.Note")
    assert "peers.Note: 4 event(s) written, and 1 delete event(s) for rows gone from the table." in out

    events = list(history(Note, note.pk))
    # The two tables merged in time order; the fields no event model copies are in no state.
    assert [(e.action, e.changes, e.context["pghistory_event"].split(":")[0]) for e in events] == [
        (Action.CREATE, {}, "peers.NoteEvent"),
        (Action.UPDATE, {"body": [None, "second"]}, "peers.NoteBodyEvent"),
        (Action.UPDATE, {"amount": ["1.00", "2.00"]}, "peers.NoteEvent"),
    ]
    assert events[0].state == {"id": note.pk, "title": "note", "amount": "1.00"}
    assert events[2].state == {"id": note.pk, "title": "note", "amount": "2.00", "body": "second"}
    gone = list(history(Note, gone_pk))
    assert [e.action for e in gone] == [Action.CREATE, Action.DELETE]
    assert "no DeleteEvent" in gone[1].context["reason"]
    assert gone[1].state == {"id": gone_pk, "title": "gone", "amount": "0.00"}

    then = state_at(Note, note.pk, at=times[1])
    assert then is not None
    assert (then.title, then.amount, then.body) == ("note", decimal.Decimal("1.00"), "second")

    # What pghistory did not track is not invented: audit_verify says which live values no event holds, and
    # --repair records them, as of now.
    printed = io.StringIO()
    with pytest.raises(CommandError, match="1 finding"):
        call_command("audit_verify", "peers.Note", stdout=printed, stderr=io.StringIO())
    assert printed.getvalue() == f"peers.Note pk={note.pk} drift: views: recorded None, live 5\n"
    call_command("audit_verify", "peers.Note", "--repair", stdout=io.StringIO(), stderr=io.StringIO())
    verify_clean()

    # Put back as it was: the fields recorded then; body and views, which no event held then, keep their values.
    back = restore(Note, note.pk, at=times[0])
    assert (back.title, back.amount, back.body, back.views) == ("note", decimal.Decimal("1.00"), "second", 5)
    back = restore(Note, gone_pk)
    assert (back.title, back.amount, back.body) == ("gone", decimal.Decimal("0.00"), "")  # body: never recorded
    # The restore events hold the rows as written, the fields kept (or defaulted) too: replay agrees.
    assert history(Note, note.pk).last().state == {  # type: ignore[union-attr]
        "id": note.pk, "title": "note", "amount": "1.00", "body": "second", "views": 5,
    }  # fmt: skip
    verify_clean()

    with pytest.raises(CommandError, match=r"peers\.Ledger has no pghistory history to import"):
        run("audit_import", "pghistory", "peers.Ledger")


def test_restore_of_an_imported_state_lacking_fields_keeps_them(memos: dict[str, Any]) -> None:
    """A version without ``body`` (a field added since): restore(at=) puts back what was recorded, keeps body."""
    kept = memos["kept"]
    with connection.cursor() as cursor:  # the field's value as the table holds it, written before the import
        cursor.execute(f"UPDATE {Memo._meta.db_table} SET body = %s WHERE id = %s", ["written later", kept.pk])
    for version in Version.objects.filter(object_id=str(kept.pk)):
        data = json.loads(version.serialized_data)
        del data[0]["fields"]["body"]
        Version.objects.filter(pk=version.pk).update(serialized_data=json.dumps(data))
    run("audit_import", "reversion")
    assert "body" not in history(Memo, kept.pk)[0].state  # type: ignore[operator]
    printed = io.StringIO()
    with pytest.raises(CommandError, match="1 finding"):
        call_command("audit_verify", "peers.Memo", stdout=printed, stderr=io.StringIO())
    assert printed.getvalue() == f"peers.Memo pk={kept.pk} drift: body: recorded None, live 'written later'\n"
    call_command("audit_verify", "peers.Memo", "--repair", stdout=io.StringIO(), stderr=io.StringIO())

    back = restore(Memo, kept.pk, at=T[0])
    assert (back.title, back.amount, back.body) == ("kept", decimal.Decimal("1.00"), "written later")
    assert history(Memo, kept.pk).last().state["body"] == "written later"  # type: ignore[union-attr,index]
    verify_clean()
