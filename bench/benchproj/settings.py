"""Settings for the benchmark project.

BENCH_LIB picks the adapter (a module in adapters/); only that library's apps,
middleware and settings are added. BENCH_VENDOR picks PostgreSQL (default) or
SQLite. Each library gets its own database (``bench_<lib>``, or a SQLite file),
which run.py drops and recreates on every run.
"""

import os
from pathlib import Path

from adapters import load_adapter

BENCH_LIB = os.environ.get("BENCH_LIB", "plain")
BENCH_VENDOR = os.environ.get("BENCH_VENDOR", "postgresql")
ADAPTER = load_adapter(BENCH_LIB)

SECRET_KEY = "bench-not-secret"
DEBUG = False  # run.py counts queries with CaptureQueriesContext, not DEBUG
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "core",
    *ADAPTER.apps,
]
MIDDLEWARE = list(ADAPTER.middleware)

if BENCH_VENDOR == "sqlite":
    OUT = Path(os.environ.get("BENCH_OUT", Path(__file__).resolve().parents[2] / "bench-out"))
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(OUT / f"bench_{BENCH_LIB}.sqlite3")}}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            # Always prefixed bench_: never one of the test suite's databases.
            "NAME": "bench_" + os.environ.get("BENCH_DB", BENCH_LIB),
            # empty HOST = local Unix socket (trust auth)
            "HOST": os.environ.get("BENCH_PGHOST", ""),
            "PORT": os.environ.get("BENCH_PGPORT", ""),
            "USER": os.environ.get("BENCH_PGUSER", "postgres"),
            "PASSWORD": os.environ.get("BENCH_PGPASSWORD", ""),
            # BENCH_PG_SERVER_SIDE_BINDING=1: psycopg 3 binds on the server, and prepares a
            # statement it has run 5 times on the connection (Django's default is never).
            "OPTIONS": (
                {"server_side_binding": True, "prepare_threshold": 5}
                if os.environ.get("BENCH_PG_SERVER_SIDE_BINDING") == "1"
                else {}
            ),
        }
    }

# core has no migration files: `migrate --run-syncdb` creates its tables (and any
# history/event model an adapter adds to it) straight from the current models.
MIGRATION_MODULES = {"core": None}

# library-specific settings
globals().update(ADAPTER.settings)
