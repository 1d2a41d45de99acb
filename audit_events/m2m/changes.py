"""One change of links (:class:`LinkChange`): the rows that declare them locked, and their links
read, before the write; read again after it, and each difference recorded on its row. And the
changes of one deletion (:class:`Deletion`), which Django announces row by row.

The owners are those the database rows hold, read under the owners' lock
(:meth:`LinkChange.lock_holders`), never those a Python instance names.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.db import connections, models

from .. import journal, registry
from ..encoding import State
from ..links import Through, read_links
from ..models import Action
from ..operations import operation
from ..rows import lock_rows
from .deferred import check_now, links_before_create, update_from_history


class LinkChange:
    """The owning rows a write of links touches, locked and read before it; their events after it.

    Keyed by ``(model, field name)``: the states of the owners, by pk, read
    under their lock (:func:`.rows.lock_rows`: the links by a statement
    after the lock). :meth:`record` reads the links again after the write,
    the owners still locked, and writes an ``update`` for each that changed.
    """

    def __init__(self, using: str) -> None:
        self.using = using
        self.before: dict[tuple[type[models.Model], str], tuple[registry.ModelSpec, Any, dict[Any, State]]] = {}
        self.keys: set[tuple[type[models.Model], str, Any]] = set()  # owner keys already read
        self.deleted: set[tuple[type[models.Model], Any]] = set()  # owners deleted by the same write
        # Owners asked for but not found under the lock, by (model, field name): their lookups.
        self.absent: dict[tuple[type[models.Model], str], list[dict[str, Any]]] = {}

    def lock(self, spec: registry.ModelSpec, field: Any, lookup: dict[str, Any]) -> None:
        rows = lock_rows(spec, self.using, lookup, no_key=True)  # as an UPDATE of the row: keys stay
        known = self.before.setdefault((spec.model, field.name), (spec, field, {}))[2]
        for pk, state in rows.items():
            known.setdefault(pk, state)
        [(_, asked)] = lookup.items()  # one "<key>__in" lookup; each owner has one key value
        if len(rows) < len(set(asked)):
            self.absent.setdefault((spec.model, field.name), []).append(lookup)

    def lock_keys(self, spec: registry.ModelSpec, field: Any, keys: Iterable[Any]) -> None:
        """:meth:`lock` the owners whose ``to_field`` values (as through rows hold them) are ``keys``."""
        new = {key for key in keys if key is not None and (spec.model, field.name, key) not in self.keys}
        if new:
            self.keys.update((spec.model, field.name, key) for key in new)
            self.lock(spec, field, {f"{Through.of(field).owner_key}__in": list(new)})

    def lock_holders(self, spec: registry.ModelSpec, field: Any, rows: models.QuerySet[Any], given: set[Any]) -> None:
        """:meth:`lock_keys` the owners ``given`` and those the through ``rows`` hold, as the database has them.

        The holders are read, then locked with ``given``; where rows are locked, read again once
        they are (a writer that moved a row in between locked the owners it took it from and
        gave it to, and committed: the row's owner is one this write has not locked), until
        every holder is locked. A recorded writer moves a row only with its owner locked: once
        this write holds it, the row stays where it is. Queries: one SELECT of the holders,
        the owners' lock, and where rows are locked one SELECT more (unless a writer moved
        a row in between: then a lock and a SELECT more).
        """
        held = set(rows.values_list(Through.of(field).source.attname, flat=True))
        self.lock_keys(spec, field, given | held)
        self.confirm_holders(spec, field, rows)

    def confirm_holders(
        self, spec: registry.ModelSpec, field: Any, rows: models.QuerySet[Any], read_before: bool = False
    ) -> None:
        """Where rows are locked, read the owners the through ``rows`` hold again, once this write
        holds the owners it read (:meth:`lock_holders`), until it holds them all: one SELECT.

        ``read_before``: the owners were read before this transaction began (a cascade: Django's
        Collector reads the rows it deletes in autocommit mode, then begins its transaction).
        Where rows are not locked (SQLite), the transaction holds the database's write lock
        (begun ``IMMEDIATE``), or one snapshot it cannot write past if another connection
        committed since: the owners are read again once, as the DELETE will find them.
        """
        if not (read_before or connections[self.using].features.has_select_for_update):
            return
        while True:
            held = set(rows.values_list(Through.of(field).source.attname, flat=True))
            if all((spec.model, field.name, key) in self.keys for key in held if key is not None):
                break
            self.lock_keys(spec, field, held)

    def record(self) -> None:
        with operation():
            drafts = []
            for spec, field, rows in self.before.values():
                drafts += self._appeared(spec, field, rows)
                kept = [pk for pk in rows if (spec.model, pk) not in self.deleted]  # their delete records them
                after = read_links(spec, self.using, kept, [field])
                for pk in kept:
                    old, new = rows[pk][field.name], after.get(pk, {}).get(field.name)
                    if new is None or old == new:
                        continue
                    snapshot = {**rows[pk], field.name: new}
                    changes = {field.name: [old, new]}
                    drafts.append(journal.Draft.of(spec, pk, Action.UPDATE, changes=changes, snapshot=snapshot))
            journal.write(drafts, self.using)
        self.before.clear()
        self.keys.clear()
        self.absent.clear()

    def _appeared(self, spec: registry.ModelSpec, field: Any, rows: dict[Any, State]) -> list[journal.Draft]:
        """Events for owners that were absent when locked but whose links the write changed.

        A row another transaction deleted is not found by the lock; a link the
        write adds to it waits for its foreign key check until COMMIT
        (PostgreSQL's are deferred), and passes if a restore of the row
        commits first. The check is made now (:func:`.deferred.check_now`; on
        SQLite no other transaction writes meanwhile): the row is there, locked
        by it, or no transaction has it yet. Such a row, and one
        a restore committed before a ``remove()`` ran, is locked and read now;
        its links before the write are those its history records (the
        restore's event). A row no transaction has yet is left to the
        deferred check, as without the app: this transaction may create it
        later (a fixture loads a link before the row it names), and its create
        records the links it finds then; or COMMIT fails. No query unless an
        owner was absent.
        """
        lookups = self.absent.get((spec.model, field.name))
        if not lookups:
            return []
        if not connections[self.using].features.has_select_for_update or not check_now(
            Through.of(field), self.using
        ):  # SQLite: no other writer, an absent row is one no transaction has
            links_before_create(spec, field, lookups, self.using)
        drafts = []
        for lookup in lookups:
            for pk, state in lock_rows(spec, self.using, lookup, no_key=True).items():
                if pk in rows or (spec.model, pk) in self.deleted:
                    continue
                draft = update_from_history(spec, field, pk, state, self.using)
                if draft is not None:
                    drafts.append(draft)
        return drafts


def lock_targets(ends: Through, using: str, rows: models.QuerySet[Any] | None, *values: Any) -> list[Any]:
    """Lock the related rows whose links are all going (those of ``rows``, or whose key the
    through table holds is one of ``values``), before their links are read; return their keys.

    The DELETE of their links that follows matches every link committed by
    then, found by no earlier read; a link another transaction adds takes,
    by its foreign key check, a ``KEY SHARE`` lock of the related row, which
    ``FOR UPDATE`` alone conflicts with: once it is locked, no new link to it
    commits until this transaction ends (one that did is seen by the read of
    the owners that follows), and the owners read are exactly the rows whose
    links the DELETE changes. No query for ``values`` where nothing is locked.
    """
    key, model = ends.target.target_field.attname, ends.target.target_field.model
    if rows is None and not connections[using].features.has_select_for_update:
        return list(values)
    locked: models.QuerySet[Any] = models.QuerySet(model, using=using)
    if rows is None:
        locked = locked.filter(**{f"{key}__in": values})
    else:
        locked = locked.filter(pk__in=rows.order_by().values("pk"))
    if connections[using].features.has_select_for_update:
        locked = locked.select_for_update()
    return list(locked.order_by().values_list(key, flat=True))


@dataclass
class Deletion:
    """The link changes of one deletion (one ``Collector`` run, known by its ``origin``)."""

    origin: Callable[[], Any]  # a weak reference where the origin takes one
    change: LinkChange
    targets: dict[type[models.Model], LinkChange] = dataclasses.field(default_factory=dict)  # by model deleted
    covered: set[tuple[Any, Any]] = dataclasses.field(default_factory=set)  # (field, key) of related rows locked


_deletion: ContextVar[Deletion | None] = ContextVar("audit_events_link_deletion", default=None)


def deletion_of(origin: Any, using: str) -> Deletion:
    """Django sends every ``pre_delete`` of a deletion before its first DELETE, and the
    ``post_delete`` of a model's rows after all of them are deleted: the first
    ``post_delete`` of the through rows records every owner's change once."""
    current = current_deletion(origin)
    if current is None:
        current = Deletion(_reference(origin), LinkChange(using))
        _deletion.set(current)
    return current


def current_deletion(origin: Any) -> Deletion | None:
    """The deletion of ``origin`` under way, once its first ``pre_delete`` began it (:func:`deletion_of`)."""
    current = _deletion.get()
    return current if current is not None and current.origin() is origin else None


def _reference(origin: Any) -> Callable[[], Any]:
    try:
        return weakref.ref(origin)
    except TypeError:  # None (a Collector made by hand), or an object without weak references
        return lambda: origin
