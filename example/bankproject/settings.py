"""Settings of the example bank.

SQLite (``example/db.sqlite3``) by default; set ``DATABASE_URL`` to use PostgreSQL,
for example ``DATABASE_URL=postgres://postgres@127.0.0.1:5432/bank``, or MariaDB or MySQL:
``DATABASE_URL=mysql://root@127.0.0.1:3306/bank`` (the database created beforehand).
Made for trying audit_events on a laptop, not for production.
"""

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-bank-not-a-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "audit_events",
    "bank",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # After auth: events written during a request carry the user, the request id and the path.
    "audit_events.middleware.AuditContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "bankproject.urls"
WSGI_APPLICATION = "bankproject.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    # DATABASE_URL as dj-database-url reads it: postgres://…, mysql://…, sqlite:////absolute/path.
    "default": dj_database_url.config(default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"].endswith("mysql"):
    # MySQL and MariaDB: the whole of Unicode (Django's default "utf8" is three bytes; check audit_events.W002).
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("charset", "utf8mb4")
    # MariaDB has no partial index: the event table's rarer-actions index covers every event there.
    SILENCED_SYSTEM_CHECKS = ["models.W037"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"

# Every write to these models is recorded; see the audit_events documentation.
AUDIT_EVENTS = {
    "MODELS": ["bank.Account", "bank.Transfer"],
    # `make example-relay` (manage.py audit_relay): every event to RabbitMQ, exchange and queue "audit_events".
    "RELAY": {"URL": os.environ.get("BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")},
}
