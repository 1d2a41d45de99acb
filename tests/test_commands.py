"""The management commands: audit_verify, audit_snapshot, audit_history, audit_restore."""

from __future__ import annotations

import datetime
import io
from typing import Any

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings

from audit_events.context import audit_context, capture_paused
from audit_events.management.progress import ProgressBar
from audit_events.models import Action, Event
from tests.helpers import moment, tampering
from tests.models import Author, Book, Code, Ticket

pytestmark = pytest.mark.django_db

TABLE = Event._meta.db_table


def run(*args: Any, **options: Any) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


def fails(*args: Any, **options: Any) -> CommandError:
    """Run a command that must fail with a one-line CommandError and write no event."""
    events = Event.objects.count()
    with pytest.raises(CommandError) as info:
        run(*args, **options)
    assert "\n" not in str(info.value)
    assert Event.objects.count() == events
    return info.value


def raw(sql: str, params: list[Any] | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


# --- audit_verify -------------------------------------------------------------


def test_verify_ok() -> None:
    Author.objects.create(name="Ada").delete()
    Code.objects.create(code="x", label="y")
    out = run("audit_verify")
    assert out.startswith("audit_verify: OK (")
    assert "tests.Author" in out
    assert "tests.Code" in out


@pytest.mark.django_db(transaction=True)  # MySQL: DROP TRIGGER commits (tests.helpers.tampering)
def test_verify_names_a_tampered_row_and_exits_non_zero() -> None:
    author = Author.objects.create(name="Ada")
    author.name = "Ada L."
    author.save()
    with tampering():
        raw(f"UPDATE {TABLE} SET changes = %s WHERE version = 2", ['{"name": ["Ada", "Eve"]}'])
        out = io.StringIO()
        with pytest.raises(CommandError, match=r"3 finding\(s\)") as info:
            call_command("audit_verify", "tests.Author", stdout=out, stderr=io.StringIO())
        assert info.value.returncode == 1
        unprotected, tampered, drift = out.getvalue().splitlines()
        assert unprotected.startswith(f"{TABLE} unprotected: ")
        assert tampered.startswith(f"tests.Author pk={author.pk} tampered: version 2 (event id ")
        assert drift == f"tests.Author pk={author.pk} drift: name: recorded 'Eve', live 'Ada L.'"
    assert run("audit_verify", "tests.Author").startswith("audit_verify: OK")


def test_verify_finds_drift_repairs_it_then_is_clean() -> None:
    author = Author.objects.create(name="Ada")
    raw(f"UPDATE {Author._meta.db_table} SET name = 'Mallory' WHERE id = %s", [author.pk])
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("audit_verify", stdout=out, stderr=io.StringIO())
    assert out.getvalue() == (f"tests.Author pk={author.pk} drift: name: recorded 'Ada', live 'Mallory'\n")
    repaired = run("audit_verify", "--repair")
    assert f"tests.Author pk={author.pk} drift: name: recorded 'Ada', live 'Mallory' [repaired: sync event" in repaired
    assert "1 drift(s) repaired" in repaired
    assert Event.objects.filter(action=Action.SYNC).count() == 1
    assert run("audit_verify").startswith("audit_verify: OK")


@pytest.mark.django_db(transaction=True)  # MySQL: DROP TRIGGER commits (tests.helpers.tampering)
def test_verify_proves_the_chains_of_models_no_longer_registered() -> None:
    author = Author.objects.create(name="Ada")
    author.name = "Ada L."
    author.save()
    others = [label for label in settings.AUDIT_EVENTS["MODELS"] if label != "tests.Author"]
    with override_settings(AUDIT_EVENTS={**settings.AUDIT_EVENTS, "MODELS": others}):
        out = run("audit_verify")
        assert "tests.author (chains only: not registered)" in out
        assert "tests.Author," not in out
        with tampering():
            raw(f"UPDATE {TABLE} SET actor_repr = 'x' WHERE version = 2")
            printed = io.StringIO()
            with pytest.raises(CommandError, match=r"2 finding\(s\)"):
                call_command("audit_verify", "--repair", stdout=printed, stderr=io.StringIO())
            assert printed.getvalue().splitlines()[1].startswith(f"tests.author pk={author.pk} tampered: version 2")
        assert "not registered" in str(fails("audit_verify", "tests.Author"))


@pytest.mark.django_db(transaction=True)  # MySQL: DROP TRIGGER commits (tests.helpers.tampering)
def test_verify_reports_missing_triggers() -> None:
    Author.objects.create(name="Ada")
    missing = "audit_events_no_truncate" if connection.vendor == "postgresql" else "audit_events_no_delete"
    with tampering(missing):
        printed = io.StringIO()
        with pytest.raises(CommandError, match=r"1 finding\(s\)"):
            call_command("audit_verify", "tests.Author", stdout=printed, stderr=io.StringIO())
        assert printed.getvalue() == (
            f"{TABLE} unprotected: the database would accept UPDATE/DELETE, trigger(s) {missing} missing "
            "(re-create them: see migration audit_events 0002)\n"
        )
    assert run("audit_verify", "tests.Author").startswith("audit_verify: OK")


def test_verify_since() -> None:
    old = Author.objects.create(name="old")
    cutoff = moment()
    Author.objects.create(name="new")
    raw(f"UPDATE {Author._meta.db_table} SET name = 'x' WHERE id = %s", [old.pk])
    assert run("audit_verify", "--since", cutoff.isoformat()).startswith("audit_verify: OK")
    assert run("audit_verify", "--since", "2099-01-01").startswith("audit_verify: OK")  # a date alone: 00:00 there
    fails("audit_verify", "--since", (cutoff - datetime.timedelta(days=1)).date().isoformat() + "T00:00:00+00:00")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tests.Nope"], "Unknown model 'tests.Nope'"),
        (["nope"], "Unknown model 'nope'"),
        (["tests.Unregistered"], "tests.Unregistered is not registered for auditing"),
        (["--since", "yesterday"], "--since 'yesterday' is not an ISO-8601"),
        (["--since", "2024-13-45"], "is not an ISO-8601"),
        (["--since", "2024-05-01T12:00"], "has no time zone while USE_TZ is on"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
    ],
)
def test_verify_bad_arguments(args: list[str], message: str) -> None:
    Author.objects.create(name="Ada")
    raw(f"UPDATE {Author._meta.db_table} SET name = 'x'")  # drift that --repair would fix: it must not run
    assert message in str(fails("audit_verify", "--repair", *args))


# --- audit_snapshot -------------------------------------------------------------


def test_snapshot_writes_once() -> None:
    with capture_paused():
        Author.objects.bulk_create([Author(name=f"a{i}") for i in range(3)])
    Author.objects.create(name="recorded")
    out = run("audit_snapshot", "tests.Author", "--batch-size", "2")
    assert out == "tests.Author: 3 snapshot event(s) written.\n"
    assert Event.objects.filter(action=Action.SNAPSHOT).count() == 3
    assert run("audit_snapshot", "tests.Author") == "tests.Author: 0 snapshot event(s) written.\n"
    assert run("audit_snapshot", verbosity=0) == ""
    assert Event.objects.filter(action=Action.SNAPSHOT).count() == 3


def test_snapshot_bad_arguments() -> None:
    with capture_paused():
        Author.objects.create(name="a")
    assert "Unknown model 'tests.Nope'" in str(fails("audit_snapshot", "tests.Author", "tests.Nope"))
    assert "not registered" in str(fails("audit_snapshot", "tests.Unregistered"))


# --- the progress bar -------------------------------------------------------------


def test_progress_bar_draws_on_a_terminal_only() -> None:
    with capture_paused():
        Author.objects.bulk_create([Author(name=f"a{i}") for i in range(4)])
    tty = TTY()
    call_command("audit_snapshot", "tests.Author", "--batch-size", "2", stdout=io.StringIO(), stderr=tty)
    assert tty.getvalue() == (
        "\rtests.Author [" + "#" * 15 + "." * 15 + "] 2/4" + "\rtests.Author [" + "#" * 30 + "] 4/4\n"
    )
    quiet = TTY()
    call_command("audit_verify", "tests.Author", verbosity=0, stdout=io.StringIO(), stderr=quiet)
    assert quiet.getvalue() == ""
    piped = io.StringIO()
    call_command("audit_verify", "tests.Author", stdout=io.StringIO(), stderr=piped)
    assert piped.getvalue() == ""


def test_progress_bar_counts_and_makes_way_for_output() -> None:
    stream = TTY()
    bar = ProgressBar("x", 0, stream, enabled=True)
    bar(3)
    bar.close()
    bar.close()
    assert stream.getvalue() == "\rx [" + "#" * 30 + "] 3/0\n"
    off = TTY()
    ProgressBar("x", 4, off, enabled=False)(2)
    assert off.getvalue() == ""


def test_verify_prints_findings_between_progress_lines() -> None:
    with capture_paused():
        Author.objects.bulk_create([Author(name=f"a{i}") for i in range(3)])
    tty = TTY()
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("audit_verify", "tests.Author", "--batch-size", "2", stdout=out, stderr=tty)
    assert len(out.getvalue().splitlines()) == 3
    # The second batch's finding ends the bar's line first; the bar is redrawn after it.
    assert tty.getvalue() == (
        "\rtests.Author [" + "#" * 20 + "." * 10 + "] 2/3\n" + "\rtests.Author [" + "#" * 30 + "] 3/3\n"
    )


# --- audit_history ----------------------------------------------------------------


def test_history_prints_a_table() -> None:
    author = Author.objects.create(name="Ada")
    with audit_context(actor="Grace"):
        author.name = "Ada L."
        author.save()
    lines = run("audit_history", "tests.Author", str(author.pk)).splitlines()
    assert lines[0].split() == ["version", "time", "action", "actor", "changes"]
    assert lines[1].split()[0] == "1"
    assert lines[1].split()[2:4] == ["create", "-"]
    assert 'name="Ada"' in lines[1]
    assert lines[2].split()[2:4] == ["update", "Grace"]
    assert lines[2].endswith('name: "Ada" -> "Ada L."')
    assert len(lines) == 3


def test_history_bad_arguments() -> None:
    assert "Unknown model" in str(fails("audit_history", "tests.Nope", "1"))
    assert "not registered" in str(fails("audit_history", "tests.Unregistered", "1"))
    assert "'abc' is not a valid primary key" in str(fails("audit_history", "tests.Author", "abc"))
    assert "has no recorded events" in str(fails("audit_history", "tests.Author", "999"))
    with capture_paused():
        silent = Author.objects.create(name="silent")
    for command in ("audit_history", "audit_restore"):
        assert "run `manage.py audit_snapshot tests.Author`" in str(fails(command, "tests.Author", str(silent.pk)))


# --- audit_restore ----------------------------------------------------------------


def test_restore_a_deleted_row_with_its_cascade() -> None:
    author = Author.objects.create(name="Ada")
    book = Book.objects.create(author=author, title="Notes")
    pk = author.pk
    author.delete()
    dry = run("audit_restore", "tests.Author", str(pk), "--dry-run")
    assert f'would recreate tests.Author pk={pk}: email=null, id={pk}, name="Ada"' in dry
    assert f"would recreate tests.Book pk={book.pk}:" in dry
    assert dry.endswith("Dry run: nothing was written.\n")
    assert not Author.objects.filter(pk=pk).exists()
    assert not Event.objects.filter(action=Action.RESTORE).exists()

    out = run("audit_restore", "tests.Author", str(pk))
    assert f"recreated tests.Author pk={pk}" in out
    assert Book.objects.get(pk=book.pk).title == "Notes"


def test_restore_at_a_moment_and_its_dry_run() -> None:
    author = Author.objects.create(name="Ada")
    then = moment()
    author.name = "Mallory"
    author.save()
    dry = run("audit_restore", "tests.Author", str(author.pk), "--at", then.isoformat(), "--dry-run")
    assert dry == (
        f'would change tests.Author pk={author.pk}: name: "Mallory" -> "Ada"\nDry run: nothing was written.\n'
    )
    author.refresh_from_db()
    assert author.name == "Mallory"
    out = run("audit_restore", "tests.Author", str(author.pk), "--at", then.isoformat())
    assert out == f'changed tests.Author pk={author.pk}: name: "Mallory" -> "Ada"\n'
    author.refresh_from_db()
    assert author.name == "Ada"
    again = run("audit_restore", "tests.Author", str(author.pk), "--at", then.isoformat())
    assert again == f"tests.Author pk={author.pk} is already as asked: nothing to change.\n"


def test_restore_at_a_date_as_the_docs_show_it() -> None:
    from tests.test_replay import _two_versions_around_paris_midnight

    pk = _two_versions_around_paris_midnight()  # deleted at 01:00 on 1 May in Paris (TIME_ZONE)
    out = run("audit_restore", "tests.Author", str(pk), "--at", "2024-05-01")
    assert out == f'recreated tests.Author pk={pk}: email=null, id={pk}, name="one"\n'


def test_restore_bad_arguments() -> None:
    author = Author.objects.create(name="Ada")
    author.name = "B"
    author.save()
    pk = str(author.pk)
    assert "Unknown model" in str(fails("audit_restore", "tests.Nope", pk))
    assert "not registered" in str(fails("audit_restore", "tests.Unregistered", pk))
    assert "not a valid primary key" in str(fails("audit_restore", "tests.Author", "x"))
    assert "--at 'last week' is not an ISO-8601" in str(fails("audit_restore", "tests.Author", pk, "--at", "last week"))
    assert "has no time zone" in str(fails("audit_restore", "tests.Author", pk, "--at", "2024-05-01T12:00:00"))
    not_deleted = str(fails("audit_restore", "tests.Author", pk))
    assert "is not deleted" in not_deleted
    assert "--at" in not_deleted  # the option, not restore()'s argument
    assert "at=" not in not_deleted
    assert "did not exist at" in str(fails("audit_restore", "tests.Author", pk, "--at", "2000-01-01T00:00:00+00:00"))
    assert "has no recorded events" in str(fails("audit_restore", "tests.Author", "999", "--dry-run"))
    author.refresh_from_db()
    assert author.name == "B"


def test_text_and_uuid_keys_on_the_command_line() -> None:
    code = Code.objects.create(code="a/b c", label="x")
    code.delete()
    assert "would recreate tests.Code pk=a/b c:" in run("audit_restore", "tests.Code", "a/b c", "--dry-run")
    assert run("audit_history", "tests.Code", "a/b c").splitlines()[2].split()[2] == "delete"
    ticket = Ticket.objects.create(title="t")
    lines = run("audit_history", "tests.Ticket", str(ticket.pk).upper()).splitlines()
    assert len(lines) == 2
    assert "not a valid primary key" in str(fails("audit_history", "tests.Ticket", "not-a-uuid"))
