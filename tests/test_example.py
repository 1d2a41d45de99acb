"""The example bank, run for real: its own settings, in its own process, on a throwaway database.

The demo's printed story is checked, and so is what it left in the database,
read back with plain SQL rather than through the demo's own words.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.hashers import check_password
from django.db import connection

EXAMPLE = Path(__file__).resolve().parent.parent / "example"

Query = Callable[..., list[tuple[Any, ...]]]


def manage(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        # pytest-django exported the suite's settings; the example has its own.
        "DJANGO_SETTINGS_MODULE": "bankproject.settings",
        "DATABASE_URL": database_url,
        "PYTHONWARNINGS": "error",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=EXAMPLE, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def run_demo(database_url: str) -> tuple[str, int]:
    manage("migrate", "--verbosity", "0", database_url=database_url)
    output = manage("demo", database_url=database_url).stdout
    restored = re.search(r"restored: Account #(\d+) \(Alice\), balance 70\.00, with 2 transfers:", output)
    assert restored, output
    return output, int(restored.group(1))


def assert_story(output: str, pk: int, query: Query) -> None:
    # What the demo says...
    assert "account.withdraw('500.00') is refused" in output
    assert "events recorded for the account: 3 before the refused withdrawal, 3 after it" in output
    assert f"Account.objects.filter(pk={pk}).exists()  ->  False" in output
    assert "the deletion was one operation of 3 events (2 transfer, 1 account)" in output
    assert "balance at that moment: 100.00\n" in output  # state_at, just after the deposit
    assert "balance now: 70.00\n" in output
    assert f"restore(Account, {pk}, at=moment)  ->  Account #{pk} (Alice), balance 100.00" in output
    assert "superuser: admin / password: admin" in output
    assert "cd example && ../.venv/bin/python manage.py runserver" in output

    # ... is what the database holds.
    [(balance,)] = query("SELECT balance FROM bank_account WHERE id = %s", pk)
    assert Decimal(str(balance)) == Decimal("100.00")
    assert [Decimal(str(a)) for (a,) in query("SELECT amount FROM bank_transfer WHERE account_id = %s", pk)] == [
        Decimal("100.00")
    ]
    actions = query(
        "SELECT e.action, e.actor_repr FROM audit_events_event e"
        " JOIN django_content_type t ON t.id = e.content_type_id"
        " WHERE t.app_label = 'bank' AND t.model = 'account' AND e.object_pk = %s ORDER BY e.version",
        str(pk),
    )
    assert actions == [
        ("create", "bob"),
        ("update", "bob"),
        ("update", "bob"),
        ("delete", "bob"),
        ("restore", "carol"),
        ("restore", "carol"),
    ]
    [(is_superuser, password)] = query("SELECT is_superuser, password FROM auth_user WHERE username = 'admin'")
    assert is_superuser
    assert check_password("admin", password)


def test_demo_tells_the_story_and_can_run_again(tmp_path: Path) -> None:
    path = tmp_path / "bank.sqlite3"
    url = f"sqlite:///{path}"

    def query(sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(path)) as db:  # "with connect()" alone never closes it
            return db.execute(sql.replace("%s", "?"), params).fetchall()

    first_output, first = run_demo(url)
    assert_story(first_output, first, query)

    second_output, second = run_demo(url)  # a fresh account each run; the first one is left as it was
    assert second != first
    assert_story(second_output, second, query)
    assert_story(first_output, first, query)


@pytest.mark.postgres
def test_demo_on_postgresql() -> None:
    import psycopg2

    server = {
        "host": os.environ.get("PGHOST", "127.0.0.1"),
        "port": os.environ.get("PGPORT", "5432"),
        "user": os.environ.get("PGUSER", "postgres"),
        "password": os.environ.get("PGPASSWORD", ""),
    }
    name = f"example_bank_{uuid.uuid4().hex[:12]}"

    def admin(sql: str) -> None:
        connection = psycopg2.connect(dbname="postgres", **server)
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
        finally:
            connection.close()

    admin(f'CREATE DATABASE "{name}"')
    try:
        connection = psycopg2.connect(dbname=name, **server)
        try:
            url = "postgresql://{user}:{password}@{host}:{port}/{name}".format(**server, name=name)

            def query(sql: str, *params: Any) -> list[tuple[Any, ...]]:
                with connection, connection.cursor() as cursor:
                    cursor.execute(sql, params)
                    return cursor.fetchall()

            output, pk = run_demo(url)
            assert "Database: postgresql" in output
            assert_story(output, pk, query)
        finally:
            connection.close()
    finally:
        admin(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.mark.skipif(connection.vendor != "mysql", reason="MariaDB's run of the suite runs it (TEST_DB=mariadb)")
def test_demo_on_mariadb() -> None:
    """The example bank on MariaDB, told by ``DATABASE_URL=mysql://...`` (utf8mb4 set by its settings)."""
    import MySQLdb

    server = connection.settings_dict
    name = f"example_bank_{uuid.uuid4().hex[:12]}"
    login = {"host": server["HOST"], "port": int(server["PORT"]), "user": server["USER"]}
    login["password"] = server["PASSWORD"]
    admin = MySQLdb.connect(**login, autocommit=True)
    try:
        admin.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        reader = MySQLdb.connect(**login, database=name, charset="utf8mb4", autocommit=True)
        try:
            url = "mysql://{user}:{password}@{host}:{port}/{name}".format(**login, name=name)

            def query(sql: str, *params: Any) -> list[tuple[Any, ...]]:
                cursor = reader.cursor()
                cursor.execute(sql, params)
                return list(cursor.fetchall())

            output, pk = run_demo(url)
            assert "Database: mysql" in output
            assert_story(output, pk, query)
        finally:
            reader.close()
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


def test_example_passes_checks_and_its_migrations_are_current(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bank.sqlite3'}"
    assert "no issues" in manage("check", database_url=url).stdout
    manage("makemigrations", "bank", "--check", "--dry-run", database_url=url)


# --- DATABASE_URL, read by dj-database-url ---------------------------------------------


# ids avoid the bare word "postgres": a keyword that would mark the test PostgreSQL-only.
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgres://bank:p%40ss@db.example.com:6543/ledger",
            "django.db.backends.postgresql ledger bank p@ss db.example.com 6543",
        ),
        ("mysql://root@127.0.0.1:3306/test", "django.db.backends.mysql test root  127.0.0.1 3306"),
        ("sqlite:////tmp/bank.sqlite3", "django.db.backends.sqlite3 /tmp/bank.sqlite3    "),
    ],
    ids=["pg-url", "mysql-url", "sqlite-url"],
)
def test_the_example_reads_database_url(url: str, expected: str) -> None:
    show = (
        "from bankproject import settings; d = settings.DATABASES['default']; "
        "print(*(str(d.get(k) or '') for k in ('ENGINE', 'NAME', 'USER', 'PASSWORD', 'HOST', 'PORT')))"
    )
    env = {**os.environ, "DATABASE_URL": url}
    shown = subprocess.run(
        [sys.executable, "-c", show], cwd=EXAMPLE, env=env, capture_output=True, text=True, check=True
    ).stdout
    assert shown.strip("\n") == expected
