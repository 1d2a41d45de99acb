"""SQLite: a recorded write waits for another connection's write lock, as plain Django's does.

Each write runs in a process of its own on a SQLite file (tests/sqlite_writers.py) while
another connection holds the write lock and releases it once the write has begun.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's locking")


def write_while_locked(tmp_path: Path, write: str, registered: bool) -> str:
    result = subprocess.run(
        [
            sys.executable,
            "tests/sqlite_writers.py",
            str(tmp_path / f"{registered}.sqlite3"),
            write,
            "1" if registered else "0",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "tests.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("write", ["save", "update", "delete", "queryset_delete", "bulk_update", "create"])
def test_a_recorded_write_waits_for_the_write_lock_as_plain_django_does(tmp_path: Path, write: str) -> None:
    """The app's transaction reads before it writes: begun DEFERRED, SQLite would refuse its write at once."""
    assert write_while_locked(tmp_path, write, registered=False) == "done"
    assert write_while_locked(tmp_path, write, registered=True) == "done"
