"""Settings for Django's own test suite run by ``run.py``: Django's ``test_sqlite`` plus our switches.

``runtests.py`` puts its own directory first on ``sys.path``, so Django's test
settings import by name. Environment (set by ``run.py``):

- ``DJANGO_SUITE_DB``: ``sqlite`` (Django's settings as they are) or ``postgres``
  (127.0.0.1:5432, user postgres; test databases named after this process, so
  concurrent runs never share one);
- ``DJANGO_SUITE_AUDIT=1``: audit_events installed (``runner.SuiteRunner`` adds
  it once ``runtests.py`` has installed the test apps) with every model
  registered through ``"*"``.
"""

from __future__ import annotations

import os

from test_sqlite import *  # type: ignore[import-not-found]  # noqa: F403

if os.environ.get("DJANGO_SUITE_DB", "sqlite") == "postgres":
    _run = f"test_djsuite_{os.getpid()}"
    _server = {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
        "USER": os.environ.get("PGUSER", "postgres"),
        "PASSWORD": os.environ.get("PGPASSWORD", ""),
        "NAME": "postgres",
    }
    DATABASES = {
        "default": {**_server, "TEST": {"NAME": _run}},
        "other": {**_server, "TEST": {"NAME": f"{_run}_other"}},
    }

if os.environ.get("DJANGO_SUITE_AUDIT") == "1":
    AUDIT_EVENTS = {"MODELS": ["*"]}

TEST_RUNNER = "django_suite.runner.SuiteRunner"
