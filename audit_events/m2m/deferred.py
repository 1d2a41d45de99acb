"""Links written before the rows they name exist.

A link to a row no transaction has yet passes its foreign key check until
COMMIT (PostgreSQL's are deferred; a fixture loads a link before the row it
names): :meth:`.changes.LinkChange.record` hands such links to
:func:`links_before_create`, which leaves them with the transaction's pending
events (``pending.Awaiting``). A row created later in the transaction records
them in its create event (:func:`_complete_creates`); just before COMMIT, the
rows another transaction created meanwhile (a restore) record them in an
update (:func:`_record_at_commit`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, connections, models

from .. import journal, pending, registry, replay, rows
from ..encoding import State
from ..links import Through, read_links
from ..models import Action
from ..operations import operation


@dataclass(frozen=True)
class _Missing:
    """Links written to rows of ``spec`` that no transaction had (``lookups``, by owner), by ``author``."""

    spec: registry.ModelSpec
    field: Any
    lookups: tuple[dict[str, Any], ...]
    using: str
    author: journal.Author


def links_before_create(spec: registry.ModelSpec, field: Any, lookups: list[dict[str, Any]], using: str) -> None:
    """Links written in this transaction to rows no transaction has yet (``lookups``, by owner).

    A row of them created later in it records the links it has then in its create event
    (:func:`_complete_creates`); just before COMMIT, those another transaction created
    meanwhile (a restore, say) are locked and their links recorded (:func:`_record_at_commit`).
    A rollback to a savepoint taken before this write drops it (``pending.Pending``).
    """
    missing = _Missing(spec, field, tuple(lookups), using, journal.Author.now())
    entry = pending.Awaiting(complete=_complete_creates, at_commit=_record_at_commit, data=missing)
    pending.Pending.of(connections[using]).awaiting.append(entry)


def _missing_by_field(awaiting: list[pending.Awaiting]) -> dict[tuple[Any, str], list[_Missing]]:
    groups: dict[tuple[Any, str], list[_Missing]] = {}
    for entry in awaiting:
        if isinstance(entry.data, _Missing):
            groups.setdefault((entry.data.spec.model, entry.data.field.name), []).append(entry.data)
    return groups


def _matching(missing: list[_Missing]) -> models.Q:
    matching = models.Q()
    for lookup in (lookup for entry in missing for lookup in entry.lookups):
        matching |= models.Q(**lookup)
    return matching


def _complete_creates(drafts: Sequence[journal.Draft], awaiting: list[pending.Awaiting]) -> None:
    """Add to the create events among ``drafts`` the links rows written before them name.

    Queries, per field awaited whose model has a create here: one SELECT of the matching
    rows' keys, and where one was created, one of their links.
    """
    for missing in _missing_by_field(awaiting).values():
        spec, field, using = missing[0].spec, missing[0].field, missing[0].using
        created = _creates(spec, drafts)
        if not created:
            continue
        named = _rows_named(spec, missing).order_by().values_list("pk", flat=True)
        pks = [pk for pk in named if spec.object_pk(pk) in created]
        for pk, links in read_links(spec, using, pks, [field]).items():
            state = created[spec.object_pk(pk)].state
            assert state is not None
            state.update(links)


def _creates(spec: registry.ModelSpec, drafts: Sequence[journal.Draft]) -> dict[str, journal.Draft]:
    """The create events of rows of ``spec`` among ``drafts``, by object pk; none unless each holds a state."""
    label = spec.model._meta.label_lower
    created = {d.object_pk: d for d in drafts if d.action == Action.CREATE and d.content_type_label == label}
    return {} if any(d.state is None for d in created.values()) else created


def _record_at_commit(awaiting: list[pending.Awaiting], created: set[tuple[str, str]]) -> None:
    """Just before COMMIT: links written to rows that were missing, recorded on those another
    transaction created since (a restore), by the writes that made them.

    On PostgreSQL the deferred check runs first (it raises the ``IntegrityError`` COMMIT
    would); then each row is there and held until COMMIT. A row this transaction created
    recorded its links in its create, and later changes by their own writes: it is left
    alone. Another's are locked, and their links as recorded (their restore's) compared
    with the live ones: an update records the difference, in the actor and context of the
    write that linked them (a row linked by several: the last). Queries per field awaited:
    the check, the lock and links (two), one SELECT per actor where several linked, the
    history of each row found.
    """
    for missing in _missing_by_field(awaiting).values():
        spec, field, using = missing[0].spec, missing[0].field, missing[0].using
        _check_deferred(Through.of(field), using)
        label = spec.model._meta.label_lower
        live = rows.lock_rows(spec, using, {}, rows=_rows_named(spec, missing), no_key=True)
        author_of = _authors(spec, missing, live)
        drafts: dict[journal.Author, list[journal.Draft]] = {}
        for pk, state in live.items():
            if (label, spec.object_pk(pk)) in created:
                continue
            draft = update_from_history(spec, field, pk, state, using)
            if draft is not None:
                drafts.setdefault(author_of[pk], []).append(draft)
        for author, written_drafts in drafts.items():
            with operation():
                journal.write(written_drafts, using, by=author)


def _authors(spec: registry.ModelSpec, missing: list[_Missing], rows: Iterable[Any]) -> dict[Any, journal.Author]:
    """Which write linked each of ``rows`` (pks): the last whose rows it is (the database cannot
    tell more). One SELECT per author where several wrote; none otherwise."""
    authors = list(dict.fromkeys(entry.author for entry in missing))
    author_of = dict.fromkeys(rows, authors[-1])
    if len(authors) > 1:
        for author in authors:
            written = [entry for entry in missing if entry.author == author]
            author_of.update(dict.fromkeys(_rows_named(spec, written).values_list("pk", flat=True), author))
    return author_of


def update_from_history(
    spec: registry.ModelSpec, field: Any, pk: Any, state: State, using: str
) -> journal.Draft | None:
    """The update of a row's links, of ``field``, from those its history records to those
    ``state`` holds; None when they are the same. Queries: reading the row's history."""
    old, new = (replay.recorded_state(spec, pk, using=using) or {}).get(field.name, []), state[field.name]
    if old == new:
        return None
    return journal.Draft.of(spec, pk, Action.UPDATE, changes={field.name: [old, new]}, snapshot=state)


def _rows_named(spec: registry.ModelSpec, missing: list[_Missing]) -> models.QuerySet[Any]:
    """The rows of ``spec`` the links written to missing rows name (a plain queryset of the model)."""
    rows: models.QuerySet[Any] = models.QuerySet(spec.model, using=missing[0].using)
    return rows.filter(_matching(missing))


def _deferred_constraints(ends: Through, using: str) -> list[str]:
    """The names of the through table's deferred foreign keys to the owners (PostgreSQL; one query)."""
    connection = connections[using]
    table = connection.ops.quote_name(ends.model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.conname) FROM pg_constraint c"
            " JOIN pg_namespace n ON n.oid = c.connamespace JOIN pg_attribute a"
            " ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]"
            " WHERE c.conrelid = %s::regclass AND c.contype = 'f' AND c.condeferred"
            " AND array_length(c.conkey, 1) = 1 AND a.attname = %s",
            [table, ends.source.column],
        )
        return [name for (name,) in cursor.fetchall()]


def _check_deferred(ends: Through, using: str) -> None:
    """Run the deferred check of the through table's foreign key to the owners now (PostgreSQL):
    it raises the ``IntegrityError`` COMMIT would. COMMIT follows: the mode need not be set back."""
    if connections[using].features.has_select_for_update and (names := _deferred_constraints(ends, using)):
        _set_immediate(using, names)


def _set_immediate(using: str, names: list[str]) -> None:
    """Check the deferred constraints ``names`` now, and each statement's from now on."""
    with connections[using].cursor() as cursor:
        cursor.execute(f"SET CONSTRAINTS {', '.join(names)} IMMEDIATE")


def check_now(ends: Through, using: str) -> bool:
    """Check the through table's deferred foreign key to the owners now, as COMMIT would.

    True when each owner linked in this transaction is there (the check waits
    for a transaction inserting one: it is committed, and visible, by then).
    False when one is missing. The check runs in a savepoint rolled back
    after it, so the constraint's mode is what it was (deferred, or
    ``SET CONSTRAINTS ALL IMMEDIATE`` by the application) and COMMIT checks it
    again, as without the app. Queries: the constraint's name, a savepoint,
    ``SET CONSTRAINTS``, the rollback to the savepoint.
    """
    names = _deferred_constraints(ends, using)
    if not names:
        return True
    connection = connections[using]
    sid = connection.savepoint()  # transaction.savepoint() is deprecated in Django 6.1
    try:
        _set_immediate(using, names)
    except IntegrityError:
        return False
    finally:
        if sid is not None:  # None: no transaction (autocommit), where the statement's own check ran
            connection.savepoint_rollback(sid)
    return True
