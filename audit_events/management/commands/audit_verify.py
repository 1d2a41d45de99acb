"""``manage.py audit_verify [app.Model ...] [--since DATE] [--repair]``: prove the log, row by row."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import verify
from ..arguments import moment, registered_models
from ..progress import ProgressBar


class Command(BaseCommand):
    help = (
        "Check every row of the registered models (or those named): no gap in its versions, a hash chain "
        "that recomputes, and events that replay to the live row. Prints one line per finding (model, pk, "
        "tampered / gap / drift, what differs) and exits non-zero if any remains."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("models", nargs="*", metavar="app_label.ModelName", help="Default: every registered model.")
        parser.add_argument(
            "--since",
            metavar="DATE",
            help="Only rows with an event at or after this ISO-8601 date or datetime (their whole chain is checked).",
        )
        parser.add_argument(
            "--repair",
            action="store_true",
            help="Append a sync event for each drift (a change made outside the ORM); never touches tampered events.",
        )
        parser.add_argument(
            "--batch-size", type=int, default=verify.DEFAULT_BATCH_SIZE, help="Rows of events per query."
        )
        parser.add_argument("--database", default=None, help="Database alias (default: the router's choice).")

    def handle(self, *args: Any, **options: Any) -> None:
        since = moment(options["since"], "--since") if options["since"] else None
        models = registered_models(options["models"])
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        remaining = repaired = 0
        for model in models:
            bar = ProgressBar.for_command(
                model._meta.label,
                verify.total_work(model, since, options["database"]),
                self.stderr,
                options["verbosity"],
            )
            try:
                for finding in verify.verify_model(
                    model,
                    since=since,
                    repair=options["repair"],
                    batch_size=options["batch_size"],
                    using=options["database"],
                    progress=bar,
                ):
                    bar.close()
                    self.stdout.write(str(finding))
                    if finding.repaired:
                        repaired += 1
                    else:
                        remaining += 1
            finally:
                bar.close()
        if remaining:
            raise CommandError(f"audit_verify: {remaining} finding(s) ({repaired} repaired).", returncode=1)
        if options["verbosity"] > 0:
            checked = ", ".join(m._meta.label for m in models) or "no registered model"
            self.stdout.write(f"audit_verify: OK ({checked}; {repaired} drift(s) repaired).")
