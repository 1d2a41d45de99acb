"""``manage.py audit_restore app.Model PK [--at ISO-8601] [--dry-run]``: put a row back."""

from __future__ import annotations

import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import models, router, transaction
from django.db.models import Max

from ...exceptions import NoHistory, NotDeleted, RestoreError
from ...models import Event
from ...replay import history
from ...restoration import restore
from ..arguments import moment, primary_key, registered_model
from ..display import show_changes, show_state


class Command(BaseCommand):
    help = (
        "Restore one row: without --at, undo its deletion (with everything deleted together with it); "
        "with --at, put it back as it was at that moment. --dry-run prints what would change and writes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model", metavar="app_label.ModelName")
        parser.add_argument("pk")
        parser.add_argument("--at", metavar="ISO-8601", help="The moment to restore to, with its time zone.")
        parser.add_argument("--dry-run", action="store_true", help="Print the changes it would apply; write nothing.")
        parser.add_argument("--database", default=None, help="Database alias (default: the router's choice).")

    def handle(self, *args: Any, **options: Any) -> None:
        model = registered_model(options["model"])
        pk = primary_key(model, options["pk"])
        at = moment(options["at"], "--at") if options["at"] else None
        db = options["database"] or router.db_for_write(model)
        dry_run = options["dry_run"]
        try:
            # The dry run is the real restore, rolled back: it cannot disagree with what a restore would do.
            with transaction.atomic(using=db):
                written = _restore(model, pk, at, db)
                transaction.set_rollback(dry_run, using=db)
        except NotDeleted:
            raise CommandError(
                f"{model._meta.label} pk={pk} is not deleted (already restored?); "
                "give --at to put it back as it was at an earlier moment."
            ) from None
        except (RestoreError, NoHistory) as error:
            raise CommandError(str(error)) from None
        if not written:
            self.stdout.write(f"{model._meta.label} pk={pk} is already as asked: nothing to change.")
        for event in written:
            self.stdout.write(_describe(event, dry_run))
        if dry_run:
            self.stdout.write("Dry run: nothing was written.")


def _restore(model: type[models.Model], pk: Any, at: datetime.datetime | None, db: str) -> list[Event]:
    """Restore, and return the events the restore wrote (its one operation)."""
    before = Event.objects.using(db).aggregate(last=Max("id"))["last"] or 0
    restore(model, pk, at, using=db)
    latest = history(model, pk).using(db).order_by("-version").first()
    if latest is None or latest.pk <= before:
        return []
    return list(
        Event.objects.using(db)
        .filter(operation=latest.operation, id__gt=before)
        .select_related("content_type")
        .order_by("id")
    )


def _describe(event: Event, dry_run: bool) -> str:
    model = event.content_type.model_class()
    name = model._meta.label if model else f"{event.content_type.app_label}.{event.content_type.model}"
    label = f"{name} pk={event.object_pk}"
    if event.changes:
        return f"{'would change' if dry_run else 'changed'} {label}: {show_changes(event.changes)}"
    return f"{'would recreate' if dry_run else 'recreated'} {label}: {show_state(event.state)}"
