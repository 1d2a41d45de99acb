"""``manage.py audit_snapshot [app.Model ...]``: a first, full-state event for rows that have none."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...snapshots import DEFAULT_BATCH_SIZE, snapshot_rows
from ..arguments import registered_models
from ..progress import ProgressBar


class Command(BaseCommand):
    help = (
        "Write a snapshot event (the full row) for each row of the registered models (or those named) that "
        "has no event yet, such as rows a model held before it was registered. Idempotent."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("models", nargs="*", metavar="app_label.ModelName", help="Default: every registered model.")
        parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="Rows per transaction.")
        parser.add_argument("--database", default=None, help="Database alias (default: the router's choice).")

    def handle(self, *args: Any, **options: Any) -> None:
        models = registered_models(options["models"])
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        for model in models:
            manager = model._base_manager
            total = (manager.using(options["database"]) if options["database"] else manager).count()
            bar = ProgressBar.for_command(model._meta.label, total, self.stderr, options["verbosity"])
            try:
                written = snapshot_rows(
                    model, batch_size=options["batch_size"], using=options["database"], progress=bar
                )
            finally:
                bar.close()
            if options["verbosity"] > 0:
                self.stdout.write(f"{model._meta.label}: {written} snapshot event(s) written.")
