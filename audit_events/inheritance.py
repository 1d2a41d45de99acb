"""Multi-table inheritance: a write through a parent model is a write of its registered children's rows.

A ``Restaurant(Place)`` row lives in two tables. Saving, ``update()``-ing or
``bulk_update()``-ing it *as a Place* (or as a grandparent, or as another
child of Place, whose saves write Place's table too) changes the Restaurant
row, yet sends no signal of Restaurant's and runs no QuerySet of it. For each
model whose writes reach the rows of registered models this way (the
registered models sharing one of its tables that are neither itself nor one of
its parents, which ``capture`` records already: its *children* here), this
module records those rows' events:

* ``wiring`` wraps the model's ``save_base`` (:func:`recording_save_base`):
  the save is one transaction and one operation, with its children recorded
  around it;
* :func:`records_update` and :func:`records_bulk_update` decorate
  ``QuerySet.update`` and ``QuerySet.bulk_update`` (``querysets``) the same way;
* :func:`restoring` does it around the write of a restored row (``restoration``),
  which sends no signals;
* raw saves (``loaddata``) call ``Model.save_base`` itself, past the wrapper:
  their ``pre_save``/``post_save`` signals do it (:func:`raw_pre_save`).

Each child row is read in full (both tables), locked, before the write, then
read again after it in the same transaction: old and new values are the
database's, and a write that changes nothing a child records writes nothing.
A row read gone is read again after the write too where writers interleave
(backends with row locks): made again by another transaction before the
write's statement by key, it was changed by it, from the row its maker
recorded. Cost per write, per registered child model: one locking SELECT
before, and one SELECT after when rows of that child were found (on
PostgreSQL, always). Models without registered children pay nothing (a
dictionary lookup).

Deletes need nothing here: Django's Collector cascades a parent's delete to
its child rows along the parent link, sending their signals, so ``capture``
records them, in the deleting operation.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import Any

from django.apps import apps
from django.db import connections, models, router, transaction

from . import journal, registry
from .context import is_paused
from .encoding import State
from .operations import operation
from .recording import view_event
from .replay import recorded_state
from .rows import live_state, lock_rows
from .updates import matched, update_query

ModelType = type[models.Model]

_IN_CHUNK = 900  # keeps "pk IN (...)" under SQLite's 999 parameters

# concrete model -> the registered models whose rows its writes reach (see the module docstring)
_children: dict[ModelType, tuple[registry.ModelSpec, ...]] = {}

# What is being recorded already: an inner save or update of the same write skips
# (a save_base wrapped twice by inheritance, the update() inside bulk_update()).
_saving: ContextVar[frozenset[int]] = ContextVar("audit_events_saving_children", default=frozenset())
_updating: ContextVar[frozenset[ModelType]] = ContextVar("audit_events_updating_children", default=frozenset())


def children(model: ModelType) -> tuple[registry.ModelSpec, ...]:
    """The registered models whose rows a write of ``model`` (or a proxy of it) reaches; ``()`` for most."""
    concrete = model._meta.concrete_model
    return () if concrete is None else _children.get(concrete, ())


# --- wiring ---------------------------------------------------------------------


def _chain(model: ModelType) -> set[ModelType]:
    return {model, *model._meta.get_parent_list()}


def find_children(specs: list[registry.ModelSpec]) -> list[ModelType]:
    """Note, for every model, the registered models in ``specs`` whose rows its writes reach, and return
    the models that have some: ``wiring`` wraps their ``save_base`` and hooks their QuerySets
    (:func:`recording_save_base`, :func:`raw_pre_save`, :func:`raw_post_save`)."""
    _children.clear()
    for model in apps.get_models():
        chain = _chain(model)
        found = tuple(s for s in specs if s.model not in chain and _chain(s.model) & chain)
        if found:
            _children[model] = found
    return list(_children)


def forget_children() -> None:
    _children.clear()


# --- recording --------------------------------------------------------------------


def _read(spec: registry.ModelSpec, using: str, pks: list[Any]) -> dict[Any, State]:
    """The children's rows with these keys, locked as an UPDATE keeping them locks them (``FOR NO KEY UPDATE``)."""
    if len(pks) == 1:  # a save: the statement compiled once per connection
        state = live_state(spec, using, pks[0], no_key=True)
        return {} if state is None else {pks[0]: state}
    found: dict[Any, State] = {}
    for start in range(0, len(pks), _IN_CHUNK):
        found.update(lock_rows(spec, using, {"pk__in": pks[start : start + _IN_CHUNK]}, no_key=True))
    return found


@contextlib.contextmanager
def _recording(found: tuple[registry.ModelSpec, ...], using: str, pks: list[Any]) -> Iterator[None]:
    """Record, for each child model in ``found``, the change the write inside made to its rows ``pks``.

    The caller holds a transaction and an operation around it: the rows read
    before stay locked until the write's COMMIT, when they are read again.
    """
    before = {spec: _read(spec, using, pks) for spec in found}
    yield
    # A row read gone is not locked: where writers interleave (backends with row locks, READ
    # COMMITTED), another transaction may make it again (a restore, a child row given to the parent
    # row) and commit before the write's statement by key, which then changes it. Such rows are read
    # again after the write too, in the same SELECT as the others.
    again = connections[using].features.has_select_for_update
    drafts = []
    for spec, olds in before.items():
        read = {spec.object_pk(pk) for pk in olds}
        gone = list({spec.object_pk(pk): pk for pk in pks if spec.object_pk(pk) not in read}.values()) if again else []
        if not olds and not gone:
            continue  # no row of this child among those written
        news = _read(spec, using, [*olds, *gone])
        for pk, new in news.items():
            # A row made again: it was as its maker recorded it (committed before this read
            # could see it). If the write did not change it, that is the row read now: no event.
            old = olds[pk] if pk in olds else recorded_state(spec, pk, using=using)
            if event := view_event(spec, pk, old, new):
                drafts.append(event)
    journal.write(drafts, using)


def recording_save_base(save_base: Callable[..., Any]) -> Callable[..., Any]:
    """A save of an existing row of a model with registered children: record theirs too.

    Queries: per child model, one locking SELECT of the row before the save,
    and one SELECT after it if the row is that child's (on PostgreSQL, always:
    :func:`_recording`).
    """

    @functools.wraps(save_base)
    def save_base_recording_children(self: models.Model, *args: Any, **kwargs: Any) -> Any:
        found = children(type(self))
        raw = kwargs.get("raw") or (args and args[0])  # its signals record it (:func:`raw_pre_save`)
        paused = bool(found) and is_paused(*(spec.model for spec in found))
        if not found or raw or paused or self.pk is None or id(self) in _saving.get():
            return save_base(self, *args, **kwargs)
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        token = _saving.set(_saving.get() | {id(self)})
        try:
            with transaction.atomic(using=using, savepoint=False), operation(), _recording(found, using, [self.pk]):
                return save_base(self, *args, **kwargs)
        finally:
            _saving.reset(token)

    return save_base_recording_children


@contextlib.contextmanager
def restoring(model: ModelType, using: str, pk: Any) -> Iterator[None]:
    """Around ``restore()``'s write of one row of ``model``: its children's rows are recorded.

    Capture is paused there, so this does not ask; the caller holds the
    transaction and the operation. Queries: as a save (:func:`recording_save_base`).
    """
    found = children(model)
    if not found:
        yield
        return
    with _recording(found, using, [pk]):
        yield


# The raw saves between their pre_save and post_save: id(instance) -> (instance, its recording)
_raw_saves: dict[int, tuple[models.Model, contextlib.AbstractContextManager[None]]] = {}


def raw_pre_save(sender: ModelType, instance: models.Model, raw: bool, using: str, **kwargs: Any) -> None:
    """A raw save (``loaddata``): read the children's row before it, as the wrapper does for others."""
    _raw_saves.pop(id(instance), None)  # left by a save that failed before its post_save
    found = children(sender)
    if not raw or not found or is_paused(*(spec.model for spec in found)) or instance.pk is None:
        return
    # No operation() across the two signals: a save failing between them would leave it set.
    recording = _recording(found, using, [instance.pk])
    recording.__enter__()
    _raw_saves[id(instance)] = (instance, recording)


def raw_post_save(sender: ModelType, instance: models.Model, **kwargs: Any) -> None:
    pending = _raw_saves.pop(id(instance), None)
    if pending is not None:
        pending[1].__exit__(None, None, None)


def _recording_queryset_write(
    queryset: models.QuerySet[Any], pks: Callable[[], list[Any]], write: Callable[[list[Any]], Any]
) -> Any:
    """Run ``write`` of the rows ``pks`` gives (called inside the transaction), recording the children's among them."""
    found = children(queryset.model)
    if not found or is_paused(*(spec.model for spec in found)) or queryset.model in _updating.get():
        return write([])
    token = _updating.set(_updating.get() | {queryset.model})
    try:
        with transaction.atomic(using=queryset.db, savepoint=False), operation():
            keys = pks()
            with _recording(found, queryset.db, keys):
                return write(keys)
    finally:
        _updating.reset(token)


def _locked_keys(queryset: models.QuerySet[Any], moves_keys: bool) -> list[Any]:
    """The keys of the rows ``queryset`` matches, locked as its UPDATE would lock them.

    On PostgreSQL, ``FOR UPDATE`` (``FOR NO KEY UPDATE`` unless the UPDATE
    assigns keys) re-checks the filter on the newest version of each row it
    waited for: the rows locked are the rows the UPDATE is then restricted to.
    """
    using = queryset.db
    rows = matched(queryset.model, queryset, using).order_by()
    features = connections[using].features
    if features.has_select_for_update:
        rows = rows.select_for_update(no_key=not moves_keys and features.has_select_for_no_key_update)
    return list(rows.values_list("pk", flat=True))


def records_update(update: Callable[..., int]) -> Callable[..., int]:
    """Decorate ``QuerySet.update``: the children's rows among those matched are recorded.

    Queries, for a model with registered children: per child model, one
    locking SELECT of the matched rows before the UPDATE and one SELECT of
    those found after it (on PostgreSQL, of all the matched rows: :func:`_recording`).
    """

    @functools.wraps(update)
    def update_recording_children(queryset: models.QuerySet[Any], **kwargs: Any) -> int:
        found = children(queryset.model)
        if not found or is_paused(*(spec.model for spec in found)) or queryset.model in _updating.get():
            return update(queryset, **kwargs)
        queryset._for_write = True  # type: ignore[attr-defined]  # as Django's update() does before it reads .db
        query = update_query(queryset, kwargs, queryset.db)  # Django's errors, before any lock
        if query is None:
            return update(queryset, **kwargs)  # matches no row: Django runs nothing
        moves_keys = any(field.primary_key for field, _, _ in query.values)

        def write(keys: list[Any]) -> int:
            # Exactly the rows locked and read: a row entering the filter meanwhile is left alone.
            count = 0
            for start in range(0, len(keys), _IN_CHUNK):
                rows: models.QuerySet[Any] = models.QuerySet(queryset.model, using=queryset.db)
                count += update(rows.filter(pk__in=keys[start : start + _IN_CHUNK]), **kwargs)
            return count

        result: int = _recording_queryset_write(queryset, lambda: _locked_keys(queryset, moves_keys), write)
        return result

    return update_recording_children


def records_bulk_update(bulk_update: Callable[..., int]) -> Callable[..., int]:
    """Decorate ``QuerySet.bulk_update``: the children's rows among the objects are recorded, in one operation.

    Queries, for a model with registered children: per child model, one
    locking SELECT per 900 objects before, the same after for the rows found
    (on PostgreSQL, for all the objects: :func:`_recording`).
    """

    @functools.wraps(bulk_update)
    def bulk_update_recording_children(
        queryset: models.QuerySet[Any],
        objs: Iterable[models.Model],
        fields: Iterable[str],
        batch_size: int | None = None,
    ) -> int:
        objs = list(objs)
        result: int = _recording_queryset_write(
            queryset,
            lambda: [obj.pk for obj in objs],
            lambda _keys: bulk_update(queryset, objs, fields, batch_size=batch_size),
        )
        return result

    return bulk_update_recording_children
