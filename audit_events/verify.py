"""Proving the log: each row's versions, hash chain and replay, checked against the database.

For one registered model, :func:`verify_model` makes two passes, each in
batches, so memory stays bounded by the batch size (and the size of one row),
never by the table:

1. the events, ordered by row then version (the unique index serves this
   order): for each row, versions must run 1, 2, 3… (else ``gap``), each
   stored hash must equal ``sha256_hex(previous stored hash + canonical
   content)`` (else ``tampered``), and folding the events must give the live
   row, or no row after a delete (else ``drift``). Live rows are read one
   query per batch.
2. the live rows, by primary key: a row with no event at all is ``drift``
   too (changed outside capture, or registered after it held data:
   ``audit_snapshot`` records those).

Queries: per batch of events, one SELECT of the events and one of their live
rows; per batch of live rows, one SELECT of their keys and one of the keys
that have events; per suspected drift, a locked re-check (up to five SELECTs: the
last one asks which :class:`~audit_events.unrecorded` note explains it) and,
with ``repair``, one INSERT. None per healthy row.

A suspected drift is checked again under the row's lock before it is
reported (a write may have landed between the two reads), and ``repair``
appends, in that same transaction, an event that makes replay equal the live
row: ``sync`` with the full live state, or ``delete`` (with the last recorded
state) for a row deleted outside capture. A row whose chain is tampered or has
a gap is never repaired: appending to it would hide the evidence.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from django.contrib.contenttypes.models import ContentType
from django.db import DEFAULT_DB_ALIAS, models, router, transaction
from django.db.models import Q

from . import hashing, journal, registry
from .context import audit_context
from .encoding import State, canonical_json, encode
from .models import Action, Event, EventQuerySet, UnrecordedWrite
from .notes import explaining
from .recording import diff
from .replay import fold, recorded_state
from .rows import live_state
from .snapshots import key_pages, without_events

DEFAULT_BATCH_SIZE = 1000
REPAIR_REASON = "audit_verify --repair: a change made outside the ORM"


class Kind(enum.StrEnum):
    TAMPERED = "tampered"
    GAP = "gap"
    DRIFT = "drift"


@dataclass(frozen=True)
class Finding:
    """One thing wrong with one row."""

    model: str  # "app_label.ModelName"
    pk: str  # the row's canonical object_pk
    kind: Kind
    detail: str
    repaired: str = ""  # the action of the event the repair appended, if any

    def __str__(self) -> str:
        suffix = f" [repaired: {self.repaired} event appended]" if self.repaired else ""
        return f"{self.model} pk={self.pk} {self.kind.value}: {self.detail}{suffix}"


Progress = Callable[[int], None]  # called with the number of items just processed


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class _Row:
    """What is known about one row while its events stream by."""

    object_pk: str
    expected_version: int = 1
    previous_hash: str = ""
    state: State | None = None
    broken: bool = False  # tampered or gap: never repaired
    findings: list[Finding] = field(default_factory=list)


def verify_model(
    model: type[models.Model],
    *,
    since: datetime.datetime | None = None,
    repair: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    using: str | None = None,
    progress: Progress | None = None,
) -> Iterator[Finding]:
    """Yield every finding about the rows of ``model`` (a registered model).

    ``since`` restricts the check to rows with an event recorded at or after
    it (their whole chain is checked) and skips the search for live rows
    without events. ``repair`` writes a corrective event for each drift.
    """
    spec = registry.spec_for(model)
    if spec is None:
        raise LookupError(f"{model._meta.label} is not registered for auditing.")
    db = using or router.db_for_write(model)
    content_type = ContentType.objects.db_manager(db).get_for_id(spec.content_type_id())
    yield from _check_events(content_type, spec, db, since, repair, batch_size, progress)
    if since is None:
        yield from _check_without_events(spec, db, repair, batch_size, progress)


def unregistered_content_types(using: str = DEFAULT_DB_ALIAS) -> list[ContentType]:
    """Content types that have events but no registered model (unregistered since, or uninstalled)."""
    registered = {spec.content_type_id() for spec in registry.registered_specs()}
    ids = Event.objects.using(using).order_by().values_list("content_type_id", flat=True).distinct()
    manager = ContentType.objects.db_manager(using)
    return sorted((manager.get_for_id(pk) for pk in set(ids) - registered), key=lambda ct: (ct.app_label, ct.model))


def verify_chains(
    content_type: ContentType,
    *,
    since: datetime.datetime | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    using: str = DEFAULT_DB_ALIAS,
    progress: Progress | None = None,
) -> Iterator[Finding]:
    """Versions and hash chains only, for events whose model is no longer registered (no live row to compare)."""
    yield from _check_events(content_type, None, using, since, False, batch_size, progress)


def total_work(model: type[models.Model], since: datetime.datetime | None = None, using: str | None = None) -> int:
    """How many items :func:`verify_model` will report to ``progress`` (events, plus live rows)."""
    spec = registry.spec_for(model)
    assert spec is not None
    db = using or router.db_for_write(model)
    events = _events(spec.content_type_id(), db, since).count()
    return events if since is not None else events + spec.model._base_manager.using(db).count()


def event_count(
    content_type: ContentType, since: datetime.datetime | None = None, using: str = DEFAULT_DB_ALIAS
) -> int:
    """How many items :func:`verify_chains` will report to ``progress``."""
    return _events(content_type.pk, using, since).count()


def _events(content_type_id: int, db: str, since: datetime.datetime | None) -> EventQuerySet:
    events = Event.objects.using(db).filter(content_type_id=content_type_id)
    if since is not None:
        recent = Event.objects.using(db).filter(content_type_id=content_type_id, created_at__gte=since)
        events = events.filter(object_pk__in=recent.values("object_pk"))
    return events


def _check_events(
    content_type: ContentType,
    spec: registry.ModelSpec | None,
    db: str,
    since: datetime.datetime | None,
    repair: bool,
    batch_size: int,
    progress: Progress | None,
) -> Iterator[Finding]:
    """Stream the events of one content type; compare replay with live rows when its model is registered."""
    label = spec.model._meta.label if spec is not None else f"{content_type.app_label}.{content_type.model}"
    events = _events(content_type.pk, db, since).order_by("object_pk", "version")
    current: _Row | None = None
    after: tuple[str, int] | None = None
    while True:
        page = (
            events
            if after is None
            else events.filter(Q(object_pk__gt=after[0]) | Q(object_pk=after[0], version__gt=after[1]))
        )
        batch = list(page[:batch_size])
        if not batch:
            break
        done: list[_Row] = []
        for event in batch:
            event.content_type = content_type  # the hash covers its label; no query per event
            if current is None or current.object_pk != event.object_pk:
                if current is not None:
                    done.append(current)
                current = _Row(event.object_pk)
            _check_event(label, current, event)
        after = (batch[-1].object_pk, batch[-1].version)
        yield from _finish(spec, db, done, repair)
        if progress:
            progress(len(batch))
    if current is not None:
        yield from _finish(spec, db, [current], repair)


def _finish(spec: registry.ModelSpec | None, db: str, rows: list[_Row], repair: bool) -> Iterator[Finding]:
    if spec is None:
        for row in rows:
            yield from row.findings
    else:
        yield from _check_live(spec, db, rows, repair)


def _check_event(label: str, row: _Row, event: Event) -> None:
    chain_known = True
    if event.version != row.expected_version:
        if event.version > row.expected_version:
            missing = (
                f"version {row.expected_version} is missing"
                if event.version == row.expected_version + 1
                else f"versions {row.expected_version}..{event.version - 1} are missing"
            )
        else:
            missing = f"version {event.version} appears after version {row.expected_version - 1}"
        row.findings.append(Finding(label, row.object_pk, Kind.GAP, f"{missing} (next stored event id {event.pk})"))
        row.broken = True
        chain_known = event.version == 1  # after a gap the previous hash is unknown: resume from this event
    if chain_known:
        expected = sha256_hex(row.previous_hash + hashing.event_hash_content(event))
        if expected != event.hash:
            row.findings.append(
                Finding(
                    label,
                    row.object_pk,
                    Kind.TAMPERED,
                    f"version {event.version} (event id {event.pk}, {event.action}): its stored hash does not "
                    "match its content and the previous hash; the event or the one before it was altered",
                )
            )
            row.broken = True
    row.previous_hash = event.hash
    row.expected_version = event.version + 1
    row.state = fold([event], row.state)


def same_state(a: State | None, b: State | None) -> bool:
    """Equal rows, where a number may come back from the database in another form (1e16 as an integer)."""
    return a == b or canonical_json(a) == canonical_json(b)


def _live_states(spec: registry.ModelSpec, db: str, object_pks: list[str]) -> dict[str, State]:
    pk_field = spec.pk_field
    pks = [pk_field.to_python(pk) for pk in object_pks]
    names = [f.attname for f in spec.fields]
    rows = spec.model._base_manager.using(db).filter(pk__in=pks).values(pk_field.attname, *names)
    return {
        spec.object_pk(values[pk_field.attname]): {f.name: encode(f, values[f.attname]) for f in spec.fields}
        for values in rows
    }


def _check_live(spec: registry.ModelSpec, db: str, rows: list[_Row], repair: bool) -> Iterator[Finding]:
    if not rows:
        return
    live = _live_states(spec, db, [row.object_pk for row in rows])
    for row in rows:
        yield from row.findings
        if not same_state(live.get(row.object_pk), row.state):
            finding = _confirm_drift(spec, db, row.object_pk, repair=repair and not row.broken)
            if finding is not None:
                yield finding


def _check_without_events(
    spec: registry.ModelSpec, db: str, repair: bool, batch_size: int, progress: Progress | None
) -> Iterator[Finding]:
    for pks in key_pages(spec, db, batch_size):
        for text in without_events(spec.content_type_id(), db, {spec.object_pk(pk): pk for pk in pks}):
            finding = _confirm_drift(spec, db, text, repair=repair)
            if finding is not None:
                yield finding
        if progress:
            progress(len(pks))


def _confirm_drift(spec: registry.ModelSpec, db: str, object_pk: str, repair: bool) -> Finding | None:
    """Check a suspected drift again with the row locked; repair it in the same transaction."""
    label = spec.model._meta.label
    pk = spec.pk_field.to_python(object_pk)
    with transaction.atomic(using=db):
        live = live_state(spec, db, pk)
        events = Event.objects.using(db).filter(content_type_id=spec.content_type_id(), object_pk=object_pk)
        has_events = events.exists()
        recorded = recorded_state(spec, pk, using=db) if has_events else None
        if same_state(live, recorded):
            return None  # a write landed between the two reads: no drift
        detail = _describe(recorded, live, has_events)
        last = events.order_by("-version").values_list("created_at", flat=True).first() if has_events else None
        note = explaining(spec, db, last)
        if note is not None:
            detail = f"{detail} (written unrecorded: {note})"
        repaired = _write_repair(spec, db, object_pk, recorded, live, note) if repair else ""
        return Finding(label, object_pk, Kind.DRIFT, detail, repaired=repaired)


def _describe(recorded: State | None, live: State | None, has_events: bool) -> str:
    if live is None:
        return "the row is gone from the table but its events say it exists (deleted outside the ORM)"
    if recorded is None:
        if not has_events:
            return "the row has no events (inserted outside the ORM, or held before its model was registered)"
        return "the row exists but its events say it was deleted (re-inserted outside the ORM)"
    differences = diff(recorded, live)
    return "; ".join(f"{name}: recorded {old!r}, live {new!r}" for name, (old, new) in sorted(differences.items()))


def _write_repair(
    spec: registry.ModelSpec,
    db: str,
    object_pk: str,
    recorded: State | None,
    live: State | None,
    note: UnrecordedWrite | None,
) -> str:
    if live is None:
        # fold() knows one way to make a row absent: a delete event (which restore() can undo).
        action, changes, state = Action.DELETE, {}, recorded
    else:
        action, changes, state = Action.SYNC, diff(recorded, live) if recorded else {}, live
    draft = journal.Draft.of(
        spec, None, action, changes=changes, state=state, content_type_id=spec.content_type_id(), object_pk=object_pk
    )
    if note is None:
        context = audit_context(reason=REPAIR_REASON)
    else:  # the writes of an unrecorded() block, recorded now: its reason, and which block
        context = audit_context(reason=note.reason, unrecorded_write=note.pk)
    with context:
        journal.write([draft], db)
    return str(action)
