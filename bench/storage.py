#!/usr/bin/env python
"""Bytes on disk per recorded change: one library (BENCH_LIB) on PostgreSQL, one workload for all.

    BENCH_LIB=audit_events python storage.py --creates 20000 --saves 15000 --deletes 1000 --json out.json

Run inside the library's own virtualenv (bench.py does that), on a fresh database.
The workload goes through the ORM as an application would write it: ``create()``,
``save()`` with two fields changed (cycling over the rows), ``delete()``, each
wrapped in the library's ``op_context`` and grouped in transactions of 1,000
(the grouping changes what is written only for django-reversion: one revision per
write either way). Then VACUUM ANALYZE of the library's audit tables and their
sizes: ``pg_total_relation_size`` (table, TOAST and indexes), ``pg_table_size``
(table and TOAST) and ``pg_indexes_size``, and each index's own size.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from time import perf_counter
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("BENCH_DB", os.environ.get("BENCH_LIB", "plain") + "_storage")

from run import setup_django  # noqa: E402

BATCH = 1000


def workload(bench: Any, creates: int, saves: int, deletes: int) -> dict[str, int]:
    from django.db import transaction

    A, op_ctx = bench.Account, bench.adapter.op_context
    rows: list[Any] = []
    for start in range(0, creates, BATCH):
        with transaction.atomic():
            for i in range(start, min(creates, start + BATCH)):
                with op_ctx():
                    rows.append(A.objects.create(**bench.kwargs(i, "s")))
    for start in range(0, saves, BATCH):
        with transaction.atomic():
            for k in range(start, min(saves, start + BATCH)):
                obj = rows[k % len(rows)]
                obj.name = f"Account {k} renamed"
                obj.balance = obj.balance + 1
                with op_ctx():
                    obj.save()
    for start in range(0, deletes, BATCH):
        with transaction.atomic():
            for obj in rows[start : min(deletes, start + BATCH)]:
                with op_ctx():
                    obj.delete()
    return {"creates": creates, "saves": saves, "deletes": min(deletes, len(rows))}


def sizes(models: list[Any]) -> list[dict[str, Any]]:
    from django.db import connection

    out = []
    with connection.cursor() as cur:
        for model in models:
            table = model._meta.db_table
            cur.execute(f'VACUUM ANALYZE "{table}"')
            cur.execute(
                "SELECT pg_total_relation_size(%s::regclass), pg_table_size(%s::regclass), "
                "pg_indexes_size(%s::regclass)",
                [table, table, table],
            )
            total, heap, indexes = cur.fetchone()
            cur.execute(
                "SELECT c.relname, pg_relation_size(c.oid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE i.indrelid = %s::regclass ORDER BY c.relname",
                [table],
            )
            out.append(
                {
                    "model": model._meta.label,
                    "table": table,
                    "rows": model._base_manager.count(),
                    "total_bytes": total,
                    "table_bytes": heap,
                    "index_bytes": indexes,
                    "indexes": dict(cur.fetchall()),
                }
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--creates", type=int, default=20000)
    ap.add_argument("--saves", type=int, default=15000)
    ap.add_argument("--deletes", type=int, default=1000)
    ap.add_argument("--json", required=True)
    args = ap.parse_args()

    t0 = perf_counter()
    adapter, dbname = setup_django()
    from django.apps import apps
    from django.db import connection
    from phases import Bench

    if connection.vendor != "postgresql":
        raise SystemExit("storage.py measures PostgreSQL only")
    bench = Bench(adapter, 0, 0, 0, 0)
    bench.reset()
    done = workload(bench, args.creates, args.saves, args.deletes)
    labels = adapter.storage_models or adapter.audit_models  # type: ignore[attr-defined]
    tables = sizes([apps.get_model(label) for label in labels])
    res = {
        "lib": adapter.label,  # type: ignore[attr-defined]
        "database": dbname,
        "workload": done,
        "changes": sum(done.values()),
        "recorded": tables[0]["rows"] if tables else 0,
        "tables": tables,
        "wall_s": perf_counter() - t0,
    }
    total = sum(t["total_bytes"] for t in tables)
    per = total / res["recorded"] if res["recorded"] else 0
    print(f"{res['lib']}: {res['recorded']:,} recorded, {total:,} bytes, {per:.0f} bytes/change, {res['wall_s']:.1f}s")
    Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
