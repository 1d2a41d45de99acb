#!/usr/bin/env python
"""Prototypes of a cheaper capture path on PostgreSQL, measured against plain Django.

    BENCH_LIB=audit_events BENCH_DB=audit_events_proto python prototype_capture.py [--n 1000] [--rounds 3]

Not product code: hand-written SQL for the benchmark's Account model, to
measure what each design costs in round trips. Variants, per save() of one row
(2 fields changed) and per delete(), inside one transaction and in autocommit:

* ``plain orm``: Django without audit_events (the baseline of the issue);
* ``audit_events``: the current capture (locked SELECT, write, event INSERT);
* ``plain raw``: the bare UPDATE/DELETE through a cursor (the floor for raw variants);
* ``3 statements raw``: today's locked SELECT, UPDATE and event INSERT, but as SQL
  built once and sent through a cursor (what the ORM adds on top of the round trips);
* ``returning+buffer``: the write and the locked read of the old row (and of
  the row's last version and hash) in ONE statement, ``UPDATE ... FROM (SELECT
  ... FOR UPDATE) old RETURNING old.*`` / ``DELETE ... RETURNING``; diff, version
  and hash computed in Python as today; events buffered and written as one
  multi-row INSERT when the transaction ends (in autocommit: BEGIN, the
  statement, the INSERT, COMMIT);
* ``one CTE``: the write and the event INSERT in ONE data-modifying CTE, diff
  and hash computed by PostgreSQL (so no BEGIN/COMMIT needed in autocommit).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import uuid
from pathlib import Path
from time import perf_counter, process_time
from typing import Any

os.environ.setdefault("BENCH_LIB", "audit_events")
os.environ.setdefault("BENCH_DB", "audit_events_proto")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import setup_django

COLS = ("code", "name", "balance", "status", "is_active", "opened_at", "owner_id", "notes", "meta")
SET = ", ".join(f"{c} = %s" for c in COLS)
LAST = (
    "LEFT JOIN LATERAL (SELECT e.version, e.hash FROM audit_events_event e WHERE e.content_type_id = %s"
    " AND e.object_pk = a.id::text ORDER BY e.version DESC LIMIT 1) lv ON true"
)
UPDATE_RETURNING = (
    f"UPDATE core_account t SET {SET} FROM (SELECT a.*, lv.version AS last_version, lv.hash AS last_hash"
    f" FROM core_account a {LAST} WHERE a.id = %s FOR UPDATE OF a) old WHERE t.id = old.id"
    f" RETURNING old.id, {', '.join('old.' + c for c in COLS)}, old.last_version, old.last_hash"
)
LOCKED_SELECT = (
    f"SELECT a.id, {', '.join('a.' + c for c in COLS)}, lv.version, lv.hash FROM core_account a {LAST}"
    " WHERE a.id = %s FOR UPDATE OF a"
)
DELETE_RETURNING = (
    f"WITH old AS (SELECT a.id, lv.version AS last_version, lv.hash AS last_hash FROM core_account a {LAST}"
    " WHERE a.id = %s FOR UPDATE OF a)"
    f" DELETE FROM core_account t USING old WHERE t.id = old.id"
    f" RETURNING t.id, {', '.join('t.' + c for c in COLS)}, old.last_version, old.last_hash"
)
EVENT_COLS = (
    "content_type_id, object_pk, version, action, changes, state, created_at, operation, actor_id, actor_repr, context,"
    " hash"
)
HASHED = (
    "encode(sha256(convert_to(coalesce(last_hash, '') || jsonb_build_object('action', %s::text, 'changes', changes,"
    " 'object_pk', id::text, 'state', state, 'created_at', %s::text, 'operation', %s::text)::text, 'UTF8')), 'hex')"
)
CTE_UPDATE = (
    f"WITH old AS (SELECT a.id, to_jsonb(a) AS j, lv.version AS last_version, lv.hash AS last_hash"
    f" FROM core_account a {LAST} WHERE a.id = %s FOR UPDATE OF a),"
    f" upd AS (UPDATE core_account t SET {SET} FROM old WHERE t.id = old.id"
    "  RETURNING old.id, old.j AS oldj, to_jsonb(t) AS newj, old.last_version, old.last_hash),"
    " ch AS (SELECT upd.*, (SELECT coalesce(jsonb_object_agg(n.key, jsonb_build_array(upd.oldj -> n.key, n.value)),"
    "  '{}') FROM jsonb_each(upd.newj) n WHERE upd.oldj -> n.key IS DISTINCT FROM n.value) AS changes,"
    "  CASE WHEN (coalesce(upd.last_version, 0) + 1) %% %s = 0 THEN upd.newj END AS state FROM upd)"
    f" INSERT INTO audit_events_event ({EVENT_COLS})"
    f" SELECT %s, id::text, coalesce(last_version, 0) + 1, 'update', changes, state, %s, %s, NULL, '', '{{}}', {HASHED}"
    " FROM ch WHERE changes <> '{}'"
)
CTE_DELETE = (
    f"WITH old AS (SELECT a.id, lv.version AS last_version, lv.hash AS last_hash FROM core_account a {LAST}"
    " WHERE a.id = %s FOR UPDATE OF a),"
    " del AS (DELETE FROM core_account t USING old WHERE t.id = old.id"
    "  RETURNING t.id, to_jsonb(t) AS state, '{}'::jsonb AS changes, old.last_version, old.last_hash)"
    f" INSERT INTO audit_events_event ({EVENT_COLS})"
    f" SELECT %s, id::text, coalesce(last_version, 0) + 1, 'delete', changes, state, %s, %s, NULL, '', '{{}}', {HASHED}"
    " FROM del"
)


class Buffer:
    """Events of the current transaction, written as one multi-row INSERT at its end."""

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []

    def flush(self, cursor: Any) -> None:
        for start in range(0, len(self.rows), 500):
            batch = self.rows[start : start + 500]
            values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(batch))
            cursor.execute(
                f"INSERT INTO audit_events_event ({EVENT_COLS}) VALUES {values}", [v for r in batch for v in r]
            )
        self.rows.clear()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()

    adapter, _ = setup_django()
    from django.db import connection, transaction
    from django.test import override_settings
    from django.utils import timezone
    from phases import Bench

    from audit_events import conf, registry
    from audit_events.encoding import canonical_json, encode
    from audit_events.hashing import hash_content

    bench = Bench(adapter, args.n, 1, 1, 1)
    bench.reset()
    A = bench.Account
    spec = registry.spec_for(A)
    ct = spec.content_type_id()
    fields = {f.attname: f for f in spec.fields}
    every = conf.get_config().snapshot_every
    buffer = Buffer()

    def encoded(row: tuple[Any, ...]) -> dict[str, Any]:
        out = {}
        for attname, value in zip(("id", *COLS), row, strict=True):
            if attname == "meta" and isinstance(value, str):
                value = json.loads(value)
            out[fields[attname].name] = encode(fields[attname], value)
        return out

    def event_row(pk: Any, action: str, changes: Any, state: Any, last_version: Any, last_hash: Any) -> tuple[Any, ...]:
        now, op = timezone.now(), uuid.uuid4()
        content = hash_content(
            content_type="core.account",
            object_pk=str(pk),
            action=action,
            changes=changes,
            state=state,
            created_at=now,
            operation=op,
            actor_id=None,
            actor_repr="",
            context={},
        )
        digest = hashlib.sha256(((last_hash or "") + content).encode()).hexdigest()
        dumps = canonical_json
        state_text = None if state is None else dumps(state)
        return (
            ct,
            str(pk),
            (last_version or 0) + 1,
            action,
            dumps(changes),
            state_text,
            now,
            op,
            None,
            "",
            "{}",
            digest,
        )

    def params(obj: Any) -> list[Any]:
        return [
            obj.code,
            obj.name,
            obj.balance,
            obj.status,
            obj.is_active,
            obj.opened_at,
            obj.owner_id,
            obj.notes,
            json.dumps(obj.meta),
        ]

    def change(obj: Any) -> None:
        obj.name = obj.name[:150] + "!"
        obj.balance += 1

    # ---------------------------------------------------------------- save variants
    def save_orm(obj: Any, cur: Any) -> None:
        change(obj)
        obj.save()

    def save_raw(obj: Any, cur: Any) -> None:
        change(obj)
        cur.execute(f"UPDATE core_account SET {SET} WHERE id = %s", [*params(obj), obj.pk])

    def save_returning(obj: Any, cur: Any) -> None:
        change(obj)
        cur.execute(UPDATE_RETURNING, [*params(obj), ct, obj.pk])
        row = cur.fetchone()
        old = encoded(row[:-2])
        new = {f.name: encode(f, getattr(obj, f.attname)) for f in spec.fields}
        changes = {k: [old[k], v] for k, v in new.items() if old[k] != v}
        if changes:
            snap = new if ((row[-2] or 0) + 1) % every == 0 else None
            buffer.rows.append(event_row(obj.pk, "update", changes, snap, row[-2], row[-1]))

    def save_three(obj: Any, cur: Any) -> None:
        """Today's three statements, through a cursor with SQL built once: what the ORM costs on top."""
        change(obj)
        cur.execute(LOCKED_SELECT, [ct, obj.pk])
        row = cur.fetchone()
        cur.execute(f"UPDATE core_account SET {SET} WHERE id = %s", [*params(obj), obj.pk])
        old = encoded(row[:-2])
        new = {f.name: encode(f, getattr(obj, f.attname)) for f in spec.fields}
        changes = {k: [old[k], v] for k, v in new.items() if old[k] != v}
        if changes:
            snap = new if ((row[-2] or 0) + 1) % every == 0 else None
            buffer.rows.append(event_row(obj.pk, "update", changes, snap, row[-2], row[-1]))
            buffer.flush(cur)

    def save_cte(obj: Any, cur: Any) -> None:
        change(obj)
        now, op = timezone.now(), uuid.uuid4()
        cur.execute(CTE_UPDATE, [ct, obj.pk, *params(obj), every, ct, now, op, "update", now.isoformat(), str(op)])

    # -------------------------------------------------------------- delete variants
    def delete_orm(obj: Any, cur: Any) -> None:
        obj.delete()

    def delete_raw(obj: Any, cur: Any) -> None:
        cur.execute("DELETE FROM core_account WHERE id = %s", [obj.pk])

    def delete_returning(obj: Any, cur: Any) -> None:
        cur.execute(DELETE_RETURNING, [ct, obj.pk])
        row = cur.fetchone()
        buffer.rows.append(event_row(obj.pk, "delete", {}, encoded(row[:-2]), row[-2], row[-1]))

    def delete_cte(obj: Any, cur: Any) -> None:
        now, op = timezone.now(), uuid.uuid4()
        cur.execute(CTE_DELETE, [ct, obj.pk, ct, now, op, "delete", now.isoformat(), str(op)])

    unregistered = {"MODELS": []}
    variants = {
        "save": [
            ("plain orm", save_orm, unregistered, False),
            ("audit_events", save_orm, None, False),
            ("plain raw", save_raw, unregistered, False),
            ("3 statements raw", save_three, unregistered, False),
            ("returning+buffer", save_returning, unregistered, True),
            ("one CTE", save_cte, unregistered, False),
        ],
        "delete": [
            ("plain orm", delete_orm, unregistered, False),
            ("audit_events", delete_orm, None, False),
            ("plain raw", delete_raw, unregistered, False),
            ("returning+buffer", delete_returning, unregistered, True),
            ("one CTE", delete_cte, unregistered, False),
        ],
    }

    def fresh_rows(prefix: str) -> list[Any]:
        with override_settings(AUDIT_EVENTS=unregistered), transaction.atomic():
            return A.objects.bulk_create([A(**bench.kwargs(i, prefix)) for i in range(args.n)])

    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]

    def server_cpu() -> float:
        """CPU seconds used by this connection's PostgreSQL backend (Linux /proc): hardly load-dependent."""
        fields = Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    results: dict[tuple[str, str, str], list[tuple[float, float, float]]] = {}
    save_rows = fresh_rows("s")
    seq = 0
    for rnd in range(args.rounds):
        for op_name, plan in variants.items():
            order = plan[rnd % len(plan) :] + plan[: rnd % len(plan)]
            for mode in ("atomic", "autocommit"):
                for label, fn, setting, buffered in order:
                    seq += 1
                    objs = save_rows if op_name == "save" else fresh_rows(f"d{seq}-")
                    ctx = override_settings(AUDIT_EVENTS=setting) if setting is not None else override_settings()
                    with ctx, connection.cursor() as cur:
                        t0, c0, s0 = perf_counter(), process_time(), server_cpu()
                        if mode == "atomic":
                            with transaction.atomic():
                                for obj in objs:
                                    fn(obj, cur)
                                if buffered:
                                    buffer.flush(cur)
                        else:
                            for obj in objs:
                                if buffered or label == "3 statements raw":
                                    with transaction.atomic():
                                        fn(obj, cur)
                                        buffer.flush(cur)
                                else:
                                    fn(obj, cur)
                        k = 1e6 / len(objs)
                        sample = ((perf_counter() - t0) * k, (process_time() - c0) * k, (server_cpu() - s0) * k)
                    results.setdefault((op_name, mode, label), []).append(sample)
    out = []
    print(
        "median per op: wall µs (x plain orm), client CPU µs, PostgreSQL backend CPU µs,"
        " client+server CPU (x plain orm)"
    )
    for (op_name, mode, label), samples in results.items():
        wall, client, server = (statistics.median(x[i] for x in samples) for i in range(3))
        base = results[(op_name, mode, "plain orm")]
        base_wall = statistics.median(x[0] for x in base)
        base_cpu = statistics.median(x[1] + x[2] for x in base)
        row = {"op": op_name, "mode": mode, "variant": label, "wall_us": wall, "client_cpu_us": client}
        row |= {"server_cpu_us": server, "x_wall": wall / base_wall, "x_cpu": (client + server) / base_cpu}
        out.append(row)
        print(
            f"{op_name:7}{mode:11}{label:18}{wall:8.0f} ({wall / base_wall:5.2f}x) {client:7.0f} {server:7.0f}"
            f"   {(client + server) / base_cpu:5.2f}x"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
