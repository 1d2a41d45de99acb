from __future__ import annotations

import pytest
from django.db import connection


def pytest_report_header(config: pytest.Config) -> str:
    from django.conf import settings

    return f"audit_events tests on database: {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if connection.vendor != "postgresql":
        skip = pytest.mark.skip(reason="PostgreSQL only; `make test` runs it on PostgreSQL when one is reachable")
        for item in items:
            if "postgres" in item.keywords:
                item.add_marker(skip)
