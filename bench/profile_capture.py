#!/usr/bin/env python
"""Where audit_events' time goes on single-row writes: statements, round trips, Python.

    BENCH_LIB=audit_events BENCH_DB=audit_events_profile python profile_capture.py [--n 500] [--top 25]

Prints, for save / save(update_fields) / create / delete inside one transaction:
the statements each sends (CaptureQueriesContext), the time of one round trip
(``SELECT 1``), the time per op with and without capture, and a cProfile of the
captured saves sorted by own time and cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
from pathlib import Path
from time import perf_counter, process_time

os.environ.setdefault("BENCH_LIB", "audit_events")
os.environ.setdefault("BENCH_DB", "audit_events_profile")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import setup_django


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--profile", choices=("save", "save_uf", "create", "delete"), default="save")
    args = ap.parse_args()

    adapter, _ = setup_django()
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext
    from phases import Bench

    from audit_events.context import capture_paused

    bench = Bench(adapter, args.n, 1, 1, 1)
    bench.reset()
    A = bench.Account
    objs = [A.objects.create(**bench.kwargs(i, "p")) for i in range(args.n)]

    with connection.cursor() as cur:
        rtt = []
        for _ in range(300):
            t0 = perf_counter()
            cur.execute("SELECT 1")
            cur.fetchone()
            rtt.append(perf_counter() - t0)
    print(f"one round trip (SELECT 1): median {statistics.median(rtt) * 1e6:.0f} µs\n")

    def save(o: object) -> None:
        o.name += "!"  # type: ignore[attr-defined]
        o.save()  # type: ignore[attr-defined]

    def save_uf(o: object) -> None:
        o.status += 1  # type: ignore[attr-defined]
        o.save(update_fields=["status"])  # type: ignore[attr-defined]

    for label, op in (("save", save), ("save_uf", save_uf)):
        with transaction.atomic(), CaptureQueriesContext(connection) as cq:
            op(objs[0])
        print(f"{label}: {len(cq.captured_queries)} statements inside transaction.atomic():")
        for q in cq.captured_queries:
            print(f"  {float(q['time']) * 1e3:6.2f} ms  {q['sql'][:150]}")
        with CaptureQueriesContext(connection) as cq:
            op(objs[1])
        print(f"{label}: {len(cq.captured_queries)} statements in autocommit\n")

    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]

    def server_cpu() -> float:
        """CPU seconds the PostgreSQL backend of this connection has used (Linux /proc)."""
        fields = Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    # CPU time, unlike wall time, hardly depends on what else the machine runs.
    # Each block is timed with its COMMIT (where the waiting events are inserted).
    print("per op, one transaction.atomic() with its COMMIT: wall, client CPU, PostgreSQL backend CPU (µs)")
    made: list[object] = []

    def create(i: int) -> None:
        made.append(A.objects.create(**bench.kwargs(i, f"c{len(made)}-")))

    def delete(i: int) -> None:
        made.pop().delete()  # type: ignore[attr-defined]

    plans = (
        ("save", save, lambda: objs),
        ("save_uf", save_uf, lambda: objs),
        ("create", create, lambda: range(len(objs))),
        ("delete", delete, lambda: range(len(objs))),
    )
    for label, op, items in plans:
        for paused in (True, False, True, False):
            ctx = capture_paused() if paused else transaction.atomic(savepoint=False)
            t0, c0, s0 = perf_counter(), process_time(), server_cpu()
            with transaction.atomic(), ctx:
                for o in items():
                    op(o)
            dt, dc, ds = perf_counter() - t0, process_time() - c0, server_cpu() - s0
            k = 1e6 / len(objs)
            print(
                f"  {label:8} {'capture paused' if paused else 'captured':15} wall {dt * k:7.0f}"
                f"  client CPU {dc * k:6.0f}  server CPU {ds * k:6.0f}"
            )
    print()

    ops = {label: (op, items) for label, op, items in plans}
    if args.profile == "delete":
        made[:] = [A.objects.create(**bench.kwargs(i, "d-")) for i in range(len(objs))]
    op, items = ops[args.profile]
    prof = cProfile.Profile()
    with transaction.atomic():
        prof.enable()
        for o in items():
            op(o)
        prof.disable()
    for key in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats(key).print_stats(args.top)
        text = buf.getvalue()
        print(f"cProfile of {len(objs)} captured {args.profile} calls, by {key}:")
        print(text[text.find("   ncalls") :])


if __name__ == "__main__":
    main()
