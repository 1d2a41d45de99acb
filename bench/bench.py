#!/usr/bin/env python
"""`make bench`: every library, interleaved and repeated, then the report.

    python bench/bench.py                       # the full run (PostgreSQL + SQLite)
    BENCH_N=50 BENCH_BULK=200 BENCH_REPS=1 BENCH_HISTORY=10,100 python bench/bench.py   # smoke

Settings (environment): BENCH_N rows per single-row phase (500), BENCH_BULK rows
per bulk phase (10000), BENCH_REPS repetitions (5), BENCH_HISTORY history
lengths (10,1000,10000), BENCH_LIBS, BENCH_VENDORS ("postgresql sqlite"),
BENCH_SQLITE_REPS (1), BENCH_SNAPSHOTS (1: run the SNAPSHOT_EVERY study),
BENCH_SNAPSHOT_SAVES (1000: saves timed per SNAPSHOT_EVERY value),
BENCH_STORAGE (creates,saves,deletes of the storage study, 20000,15000,1000;
0 skips it), BENCH_MEMORY_ROWS (rows of the memory study's QuerySet.update() and
.delete(), 1000000; 0 skips it), BENCH_MEMORY_LIBS (the libraries it runs,
"plain audit_events"); a smoke run (BENCH_N < 200) defaults to 200,150,10 and
2,000 rows,
BENCH_REV (measure audit_events at a git revision instead of the working tree),
PIN (0; 1 pins PostgreSQL's postmaster to CPU 0 and the client to CPU 1, as the
peer harness did, and restores the postmaster's affinity afterwards; off by
default because on a shared machine it squeezes everyone's backends onto one CPU),
BENCH_DOC (where the report goes; docs/_generated/benchmark.rst).

Each library runs in its own virtualenv (.venvs/bench-<lib>, made on first use
from pinned PyPI versions, see venvs.py) on its own database (bench_<lib>).
Raw JSON and logs go to bench-out/raw-<timestamp>/ (git-ignored).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import venvs  # noqa: E402
from adapters import load_adapter  # noqa: E402

ALL_LIBS = "plain audit_events simple_history auditlog pghistory reversion"


def env(name: str, default: str) -> str:
    return os.environ.get(name) or default


class Pinning:
    """PostgreSQL's postmaster (so every new backend) on CPU 0, the client on CPU 1; undone on exit."""

    def __init__(self) -> None:
        self.pid: str | None = None
        self.old_mask: str | None = None
        self.client: list[str] = []

    def __enter__(self) -> Pinning:
        if env("PIN", "0") != "1" or (os.cpu_count() or 1) < 2 or not shutil.which("taskset"):
            return self
        try:
            data_dir = subprocess.run(
                ["psql", "-U", "postgres", "-AtXc", "SHOW data_directory"], capture_output=True, text=True, check=True
            ).stdout.strip()
            self.pid = Path(data_dir, "postmaster.pid").read_text().split()[0]
            mask = subprocess.run(["taskset", "-p", self.pid], capture_output=True, text=True, check=True).stdout
            self.old_mask = mask.split()[-1]
            subprocess.run(["taskset", "-p", "1", self.pid], capture_output=True, check=True)
            self.client = ["taskset", "-c", "1"]
            print(f"bench: postmaster {self.pid} pinned to CPU 0 (was mask {self.old_mask})", file=sys.stderr)
        except (OSError, subprocess.CalledProcessError, IndexError) as error:
            print(f"bench: not pinning ({error})", file=sys.stderr)
            self.pid = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pid and self.old_mask:
            subprocess.run(["taskset", "-p", self.old_mask, self.pid], capture_output=True, check=False)
            print(f"bench: postmaster {self.pid} affinity restored to mask {self.old_mask}", file=sys.stderr)


def source_tree(raw: Path) -> dict[str, str]:
    """Environment that points every run at one frozen copy of the audit_events to measure.

    Without BENCH_REV, the working tree is copied once at the start, so that
    edits made while the benchmark runs (a shared tree) cannot mix two versions.
    """
    rev = os.environ.get("BENCH_REV")
    if not rev:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "audit_events"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dest = raw / "src-tree"
        shutil.copytree(ROOT / "audit_events", dest / "audit_events", ignore=shutil.ignore_patterns("__pycache__"))
        desc = f"the working tree at {head[:10]}" + (" with uncommitted changes" if dirty else "")
        return {"BENCH_SRC": str(dest), "BENCH_SOURCE_DESC": desc}
    sha = subprocess.run(["git", "rev-parse", rev], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    dest = raw / f"src-{sha[:10]}"
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", sha, "audit_events"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    print(f"bench: audit_events from {rev} ({sha[:10]})", file=sys.stderr)
    return {"BENCH_SRC": str(dest), "BENCH_SOURCE_DESC": f"commit {sha[:10]} ({rev})"}


def step(cmd: list[str], run_env: dict[str, str], log_path: Path, label: str) -> int:
    """Run one subprocess of the study, its output to log_path; prints its time, and its log if it failed."""
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        rc = subprocess.run(cmd, env=run_env, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    status = "ok" if rc == 0 else f"FAILED (see {log_path})"
    print(f"bench: {label:<36} {time.monotonic() - t0:6.1f}s {status}", file=sys.stderr, flush=True)
    if rc:
        print(log_path.read_text()[-3000:], file=sys.stderr)
    return rc


def storage_and_memory(
    client: list[str], pythons: dict[str, Path], base_env: dict[str, str], raw: Path, libs: list[str], smoke: bool
) -> int:
    """PostgreSQL only: bytes on disk per recorded change (every library but plain, which records
    nothing), then the peak RSS of QuerySet.update() and .delete() of every row, a fresh process each."""
    scale = env("BENCH_STORAGE", "200,150,10" if smoke else "20000,15000,1000")
    if scale != "0":
        creates, saves, deletes = scale.split(",")
        for lib in [lib for lib in libs if lib != "plain"]:
            cmd = [*client, str(pythons[lib]), str(HERE / "storage.py"), "--creates", creates, "--saves", saves]
            cmd += ["--deletes", deletes, "--json", str(raw / f"storage-{lib}.json")]
            rc = step(cmd, {**base_env, "BENCH_LIB": lib}, raw / f"storage-{lib}.log", f"storage {lib}")
            if rc:
                return rc
    rows = env("BENCH_MEMORY_ROWS", "2000" if smoke else "1000000")
    if rows == "0":
        return 0
    for lib in [lib for lib in env("BENCH_MEMORY_LIBS", "plain audit_events").split() if lib in libs]:
        run_env = {**base_env, "BENCH_LIB": lib}
        script = [*client, str(pythons[lib]), str(HERE / "memory.py")]
        rc = step([*script, "setup", "--rows", rows], run_env, raw / f"memory-{lib}-setup.log", f"memory {lib} setup")
        for op in ("update", "delete"):
            cmd = [*script, op, "--json", str(raw / f"memory-{lib}-{op}.json")]
            rc = rc or step(cmd, run_env, raw / f"memory-{lib}-{op}.log", f"memory {lib} {op}")
        step([*script, "drop"], run_env, raw / f"memory-{lib}-drop.log", f"memory {lib} drop")
        if rc:
            return rc
    return 0


def main() -> int:
    n, bulk = env("BENCH_N", "500"), env("BENCH_BULK", "10000")
    reps = int(env("BENCH_REPS", "5"))
    sqlite_reps = int(env("BENCH_SQLITE_REPS", "1"))
    history = env("BENCH_HISTORY", "10,1000,10000")
    libs = env("BENCH_LIBS", ALL_LIBS).split()
    vendors = env("BENCH_VENDORS", "postgresql sqlite").split()
    out = Path(env("BENCH_OUT", str(ROOT / "bench-out")))
    raw = out / f"raw-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
    raw.mkdir(parents=True, exist_ok=True)
    doc = Path(env("BENCH_DOC", str(ROOT / "docs" / "_generated" / "benchmark.rst")))

    # SIGTERM (CI timeout, kill) goes through the finally blocks: the affinity is always restored
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    pythons = {lib: venvs.ensure(lib) for lib in libs}
    base_env = {**os.environ, **source_tree(raw), "BENCH_OUT": str(out)}
    start = time.monotonic()
    with Pinning() as pin:
        for rep in range(1, reps + 1):
            for vendor in vendors:
                if vendor == "sqlite" and rep > sqlite_reps:
                    continue
                runnable = [lib for lib in libs if vendor in load_adapter(lib).vendors]
                k = (rep - 1) % len(runnable)
                for lib in runnable[k:] + runnable[:k]:  # rotated each rep
                    tag = f"{vendor}-{lib}-rep{rep}"
                    cmd = [
                        *pin.client,
                        str(pythons[lib]),
                        str(HERE / "run.py"),
                        *("--n", n, "--bulk", bulk, "--history", history, "--rep", str(rep)),
                        *("--json", str(raw / f"{tag}.json")),
                    ]
                    run_env = {**base_env, "BENCH_LIB": lib, "BENCH_VENDOR": vendor}
                    if int(n) < 200:  # smoke run: tiny samples, no CHECKPOINT between phases
                        cmd += ["--sample", "5", "--reads", "2", "--history-reads", "3", "--history-restores", "2"]
                        run_env["BENCH_CHECKPOINT"] = "0"
                    t0 = time.monotonic()
                    with open(raw / f"{tag}.log", "w") as log:
                        rc = subprocess.run(cmd, env=run_env, stdout=log, stderr=subprocess.STDOUT, check=False)
                    status = "ok" if rc.returncode == 0 else f"FAILED (see {raw / (tag + '.log')})"
                    print(f"bench: {tag:<36} {time.monotonic() - t0:6.1f}s {status}", file=sys.stderr, flush=True)
                    if rc.returncode:
                        print((raw / f"{tag}.log").read_text()[-3000:], file=sys.stderr)
                        return 1
        if env("BENCH_SNAPSHOTS", "1") == "1" and "audit_events" in libs and "postgresql" in vendors:
            events = max(int(s) for s in history.split(","))
            cmd = [*pin.client, str(pythons["audit_events"]), str(HERE / "snapshots.py")]
            cmd += ["--events", str(events), "--json", str(raw / "snapshots.json")]
            cmd += ["--saves", env("BENCH_SNAPSHOT_SAVES", "1000")]
            if events < 1000:
                cmd += ["--every", "10,0", "--reads", "3", "--restores", "2", "--saves", "20"]
            t0 = time.monotonic()
            run_env = {**base_env, "BENCH_LIB": "audit_events", "BENCH_DB": "audit_events_snapshots"}
            with open(raw / "snapshots.log", "w") as log:
                rc = subprocess.run(cmd, env=run_env, stdout=log, stderr=subprocess.STDOUT, check=False)
            print(f"bench: snapshots study {time.monotonic() - t0:6.1f}s rc={rc.returncode}", file=sys.stderr)
            if rc.returncode:
                print((raw / "snapshots.log").read_text()[-3000:], file=sys.stderr)
                return 1
        smoke = int(n) < 200
        rc = storage_and_memory([*pin.client], pythons, base_env, raw, libs if "postgresql" in vendors else [], smoke)
        if rc:
            return rc
    wall = time.monotonic() - start
    agg = [sys.executable, str(HERE / "aggregate.py"), str(raw), "--rst", str(doc), "--wall", f"{wall:.0f}"]
    agg += ["--md", str(out / f"report-{raw.name[4:]}.md"), "--libs", " ".join(libs)]
    return subprocess.run(agg, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
