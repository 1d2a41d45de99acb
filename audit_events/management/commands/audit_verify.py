"""``manage.py audit_verify [app.Model ...] [--since DATE] [--repair]``: prove the log, row by row."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections

from ... import protection, verify
from ...models import Event
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
        self.remaining = self.repaired = 0
        checked = []
        self._check_protection(options["database"] or DEFAULT_DB_ALIAS)
        for model in models:
            total = verify.total_work(model, since, options["database"])
            findings = verify.verify_model(
                model,
                since=since,
                repair=options["repair"],
                batch_size=options["batch_size"],
                using=options["database"],
                progress=(bar := ProgressBar.for_command(model._meta.label, total, self.stderr, options["verbosity"])),
            )
            self._report(findings, bar)
            checked.append(model._meta.label)
        if not options["models"]:
            # Events of models no longer registered: their chains can still be proved.
            db = options["database"] or DEFAULT_DB_ALIAS
            for content_type in verify.unregistered_content_types(db):
                label = f"{content_type.app_label}.{content_type.model}"
                total = verify.event_count(content_type, since, db)
                findings = verify.verify_chains(
                    content_type,
                    since=since,
                    batch_size=options["batch_size"],
                    using=db,
                    progress=(bar := ProgressBar.for_command(label, total, self.stderr, options["verbosity"])),
                )
                self._report(findings, bar)
                checked.append(f"{label} (chains only: not registered)")
        if self.remaining:
            raise CommandError(f"audit_verify: {self.remaining} finding(s) ({self.repaired} repaired).", returncode=1)
        if options["verbosity"] > 0:
            summary = ", ".join(checked) or "no registered model"
            self.stdout.write(f"audit_verify: OK ({summary}; {self.repaired} drift(s) repaired).")

    def _check_protection(self, using: str) -> None:
        missing = protection.missing_triggers(connections[using])
        if missing:
            self.remaining += 1
            self.stdout.write(
                f"{Event._meta.db_table} unprotected: the database would accept UPDATE/DELETE, "
                f"trigger(s) {', '.join(missing)} missing (re-create them: see migration audit_events 0002)"
            )

    def _report(self, findings: Iterator[verify.Finding], bar: ProgressBar) -> None:
        try:
            for finding in findings:
                bar.close()  # end the bar's line: the finding gets its own
                self.stdout.write(str(finding))
                if finding.repaired:
                    self.repaired += 1
                else:
                    self.remaining += 1
        finally:
            bar.close()
