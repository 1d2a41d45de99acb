"""Django's own ORM test suite, without audit_events and with every model registered, compared test by test.

``make test-django-suite [DB=sqlite|postgres]`` runs this. Steps:

1. Django's source distribution for the installed version is downloaded with
   pip into ``.cache/django-src/`` (kept for the next run) and its ``tests/``
   unpacked there.
2. ``tests/runtests.py`` runs the apps of ``apps.txt`` twice, with
   ``settings.py`` and ``runner.py``: plain, then with audit_events installed
   and ``AUDIT_EVENTS = {"MODELS": ["*"]}``.
3. Each test's outcome (pass, fail, error, skip, expected failure…) is compared.
   The tests whose outcome differs run again, registered, with
   ``assertNumQueries`` asserting nothing: a test that then behaves as without
   audit_events differed only by its query count.
4. A difference passes only if ``allowed.txt`` lists its test id (for this
   database or ``*``) with the reason: ``query-count`` (and the rerun confirms
   it), or one of the side effects of signals-based capture that
   ``docs/limits.rst`` names. Anything else fails the run (exit status 1),
   except the tests ``known-defects.txt`` lists: defects of audit_events found
   by this runner and not fixed yet (issue "Invisible to the application").
   They are reported on every run, never excused as allowed: the list only
   shrinks, and a listed test that no longer differs is reported so it can be
   removed. ``ignored.txt`` lists tests whose outcome depends on the machine's
   load (wall-clock timing), compared in neither run.

The outcomes, logs and the list of differences are kept in
``.cache/django-suite/<db>/``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tarfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import django

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CACHE = ROOT / ".cache"
KINDS = {
    "query-count": "asserts an exact number of queries; passes with the count check off",
    "fast-delete": "Django's fast delete is off for audited models (the Collector sends their delete signals)",
    "collector-rows": "the deletion Collector selects whole rows of audited models, not only their keys",
    "receivers": "audit_events' receivers are connected to the model signals",
    "sql-text": "asserts a write's SQL text; the write reads the rows it writes (in the statement or before it)",
}
Outcomes = dict[str, list[str]]  # test id -> [outcome, first line of the error]
# What assertNumQueries says when the count is wrong (a subtest's parameters may come first).
# "0 expected" is not a count but a promise that a database is not touched (routing): never excused.
COUNT_FAILURE = re.compile(r"AssertionError: \d+ != \d+ : \d+ queries executed, [1-9]\d* expected")


@dataclass(frozen=True)
class Allowance:
    test: str
    kind: str
    reason: str


def django_tests() -> Path:
    """Django's ``tests/`` for the installed version, fetched and unpacked once."""
    version = django.__version__
    source = CACHE / "django-src"
    tests = source / f"django-{version}" / "tests"
    if (tests / "runtests.py").exists():
        return tests
    archive = source / f"django-{version}.tar.gz"
    if not archive.exists():
        source.mkdir(parents=True, exist_ok=True)
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps"]
        subprocess.run([*pip, "--dest", str(source), f"django=={version}"], check=True)
    prefix = f"django-{version}/tests/"
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
        tar.extractall(source, members=members, filter="data")
    return tests


def read_list(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def read_tests(name: str, db: str) -> dict[str, str]:
    """``known-defects.txt`` or ``ignored.txt``: ``<database or *>  <test id>  <why>`` a line."""
    tests = {}
    for line in read_list(HERE / name):
        backend, test, why = [*line.split(None, 2), ""][:3]
        if not why:
            raise SystemExit(f"{name}: {test} needs a reason")
        if backend in {db, "*"}:
            tests[test] = why
    return tests


def read_allowed(db: str) -> dict[str, Allowance]:
    allowed = {}
    for line in read_list(HERE / "allowed.txt"):
        backend, test, kind, reason = [*line.split(None, 3), ""][:4]
        if kind not in KINDS:
            raise SystemExit(f"allowed.txt: unknown reason kind {kind!r} for {test} (known: {', '.join(KINDS)})")
        if not reason:
            raise SystemExit(f"allowed.txt: {test} needs a reason after its kind")
        if backend in {db, "*"}:
            allowed[test] = Allowance(test, kind, reason)
    return allowed


def run(tests: Path, out: Path, name: str, labels: list[str], db: str, parallel: int, **env: str) -> Outcomes:
    """One ``runtests.py`` run; its outcomes."""
    results, log = out / f"{name}.json", out / f"{name}.log"
    results.unlink(missing_ok=True)
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(ROOT)]),
        "DJANGO_SUITE_DB": db,
        "DJANGO_SUITE_RESULTS": str(results),
        **env,
    }
    command = [sys.executable, "runtests.py", "--settings=django_suite.settings", "--noinput"]
    command += [f"--parallel={parallel}", *labels]
    started = time.monotonic()
    with log.open("w") as output:
        subprocess.run(command, cwd=tests, env=environment, stdout=output, stderr=subprocess.STDOUT)
    if not results.exists():
        raise SystemExit(f"django_suite: the {name} run ended without results; see {log}")
    outcomes: Outcomes = json.loads(results.read_text())
    failing = sum(1 for outcome, _ in outcomes.values() if outcome in {"fail", "error"})
    print(f"django_suite: {name}: {len(outcomes)} tests, {failing} failing, {time.monotonic() - started:.0f}s")
    return outcomes


def differing(plain: Outcomes, audited: Outcomes, ignored: dict[str, str]) -> list[str]:
    absent = ["absent", ""]
    tests = (plain.keys() | audited.keys()) - ignored.keys()
    return sorted(t for t in tests if plain.get(t, absent)[0] != audited.get(t, absent)[0])


def rerunnable(test: str) -> bool:
    """A test method's id (not a class set-up's error, nor a module that failed to import)."""
    return " " not in test and not test.startswith("unittest.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default=os.environ.get("DB", "sqlite"))
    parser.add_argument("--parallel", type=int, default=2, help="runtests.py processes (default 2)")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="after each registered test, check that replaying the recorded history gives the live rows",
    )
    parser.add_argument(
        "--resync",
        action="store_true",
        help="diagnostic: before each registered test, sync the registry again if capture was lost "
        "(apps.clear_cache(), issue 19 #10), so the defects that loss hides show",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="compare the outcomes the last run kept in .cache/django-suite/<db>/ again (after editing allowed.txt)",
    )
    parser.add_argument("labels", nargs="*", help="test apps or ids (default: apps.txt)")
    options = parser.parse_args()

    tests = django_tests()
    out = CACHE / "django-suite" / options.db
    out.mkdir(parents=True, exist_ok=True)
    labels = options.labels or read_list(HERE / "apps.txt")
    allowed = read_allowed(options.db)
    known = read_tests("known-defects.txt", options.db)
    ignored = read_tests("ignored.txt", options.db)
    if options.report_only:
        kept = [out / f"{name}.json" for name in ("plain", "registered", "registered-counts-off")]
        plain, audited, counts_off = (json.loads(p.read_text()) if p.exists() else {} for p in kept)
        return report(out, plain, audited, counts_off, differing(plain, audited, ignored), allowed, known)
    print(f"django_suite: Django {django.__version__} on {options.db}, {len(labels)} labels")

    plain = run(tests, out, "plain", labels, options.db, options.parallel)
    verify_dir = out / "verify"
    resync = {"DJANGO_SUITE_RESYNC": "1"} if options.resync else {}
    extra = {**resync, "DJANGO_SUITE_VERIFY_DIR": str(verify_dir)} if options.verify else resync
    if options.verify:
        verify_dir.mkdir(exist_ok=True)
        for old in verify_dir.glob("*.jsonl"):
            old.unlink()
    audited = run(tests, out, "registered", labels, options.db, options.parallel, DJANGO_SUITE_AUDIT="1", **extra)
    if options.verify:
        report_drift(verify_dir, out)
    differences = differing(plain, audited, ignored)
    counts_off: Outcomes = {}
    if again := [t for t in differences if rerunnable(t)]:
        counts_off = run(
            tests, out, "registered-counts-off", again, options.db, options.parallel,
            DJANGO_SUITE_AUDIT="1", DJANGO_SUITE_NO_QUERY_COUNTS="1", **resync,
        )  # fmt: skip
    return report(out, plain, audited, counts_off, differences, allowed, known)


def report_drift(verify_dir: Path, out: Path) -> None:
    """Summarise the findings of ``--verify``: it reports, it never fails the run."""
    lines = []
    for part in sorted(verify_dir.glob("*.jsonl")):
        for record in map(json.loads, part.read_text().splitlines()):
            lines += [f"{record['test']}: {finding}" for finding in record["findings"]]
    (out / "drift.txt").write_text("".join(f"{line}\n" for line in sorted(lines)))
    tests = {line.split(": ", 1)[0] for line in lines}
    print(f"django_suite: verify: {len(tests)} test(s) end with {len(lines)} finding(s) (see {out / 'drift.txt'})")


def report(
    out: Path,
    plain: Outcomes,
    audited: Outcomes,
    counts_off: Outcomes,
    differences: list[str],
    allowed: dict[str, Allowance],
    known: dict[str, str],
) -> int:
    absent = ["absent", ""]
    excused: dict[str, list[str]] = defaultdict(list)
    unexpected: list[str] = []
    only_counts: list[str] = []
    open_defects: list[str] = []
    for test in differences:
        before, after = plain.get(test, absent), audited.get(test, absent)
        # Only a count assertion may be excused by the rerun: a test passing there for another
        # reason (the rerun runs fewer tests, in another order) still differs.
        counts_match = bool(COUNT_FAILURE.search(after[1])) and counts_off.get(test, absent)[0] == before[0]
        allowance = allowed.get(test)
        if allowance and (allowance.kind != "query-count" or counts_match):
            excused[allowance.kind].append(test)
            continue
        line = f"{test}: {before[0]} -> {after[0]}: {after[1] or before[1]}"
        if test in known:
            open_defects.append(f"{line}  [{known[test]}]")
            continue
        if counts_match:
            only_counts.append(test)
            line += "  [same outcome with query counts off]"
        elif allowance:
            line += f"  [listed as query-count, but with counts off: {counts_off.get(test, absent)[0]}]"
        unexpected.append(line)
    stale = sorted(t for t in allowed if t in plain and t not in differences)
    fixed = sorted(t for t in known if t in plain and t not in differences)

    (out / "differences.txt").write_text("".join(f"{line}\n" for line in unexpected))
    # For review, never applied by itself: the lines allowed.txt would need for the count-only differences.
    (out / "query-count-candidates.txt").write_text(
        "".join(f"{out.name}  {test}  query-count  {audited[test][1]}\n" for test in only_counts)
    )
    for kind, names in sorted(excused.items()):
        print(f"django_suite: allowed ({kind}): {len(names)}")
    for test in stale:
        print(f"django_suite: allowed.txt lists {test}, which no longer differs: remove it")
    if open_defects:
        print(f"django_suite: {len(open_defects)} known defect(s) of audit_events still differ (known-defects.txt):")
        for line in open_defects:
            print(f"  {line}")
    for test in fixed:
        print(f"django_suite: known-defects.txt lists {test}, which no longer differs: fixed, remove it")
    if unexpected:
        print(f"django_suite: {len(unexpected)} test(s) differ with audit_events and are not allowed:")
        for line in unexpected:
            print(f"  {line}")
        if only_counts:
            print(f"django_suite: {len(only_counts)} of them pass with query counts off (allowed.txt kind query-count)")
        print(f"django_suite: FAILED (list in {out / 'differences.txt'})")
        return 1
    still_open = f", {len(open_defects)} known defect(s) still open" if open_defects else ""
    print(f"django_suite: OK: {len(plain)} tests, no difference beyond allowed.txt{still_open}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
