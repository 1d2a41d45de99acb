"""Rows of through tables written directly, and an explicit through model's rows however written.

Rows of an explicit through model are written by the relation manager
(``add`` is a ``bulk_create`` of them, ``remove``/``clear`` a
``QuerySet.delete()``) or directly (``Loan.objects.create``, ``loan.save()``,
``QuerySet.delete/update``, ``bulk_create/bulk_update``, ``loaddata``): their
save and delete signals, and :func:`through_rows_written` around the QuerySet
writes, record every such write once on the rows at their owning end, from
the database, as ``m2m_changed`` does for auto-created through tables (and,
if the through model is registered, the rows are recorded as rows of their
own too). ``m2m_changed`` is not used for these: Django's signals for the rows
(and the QuerySet hooks) see every such write once.

The rows of an auto-created through table written directly
(``Book.tags.through.objects.bulk_create(...)``, a save, ``QuerySet.update``,
``delete``) are recorded as an explicit through model's, by the registry's
wrappers of their ``_save_table`` and ``delete`` and :func:`through_rows_written`;
the relation manager's own write is left to ``m2m_changed``
(:func:`.relations.by_relation_manager`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Any

from django.db import connections, models

from .. import registry
from ..context import is_paused
from ..links import Through
from ..operations import operation
from ..transactions import atomic_write
from .changes import LinkChange, current_deletion, deletion_of
from .relations import by_relation_manager


def _ends_of(model: type[models.Model]) -> list[tuple[registry.ModelSpec, Any, Through]]:
    return [(spec, field, Through.of(field)) for spec, field in registry.through_rows(model)]


def _through_paused(model: type[models.Model]) -> bool:
    """:func:`is_paused`, noting the owners whose links a write of through rows of ``model`` changes."""
    return is_paused() and is_paused(*(spec.model for spec, _, _ in _ends_of(model)))


def _rows_by_key(model: type[models.Model], using: str, pks: list[Any]) -> models.QuerySet[Any]:
    """The through rows with these keys, as a plain queryset (the base manager's filters are not the table's)."""
    rows: models.QuerySet[Any] = models.QuerySet(model, using=using)
    return rows.filter(pk__in=pks).order_by()


def through_pre_save(sender: type[models.Model], instance: models.Model, raw: bool, using: str, **kwargs: Any) -> None:
    """A through row is saved, by the ORM or by ``loaddata`` (a raw save): its owners' links change the same."""
    instance.__dict__.pop(_SAVING, None)  # left by a save that failed before post_save
    if not _through_paused(sender):
        instance.__dict__[_SAVING] = _row_change(instance, using)


def _row_change(instance: models.Model, using: str) -> LinkChange:
    """The owners of one through row about to be saved, locked and read: the one it is given,
    and, for a row with a key (a new one may overwrite a stored row), the one the database holds."""
    change = LinkChange(using)
    for spec, field, ends in _ends_of(type(instance)):
        given = {getattr(instance, ends.source.attname)}
        if instance.pk is None:
            change.lock_keys(spec, field, given)
        else:
            change.lock_holders(spec, field, _rows_by_key(type(instance), using, [instance.pk]), given)
    return change


@contextlib.contextmanager
def through_row_restored(instance: models.Model, using: str) -> Iterator[None]:
    """Around restore's write of a row (capture paused): if it is a through row, the links it
    gives back are recorded on the rows declaring them, in the restore's operation."""
    if not registry.through_rows(type(instance)):
        yield
        return
    change = _row_change(instance, using)
    yield
    change.record()


@contextlib.contextmanager
def through_row_saved(instance: models.Model, using: str) -> Iterator[None]:
    """Around the save of a row of an auto-created through table, which sends no signal:
    what :func:`through_pre_save` and :func:`through_post_save` do for an explicit one's."""
    if is_paused():
        yield
        return
    change = _row_change(instance, using)
    yield
    change.record()


def through_post_save(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    change: LinkChange | None = instance.__dict__.pop(_SAVING, None)
    if change is not None:
        change.record()


_SAVING = "_audit_events_links_saving"


def through_pre_delete(sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any) -> None:
    if _through_paused(sender):
        return
    origin = kwargs.get("origin")
    change = deletion_of(origin, using).change
    for spec, field, ends in _ends_of(sender):
        if origin is instance:  # ``row.delete()``: the instance may be stale, the DELETE is by key
            change.lock_holders(spec, field, _rows_by_key(sender, using, [instance.pk]), set())
            continue
        change.lock_keys(spec, field, [getattr(instance, ends.source.attname)])  # read by the Collector
        if not (isinstance(origin, models.QuerySet) and origin.model is sender):
            # A cascade: the Collector read the row unlocked, before its transaction began (a
            # QuerySet.delete() of these rows read them locked, in ours: :func:`through_rows_deleted`).
            change.confirm_holders(spec, field, _rows_by_key(sender, using, [instance.pk]), read_before=True)


def through_post_delete(sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any) -> None:
    current = current_deletion(kwargs.get("origin"))
    if current is not None:
        current.change.record()


def owner_pre_delete(sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any) -> None:
    """A row declaring links is deleted: its delete event holds them, its through rows' deletion records nothing."""
    if not is_paused():
        spec = registry.spec_for(sender)
        if spec is not None:
            deletion_of(kwargs.get("origin"), using).change.deleted.add((spec.model, instance.pk))


@contextlib.contextmanager
def through_rows_written(
    queryset: models.QuerySet[Any],
    objs: Iterable[models.Model] = (),
    assigned: dict[str, Any] | None = None,
    matched: bool = False,
) -> Iterator[models.QuerySet[Any]]:
    """Around a QuerySet write of through rows that sends no signal: record the owners' link changes.

    For ``bulk_create(objs)`` and ``bulk_update(objs, ...)`` pass ``objs``; for
    ``update(**assigned)`` pass ``assigned``; for a ``delete()`` of an
    auto-created through table (Django deletes its rows without signals)
    ``matched``. Yields the queryset to write: for ``update`` and ``delete``
    the rows it matched, locked, and only those (a row that enters the filter
    after they were read is left alone, as if it came after the write);
    otherwise ``queryset``. Any other model, or the write of a relation
    manager's ``add()``/``remove()``/``clear()`` (recorded from
    ``m2m_changed``): nothing, no query.
    Queries: for ``update``/``delete`` one SELECT (locking) of the rows and
    the owner keys they hold (and for an owner assigned by an expression, one
    SELECT of its value); for ``bulk_update`` :meth:`LinkChange.lock_holders`;
    a locking SELECT of the owners and one of their links; one of the links
    after the write; the events at COMMIT.
    """
    links = _ends_of(queryset.model)
    paused = is_paused() and is_paused(*(spec.model for spec, _, _ in links))  # the owners noted when paused
    if not links or paused or _writing.get() or by_relation_manager(queryset.model, queryset.db):
        yield queryset  # bulk_update runs update(): recorded once, by the outer
        return
    using, objs = queryset.db, list(objs)
    token = _writing.set(True)
    try:
        with atomic_write(using), operation():
            change = LinkChange(using)
            written, given, stored = _written_rows(queryset, [ends for _, _, ends in links], objs, assigned, matched)
            for (spec, field, _), keys in zip(links, given, strict=True):
                if stored:
                    change.lock_holders(spec, field, _rows_by_key(queryset.model, using, stored), keys)
                else:
                    change.lock_keys(spec, field, keys)
            yield written
            change.record()
    finally:
        _writing.reset(token)


_writing: ContextVar[bool] = ContextVar("audit_events_through_rows_writing", default=False)


def _written_rows(
    queryset: models.QuerySet[Any],
    links: list[Through],
    objs: list[models.Model],
    assigned: dict[str, Any] | None,
    matched: bool,
) -> tuple[models.QuerySet[Any], list[set[Any]], list[Any]]:
    """The rows a QuerySet write of through rows is to write; for each of ``links`` the owner
    keys they touch that are known now; and the keys of stored rows whose owners are still to
    be read (:meth:`LinkChange.lock_holders`). For ``update()`` and ``delete()``: :func:`_matched_rows`.
    """
    if assigned is None and not matched:
        given = [{getattr(obj, ends.source.attname) for obj in objs} for ends in links]
        return queryset, given, [obj.pk for obj in objs if obj.pk is not None]
    written, keys = _matched_rows(queryset, links, assigned or {})
    return written, keys, []


def _matched_rows(
    queryset: models.QuerySet[Any], links: list[Through], assigned: dict[str, Any]
) -> tuple[models.QuerySet[Any], list[set[Any]]]:
    """The rows an ``update(**assigned)`` or ``delete()`` of ``queryset`` is to write, and for each
    of ``links`` the owner keys they hold and those ``assigned`` gives them.

    Where rows are locked, they are locked as they are read and the write is narrowed to them
    (the filter still applies): under READ COMMITTED the statement would run its filter again,
    and could move a row committed after this read, whose owner no one locked. The owners
    ``update()`` assigns are known too, an expression's from the database (the rows locked, it
    gives what the UPDATE will).
    """
    queryset, held = _locked(queryset, [ends.source.attname for ends in links])
    pks = [pk for pk, *_ in held]
    keys = [{row[index] for row in held} for index in range(1, len(links) + 1)]
    for found, ends in zip(keys, links, strict=True):
        found.update(_assigned_keys(queryset, pks, ends, assigned))
    return queryset, keys


def _locked(queryset: models.QuerySet[Any], columns: list[str]) -> tuple[models.QuerySet[Any], list[tuple[Any, ...]]]:
    """The rows ``queryset`` matches, locked where rows are, as the keys and ``columns`` they hold;
    and ``queryset`` narrowed to them (its filter still applies): under READ COMMITTED a write
    would run its filter again, and could take a row committed after this read. One SELECT."""
    if queryset.query.is_sliced or not connections[queryset.db].features.has_select_for_update:
        return queryset, list(queryset.values_list("pk", *columns))
    # Of a plain queryset: DISTINCT, GROUP BY or a join would make FOR UPDATE fail or lock more.
    plain: models.QuerySet[Any] = models.QuerySet(queryset.model, using=queryset.db)
    rows = plain.filter(pk__in=queryset.order_by().values("pk")).select_for_update()
    held = list(rows.values_list("pk", *columns))
    return queryset.filter(pk__in=[pk for pk, *_ in held]), held


@contextlib.contextmanager
def through_rows_deleted(queryset: models.QuerySet[Any]) -> Iterator[models.QuerySet[Any]]:
    """Around a ``QuerySet.delete()`` of an explicit through model's rows (``remove()``, ``clear()``
    included): yields the rows to delete, locked first (one SELECT, where rows are locked), in a
    transaction begun before Django's Collector reads them, so that the owners they hold when it
    reads them (:func:`through_pre_delete`) are those they hold when they are deleted. Any
    other model: nothing, no query."""
    if not registry.through_rows(queryset.model) or queryset.model._meta.auto_created or is_paused():
        yield queryset
        return
    with atomic_write(queryset.db):  # on SQLite, the database's lock: begun IMMEDIATE, before the read
        yield _locked(queryset, [])[0] if connections[queryset.db].features.has_select_for_update else queryset


def _assigned_keys(queryset: models.QuerySet[Any], pks: list[Any], ends: Through, assigned: dict[str, Any]) -> set[Any]:
    """The owner keys ``update(**assigned)`` gives the rows ``pks`` of ``queryset``; an
    expression's as the database evaluates it for them (one SELECT), the rows locked."""
    keys = set()
    for name in (ends.source.name, ends.source.attname):
        if name not in assigned:
            continue
        value = assigned[name]
        if isinstance(value, models.Model):
            keys.add(getattr(value, ends.owner_key))
        elif hasattr(value, "resolve_expression"):
            owners = queryset.filter(pk__in=pks).annotate(_audit_events_owner=value)
            keys.update(owners.order_by().values_list("_audit_events_owner", flat=True))
        else:
            keys.add(value)
    return keys
