"""Backfill: a ``snapshot`` event for each row that has no event yet.

A model registered after it already held data has rows that replay cannot
know. :func:`snapshot_rows` gives each such row a first event carrying its
full state. It is idempotent (a row that has any event is left alone) and
safe to run while the application writes: each batch locks its rows and looks
for their events again under the lock, so a row saved concurrently is never
given a second first event.

It is a plain function so a scheduler can run it, for example Celery beat::

    @app.task
    def snapshot_accounts():
        audit_events.snapshot_rows(Account)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from django.db import models, router, transaction

from . import journal, registry
from .models import Action, Event
from .replay import spec_or_error
from .rows import lock_rows

DEFAULT_BATCH_SIZE = 500


def snapshot_rows(
    model: type[models.Model],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    using: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write a ``snapshot`` event for every row of ``model`` that has no event; return how many.

    Works through the table by primary key, ``batch_size`` rows at a time, one
    transaction per batch. Queries per batch: one SELECT of the keys, one of
    the recorded keys, then (only if some rows lack events) one locking SELECT
    of those rows, one of their events, and one INSERT per
    ``journal.BATCH_SIZE`` events. ``progress`` is called with the number
    of rows of each batch. Raises :class:`~audit_events.RestoreError` if the
    model is not registered.
    """
    spec = spec_or_error(model)
    db = using or router.db_for_write(model)
    content_type_id = spec.content_type_id(db)
    written = 0
    for pks in key_pages(spec, db, batch_size):
        missing = without_events(content_type_id, db, {spec.object_pk(pk): pk for pk in pks})
        if missing:
            with transaction.atomic(using=db):
                rows = lock_rows(spec, db, {"pk__in": list(missing.values())})
                # Looked for again under the lock: a concurrent save may have recorded some.
                still = without_events(content_type_id, db, {spec.object_pk(pk): pk for pk in rows})
                drafts = [
                    journal.Draft.of(
                        spec, pk, Action.SNAPSHOT, state=rows[pk], content_type_id=content_type_id, object_pk=text
                    )
                    for text, pk in still.items()
                ]
                journal.write(drafts, db)
                written += len(drafts)
        if progress:
            progress(len(pks))
    return written


def key_pages(spec: registry.ModelSpec, db: str, batch_size: int) -> Iterator[list[Any]]:
    """The keys of ``spec``'s rows in key order, ``batch_size`` at a time: one SELECT per page, each
    read when the one before it is done with."""
    manager = spec.model._base_manager.using(db)
    last: Any = None
    while True:
        page = manager.order_by("pk") if last is None else manager.filter(pk__gt=last).order_by("pk")
        pks = list(page.values_list(spec.pk_field.attname, flat=True)[:batch_size])
        if not pks:
            return
        last = pks[-1]
        yield pks


def without_events(content_type_id: int, db: str, by_text: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``by_text`` (object_pk text -> pk) whose row has no event: one SELECT, none for no entry."""
    if not by_text:
        return {}
    recorded = set(
        Event.objects.using(db)
        .filter(content_type_id=content_type_id, object_pk__in=list(by_text))
        .values_list("object_pk", flat=True)
        .distinct()
    )
    return {text: pk for text, pk in by_text.items() if text not in recorded}
