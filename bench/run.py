#!/usr/bin/env python
"""Benchmark one library (BENCH_LIB) on one database (BENCH_VENDOR) and write JSON.

    BENCH_LIB=audit_events BENCH_VENDOR=postgresql python run.py --n 2000 --bulk 10000 --json out.json

Run inside the library's own virtualenv (bench.py does that). Steps: recreate
the database, ``migrate --run-syncdb``, warm up, then per mode (autocommit,
atomic; the order flips on even reps) the single-row phases on N rows and the
bulk phases on BULK rows; then statement counts on a sample, then state_at and
restore for rows with each history length.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from time import perf_counter

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
# audit_events from this checkout (or from BENCH_SRC, a `git archive` of a revision), never installed
sys.path.insert(1, os.environ.get("BENCH_SRC") or str(HERE.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchproj.settings")


def recreate_database() -> str:
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        path = Path(db["NAME"])
        path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return path.name
    import psycopg

    params = {
        "dbname": "postgres",
        "user": db["USER"],
        "host": db["HOST"],
        "port": db["PORT"],
        "password": db["PASSWORD"],
    }
    with psycopg.connect(**{k: v for k, v in params.items() if v}, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db["NAME"]}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db["NAME"]}"')
    return str(db["NAME"])


def setup_django() -> tuple[object, str]:
    """Fresh database, Django set up and migrated; returns (adapter, database name)."""
    dbname = recreate_database()
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    # migrated apps first (contenttypes, auth, the library's own), then `core` by syncdb
    call_command("migrate", verbosity=0)
    call_command("migrate", run_syncdb=True, verbosity=0)
    settings.ADAPTER.after_migrate(connection)
    return settings.ADAPTER, dbname


def versions(adapter: object) -> dict[str, str]:
    out = {}
    for dist in ("Django", "psycopg", *adapter.dists):  # type: ignore[attr-defined]
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "checkout" if dist == "django-audit-events" else "?"
    return out


def db_info() -> dict[str, str]:
    from django.db import connection

    info = {"vendor": connection.vendor}
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            for key in ("server_version", "synchronous_commit", "fsync", "shared_buffers"):
                cur.execute(f"SHOW {key}")
                info[key] = cur.fetchone()[0]
            cur.execute("SELECT pg_backend_pid()")
            info["backend_cpus"] = _cpus(cur.fetchone()[0])
        else:
            cur.execute("SELECT sqlite_version()")
            info["server_version"] = cur.fetchone()[0]
    info["client_cpus"] = ",".join(map(str, sorted(os.sched_getaffinity(0))))
    return info


def backend_cpu() -> float:
    """CPU seconds used so far by this connection's PostgreSQL backend (0 on SQLite): Linux /proc."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return 0.0
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpus(pid: int) -> str:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="rows per single-row phase")
    ap.add_argument("--bulk", type=int, default=10000, help="rows per bulk phase")
    ap.add_argument("--reads", type=int, default=5, help="list() calls in the load phase")
    ap.add_argument("--sample", type=int, default=20, help="ops per phase for statement counts")
    ap.add_argument("--history", default="10,1000,10000", help="history lengths for state_at/restore")
    ap.add_argument("--history-reads", type=int, default=20)
    ap.add_argument("--history-restores", type=int, default=6)
    ap.add_argument("--rep", type=int, default=1)
    ap.add_argument("--json", help="write results to this file")
    args = ap.parse_args()

    from phases import BULK_PHASES, ROW_PHASES, Bench

    t_start = perf_counter()
    adapter, dbname = setup_django()
    bench = Bench(adapter, args.n, args.bulk, args.reads, args.sample)
    bench.reset()
    for mode in ("autocommit", "atomic"):  # warm-up, discarded
        bench.timed_mode(mode, min(50, args.n), min(200, args.bulk), f"w{mode[:2]}", record=False)

    modes = ["autocommit", "atomic"] if args.rep % 2 else ["atomic", "autocommit"]
    timings = []
    for mode in modes:
        bench.reset()
        timings += bench.timed_mode(mode, args.n, args.bulk, "t")
    order = [*ROW_PHASES, *BULK_PHASES]
    timings.sort(key=lambda r: (r["mode"] != "autocommit", order.index(r["phase"])))

    queries = []
    for mode in ("autocommit", "atomic"):
        bench.reset()
        queries += bench.count_queries(mode)
    sizes = [int(s) for s in args.history.split(",") if s]
    history = bench.history(sizes, args.history_reads, args.history_restores)

    res = {
        "lib": adapter.label,  # type: ignore[attr-defined]
        "rep": args.rep,
        "n": args.n,
        "bulk": args.bulk,
        "count_bulk": bench.count_bulk,
        "source": os.environ.get("BENCH_SOURCE_DESC"),
        "reads": args.reads,
        "sample": args.sample,
        "modes_order": modes,
        "database": dbname,
        "versions": versions(adapter),
        "python": platform.python_version(),
        "db": db_info(),
        "cpus": os.cpu_count(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_s": perf_counter() - t_start,
        "timings": timings,
        "queries": queries,
        "history": history,
    }
    for r in timings:
        rec = "-" if r["recorded_per_op"] is None else f"{r['recorded_per_op']:.2f}"
        us = r.get("error") or f"{r['us_per_op']:>10.1f} us"
        print(f"{res['lib']:<15}{r['phase']:<14}{r['mode']:<11}{us}  recorded/op {rec}")
    for h in history:
        print(f"{res['lib']:<15}{h['phase']:<23}{h['us_per_op']:>10.1f} us")
    print(f"[{res['lib']} {res['db']['vendor']} rep {args.rep}] wall {res['wall_s']:.1f}s")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
