"""``manage.py audit_history app.Model PK``: one row's events as a table, oldest first."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from ...replay import history, no_history
from ..arguments import primary_key, registered_model
from ..display import show_changes, show_state

HEADERS = ("version", "time", "action", "actor", "changes")


class Command(BaseCommand):
    help = "Print the history of one row: version, time, action, actor and changes of each of its events."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model", metavar="app_label.ModelName")
        parser.add_argument("pk")

    def handle(self, *args: Any, **options: Any) -> None:
        model = registered_model(options["model"])
        pk = primary_key(model, options["pk"])
        rows = [
            (
                str(event.version),
                timezone.localtime(event.created_at).isoformat(timespec="seconds")
                if timezone.is_aware(event.created_at)
                else event.created_at.isoformat(timespec="seconds"),
                event.action,
                event.actor_repr or (event.actor_id or "-"),
                _changes(event.changes, event.state, event.action),
            )
            for event in history(model, pk)
        ]
        if not rows:
            raise CommandError(str(no_history(model, pk)))
        widths = [max(len(row[i]) for row in [HEADERS, *rows]) for i in range(len(HEADERS) - 1)]
        for row in [HEADERS, *rows]:
            cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
            self.stdout.write("  ".join([*cells, row[-1]]).rstrip())


def _changes(changes: dict[str, Any], state: dict[str, Any] | None, action: str) -> str:
    if changes:
        return show_changes(changes)
    if action in ("create", "snapshot", "sync", "restore"):
        return show_state(state)
    return ""
