#!/usr/bin/env python
"""Peak memory (RSS) of the client process for one QuerySet.update() or QuerySet.delete() of every row.

    BENCH_LIB=audit_events python memory.py setup --rows 1000000
    BENCH_LIB=audit_events python memory.py update --json update.json   # a fresh process per measurement
    BENCH_LIB=audit_events python memory.py delete --json delete.json
    BENCH_LIB=audit_events python memory.py drop     # the database (gigabytes at 1,000,000 rows)

Run inside the library's own virtualenv (bench.py does that), on PostgreSQL.
``setup`` recreates the database and inserts the rows with one INSERT ... SELECT
from generate_series (server side, triggers off: no event is written and the
client's memory is not touched). ``update`` and ``delete`` each run in a new
process: Django set up, connected, then the one statement through the ORM in
autocommit mode, ``Account.objects.update(status=F("status") + 1)`` or
``Account.objects.all().delete()``; the peak RSS is ``resource.getrusage``'s
``ru_maxrss`` at the end (the process's high-water mark, so it includes Django's
own footprint, reported separately as the RSS before the statement).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
from pathlib import Path
from time import perf_counter

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("BENCH_DB", os.environ.get("BENCH_LIB", "plain") + "_memory")

import run  # noqa: E402

NOTES = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 3


def peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def setup(rows: int) -> None:
    adapter, _ = run.setup_django()
    from core.models import Account
    from django.db import connection
    from phases import OPENED_AT, Bench

    bench = Bench(adapter, 0, 0, 0, 0)
    bench.reset()
    first_owner = min(o.pk for o in bench.owners)
    table = connection.ops.quote_name(Account._meta.db_table)
    with connection.cursor() as cur:
        cur.execute("SET session_replication_role = replica")  # no trigger: no event for the rows set up
        cur.execute(
            f"INSERT INTO {table} (code, name, balance, status, is_active, opened_at, owner_id, notes, meta) "
            "SELECT 'm' || g, 'Account ' || g, 100.00, 0, true, %s, %s + g %% 10, %s, "
            "jsonb_build_object('tier', 'gold', 'limits', jsonb_build_array(1, 2, 3), 'i', g) "
            "FROM generate_series(1, %s) AS g",
            [OPENED_AT, first_owner, NOTES, rows],
        )
        cur.execute("SET session_replication_role = DEFAULT")
        cur.execute(f"VACUUM ANALYZE {table}")
    print(f"set up {rows:,} rows")


def drop() -> None:
    import psycopg
    from django.conf import settings

    db = settings.DATABASES["default"]
    params = {"dbname": "postgres", "user": db["USER"], "host": db["HOST"], "port": db["PORT"]}
    with psycopg.connect(**{k: v for k, v in params.items() if v}, password=db["PASSWORD"] or None) as conn:
        conn.autocommit = True
        conn.execute(f'DROP DATABASE IF EXISTS "{db["NAME"]}" WITH (FORCE)')


def measure(op: str) -> dict[str, object]:
    import django

    django.setup()
    from core.models import Account
    from django.conf import settings
    from django.db import connection
    from django.db.models import F

    adapter = settings.ADAPTER
    connection.ensure_connection()
    rows = Account.objects.count()
    before_count = adapter.audit_count()
    before = peak_kib()
    t0 = perf_counter()
    if op == "update":
        Account.objects.update(status=F("status") + 1)
    else:
        Account.objects.all().delete()
    seconds = perf_counter() - t0
    peak = peak_kib()
    after_count = adapter.audit_count()
    recorded = None if before_count is None else (after_count - before_count) / rows if rows else 0.0
    return {
        "lib": adapter.label,
        "op": op,
        "rows": rows,
        "rss_before_kib": before,
        "peak_rss_kib": peak,
        "seconds": seconds,
        "recorded_per_row": recorded,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=("setup", "update", "delete", "drop"))
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.what in ("setup", "drop"):
        setup(args.rows) if args.what == "setup" else drop()
        return
    res = measure(args.what)
    print(json.dumps(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
