"""Capture of the QuerySet write paths that send no per-row signals.

While any model is registered, ``update()``, ``delete()``, ``bulk_create()``
and ``bulk_update()`` of Django's ``QuerySet`` itself are wrapped (:func:`install`),
so every queryset records its writes whatever class built it: a manager's
own QuerySet class, a subclass overriding these methods (it reaches them
through ``super()``), a related manager, the managers ``apps.clear_cache()``
rebuilds. Unregistered models pay one dict lookup and no query.

Every recorded value comes from the database's own answer for the statement
that wrote it, and the rows recorded are exactly the rows it changed:

* ``update()`` on PostgreSQL is one statement,
  ``UPDATE t SET ... FROM (SELECT ... FROM t WHERE <filter> FOR NO KEY UPDATE) AS old
  WHERE t.pk = old.pk RETURNING old.*, t.pk, t.<columns written>``: the subquery
  locks the rows and re-checks the filter on the newest version of each, and
  returns it as it was; RETURNING gives the values written (the other columns
  are as the subquery read them, under the same lock). Elsewhere (SQLite, where the lock
  is the database's; multi-table models; composite keys) the rows are read
  first, then ``UPDATE ... RETURNING`` gives the new values, or they are read
  again after the UPDATE, in the same transaction.

Cost per call, beyond Django's own statements (``B`` = rows / batch size):

* ``update()``: on PostgreSQL nothing (the UPDATE returns old and new rows);
  elsewhere one SELECT of the old rows first (and for multi-table models
  one more after); then ``B`` event INSERTs.
* ``bulk_update()`` and ``bulk_create()``: see ``bulk``.
* ``delete()``: the Collector's signals, grouped into one operation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import models, router

from . import bulk, inheritance, journal, m2m, registry, statement_events, updates
from .handoffs import deleting
from .journal import Draft
from .models import Action
from .operations import operation
from .rows import row_state
from .transactions import atomic_write, immediate

# django.db.models.sql.UpdateQuery (its stubs lack ``values`` and ``related_updates``)
UpdateQuery = Any


def _records_links(method: Callable[..., Any]) -> Callable[..., Any]:
    """Writes of an explicit through model's rows send no signal (``add()`` is a ``bulk_create``
    of them), yet change the links of the rows at their ends: :func:`.m2m.through_rows_written`
    records them, around the whole ``bulk_create(objs, ...)``/``bulk_update(objs, ...)`` call;
    for any other model it does nothing, with no query."""

    @functools.wraps(method)
    def recording_links(self: Any, objs: Iterable[models.Model], *args: Any, **kwargs: Any) -> Any:
        objs = list(objs)
        with m2m.through_rows_written(self, objs):
            return method(self, objs, *args, **kwargs)

    return recording_links


def _records_updated_links(update: Callable[..., int]) -> Callable[..., int]:
    """:func:`_records_links` for ``update(**assigned)``: it runs on the through rows locked."""

    @functools.wraps(update)
    def recording_links(self: Any, **kwargs: Any) -> int:
        with m2m.through_rows_written(self, assigned=kwargs) as rows:
            return update(rows, **kwargs)

    return recording_links


class AuditedQuerySet:
    """The write methods of a registered model's querysets, whatever their class.

    Called by the wrappers :func:`install` puts on ``QuerySet`` with the
    queryset as ``self``; Django's own methods are :data:`django_method`.
    """

    @_records_updated_links
    @inheritance.records_update
    def update(self: Any, **kwargs: Any) -> int:
        spec = registry.spec_for(self.model)
        if spec is None:
            count: int = django_method["update"](self, **kwargs)
            return count
        self._for_write = True  # as Django's update() does before it reads self.db (a router's write database)
        using = self.db
        query = updates.update_query(self, kwargs, using)  # raises what Django raises, before anything is opened
        if query is None or (not query.values and not query.related_updates):
            count = django_method["update"](self, **kwargs)
            return count
        with atomic_write(using), operation():
            count, changes = updates.updated_rows(spec, self, query, kwargs, using, django_method["update"])
            updates.record_updates(spec, using, changes)
        return count

    @_records_links
    @inheritance.records_bulk_update
    def bulk_update(
        self: Any, objs: Iterable[models.Model], fields: Iterable[str], batch_size: int | None = None
    ) -> int:
        spec = registry.spec_for(self.model)
        update = functools.partial(django_method["bulk_update"], self)
        if spec is None:
            count: int = update(objs, fields, batch_size=batch_size)
            return count
        return bulk.bulk_update(spec, self, update, objs, fields, batch_size)

    @_records_links
    def bulk_create(self: Any, objs: Iterable[models.Model], *args: Any, **kwargs: Any) -> list[Any]:
        spec = registry.spec_for(self.model)
        if spec is None:
            created: list[Any] = django_method["bulk_create"](self, objs, *args, **kwargs)
            return created
        # A clone of the call's own, whose INSERTs ``bulk.creating`` takes.
        clone = self._chain()
        with bulk.creating(spec, clone):
            created = django_method["bulk_create"](clone, objs, *args, **kwargs)
        return created

    def delete(self: Any) -> tuple[int, dict[str, int]]:
        deleted: tuple[int, dict[str, int]]
        if self.model._meta.auto_created and registry.through_rows(self.model):
            # Django deletes these rows without signals (it has no receivers for them to call).
            with m2m.through_rows_written(self, matched=True) as rows:
                deleted = django_method["delete"](rows)
            return deleted
        if not registry.groups_deletes(self.model):
            deleted = django_method["delete"](self)
            return deleted
        using = self._db or router.db_for_write(self.model, **self._hints)
        if (in_statement := _deleted_in_statement(self, using)) is not None:
            return in_statement
        with m2m.through_rows_deleted(self) as rows, immediate(using), operation(), deleting():
            deleted = django_method["delete"](rows)
        return deleted


def _deleted_in_statement(queryset: models.QuerySet[Any], using: str) -> tuple[int, dict[str, int]] | None:
    """``queryset.delete()`` as one statement that deletes the rows and inserts their events, where
    Django would fast-delete them but for this app (``statement_events``); ``None`` elsewhere."""
    spec = registry.spec_for(queryset.model)
    if spec is None or not statement_events.deletes_in_statement(spec, queryset, using):
        return None
    with atomic_write(using), operation():
        try:
            rows = updates.Rows(spec, queryset.order_by(), using, ())  # its locking SELECT: in the transaction
        except EmptyResultSet:  # a filter that can match nothing (pk__in=[]): Django deletes nothing either
            return 0, {}
        sql = statement_events.delete_statement(spec, rows)
        count, left = statement_events.run(rows, sql, list(rows.params), using, "delete")
        drafts = [
            Draft.of(spec, rows.key(row), Action.DELETE, state=row_state(spec, row)) for row in rows.convert(left)
        ]
        journal.write(drafts, using)
    queryset._result_cache = None
    return count, ({queryset.model._meta.label: count} if count else {})  # as Django's fast delete counts


# --- Django's own methods (``wiring`` puts the audited ones in their place) -------------

# Django's own methods, as the QuerySet class defines them.
_WRAPPED = ("update", "delete", "bulk_create", "bulk_update")
django_method: dict[str, Callable[..., Any]] = {name: vars(models.QuerySet)[name] for name in _WRAPPED}
