"""``manage.py audit_import {simple_history,reversion,auditlog,pghistory} [app.Model ...] [--dry-run]``.

The history another audit library kept, written as events (``audit_events.importing``).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import models, router

from ...importing import PEERS, ImportResult, Peer, import_model, peer
from ...importing.base import DEFAULT_BATCH_SIZE
from ..arguments import registered_models
from ..progress import ProgressBar

_PACKAGES = {
    "simple_history": "django-simple-history",
    "reversion": "django-reversion",
    "auditlog": "django-auditlog",
    "pghistory": "django-pghistory",
}


class Command(BaseCommand):
    help = (
        "Write the history kept by django-simple-history, django-reversion, django-auditlog or django-pghistory, in "
        "the same database, as events of the registered models (or those named), in the peer's time order. "
        "Idempotent and resumable: peer rows already imported are skipped. Rows that already have events of their "
        "own are skipped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("peer", choices=PEERS, help="The library whose tables are read.")
        parser.add_argument(
            "models", nargs="*", metavar="app_label.ModelName", help="Default: every registered model the peer tracks."
        )
        parser.add_argument("--dry-run", action="store_true", help="Write nothing; say what would be imported.")
        parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="Peer rows per transaction.")
        parser.add_argument("--database", default=None, help="Database alias (default: the router's choice).")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        try:
            reader = peer(options["peer"])
        except ImportError as error:
            package = _PACKAGES[options["peer"]]
            raise CommandError(f"{options['peer']} cannot be read: {error} (is {package} installed?).") from None
        verbose = options["verbosity"] > 0
        dry_run = options["dry_run"]
        for model in self._models(reader, options["models"], options["peer"]):
            label = model._meta.label
            db = options["database"]
            total = reader.count(model, db or router.db_for_write(model))
            bar = ProgressBar.for_command(label, total, self.stderr, options["verbosity"])
            try:
                result = import_model(
                    reader, model, using=db, batch_size=options["batch_size"], dry_run=dry_run, progress=bar
                )
            finally:
                bar.close()
            if verbose:
                self._report(label, result, options["peer"], dry_run)

    def _models(self, reader: Peer, labels: list[str], name: str) -> list[type[models.Model]]:
        """The models named (each must have the peer's history), else every registered one the peer tracks."""
        tracked = reader.tracked_models()
        if labels:
            named = registered_models(labels)
            for model in named:
                if model not in tracked:
                    raise CommandError(f"{model._meta.label} has no {name} history to import.")
            return named
        every = sorted(tracked, key=lambda m: m._meta.label)
        if not every:
            raise CommandError(f"No registered model has {name} history (AUDIT_EVENTS['MODELS']).")
        return every

    def _report(self, label: str, result: ImportResult, name: str, dry_run: bool) -> None:
        """What the import of one model wrote (or would write), and the rows it skipped."""
        for object_pk, count in sorted(result.skipped_rows.items()):
            self.stdout.write(
                f"{label} pk={object_pk}: skipped ({count} {name} row(s)): it already has events of "
                "its own, which its imported past would follow out of time order."
            )
        verb = "would be written" if dry_run else "written"
        line = f"{label}: {result.imported} event(s) {verb}"
        if result.finished:
            line += f", and {result.finished} delete event(s) for rows gone from the table"
        if result.already:
            line += f"; {result.already} {name} row(s) already imported"
        self.stdout.write(line + ".")
