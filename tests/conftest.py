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


BROKERS = {"RabbitMQ": ("127.0.0.1", 5672), "NATS": ("127.0.0.1", 4222)}


def _unreachable_brokers() -> list[str]:
    import socket

    down = []
    for name, address in BROKERS.items():
        try:
            socket.create_connection(address, timeout=2).close()
        except OSError:
            down.append(f"{name} ({address[0]}:{address[1]})")
    return down


@pytest.fixture(autouse=True)
def _brokers_reachable(request: pytest.FixtureRequest) -> None:
    """Tests marked ``broker`` need the real brokers: skipped without them, failed with REQUIRE_BROKERS=1 (CI)."""
    if request.node.get_closest_marker("broker") is None:
        return
    down = _unreachable_brokers()
    if down:
        import os

        message = f"broker unreachable: {', '.join(down)}"
        if os.environ.get("REQUIRE_BROKERS"):
            pytest.fail(f"{message} (REQUIRE_BROKERS=1)")
        pytest.skip(message)
