"""The performance issue's goals as tables: ours beside plain Django and each peer, the goal, a verdict.

Used by aggregate.py. Times come from its ``Results`` (medians over reps, ratio to
plain in the same run); memory from memory.py's JSON, storage from storage.py's.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

Table = tuple[str, list[str], list[list[str]]]
SINGLE_ROW = ("save", "save_uf", "delete", "create")
# (operation, mode, goal as a ratio to plain on PostgreSQL)
TARGETS: list[tuple[str, str, float]] = [
    ("save", "atomic", 1.1),
    ("save", "autocommit", 1.3),
    ("save_uf", "atomic", 1.1),
    ("save_uf", "autocommit", 1.3),
    ("delete", "atomic", 1.2),
    ("delete", "autocommit", 1.3),
    ("create", "atomic", 1.15),
    ("create", "autocommit", 1.3),
    ("qs_update", "atomic", 2.5),
    ("qs_update_m2m", "atomic", 2.5),
    ("qs_delete", "atomic", 2.5),
    ("bulk_create", "atomic", 1.8),
    ("bulk_update", "atomic", 1.5),
    ("load", "atomic", 1.0),
]
SQLITE_GOAL = 2.0  # single-row writes, both modes
LOAD_NOISE = 1.1  # load's 1.0x counts as met up to 1.1x: plain's own cells spread more than that between reps
MODE = {"atomic": "in a transaction", "autocommit": "autocommit"}


def med(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def goal_for(vendor: str, op: str, mode: str, target: float) -> float | None:
    if vendor == "postgresql":
        return target
    return SQLITE_GOAL if op in SINGLE_ROW else None


def verdict(res: Any, v: str, op: str, mode: str, goal: float | None) -> str:
    r = res.ratio(v, "audit_events", op, mode)
    rec = res.recorded(v, "audit_events", op, mode)
    if r is None:
        return "error" if res.error(v, "audit_events", op, mode) else "not measured"
    if op != "load" and (rec is None or rec < 0.995):
        return "missed: " + ("nothing" if rec is None else f"{rec:.2g} rows") + " recorded per row"
    if goal is None:
        return "no goal"
    limit = LOAD_NOISE if op == "load" else goal * 1.0001
    return "met" if r <= limit else "missed"


def targets_table(res: Any, v: str, libs: list[str], ops: dict[str, str], cell: Callable[..., str]) -> Table:
    """One row per (operation, mode) of the issue's table: plain's µs, every library's ratio, goal, verdict."""
    head = ["operation", "mode", "goal", *libs, "verdict"]
    rows = []
    for op, mode, target in TARGETS:
        goal = goal_for(v, op, mode, target)
        shown = "-" if goal is None else f"≤ {goal:g}x"
        if op == "load" and goal is not None:
            shown += f" (met up to {LOAD_NOISE:g}x: noise)"
        cells = [cell(res, v, lib, op, mode) for lib in libs]
        rows.append([ops[op], MODE[mode], shown, *cells, verdict(res, v, op, mode, goal)])
    rows.append(history_row(res, v, libs))
    name = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}[v]
    title = f"Goals, {name}: plain's µs per operation, the others ÷ plain (median of interleaved reps)"
    if v == "sqlite":
        title += f"; goal ≤ {SQLITE_GOAL:g}x on single-row writes"
    return (title, head, rows)


def _history_sizes(res: Any, v: str) -> list[int]:
    return sorted({int(p.rsplit("_", 1)[1]) for (vv, lib, p) in res.h if vv == v and lib == "audit_events"})


def history_row(res: Any, v: str, libs: list[str]) -> list[str]:
    """History reads, read as bounded: state_at / restore on the longest history ÷ on the shortest."""
    sizes = _history_sizes(res, v)
    label = "history reads: state_at / restore, longest ÷ shortest history"
    goal = "unchanged (≤ 2x)" if v == "postgresql" else "-"
    if len(sizes) < 2:
        return [label, "-", goal, *["-" for _ in libs], "not measured"]
    lo, hi = sizes[0], sizes[-1]
    cells, ok = [], True
    for lib in libs:
        parts = []
        for what in ("state_at", "restore"):
            a, b = med(res.h.get((v, lib, f"{what}_{lo}"), [])), med(res.h.get((v, lib, f"{what}_{hi}"), []))
            if a and b:
                parts.append(f"{b / a:.2f}x")
                ok = ok and (lib != "audit_events" or b / a <= 2)
        cells.append(" / ".join(parts) or "-")
    verdict = "no goal" if v != "postgresql" else "met" if ok else "missed"
    return [f"{label} ({hi:,} vs {lo:,} events)", "-", goal, *cells, verdict]


# ----------------------------------------------------------------- memory
MEMORY_GOAL = 2.0
MEMORY_OPS = {"update": "QuerySet.update(), every row", "delete": "QuerySet.delete(), every row"}


def memory_table(records: list[dict[str, Any]], libs: list[str]) -> Table | None:
    if not records:
        return None
    by = {(r["lib"], r["op"]): r for r in records}
    head = ["operation", "rows", *libs, "goal", "verdict"]
    rows = []
    for op, label in MEMORY_OPS.items():
        base = by.get(("plain", op))
        nrows = next((r["rows"] for r in records if r["op"] == op), 0)
        cells = []
        for lib in libs:
            r = by.get((lib, op))
            if r is None:
                cells.append("not run")
                continue
            text = f"{r['peak_rss_kib'] / 1024:.0f} MB"
            if lib != "plain" and base:
                text += f" ({r['peak_rss_kib'] / base['peak_rss_kib']:.2f}x)"
            text += f", {r['seconds']:.1f} s"
            rec = r.get("recorded_per_row")
            if rec is not None and abs(rec - 1) > 0.005:
                text += f" ({rec:.2g} rec/row)"
            cells.append(text)
        rows.append([label, f"{nrows:,}", *cells, f"≤ {MEMORY_GOAL:g}x", _memory_verdict(by, op, base)])
    before = ", ".join(
        f"{lib} {by[(lib, 'update')]['rss_before_kib'] / 1024:.0f} MB" for lib in libs if (lib, "update") in by
    )
    title = (
        "Memory: peak RSS of the client process (ru_maxrss, a fresh process per measurement; "
        f"before the statement: {before}), ratio to plain, seconds"
    )
    return (title, head, rows)


def _memory_verdict(by: dict[tuple[str, str], dict[str, Any]], op: str, base: dict[str, Any] | None) -> str:
    ours = by.get(("audit_events", op))
    if ours is None or base is None:
        return "not measured"
    rec = ours.get("recorded_per_row")
    if rec is None or rec < 0.995:
        return "missed: not every row recorded"
    return "met" if ours["peak_rss_kib"] <= base["peak_rss_kib"] * MEMORY_GOAL else "missed"


# ---------------------------------------------------------------- storage
STORAGE_RIVALS = ("pghistory", "simple_history")


def _per_change(r: dict[str, Any]) -> float | None:
    total = sum(t["total_bytes"] for t in r["tables"])
    return total / r["recorded"] if r["recorded"] else None


def storage_tables(records: list[dict[str, Any]], libs: list[str]) -> list[Table]:
    if not records:
        return []
    by = {r["lib"]: r for r in records}
    w = records[0]["workload"]
    work = f"{w['creates']:,} create(), {w['saves']:,} two-field save(), {w['deletes']:,} delete()"
    head = ["library", "recorded changes", "bytes, total", "bytes per change", "table + TOAST", "indexes", "tables"]
    rows = []
    for lib in libs:
        r = by.get(lib)
        if r is None:
            continue
        per = _per_change(r)
        rows.append(
            [
                lib,
                f"{r['recorded']:,}",
                f"{sum(t['total_bytes'] for t in r['tables']):,}",
                "-" if per is None else f"{per:.0f}",
                f"{sum(t['table_bytes'] for t in r['tables']):,}",
                f"{sum(t['index_bytes'] for t in r['tables']):,}",
                ", ".join(t["table"] for t in r["tables"]),
            ]
        )
    tables: list[Table] = [(f"Storage on PostgreSQL after {work} (VACUUM ANALYZE; bytes on disk)", head, rows)]
    peers = [lib for lib in libs if lib not in ("plain", "audit_events")]
    ours = by.get("audit_events")
    cells = []
    for lib in ["audit_events", *peers]:
        per = _per_change(by[lib]) if lib in by else None
        cells.append("not measured" if per is None else f"{per:.0f}")
    tables.append(
        (
            "Storage goal: bytes per recorded change",
            ["measure", "goal", "audit_events", *peers, "verdict"],
            [["bytes per recorded change", "below pghistory and simple-history", *cells, _storage_verdict(by)]],
        )
    )
    if ours:
        tables.append(_breakdown(ours))
    return tables


def _storage_verdict(by: dict[str, dict[str, Any]]) -> str:
    ours = _per_change(by["audit_events"]) if "audit_events" in by else None
    rivals = [_per_change(by[lib]) for lib in STORAGE_RIVALS if lib in by]
    if ours is None:
        return "not measured"
    if len(rivals) < len(STORAGE_RIVALS) or None in rivals:
        return "not measured: " + " and ".join(lib for lib in STORAGE_RIVALS if lib not in by) + " not run"
    return "met" if all(ours < r for r in rivals if r is not None) else "missed"


def _breakdown(ours: dict[str, Any]) -> Table:
    rows = []
    recorded = ours["recorded"] or 1
    total = sum(t["total_bytes"] for t in ours["tables"]) or 1
    for t in ours["tables"]:
        parts = [(f"{t['table']}: table + TOAST", t["table_bytes"])]
        parts += [(f"index {name}", size) for name, size in t["indexes"].items()]
        for label, size in parts:
            rows.append([label, f"{size:,}", f"{size / recorded:.0f}", f"{size / total * 100:.0f} %"])
    return ("audit_events' storage, table and each index", ["part", "bytes", "bytes per change", "share"], rows)
