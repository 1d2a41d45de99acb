#!/usr/bin/env python
"""What SNAPSHOT_EVERY costs and buys: audit_events only, PostgreSQL (or SQLite).

    BENCH_LIB=audit_events python snapshots.py --events 10000 --every 10,100,1000,0 --json out.json

For each SNAPSHOT_EVERY value S (0 = never: only the first event and deletes
carry the full state): one row gets ``--saves`` events by save() in
transactions of 500 saves (the write side: µs per save), then more up to
``--events``, written directly in the shape capture writes them (bytes per
event); then state_at and restore are timed for the moment just before the
row's 10th, 100th, ... event, where the replay is longest (S - 1 events after
the last snapshot).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
from pathlib import Path
from time import perf_counter, process_time

os.environ.setdefault("BENCH_LIB", "audit_events")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import backend_cpu, db_info, setup_django

NEVER = 10**9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=10000)
    ap.add_argument("--saves", type=int, default=1000, help="events written by save() (the write-side cost)")
    ap.add_argument("--every", default="10,100,1000,0")
    ap.add_argument("--reads", type=int, default=15)
    ap.add_argument("--restores", type=int, default=4)
    ap.add_argument("--json")
    args = ap.parse_args()

    adapter, _ = setup_django()
    from django.db import connection, transaction
    from django.test import override_settings
    from phases import Bench

    from audit_events import restore, state_at
    from audit_events.models import Event

    bench = Bench(adapter, 1, 1, 1, 1)
    A = bench.Account
    lengths = [k for k in (10, 100, 1000, 10000, 100000) if k <= args.events]
    out = []
    for every in [int(s) for s in args.every.split(",")]:
        setting = {"MODELS": ["core.Account"], "SNAPSHOT_EVERY": every or NEVER}
        with override_settings(AUDIT_EVENTS=setting):
            bench.reset()
            obj = A.objects.create(**bench.kwargs(1, "s"))
            saves = min(args.saves, args.events - 1)
            gc.collect()
            t0, c0, s0 = perf_counter(), process_time(), backend_cpu()
            for start in range(0, saves, 500):
                with transaction.atomic():
                    for _ in range(start, min(saves, start + 500)):
                        obj.status += 1
                        obj.save()
            save_us = (perf_counter() - t0) * 1e6 / saves
            save_cpu = (process_time() - c0 + backend_cpu() - s0) * 1e6 / saves
            with transaction.atomic():  # the rest of the history, in the shape capture writes it
                adapter.synthesize(A, obj, args.events, every or NEVER)
            events = Event.objects.order_by("version")
            with_state = events.filter(state__isnull=False).count()
            size = None
            if connection.vendor == "postgresql":
                with connection.cursor() as cur:
                    cur.execute("VACUUM ANALYZE audit_events_event")  # stable plans, real sizes
                    cur.execute("SELECT pg_total_relation_size('audit_events_event')")
                    size = cur.fetchone()[0] / events.count()
            moments = list(events.values_list("created_at", flat=True))
            row = {"every": every, "save_us": save_us, "save_cpu": save_cpu, "bytes_per_event": size}
            row["full_states"] = with_state
            for k in lengths:
                times = []
                c0, s0 = process_time(), backend_cpu()
                for _ in range(args.reads):
                    t0 = perf_counter()
                    state = state_at(A, obj.pk, at=moments[k - 2])
                    times.append(perf_counter() - t0)
                row[f"state_at_cpu_{k}"] = (process_time() - c0 + backend_cpu() - s0) * 1e6 / args.reads
                assert state is not None
                assert state.status == k - 2
                row[f"state_at_{k}"] = statistics.median(times) * 1e6
                times = []
                for i in range(args.restores):  # alternate two moments so that every restore writes
                    t0 = perf_counter()
                    restore(A, obj.pk, at=moments[k - 2 - i % 2])
                    times.append(perf_counter() - t0)
                row[f"restore_{k}"] = statistics.median(times) * 1e6
            print(json.dumps(row), flush=True)
            out.append(row)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"events": args.events, "db": db_info(), "rows": out}, indent=1))


if __name__ == "__main__":
    main()
