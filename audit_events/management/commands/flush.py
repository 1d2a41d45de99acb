"""Django's ``flush``, able to empty the append-only event table.

Django's test framework runs ``flush`` between transactional tests; the
triggers of migration ``0002`` would refuse it. This command is Django's own,
with the triggers lifted around the one statement that erases the event table
(see :mod:`audit_events.protection`).
"""

from __future__ import annotations

from typing import Any

from django.core.management.commands import flush
from django.db import connections

from ...protection import flush_allowed


class Command(flush.Command):
    def handle(self, **options: Any) -> None:
        with flush_allowed(connections[options["database"]]):
            super().handle(**options)
