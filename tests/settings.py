"""Settings for the test suite: SQLite by default, PostgreSQL with ``TEST_DB=postgres``, MariaDB with
``TEST_DB=mariadb``."""

from __future__ import annotations

import json
import os

SECRET_KEY = "audit-events-tests"
DEBUG = False
USE_TZ = True
TIME_ZONE = "Europe/Paris"

if os.environ.get("TEST_DB", "sqlite") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("PGDATABASE", "audit_events"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "PASSWORD": os.environ.get("PGPASSWORD", ""),
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            # One test database per run, so concurrent runs never drop each other's.
            "TEST": {"NAME": f"test_audit_events_{os.getpid()}"},
            # TEST_PG_PREPARED=1 (psycopg 3): server-side binding and prepared statements,
            # the configuration docs/installation.rst recommends.
            "OPTIONS": (
                {"server_side_binding": True, "prepare_threshold": 5}
                if os.environ.get("TEST_PG_PREPARED") == "1"
                else {}
            ),
        }
    }
elif os.environ.get("TEST_DB") == "mariadb":
    # MariaDB (or MySQL) through mysqlclient, utf8mb4 for the whole of Unicode (the check audit_events.W002).
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "NAME": os.environ.get("MYSQL_DATABASE", "test"),
            "USER": os.environ.get("MYSQL_USER", "root"),
            "PASSWORD": os.environ.get("MYSQL_PASSWORD", ""),
            "HOST": os.environ.get("MYSQL_HOST", "127.0.0.1"),
            "PORT": os.environ.get("MYSQL_PORT", "3306"),
            "OPTIONS": {"charset": "utf8mb4"},
            # One test database per run, so concurrent runs never drop each other's.
            # The server's default collation (case-insensitive, as most projects'); the event table's
            # object_pk compares byte for byte whatever it is (migration 0005).
            "TEST": {"NAME": f"test_audit_events_{os.getpid()}", "CHARSET": "utf8mb4"},
        }
    }
else:
    # A file for the programs the tests run in a process of their own (tests/sqlite_writers.py).
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ.get("SQLITE_FILE", ":memory:")}}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "audit_events",
    "tests",
    # manage.py audit_import reads their tables (tests/test_import.py)
    "simple_history",
    "reversion",
    "auditlog",
    # django-pghistory writes its events with PostgreSQL triggers (django-pgtrigger); on SQLite its apps
    # install, migrate and track nothing (its tests are PostgreSQL-only)
    "pgtrigger",
    "pghistory",
    "tests.peers",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

AUDIT_EVENTS = {
    "MODELS": [
        "tests.Everything",
        "tests.Typed",
        "tests.Author",
        "tests.Book",
        "tests.Review",
        "tests.Tag",
        "tests.Reader",
        "tests.Place",
        "tests.Restaurant",
        "tests.Ticket",
        "tests.Code",
        "tests.Stamped",
    ],
    "EXCLUDE_FIELDS": {"tests.Author": ["last_seen"]},
    "SNAPSHOT_EVERY": 10,
    # manage.py audit_relay, as tests/test_relay.py runs it (a process of its own, told by the environment).
    "RELAY": {
        "PUBLISHER": os.environ.get("TEST_RELAY_PUBLISHER", "audit_events.relay.publishers.RabbitMQ"),
        "URL": os.environ.get("TEST_RELAY_URL", "amqp://guest:guest@127.0.0.1:5672//"),
        "OPTIONS": json.loads(os.environ.get("TEST_RELAY_OPTIONS", "{}")),
        "POLL_INTERVAL": 0.05,
        "MAX_BACKOFF": 2,
    },
}

# A second database, for the tests that ask for it (``databases=["default", "other"]``).
DATABASES["other"] = {**DATABASES["default"]}
if "TEST" in DATABASES["default"]:
    DATABASES["other"]["TEST"] = {"NAME": f"test_audit_events_other_{os.getpid()}"}
