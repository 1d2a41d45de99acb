"""Capture of the QuerySet write paths that send no per-row signals.

At registration every manager of a registered model (its own, the base
manager Django's deletion Collector uses, and so every related manager built
from them) gets a subclass of its QuerySet with :class:`AuditedQuerySet`
mixed in. Unregistered models keep their classes: same code, same queries.

Cost per call, beyond Django's own statements (``B`` = rows / batch size):

* ``update()``: one locking SELECT of the matched rows; one more SELECT of the
  new values only when an expression (``F()``, ``Case``...) was assigned; then
  ``B`` event INSERTs.
* ``bulk_update()`` and ``bulk_create()``: see ``bulk``.
* ``delete()``: the Collector's signals, grouped into one operation.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from django.db import models, transaction
from django.db.models.fields.related_descriptors import ReverseManyToOneDescriptor

from . import bulk, inheritance, journal, registry
from .capture import State, deleting, lock_rows, view_event
from .context import is_paused
from .encoding import encode
from .operations import operation


def _expression(value: Any) -> bool:
    return hasattr(value, "resolve_expression")


class AuditedQuerySet(models.QuerySet[Any]):
    """Mixed into the QuerySet class of every manager of a registered model."""

    def _audit_spec(self) -> registry.ModelSpec | None:
        if is_paused():
            return None
        return registry.spec_for(self.model)

    @inheritance.records_update
    def update(self, **kwargs: Any) -> int:
        spec = self._audit_spec()
        if spec is None:
            return super().update(**kwargs)
        with transaction.atomic(using=self.db, savepoint=False), operation():
            before = lock_rows(spec, self.db, {"pk__in": self.values("pk")})
            count = super().update(**kwargs)
            fields = {name: spec.field(name) or _field_by_attname(spec, name) for name in kwargs}
            tracked = {field: kwargs[name] for name, field in fields.items() if field is not None}
            _record_updates(spec, self.db, before, dict.fromkeys(before, tracked))
        return count

    @inheritance.records_bulk_update
    def bulk_update(self, objs: Iterable[models.Model], fields: Iterable[str], batch_size: int | None = None) -> int:
        spec = self._audit_spec()
        if spec is None:
            return super().bulk_update(objs, fields, batch_size=batch_size)
        return bulk.bulk_update(spec, self, super().bulk_update, objs, fields, batch_size)

    def bulk_create(self, objs: Iterable[models.Model], *args: Any, **kwargs: Any) -> list[Any]:
        spec = self._audit_spec()
        if spec is None:
            return super().bulk_create(objs, *args, **kwargs)
        # A clone of the call's own, whose INSERTs ``bulk.creating`` takes.
        clone = self._chain()  # type: ignore[attr-defined]
        with bulk.creating(spec, clone):
            return super(AuditedQuerySet, clone).bulk_create(objs, *args, **kwargs)

    def delete(self) -> tuple[int, dict[str, int]]:
        if is_paused() or not registry.groups_deletes(self.model):
            return super().delete()
        with operation(), deleting():
            return super().delete()

    # Django marks these so managers do not copy them; keep it so.
    update.alters_data = True  # type: ignore[attr-defined]
    bulk_update.alters_data = True  # type: ignore[attr-defined]
    delete.alters_data = True  # type: ignore[attr-defined]
    delete.queryset_only = True  # type: ignore[attr-defined]


def _field_by_attname(spec: registry.ModelSpec, attname: str) -> models.Field[Any, Any] | None:
    return next((f for f in spec.fields if f.attname == attname), None)


def _record_updates(
    spec: registry.ModelSpec,
    using: str,
    before: dict[Any, State],
    assigned: dict[Any, dict[models.Field[Any, Any], Any]],
) -> None:
    """Write update events for the rows in ``before`` whose tracked values really changed.

    ``assigned`` maps each pk to the values written to it. Values that are
    expressions are read back in one SELECT: only the database knows them.
    """
    needs_reading = {f for values in assigned.values() for f, value in values.items() if _expression(value)}
    fresh: dict[Any, dict[str, Any]] = {}
    if needs_reading:
        pk_name = spec.pk_field.attname
        rows = spec.model._base_manager.using(using).filter(pk__in=list(before))
        fresh = {v[pk_name]: v for v in rows.values(pk_name, *(f.attname for f in needs_reading))}
    views = [(view, view.content_type_id()) for view in [spec, *registry.parent_specs(spec)]]
    drafts = []
    for pk, old in before.items():
        new = dict(old)
        for field, value in assigned.get(pk, {}).items():
            if field in needs_reading:
                value = fresh[pk][field.attname]
            elif isinstance(value, models.Model):
                value = value.pk
            new[field.name] = encode(field, value)
        for view, content_type_id in views:  # the row, and the same row under its registered multi-table parents
            if event := view_event(view, pk, old, new, content_type_id):
                drafts.append(event)
    journal.write(drafts, using)


# --- installing and removing the audited classes -------------------------

_audited_classes: dict[type[Any], type[Any]] = {}
_swapped: dict[int, tuple[Any, type[Any]]] = {}  # id(manager) -> (manager, original class)


def _audited(cls: type[Any], base: type[Any], suffix: str) -> type[Any]:
    """A subclass of ``cls`` with ``base`` mixed in, importable by name so querysets still pickle."""
    if cls not in _audited_classes:
        name = f"Audited{suffix}_{cls.__module__.replace('.', '_')}_{cls.__qualname__.replace('.', '_')}"
        attrs: dict[str, Any] = {"__module__": __name__, "__qualname__": name}
        if base is models.Manager:
            attrs["_queryset_class"] = _audited(cls._queryset_class, AuditedQuerySet, "QuerySet")
            new = type(name, (cls,), attrs)
        else:
            new = type(name, (AuditedQuerySet, cls), attrs)
        setattr(sys.modules[__name__], name, new)
        _audited_classes[cls] = new
    return _audited_classes[cls]


def _managers(model: type[models.Model]) -> list[models.Manager[Any]]:
    opts = model._meta
    return list({id(m): m for m in [*opts.managers, opts.base_manager]}.values())


def install(model: type[models.Model]) -> None:
    """Give every manager of ``model`` an audited QuerySet class."""
    for manager in _managers(model):
        if id(manager) not in _swapped:
            _swapped[id(manager)] = (manager, type(manager))
            manager.__class__ = _audited(type(manager), models.Manager, "Manager")


def uninstall(model: type[models.Model]) -> None:
    for manager in _managers(model):
        swapped = _swapped.pop(id(manager), None)
        if swapped is not None:
            manager.__class__ = swapped[1]


def forget_related_managers() -> None:
    """Related managers (``author.books``) are built once from the default manager's class: rebuild them.

    Called once after the registry installed or removed audited managers.
    """
    from django.apps import apps

    for model in apps.get_models():
        for attr in vars(model).values():
            if isinstance(attr, ReverseManyToOneDescriptor):
                attr.__dict__.pop("related_manager_cls", None)
