"""Capture of ``bulk_create()`` and ``bulk_update()``: each row as the database stored it.

Neither sends a signal per row, and what Python holds is not what the table
holds (a Decimal with more places than the column, a value a field's
``get_db_prep_value`` transforms, ``Now()``, the first of two objects with the
same key in one ``bulk_update``). So the recorded values are the database's
own answer:

* ``bulk_create()``: Django's own ``bulk_create`` runs, with its checks, its
  transaction, its batches; each INSERT it sends (``QuerySet._insert``) asks
  for every column back (``INSERT ... RETURNING``). The rows returned are
  exactly the rows written: with ``ignore_conflicts`` the rows left alone
  return nothing; with ``update_conflicts`` the rows that already existed
  were read, locked, just before their batch's INSERT, so they are recorded
  as updates (old values from that read, new ones from RETURNING), the
  others as creates, unless another transaction inserted and recorded them
  in between (the INSERT waited for it, then updated them): those are
  updates of what it recorded.
* ``bulk_update()``: the rows are read and locked before Django's UPDATEs, and
  the columns those write read again after them, under the same lock; only
  rows whose stored values changed get an event.

Both use the database Django writes to (``_for_write``, the router's
``db_for_write``) for every statement, and raise Django's own errors, from
Django's own checks, before anything of theirs is opened: a caught error
leaves the caller's transaction usable.

Cost per call, beyond Django's own statements (``B`` = batches of events,
see ``journal``):

* ``bulk_create()``: ``B`` event INSERTs; with ``update_conflicts`` also one
  locking SELECT per INSERT batch of Django's, and one SELECT of the event
  table per batch that created rows. Where the backend cannot
  return rows from a bulk INSERT: one SELECT per INSERT batch, and
  ``ignore_conflicts``/``update_conflicts`` or objects without a primary key
  are refused (``NotSupportedError``).
* ``bulk_update()``: two SELECTs (locking, before and after) per 900 objects,
  ``B`` event INSERTs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import Any

from django.db import NotSupportedError, connections, models
from django.db.models import OuterRef, Subquery
from django.db.models.constants import OnConflict

from . import journal, m2m, registry, statement_events
from .context import capture_paused
from .encoding import State
from .models import Action, Event
from .operations import operation
from .recording import view_event
from .replay import recorded_state
from .returning import insert_returning, insert_statements
from .rows import lock_rows
from .transactions import atomic_write

_IN_CHUNK = 900  # keeps "pk IN (...)" under SQLite's 999 parameters

# Django's private QuerySet and Model methods used here (``_for_write``, ``_insert``,
# ``_is_pk_set``...) are not in django-stubs: those objects are typed ``Any``.
Field = Any  # models.Field[Any, Any]
QuerySet = Any  # models.QuerySet[Any]


# --- bulk_update ----------------------------------------------------------


def bulk_update(
    spec: registry.ModelSpec,
    queryset: QuerySet,
    update: Callable[..., int],
    objs: Iterable[models.Model],
    fields: Iterable[str],
    batch_size: int | None = None,
) -> int:
    """``queryset.bulk_update(objs, fields, batch_size)``, recorded; ``update`` is Django's (or the next class's)."""
    objs, names = tuple(objs), list(fields)
    _check_bulk_update(queryset, update, objs, names, batch_size)
    if not objs:
        return update(objs, names, batch_size=batch_size)
    queryset._for_write = True  # as Django's bulk_update does before reading queryset.db
    using = queryset.db
    keys = list({obj.pk: None for obj in objs})
    with atomic_write(using), operation():
        before = _locked(spec, using, keys)
        # Only the rows locked: Django's UPDATE (by key) would also change a row made again, with
        # one of these keys, by a transaction that committed after the locking read (PostgreSQL).
        present = {spec.object_pk(pk) for pk in before}
        locked = [obj for obj in objs if spec.object_pk(obj.pk) in present]
        with capture_paused():  # Django's bulk_update calls update(): record once, here
            count = update(locked, names, batch_size=batch_size) if locked else 0
        # The same rows, still locked: what the UPDATEs stored in the columns they write, the
        # listed fields' (the other columns, and the links, which they cannot change: as before).
        written = {queryset.model._meta.get_field(name) for name in names}
        after = _locked(spec, using, list(before), only=written)
        _record_updates(spec, using, before, {pk: {**before[pk], **new} for pk, new in after.items()})
    return count


def _check_bulk_update(
    queryset: QuerySet, update: Callable[..., int], objs: Sequence[Any], names: list[str], batch_size: int | None
) -> None:
    """Django's own checks of ``bulk_update()``, in its order, before any statement.

    Django's method makes every check that does not depend on the objects
    before it returns for an empty list: it is called so, and runs no query.
    """
    if not all(obj._is_pk_set() for obj in objs):
        update([], names, batch_size=batch_size)  # the errors Django raises first
        raise ValueError("All bulk_update() objects must have a primary key set.")
    update([], names, batch_size=batch_size)
    fields = [queryset.model._meta.get_field(name) for name in names]
    for obj in objs:
        obj._prepare_related_fields_for_save(operation_name="bulk_update", fields=fields)


def _locked(
    spec: registry.ModelSpec, using: str, keys: list[Any], only: Collection[Field] | None = None
) -> dict[Any, State]:
    """:func:`.rows.lock_rows` of the rows with these keys: one SELECT per 900 keys (and
    one of their many-to-many links, unless ``only`` some fields are read)."""
    rows: dict[Any, State] = {}
    for start in range(0, len(keys), _IN_CHUNK):
        rows.update(lock_rows(spec, using, {"pk__in": keys[start : start + _IN_CHUNK]}, no_key=True, only=only))
    return rows


def _record_updates(spec: registry.ModelSpec, using: str, before: dict[Any, State], after: dict[Any, State]) -> None:
    """Update events for the rows whose stored values changed, also under their registered multi-table parents."""
    views = [spec, *registry.parent_specs(spec)]
    drafts = []
    for pk, old in before.items():
        new = after.get(pk)
        if new is None:
            continue
        for view in views:
            if event := view_event(view, pk, old, new):
                drafts.append(event)
    journal.write(drafts, using)


# --- bulk_create ----------------------------------------------------------


@contextlib.contextmanager
def creating(spec: registry.ModelSpec, queryset: QuerySet) -> Iterator[None]:
    """Around Django's ``bulk_create`` on ``queryset`` (a clone made for the call): record each INSERT.

    Django's ``bulk_create`` makes its checks, opens its transaction and then
    sends each batch through ``self._insert(...)``; an instance attribute of
    the clone takes that call (:class:`_RecordingInsert`). Nothing is patched
    on any class, and nothing of ours runs before Django's checks pass.
    """
    queryset._insert = _RecordingInsert(spec, queryset)
    try:
        with operation():
            yield
    finally:
        del queryset._insert


class _RecordingInsert:
    """``QuerySet._insert`` for one ``bulk_create`` call: the INSERT returns every column, recorded."""

    def __init__(self, spec: registry.ModelSpec, queryset: QuerySet) -> None:
        self.spec = spec
        self.queryset = queryset
        self.insert = type(queryset)._insert.__get__(queryset)  # Django's (or the next class's)

    def __call__(
        self,
        objs: list[models.Model],
        fields: list[Field],
        returning_fields: list[Field] | None = None,
        raw: bool = False,
        using: str | None = None,
        on_conflict: OnConflict | None = None,
        update_fields: list[Field] | None = None,
        unique_fields: list[Field] | None = None,
    ) -> list[Any]:
        using = using or self.queryset.db
        # Django 5.2 sends every batch inside its own atomic block; later versions send a single
        # batch without one: the locking read, the INSERT and its events are one transaction here.
        with atomic_write(using):
            return self._insert(objs, fields, returning_fields, raw, using, on_conflict, update_fields, unique_fields)

    def _insert(
        self,
        objs: list[models.Model],
        fields: list[Field],
        returning_fields: list[Field] | None,
        raw: bool,
        using: str,
        on_conflict: OnConflict | None,
        update_fields: list[Field] | None,
        unique_fields: list[Field] | None,
    ) -> list[Any]:
        conflicts = {"on_conflict": on_conflict, "update_fields": update_fields, "unique_fields": unique_fields}
        if not connections[using].features.can_return_rows_from_bulk_insert:
            return self._read_after(objs, fields, returning_fields, raw, using, conflicts)
        model, asked = self.queryset.model, list(returning_fields or ())
        if on_conflict != OnConflict.UPDATE:  # the events made by the database in the INSERT, where it can
            plan, statements = insert_statements(self.spec, model, objs, fields, asked, raw, using, conflicts)
            sql = statement_events.insert_statement(self.spec, plan, statements[0][0]) if len(statements) == 1 else None
            if sql is not None:
                answered, left = statement_events.run_insert(self.spec, plan, sql, statements[0][1], using)
                self._record({}, plan.states(left), using)
                return plan.given(answered)
        before = self._lock_conflicting(objs, unique_fields or [], using) if on_conflict == OnConflict.UPDATE else {}
        states, rows = insert_returning(self.spec, model, objs, fields, asked, raw, using, conflicts)
        if on_conflict == OnConflict.UPDATE:
            before.update(
                self._inserted_meanwhile([pk for pk, _ in states if self.spec.object_pk(pk) not in before], using)
            )
        self._record(before, states, using)
        return rows

    def _lock_conflicting(self, objs: list[models.Model], unique_fields: list[Field], using: str) -> dict[str, State]:
        """The existing rows this batch's INSERT can update, locked, by canonical key."""
        attnames = [f.attname for f in unique_fields]
        if len(attnames) == 1:
            lookup: dict[str, Any] = {f"{attnames[0]}__in": [getattr(obj, attnames[0]) for obj in objs]}
        else:
            query = models.Q()
            for obj in objs:
                query |= models.Q(**{a: getattr(obj, a) for a in attnames})
            lookup = {"pk__in": self.spec.model._base_manager.using(using).filter(query).values("pk")}
        locked = lock_rows(self.spec, using, lookup, no_key=True)  # an upsert never sets keys
        return {self.spec.object_pk(pk): state for pk, state in locked.items()}

    def _inserted_meanwhile(self, keys: list[Any], using: str) -> dict[str, State]:
        """The rows among ``keys`` that existed before the INSERT although the locking SELECT did not see them.

        Another transaction inserted them after that SELECT; the INSERT waited
        for it to commit, then updated them (PostgreSQL). Their old values are
        what that transaction recorded. Queries: none without ``keys``; one
        SELECT of the latest event of each; the replay of each row found
        (only in that race).
        """
        if not keys:
            return {}
        spec = self.spec
        by_object_pk = {spec.object_pk(pk): pk for pk in keys}
        events = Event.objects.using(using).filter(content_type_id=spec.content_type_id(using))
        latest = events.filter(object_pk=OuterRef("object_pk")).order_by("-version").values("version")[:1]
        live = events.filter(object_pk__in=list(by_object_pk), version=Subquery(latest)).exclude(action=Action.DELETE)
        found = {}
        for object_pk in live.values_list("object_pk", flat=True):
            if (state := recorded_state(spec, by_object_pk[object_pk], using=using)) is not None:
                found[object_pk] = state
        return found

    def _record(self, before: dict[str, State], rows: list[tuple[Any, State]], using: str) -> None:
        """A create for each row returned that did not exist, an update for each that did and changed.

        A row returned twice (SQLite lets one upsert batch insert a row, then update it for a later
        object with the same unique value) is created by the first answer, updated by the second.
        """
        spec = self.spec
        drafts = []
        before = dict(before)
        for pk, new in rows:
            object_pk = spec.object_pk(pk)
            old = before.get(object_pk)
            if old is None:
                drafts.append(journal.Draft.of(spec, pk, Action.CREATE, state=m2m.without_links(spec, new)))
            elif event := view_event(spec, pk, old, new):
                drafts.append(event)
            before[object_pk] = {**(old or {}), **new}
        journal.write(drafts, using)

    def _read_after(
        self,
        objs: list[Any],
        fields: list[Field],
        returning_fields: list[Field] | None,
        raw: bool,
        using: str,
        conflicts: dict[str, Any],
    ) -> list[Any]:
        """A backend without ``RETURNING`` of many rows: Django's INSERT, then the rows read back by key."""
        if conflicts["on_conflict"] is not None or not all(obj._is_pk_set() for obj in objs):
            raise NotSupportedError(
                f"{self.spec.label}: this database does not return rows from a bulk INSERT, so "
                "bulk_create() of objects without a primary key, or with ignore_conflicts/update_conflicts, "
                "cannot be recorded; nothing was written."
            )
        result: list[Any] = self.insert(
            objs, fields, returning_fields=returning_fields, raw=raw, using=using, **conflicts
        )
        states = lock_rows(self.spec, using, {"pk__in": [obj.pk for obj in objs]})
        self._record({}, list(states.items()), using)
        return result
