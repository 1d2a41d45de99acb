"""The benchmark's virtualenvs: one per peer library, pinned, made from PyPI on first use.

``plain`` and ``audit_events`` share ``bench-base`` (Django and the driver only;
audit_events is imported from this checkout). Each peer gets its own
``.venvs/bench-<lib>`` so that no peer's dependencies leak into another's run.
A venv is rebuilt when its pins change (a stamp file holds their hash).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENVS = ROOT / ".venvs"

# The versions the peer figures in the performance issue were taken with.
BASE = ("Django==5.2.19", "psycopg[binary]==3.3.9")
PINS: dict[str, tuple[str, ...]] = {
    "base": BASE,
    "simple_history": (*BASE, "django-simple-history==3.13.0"),
    "auditlog": (*BASE, "django-auditlog==3.4.1"),
    "pghistory": (*BASE, "django-pghistory==3.9.2", "django-pgtrigger==4.17.0"),
    "reversion": (*BASE, "django-reversion==6.4.0"),
}
VENV_OF = {"plain": "base", "audit_events": "base"}


def venv_name(lib: str) -> str:
    return VENV_OF.get(lib, lib)


def python_for(lib: str) -> Path:
    return VENVS / f"bench-{venv_name(lib)}" / "bin" / "python"


def ensure(lib: str, quiet: bool = True) -> Path:
    """Create (or refresh) the venv ``lib`` runs in; returns its python."""
    name = venv_name(lib)
    pins = PINS[name]
    path = VENVS / f"bench-{name}"
    stamp = path / f".pins-{hashlib.sha256(' '.join(pins).encode()).hexdigest()[:12]}"
    if stamp.exists():
        return python_for(lib)
    print(f"bench: creating {path.relative_to(ROOT)} ({', '.join(pins)})", file=sys.stderr)
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", "--clear", str(path)], check=True)
    pip = [str(path / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", *(["--quiet"] if quiet else []), *pins], check=True)
    stamp.touch()
    return python_for(lib)


if __name__ == "__main__":
    for lib in sys.argv[1:] or ["plain", *[k for k in PINS if k != "base"]]:
        print(ensure(lib))
