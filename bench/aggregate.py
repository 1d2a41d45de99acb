#!/usr/bin/env python
"""Medians over reps and ratios to plain Django, as reStructuredText (for the docs) and Markdown.

    python aggregate.py RAW_DIR --rst docs/_generated/benchmark.rst [--md report.md] [--libs "plain ..."]

Times: the median over reps of each run's µs/op; ratio = that / plain's median
for the same operation, mode and database. Statement counts are deterministic:
the first rep's are shown.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import goals

ROOT = Path(__file__).resolve().parent.parent
OPS = {
    "create": "create()",
    "save": "save(), 2 fields changed",
    "save_uf": "save(update_fields=[1 field])",
    "delete": "delete()",
    "load": "load: list(objects.all()), per row",
    "bulk_create": "bulk_create(), per row",
    "qs_update": "QuerySet.update(), per row",
    "qs_update_m2m": "QuerySet.update(), model with a many-to-many, per row",
    "bulk_update": "bulk_update(), per row",
    "qs_delete": "QuerySet.delete(), per row",
}
MODES = ("atomic", "autocommit")
Table = tuple[str, list[str], list[list[str]]]


def med(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


class Results:
    def __init__(self, runs: list[dict[str, Any]]) -> None:
        self.runs = runs
        self.t: dict[tuple[str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
        self.q: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self.h: dict[tuple[str, str, str], list[float]] = defaultdict(list)
        for run in sorted(runs, key=lambda r: r["rep"]):
            v, lib = run["db"]["vendor"], run["lib"]
            for t in run["timings"]:
                self.t[(v, lib, t["phase"], t["mode"])].append(t)
            for q in run["queries"]:
                self.q.setdefault((v, lib, q["phase"], q["mode"]), q)
            for h in run["history"]:
                self.h[(v, lib, h["phase"])].append(h["us_per_op"])

    def us(self, v: str, lib: str, op: str, mode: str) -> float | None:
        return med([t["us_per_op"] for t in self.t.get((v, lib, op, mode), [])])

    def ratio(self, v: str, lib: str, op: str, mode: str) -> float | None:
        us, base = self.us(v, lib, op, mode), self.us(v, "plain", op, mode)
        return us / base if us is not None and base else None

    def recorded(self, v: str, lib: str, op: str, mode: str) -> float | None:
        return med([t["recorded_per_op"] for t in self.t.get((v, lib, op, mode), [])])

    def error(self, v: str, lib: str, op: str, mode: str) -> str | None:
        return next((t["error"] for t in self.t.get((v, lib, op, mode), []) if t.get("error")), None)

    def spread(self, v: str, lib: str, op: str, mode: str) -> float | None:
        us = [t["us_per_op"] for t in self.t.get((v, lib, op, mode), []) if t["us_per_op"] is not None]
        return (max(us) - min(us)) / statistics.median(us) * 100 if len(us) > 1 else None


def cell(res: Results, v: str, lib: str, op: str, mode: str) -> str:
    if (v, lib, op, mode) not in res.t:
        return "n/a"
    if res.error(v, lib, op, mode) and res.us(v, lib, op, mode) is None:
        return "error"
    us = res.us(v, lib, op, mode)
    text = f"{us:.1f} µs" if lib == "plain" else f"{res.ratio(v, lib, op, mode):.2f}x"
    rec = res.recorded(v, lib, op, mode)
    if rec is not None and op != "load" and abs(rec - 1) > 0.005:
        text += f" ({rec:.2g} rec/row)"
    return text


def ratio_table(res: Results, v: str, mode: str, libs: list[str]) -> Table:
    head = ["operation", "plain", *[lib for lib in libs if lib != "plain"]]
    rows = [[OPS[op], *[cell(res, v, lib, op, mode) for lib in ["plain", *libs[1:]]]] for op in OPS]
    return (f"{_vendor(v)}, {'inside transaction.atomic()' if mode == 'atomic' else 'autocommit'}", head, rows)


def history_table(res: Results, v: str, libs: list[str]) -> Table | None:
    sizes = sorted({int(p.rsplit("_", 1)[1]) for (vv, _, p) in res.h if vv == v})
    if not sizes:
        return None
    head = ["library", *[f"{w} {s:,} events" for w in ("state_at", "restore") for s in sizes]]
    head += [f"{w} {sizes[-1]:,} ÷ {sizes[0]:,}" for w in ("state_at", "restore")]
    rows = []
    for lib in libs:
        if not any((v, lib, f"state_at_{s}") in res.h for s in sizes):
            continue
        vals = {(w, s): med(res.h.get((v, lib, f"{w}_{s}"), [])) for w in ("state_at", "restore") for s in sizes}
        row = [lib, *["-" if vals[k] is None else f"{vals[k]:.0f} µs" for k in vals]]
        for w in ("state_at", "restore"):
            a, b = vals[(w, sizes[0])], vals[(w, sizes[-1])]
            row.append(f"{b / a:.2f}x" if a and b else "-")
        rows.append(row)
    title = f"{_vendor(v)}: state_at and restore, read just before the row's last event (median µs per call)"
    return (title, head, rows)


def queries_table(res: Results, v: str, mode: str, libs: list[str]) -> Table:
    head = ["operation", *libs]
    rows = []
    for op in OPS:
        row = [OPS[op].split(",")[0]]
        for lib in libs:
            q = res.q.get((v, lib, op, mode))
            if q is None:
                row.append("-")
                continue
            parts = ", ".join(f"{k} {c:g}" for k, c in q["breakdown"].items())
            row.append(f"{q['queries_per_op']:g}: {parts}")
        rows.append(row)
    bulk = res.runs[0].get("count_bulk", res.runs[0]["bulk"])
    title = f"{_vendor(v)}, {mode}: statements per operation (bulk operations: per call of {bulk:,} rows)"
    return (title, head, rows)


def snapshots_table(snap: dict[str, Any]) -> Table:
    rows_in = snap["rows"]
    keys = [k for k in rows_in[0] if k.startswith(("state_at_", "restore_")) and "_cpu_" not in k]
    head = ["SNAPSHOT_EVERY", "save() µs (CPU)", "bytes/event", "full states", *[_snap_head(k) for k in keys]]
    rows = []
    for r in rows_in:
        size = "-" if r["bytes_per_event"] is None else f"{r['bytes_per_event']:.0f}"
        cells = []
        for k in keys:
            cpu = r.get(k.replace("state_at_", "state_at_cpu_")) if k.startswith("state_at_") else None
            cells.append(f"{r[k]:.0f}" + ("" if cpu is None else f" ({cpu:.0f})"))
        save = f"{r['save_us']:.0f}" + (f" ({r['save_cpu']:.0f})" if "save_cpu" in r else "")
        rows.append([str(r["every"] or "never"), save, size, str(r["full_states"]), *cells])
    title = (
        f"SNAPSHOT_EVERY: one row, {snap['events']:,} events, {_vendor(snap['db']['vendor'])}"
        " (median wall µs; in brackets, client + PostgreSQL CPU µs)"
    )
    return (title, head, rows)


def _snap_head(key: str) -> str:
    what, k = key.rsplit("_", 1)
    return f"{what} @{int(k):,}"


def _vendor(v: str) -> str:
    return {"postgresql": "PostgreSQL", "sqlite": "SQLite"}.get(v, v)


def render_md(title: str, head: list[str], rows: list[list[str]]) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def render_rst(title: str, head: list[str], rows: list[list[str]]) -> str:
    lines = [f".. list-table:: {title}", "   :header-rows: 1", ""]
    for row in [head, *rows]:
        lines.append("   * - " + (row[0] or " "))
        lines += [f"     - {c or ' '}" for c in row[1:]]
    return "\n".join(lines) + "\n"


def source_line(runs: list[dict[str, Any]]) -> str:
    desc = runs[0].get("source")
    if desc:
        return f"audit_events from {desc}"
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "audit_events"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    return f"audit_events from the working tree at {head.strip()}" + (" with uncommitted changes" if dirty else "")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("raw_dir")
    ap.add_argument("--rst", required=True)
    ap.add_argument("--md")
    ap.add_argument("--libs", default="plain audit_events simple_history auditlog pghistory reversion")
    ap.add_argument("--wall", type=float)
    args = ap.parse_args()

    raw = Path(args.raw_dir)
    runs = [json.loads(p.read_text()) for p in sorted(raw.glob("*-rep*.json"))]
    if not runs:
        raise SystemExit(f"no results in {raw}")
    snap_path = raw / "snapshots.json"
    snap = json.loads(snap_path.read_text()) if snap_path.exists() else None
    res = Results(runs)
    present = {r["lib"] for r in runs}
    libs = ["plain", *[x for x in args.libs.split() if x in present and x != "plain"]]
    vendors = [v for v in ("postgresql", "sqlite") if any(r["db"]["vendor"] == v for r in runs)]

    first = {v: next(r for r in runs if r["db"]["vendor"] == v) for v in vendors}
    reps = {v: max(r["rep"] for r in runs if r["db"]["vendor"] == v) for v in vendors}
    date = min(r["started"] for r in runs)[:16].replace("T", " ")
    facts = [f"Run {date} UTC; {source_line(runs)}."]
    pg = first.get("postgresql", {}).get("db")
    if pg:
        facts.append(
            f"Machine: {first['postgresql']['cpus']} CPUs (a VM shared with other work), Python "
            f"{first['postgresql']['python']}, PostgreSQL {pg['server_version']} on the same machine over the Unix "
            f"socket (fsync={pg['fsync']}, synchronous_commit={pg['synchronous_commit']}, "
            f"shared_buffers={pg['shared_buffers']}), client on CPU(s) {pg['client_cpus']}, "
            f"backend on CPU(s) {pg['backend_cpus']}."
        )
    if "sqlite" in first:
        facts.append(f"SQLite {first['sqlite']['db']['server_version']}, a file database, default journal mode.")
    versions: dict[str, str] = {}
    for r in runs:
        versions.update(r["versions"])
    facts.append("Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) + ".")
    one = runs[0]
    facts.append(
        f"N = {one['n']:,} rows per single-row operation, {one['bulk']:,} rows per bulk operation, load = "
        f"{one['reads']} x list() of N rows; "
        + "; ".join(f"{_vendor(v)}: {reps[v]} rep(s)" for v in vendors)
        + ", libraries interleaved (order rotated each rep, autocommit/atomic order flipped on even reps); "
        "medians over reps."
    )
    if args.wall:
        facts.append(f"Whole run: {args.wall / 60:.1f} min.")

    tables: list[Table] = [goals.targets_table(res, v, libs, OPS, cell) for v in vendors]
    memory = [json.loads(p.read_text()) for p in sorted(raw.glob("memory-*.json"))]
    storage = [json.loads(p.read_text()) for p in sorted(raw.glob("storage-*.json"))]
    mem_table = goals.memory_table(memory, libs)
    tables += [mem_table] if mem_table else []
    tables += goals.storage_tables(storage, libs)
    for v in vendors:
        for mode in MODES:
            tables.append(ratio_table(res, v, mode, libs))
        t = history_table(res, v, libs)
        if t:
            tables.append(t)
    if snap:
        tables.append(snapshots_table(snap))
    for v in vendors[:1]:
        tables.append(queries_table(res, v, "autocommit", libs))
        tables.append(queries_table(res, v, "atomic", ["plain", "audit_events"]))

    legend = (
        "Cells: plain's µs per operation (per row for load and bulk), the others as a ratio to plain for the same "
        "work in the same run; '(x rec/row)' = audit rows written per row when not exactly one; n/a = not "
        "supported (pghistory needs PostgreSQL); error = the library raised."
    )
    rst = [".. This file is generated by `make bench` (bench/aggregate.py): do not edit.", ""]
    rst += [f"* {f}" for f in facts] + ["", legend, ""]
    md = ["# audit_events benchmark", ""] + [f"- {f}" for f in facts] + ["", legend, ""]
    for title, head, rows in tables:
        rst += [render_rst(title, head, rows)]
        md += [render_md(title, head, rows)]
    spreads = [
        f"{lib}/{op}/{mode}/{v}: {s:.0f}%"
        for v in vendors
        for lib in libs
        for op in OPS
        for mode in MODES
        if (s := res.spread(v, lib, op, mode)) is not None and s > 30
    ]
    if spreads:
        md += ["", "Cells whose reps spread more than 30% (max - min over median): " + ", ".join(spreads)]
    Path(args.rst).parent.mkdir(parents=True, exist_ok=True)
    Path(args.rst).write_text("\n".join(rst))
    if args.md:
        Path(args.md).parent.mkdir(parents=True, exist_ok=True)
        Path(args.md).write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
