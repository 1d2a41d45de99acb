"""How long ``manage.py audit_import`` takes for 100,000 peer history rows on PostgreSQL (docs/switching.rst).

::

    PGDATABASE=import_bench .venv/bin/python bench/import_peers.py [simple_history|reversion|auditlog|pghistory ...]

Uses tests/settings.py (TEST_DB=postgres) and a throwaway test database. The peer's history is
written through the peer's own API (``bulk_create_with_history`` / ``bulk_update_with_history``,
reversion revisions of ``IMPORT_PER_REVISION`` objects, auditlog entries made by its own diff, pghistory's events
by its triggers, for a bulk insert and one ``UPDATE`` of every row per save, each in a ``pghistory.context``):
``IMPORT_ROWS`` (default 10,000) rows saved ``IMPORT_SAVES`` (default 10) times each. Then the models are
registered and the history imported, timed; ``audit_verify`` checks the result. Not collected by pytest.
"""

from __future__ import annotations

import datetime
import decimal
import io
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TEST_DB", "postgres")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django

django.setup()

import reversion  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.db.models import F  # noqa: E402
from django.test.utils import override_settings, setup_test_environment  # noqa: E402
from simple_history.utils import bulk_create_with_history, bulk_update_with_history  # noqa: E402

from audit_events.models import Event  # noqa: E402
from tests.peers.models import Card, Entry, Ledger, Memo  # noqa: E402

ROWS = int(os.environ.get("IMPORT_ROWS", "10000"))
SAVES = int(os.environ.get("IMPORT_SAVES", "10"))
PER_REVISION = int(os.environ.get("IMPORT_PER_REVISION", "1000"))
START = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)


def simple_history() -> None:
    ledgers = [Ledger(name=f"ledger {i}", balance=decimal.Decimal(i)) for i in range(ROWS)]
    bulk_create_with_history(ledgers, Ledger, batch_size=2000, default_date=START, default_change_reason="opened")
    ledgers = list(Ledger.objects.order_by("pk"))
    for save in range(1, SAVES):
        for ledger in ledgers:
            ledger.balance += 1
        when = START + datetime.timedelta(days=save)
        bulk_update_with_history(ledgers, Ledger, ["balance"], batch_size=2000, default_date=when)


def reversion_() -> None:
    memos = Memo.objects.bulk_create([Memo(title=f"memo {i}") for i in range(ROWS)])
    for save in range(SAVES):
        for start in range(0, ROWS, PER_REVISION):
            with transaction.atomic(), reversion.create_revision(manage_manually=True):
                reversion.set_date_created(START + datetime.timedelta(days=save, seconds=start))
                reversion.set_comment(f"round {save}")
                for memo in memos[start : start + PER_REVISION]:
                    memo.amount = decimal.Decimal(save)
                    reversion.add_to_revision(memo)
        Memo.objects.update(amount=decimal.Decimal(save))  # the table as the last revision has it


def auditlog() -> None:
    # auditlog logs saves one by one (6 ms each here): its entries are built by its own diff, as its signal
    # receivers build them, and inserted in bulk.
    from auditlog.diff import model_instance_diff
    from auditlog.models import LogEntry
    from django.contrib.contenttypes.models import ContentType

    content_type = ContentType.objects.get_for_model(Entry)
    entries = Entry.objects.bulk_create([Entry(title=f"entry {i}", amount=decimal.Decimal(i)) for i in range(ROWS)])
    logged: list[LogEntry] = []
    for save in range(SAVES):
        when = START + datetime.timedelta(days=save)
        for entry in entries:
            old = None
            if save:
                old = Entry(**{f.attname: getattr(entry, f.attname) for f in Entry._meta.concrete_fields})
                entry.amount += 1
            logged.append(
                LogEntry(
                    content_type=content_type, object_pk=str(entry.pk), object_id=entry.pk, object_repr=str(entry),
                    action=LogEntry.Action.UPDATE if save else LogEntry.Action.CREATE,
                    changes=model_instance_diff(old, entry), timestamp=when,
                )
            )  # fmt: skip
        Entry.objects.bulk_update(entries, ["amount"])
    LogEntry.objects.bulk_create(logged, batch_size=5000)


def pghistory_() -> None:
    import pghistory

    for save in range(SAVES):
        with pghistory.context(round=save):
            if save:
                Card.objects.update(amount=F("amount") + 1)
            else:
                Card.objects.bulk_create([Card(title=f"card {i}", amount=decimal.Decimal(i)) for i in range(ROWS)])


POPULATE = {
    "simple_history": (simple_history, "peers.Ledger"),
    "reversion": (reversion_, "peers.Memo"),
    "auditlog": (auditlog, "peers.Entry"),
    "pghistory": (pghistory_, "peers.Card"),
}


def main(peers: list[str]) -> None:
    setup_test_environment()
    name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    print(f"database {name}: {ROWS} rows x {SAVES} saves per peer")
    try:
        for peer in peers:
            populate, label = POPULATE[peer]
            started = time.perf_counter()
            populate()
            print(f"{peer}: history written through its API in {time.perf_counter() - started:.1f} s")
            config = dict(settings.AUDIT_EVENTS)
            with override_settings(AUDIT_EVENTS={**config, "MODELS": [*config["MODELS"], label]}):
                out = io.StringIO()
                started = time.perf_counter()
                call_command("audit_import", peer, label, stdout=out)
                took = time.perf_counter() - started
                print(out.getvalue().strip())
                events = Event.objects.count()
                print(f"{peer}: {events} events imported in {took:.1f} s ({events / took:,.0f} events/s)")
                started = time.perf_counter()
                out = io.StringIO()
                call_command("audit_import", peer, label, stdout=out)
                print(f"{peer}: second run {time.perf_counter() - started:.1f} s: {out.getvalue().strip()}")
                out = io.StringIO()
                call_command("audit_verify", label, stdout=out)
                print(out.getvalue().strip().splitlines()[0])
            with connection.cursor() as cursor:  # the next peer starts from an empty event table
                cursor.execute("SET session_replication_role = replica")  # past the append-only trigger
                cursor.execute(f"TRUNCATE {Event._meta.db_table}")
                cursor.execute("SET session_replication_role = DEFAULT")
    finally:
        connection.creation.destroy_test_db(name, verbosity=0)


if __name__ == "__main__":
    main(sys.argv[1:] or list(POPULATE))
