"""What is timed: the write, read and history operations of one library.

Each timed phase runs with ``gc`` collected first; in ``atomic`` mode the whole
phase is one ``transaction.atomic()`` block and its COMMIT is timed too.
"""

from __future__ import annotations

import contextlib
import gc
import os
import statistics
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from datetime import UTC, datetime
from decimal import Decimal
from time import perf_counter
from typing import Any

ROW_PHASES = ("create", "save", "save_uf", "load", "delete")
BULK_PHASES = ("bulk_create", "qs_update", "bulk_update", "qs_delete", "qs_update_m2m")
TAGS_PER_ROW = 3  # links of each Project row (the model with a many-to-many field)
SHORT = 100  # history events written through the library; the rest synthesized
TX_WORDS = {"BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT"}
OPENED_AT = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def _outer(mode: str) -> Any:
    from django.db import transaction

    return transaction.atomic() if mode == "atomic" else nullcontext()


class Bench:
    def __init__(self, adapter: Any, n: int, bulk: int, reads: int, sample: int) -> None:
        from core.models import Account, Owner, Project, Tag

        self.adapter = adapter
        self.n, self.bulk, self.reads, self.sample = n, bulk, reads, sample
        self.count_bulk = min(bulk, 1000)  # statements per bulk call are counted on up to 1,000 rows
        self.Account, self.Owner, self.Project, self.Tag = Account, Owner, Project, Tag
        self.owners: list[Any] = []
        self.tags: list[Any] = []

    # ------------------------------------------------------------ helpers
    def reset(self) -> None:
        """Empty the model and audit tables (append-only triggers bypassed) and checkpoint."""
        from django.apps import apps
        from django.db import connection

        tables = sorted(
            {
                m._meta.db_table
                for m in apps.get_models(include_auto_created=True)
                if m._meta.managed and not m._meta.proxy and m._meta.app_label not in ("contenttypes", "auth")
            }
        )
        qn = connection.ops.quote_name
        with connection.cursor() as cur:
            if connection.vendor == "postgresql":
                cur.execute("SET session_replication_role = replica")  # audit tables may refuse TRUNCATE
                cur.execute(f"TRUNCATE {', '.join(map(qn, tables))} RESTART IDENTITY CASCADE")
                cur.execute("SET session_replication_role = DEFAULT")
                if os.environ.get("BENCH_CHECKPOINT", "1") == "1":
                    cur.execute("CHECKPOINT")
            else:
                cur.execute("PRAGMA foreign_keys = OFF")  # tables in any order (Project before its links)
                for table in tables:
                    # an append-only trigger may refuse: keep those rows (ids are not reused)
                    with contextlib.suppress(Exception):
                        cur.execute(f"DELETE FROM {qn(table)}")
                cur.execute("PRAGMA foreign_keys = ON")
        self.owners = [self.Owner.objects.create(name=f"owner {i}") for i in range(10)]
        self.tags = [self.Tag.objects.create(name=f"tag {i}") for i in range(10)]

    def kwargs(self, i: int, prefix: str) -> dict[str, Any]:
        return {
            "code": f"{prefix}{i}",
            "name": f"Account {i}",
            "balance": Decimal("100.00"),
            "status": 0,
            "is_active": True,
            "opened_at": OPENED_AT,
            "owner": self.owners[i % len(self.owners)],
            "notes": "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 3,
            "meta": {"tier": "gold", "limits": [1, 2, 3], "i": i},
        }

    # ------------------------------------------------- single-row phases
    def row_plan(self, n: int, prefix: str) -> tuple[list[Any], list[tuple[str, Callable[[Any], None], Any, bool]]]:
        objs: list[Any] = []
        A = self.Account

        def create(kw: dict[str, Any]) -> None:
            objs.append(A.objects.create(**kw))

        def save(obj: Any) -> None:
            obj.name = obj.name + "!"
            obj.balance = obj.balance + 1
            obj.save()

        def save_uf(obj: Any) -> None:
            obj.status = obj.status + 1
            obj.save(update_fields=["status"])

        def load(_: Any) -> None:
            list(A.objects.all())

        def delete(obj: Any) -> None:
            obj.delete()

        return objs, [
            ("create", create, lambda: [self.kwargs(i, prefix) for i in range(n)], True),
            ("save", save, lambda: list(objs), True),
            ("save_uf", save_uf, lambda: list(objs), True),
            ("load", load, lambda: range(self.reads), False),
            ("delete", delete, lambda: list(objs), True),
        ]

    def bulk_plan(self, b: int, prefix: str) -> list[tuple[str, Callable[[], Any], Callable[[], Any] | None]]:
        """(phase, timed call, untimed preparation or None), in order: each phase works on the rows before it left."""
        from django.db.models import F

        A, P, ad = self.Account, self.Project, self.adapter
        objs: list[Any] = []

        def bulk_create() -> None:
            objs[:] = ad.bulk_create(A, [A(**self.kwargs(i, prefix)) for i in range(b)])

        def qs_update() -> None:
            A.objects.filter(code__startswith=prefix).update(status=F("status") + 1)

        def bulk_update() -> None:
            for obj in objs:
                obj.status += 10
                obj.name += "!"
            ad.bulk_update(A, objs, ["status", "name"])

        def qs_delete() -> None:
            A.objects.filter(code__startswith=prefix).delete()

        def projects() -> None:
            """B projects, each with TAGS_PER_ROW links, written through the library (its bulk helpers)."""
            rows = ad.bulk_create(
                P, [P(code=f"{prefix}{i}", name=f"Project {i}", owner=self.owners[i % 10]) for i in range(b)]
            )
            through, tags = P.tags.through, self.tags
            links = [
                through(project=p, tag=tags[(i + k) % len(tags)])
                for i, p in enumerate(rows)
                for k in range(TAGS_PER_ROW)
            ]
            through.objects.bulk_create(links, batch_size=5000)

        def qs_update_m2m() -> None:
            P.objects.filter(code__startswith=prefix).update(status=F("status") + 1)

        return [
            ("bulk_create", bulk_create, None),
            ("qs_update", qs_update, None),
            ("bulk_update", bulk_update, None),
            ("qs_delete", qs_delete, None),
            ("qs_update_m2m", qs_update_m2m, projects),
        ]

    def timed_mode(self, mode: str, n: int, b: int, prefix: str, record: bool = True) -> list[dict[str, Any]]:
        from django.db import transaction

        op_ctx = self.adapter.op_context
        _, plan = self.row_plan(n, prefix)
        results = []
        for phase, op, items_factory, wrap in plan:
            items = items_factory()
            before = self.adapter.audit_count()
            gc.collect()
            marks: list[float] = []
            mark = marks.append
            t0 = perf_counter()
            with _outer(mode):
                for it in items:
                    if wrap:
                        with op_ctx():
                            op(it)
                    else:
                        op(it)
                    mark(perf_counter())
            t1 = perf_counter()
            after = self.adapter.audit_count()
            per_op = [y - x for x, y in zip([t0, *marks[:-1]], marks, strict=True)]
            units = n * self.reads if phase == "load" else n  # load: per row loaded
            scale = 1e6 / (n if phase == "load" else 1)
            results.append(
                {
                    "phase": phase,
                    "mode": mode,
                    "units": units,
                    "total_s": t1 - t0,
                    "us_per_op": (t1 - t0) * 1e6 / units,
                    "p50_us": statistics.median(per_op) * scale,
                    "recorded_per_op": None if before is None else (after - before) / units,
                }
            )
        for phase, fn, prep in self.bulk_plan(b, prefix + "b"):
            if prep is not None:
                with transaction.atomic(), op_ctx():
                    prep()
            before = self.adapter.audit_count()
            gc.collect()
            error = None
            t0 = perf_counter()
            try:
                with _outer(mode), op_ctx():
                    fn()
            except Exception as exc:  # a library (or work in progress) that fails: reported, not fatal
                error = f"{type(exc).__name__}: {exc}"[:200]
            t1 = perf_counter()
            after = self.adapter.audit_count()
            results.append(
                {
                    "phase": phase,
                    "mode": mode,
                    "units": b,
                    "total_s": t1 - t0,
                    "us_per_op": None if error else (t1 - t0) * 1e6 / b,  # per row
                    "p50_us": None,
                    "recorded_per_op": None if before is None else (after - before) / b,
                    "error": error,
                }
            )
        return results if record else []

    # ----------------------------------------------------- query counting
    def count_queries(self, mode: str) -> list[dict[str, Any]]:
        """Statements per op: single-row ops on a sample, bulk ops per call of ``count_bulk`` rows."""
        from django.db import connection, transaction
        from django.test.utils import CaptureQueriesContext

        op_ctx = self.adapter.op_context
        _, plan = self.row_plan(self.sample, "q" + mode[:2])
        out = []

        def record(phase: str, kinds: Counter[str], k: int) -> None:
            total = sum(kinds.values())
            tx = sum(c for w, c in kinds.items() if w in TX_WORDS)
            out.append(
                {
                    "phase": phase,
                    "mode": mode,
                    "queries_per_op": total / k,
                    "data_per_op": (total - tx) / k,
                    "breakdown": {w: c / k for w, c in sorted(kinds.items())},
                }
            )

        for phase, op, items_factory, wrap in plan:
            items = list(items_factory())[:1] if phase == "load" else list(items_factory())
            kinds: Counter[str] = Counter()
            with _outer(mode):
                for it in items:
                    with CaptureQueriesContext(connection) as cq, op_ctx() if wrap else nullcontext():
                        op(it)
                    kinds.update(_kind(q["sql"]) for q in cq.captured_queries)
            record(phase, kinds, len(items))
        for phase, fn, prep in self.bulk_plan(self.count_bulk, "q" + mode[:2] + "b"):
            try:
                if prep is not None:
                    with transaction.atomic(), op_ctx():
                        prep()
                with CaptureQueriesContext(connection) as cq, _outer(mode), op_ctx():
                    fn()
            except Exception:  # reported by the timed run
                continue
            record(phase, Counter(_kind(q["sql"]) for q in cq.captured_queries), 1)
        return out

    # ------------------------------------------------------------ history
    def history(self, sizes: Iterable[int], reads: int, restores: int) -> list[dict[str, Any]]:
        """state_at and restore for rows with each number of events (the library's own API).

        Both read the row as it was just before its last event: with snapshots
        every S events that is the worst case (S - 1 events after the last
        snapshot, e.g. 9,999 -> 99 events to fold for S = 100).
        """
        from django.db import transaction

        ad, A = self.adapter, self.Account
        if not ad.has_history_api:
            return []
        self.reset()
        rows = {}
        for size in sizes:
            with ad.op_context():
                obj = A.objects.create(**self.kwargs(size, "h"))
            # Up to SHORT events through the library itself; longer histories continued by
            # the adapter's synthesize() in the exact shape the library writes (saving
            # 10,000 times per library would not fit `make bench` in 15 minutes).
            through_api = size if not hasattr(ad, "synthesize") else min(size, SHORT)
            for start in range(1, through_api, 1000):
                with transaction.atomic():
                    for _ in range(start, min(through_api, start + 1000)):
                        obj.status += 1
                        with ad.op_context():
                            obj.save()
            if through_api < size:
                with transaction.atomic():
                    ad.synthesize(A, obj, size)
            rows[size] = obj
        out = []
        for size, obj in rows.items():
            moments = ad.moments(A, obj)
            assert len(moments) == size, (size, len(moments))
            at = moments[-2]
            times = []
            for _ in range(reads):
                t0 = perf_counter()
                state = ad.state_at(A, obj, at)
                times.append(perf_counter() - t0)
            assert state is not None
            assert state.status == obj.status - 1, (state.status, obj.status)
            out.append({"phase": f"state_at_{size}", "events": size, "us_per_op": statistics.median(times) * 1e6})
            times = []
            for i in range(restores):  # alternate two moments so that every restore writes
                target = moments[-2 - i % 2]
                t0 = perf_counter()
                ad.restore(A, obj, target)
                times.append(perf_counter() - t0)
            out.append({"phase": f"restore_{size}", "events": size, "us_per_op": statistics.median(times) * 1e6})
        return out


def _kind(sql: str) -> str:
    word = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else "?"
    return "RELEASE SAVEPOINT" if word == "RELEASE" else word
