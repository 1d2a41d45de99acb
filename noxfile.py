"""The test matrix, the quality gates, the docs and the packaging check.

``nox -l`` lists the sessions. The test matrix is Django 5.2 LTS on Python 3.11
and Django 6.x on Python 3.12 and 3.13, each on SQLite and PostgreSQL::

    nox -s "tests(python='3.11', django='5.2', db='sqlite')"
    nox -t django6            # every Django 6 session
    nox -t sqlite             # the whole matrix on SQLite only
    nox -s lint docs packaging

PostgreSQL is found at 127.0.0.1:5432 as user ``postgres`` (``PGHOST``,
``PGPORT``, ``PGUSER``, ``PGPASSWORD`` override); when it is unreachable the
PostgreSQL sessions are skipped, unless ``REQUIRE_POSTGRES=1`` (CI) makes that
a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

# Interpreters installed by pyenv but not made global are still found.
_PYENV = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
if _PYENV.is_dir():
    _bins = sorted(str(p / "bin") for p in _PYENV.iterdir() if (p / "bin").is_dir())
    os.environ["PATH"] = os.pathsep.join([os.environ.get("PATH", ""), *_bins])

# (python, Django series): each supported Django on the Pythons it supports.
MATRIX = [
    ("3.11", "5.2"),
    ("3.12", "6.0"),
    ("3.13", "6.1"),
]
DATABASES = ["sqlite", "postgres"]


def _django_requirement(series: str) -> str:
    major, minor = series.split(".")
    return f"Django>={series},<{major}.{int(minor) + 1}"


def _postgres_reachable(session: nox.Session) -> bool:
    result = subprocess.run([sys.executable, "tests/pg_available.py"], check=False)
    return result.returncode == 0


@nox.session(tags=["tests"])
@nox.parametrize(
    "python,django,db",
    [
        nox.param(python, django, db, tags=[db, f"django{django.split('.')[0]}"])
        for python, django in MATRIX
        for db in DATABASES
    ],
)
def tests(session: nox.Session, django: str, db: str) -> None:
    """The whole suite on one Python, one Django and one database."""
    if db == "postgres" and not _postgres_reachable(session):
        if os.environ.get("REQUIRE_POSTGRES"):
            session.error("PostgreSQL is required (REQUIRE_POSTGRES=1) but unreachable")
        session.skip("PostgreSQL unreachable")
    session.install("-e", ".[test]", _django_requirement(django))
    session.run("python", "-m", "django", "--version")
    args = session.posargs or ["-q", "-p", "no:cacheprovider", "-n", "2"]
    session.run(
        "python",
        "-m",
        "pytest",
        *args,
        env={"TEST_DB": db},
        # pytest exits 5 when the selection holds no test: not a failure here.
        success_codes=[0, 5],
    )
    session.run(
        "python",
        "-m",
        "django",
        "makemigrations",
        "--check",
        "--dry-run",
        "--settings=tests.settings",
        env={"TEST_DB": "sqlite"},
    )


@nox.session(python="3.11", tags=["tests"])
@nox.parametrize("binding", ["server", "client"])
def prepared(session: nox.Session, binding: str) -> None:
    """PostgreSQL through psycopg 3, which the default sessions (psycopg2) do not cover.

    ``binding="server"``: server-side binding and ``prepare_threshold``, psycopg
    preparing every statement (``TEST_PG_PREPARED=1``). ``binding="client"``:
    Django's default for psycopg 3, where this app prepares its own statements
    with SQL ``PREPARE`` (``audit_events.prepared``).
    """
    if not _postgres_reachable(session):
        if os.environ.get("REQUIRE_POSTGRES"):
            session.error("PostgreSQL is required (REQUIRE_POSTGRES=1) but unreachable")
        session.skip("PostgreSQL unreachable")
    session.install("-e", ".[test]", _django_requirement("5.2"), "psycopg[binary]>=3.1.8")
    session.run("python", "-c", "import django.db.backends.postgresql.psycopg_any as p; assert p.is_psycopg3")
    args = session.posargs or ["-q", "-p", "no:cacheprovider", "-n", "2"]
    flag = "1" if binding == "server" else "0"
    session.run("python", "-m", "pytest", *args, env={"TEST_DB": "postgres", "TEST_PG_PREPARED": flag})


@nox.session(python="3.11", tags=["gates"])
def lint(session: nox.Session) -> None:
    """ruff (lint and format check) and mypy strict on the package."""
    session.install("-e", ".[test,dev]", _django_requirement("5.2"))
    paths = ["audit_events", "tests", "example", "docs", "noxfile.py"]
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)
    session.run("mypy")


@nox.session(python="3.11", tags=["gates"])
def docs(session: nox.Session) -> None:
    """Build the Sphinx docs with every warning an error."""
    session.install("-e", ".[docs]", _django_requirement("5.2"))
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html", *session.posargs)


@nox.session(python="3.11", tags=["gates"])
def packaging(session: nox.Session) -> None:
    """Build the sdist and wheel, twine check them, install the wheel in a fresh virtualenv and migrate."""
    session.install("-e", ".[test]", "build", "twine", _django_requirement("5.2"))
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "packaging", "tests/test_packaging.py")
