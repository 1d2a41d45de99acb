"""Capture of the QuerySet write paths that send no per-row signals.

At registration every manager of a registered model (its own, the base
manager Django's deletion Collector uses, and so every related manager built
from them) gets a subclass of its QuerySet with :class:`AuditedQuerySet`
mixed in. Unregistered models keep their classes: same code, same queries.

Cost per call, beyond Django's own statements (``B`` = rows / batch size):

* ``update()``: one locking SELECT of the matched rows; one more SELECT of the
  new values only when an expression (``F()``, ``Case``...) was assigned; then
  ``B`` event INSERTs.
* ``bulk_update()``: one locking SELECT per 900 objects, ``B`` event INSERTs.
* ``bulk_create()``: ``B`` event INSERTs; with ``ignore_conflicts`` or
  ``update_conflicts`` also one locking SELECT before and one SELECT after.
* ``delete()``: the Collector's signals, grouped into one operation.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from django.db import NotSupportedError, models, transaction
from django.db.models.fields.related_descriptors import (
    ManyToManyDescriptor,
    ReverseManyToOneDescriptor,
    create_forward_many_to_many_manager,
)

from . import journal, m2m, registry
from .capture import State, deleting, diff, draft, lock_rows, view_event
from .context import capture_paused, is_paused
from .encoding import encode
from .models import Action
from .operations import operation

_IN_CHUNK = 900  # keeps "pk IN (...)" under SQLite's 999 parameters


def _expression(value: Any) -> bool:
    return hasattr(value, "resolve_expression")


class AuditedQuerySet(models.QuerySet[Any]):
    """Mixed into the QuerySet class of every manager of a registered model."""

    def _audit_spec(self) -> registry.ModelSpec | None:
        if is_paused():
            return None
        return registry.spec_for(self.model)

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

    def bulk_update(self, objs: Iterable[models.Model], fields: Iterable[str], batch_size: int | None = None) -> int:
        spec = self._audit_spec()
        objs, fields = list(objs), list(fields)
        if spec is None or not objs:
            return super().bulk_update(objs, fields, batch_size=batch_size)
        with transaction.atomic(using=self.db, savepoint=False), operation():
            pks = [obj.pk for obj in objs]
            before: dict[Any, State] = {}
            for start in range(0, len(pks), _IN_CHUNK):
                before.update(lock_rows(spec, self.db, {"pk__in": pks[start : start + _IN_CHUNK]}))
            with capture_paused():  # Django's bulk_update calls update(): record once, here
                count = super().bulk_update(objs, fields, batch_size=batch_size)
            listed = [f for f in spec.fields if f.name in fields or f.attname in fields]
            news: dict[Any, dict[models.Field[Any, Any], Any]] = {
                obj.pk: {f: getattr(obj, f.attname) for f in listed} for obj in objs
            }
            _record_updates(spec, self.db, before, news)
        return count

    def bulk_create(self, objs: Iterable[models.Model], *args: Any, **kwargs: Any) -> list[Any]:
        spec = self._audit_spec()
        objs = list(objs)
        if spec is None or not objs:
            return super().bulk_create(objs, *args, **kwargs)
        conflicts = kwargs.get("ignore_conflicts") or kwargs.get("update_conflicts")
        key = _conflict_key(spec, objs, kwargs) if conflicts else []
        with transaction.atomic(using=self.db, savepoint=False), operation():
            if conflicts:
                return _bulk_create_with_conflicts(self, spec, objs, key, args, kwargs)
            created = super().bulk_create(objs, *args, **kwargs)
            if any(obj.pk is None for obj in created):
                raise NotSupportedError(
                    f"{spec.label}: this database does not return primary keys from bulk_create(), "
                    "so the rows cannot be recorded; nothing was written."
                )
            states = {obj.pk: m2m.without_links(spec, spec.snapshot(obj)) for obj in created}
            content_type_id = spec.content_type_id()
            drafts = [draft(spec, pk, Action.CREATE, content_type_id, state=state) for pk, state in states.items()]
            journal.write(drafts, self.db)
        return created

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


class _ThroughRows(AuditedQuerySet):
    """Writes of an explicit through model's rows that send no signal (``add()`` is a
    ``bulk_create`` of them) change the links of the rows at their ends:
    :func:`.m2m.through_rows_written` records them; for any other model it does nothing.
    Outside :class:`AuditedQuerySet`, which pauses capture inside its own calls."""

    def bulk_create(self, objs: Iterable[models.Model], *args: Any, **kwargs: Any) -> list[Any]:
        objs = list(objs)
        with m2m.through_rows_written(self, objs):
            return super().bulk_create(objs, *args, **kwargs)

    def bulk_update(self, objs: Iterable[models.Model], fields: Iterable[str], batch_size: int | None = None) -> int:
        objs = list(objs)
        with m2m.through_rows_written(self, objs):
            return super().bulk_update(objs, fields, batch_size=batch_size)

    def update(self, **kwargs: Any) -> int:
        with m2m.through_rows_written(self, assigned=kwargs):
            return super().update(**kwargs)

    update.alters_data = True  # type: ignore[attr-defined]
    bulk_update.alters_data = True  # type: ignore[attr-defined]


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


def _conflict_key(spec: registry.ModelSpec, objs: list[models.Model], kwargs: dict[str, Any]) -> list[str]:
    """The fields that tell, before and after a conflicting insert, which row is which."""
    key = list(kwargs.get("unique_fields") or [])
    if key:
        return key
    if any(obj.pk is None for obj in objs):
        raise NotSupportedError(
            f"{spec.label}: bulk_create(ignore_conflicts=True) on an audited model needs every object's "
            "primary key set (or update_conflicts with unique_fields), so that what happened can be "
            "recorded; nothing was written."
        )
    return ["pk"]


def _bulk_create_with_conflicts(
    queryset: AuditedQuerySet,
    spec: registry.ModelSpec,
    objs: list[models.Model],
    key: list[str],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> list[Any]:
    """``bulk_create`` with ``ignore_conflicts``/``update_conflicts``: record what really happened.

    Rows are matched before and after the insert by the conflict key (the
    ``unique_fields`` given, else the primary key), so a row that was left
    alone records nothing, an inserted one a create and an updated one an update.
    """
    key_fields = [spec.pk_field if name == "pk" else spec.model._meta.get_field(name) for name in key]
    attnames = [f.attname for f in key_fields]  # type: ignore[union-attr]

    def lookup() -> dict[str, Any]:
        if len(attnames) == 1:
            return {f"{attnames[0]}__in": [getattr(o, attnames[0]) for o in objs]}
        query = models.Q()
        for obj in objs:
            query |= models.Q(**{a: getattr(obj, a) for a in attnames})
        return {"pk__in": spec.model._base_manager.filter(query).values("pk")}

    def by_key(rows: dict[Any, State]) -> dict[tuple[Any, ...], tuple[Any, State]]:
        names = [f.name for f in key_fields]
        return {tuple(state[n] for n in names): (pk, state) for pk, state in rows.items()}

    before = by_key(lock_rows(spec, queryset.db, lookup()))
    created = super(AuditedQuerySet, queryset).bulk_create(objs, *args, **kwargs)
    drafts = []
    for row_key, (pk, state) in by_key(lock_rows(spec, queryset.db, lookup())).items():
        if row_key not in before:
            drafts.append(draft(spec, pk, Action.CREATE, state=state))
            continue
        changes = diff(before[row_key][1], state)
        if changes:
            drafts.append(draft(spec, pk, Action.UPDATE, changes=changes, snapshot=state))
    journal.write(drafts, queryset.db)
    return created


# --- installing and removing the audited classes -------------------------

_audited_classes: dict[type[Any], type[Any]] = {}
_swapped: dict[int, tuple[Any, type[Any]]] = {}  # id(manager) -> (manager, original class)


def _audited(cls: type[Any], base: type[Any], suffix: str) -> type[Any]:
    """A subclass of ``cls`` with ``base`` mixed in, importable by name so querysets still pickle."""
    if cls not in _audited_classes:
        name = f"Audited{suffix}_{cls.__module__.replace('.', '_')}_{cls.__qualname__.replace('.', '_')}"
        attrs: dict[str, Any] = {"__module__": __name__, "__qualname__": name}
        if base is models.Manager:
            attrs["_queryset_class"] = _audited(cls._queryset_class, _ThroughRows, "QuerySet")
            new = type(name, (cls,), attrs)
        else:
            new = type(name, (base, cls), attrs)
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
            if isinstance(attr, ManyToManyDescriptor) and (join_free := _join_free_counting(attr)):
                attr.__dict__["related_manager_cls"] = join_free


def _join_free_counting(descriptor: ManyToManyDescriptor[Any]) -> type[Any] | None:
    """A many-to-many manager that counts on the through table alone, as Django's does, audited.

    Django's ``ManyRelatedManager.count()``/``exists()`` skip the JOIN of the
    related table only when the manager is built on ``Manager`` itself
    (``superclass is Manager`` in ``create_forward_many_to_many_manager``), which
    an audited manager class is not. For a related model whose default manager
    was a plain ``Manager``, build it on ``Manager``, with the audited QuerySet.
    """
    related: Any = descriptor.rel.related_model if descriptor.reverse else descriptor.rel.model
    manager = related._default_manager
    swapped = _swapped.get(id(manager))
    if swapped is None or swapped[1] is not models.Manager:
        return None
    plain = create_forward_many_to_many_manager(models.Manager, descriptor.rel, reverse=descriptor.reverse)
    return type(plain.__name__, (plain,), {"_queryset_class": type(manager)._queryset_class})
