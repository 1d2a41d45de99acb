"""The one module that patches Django: what makes the registered models' writes recorded.

:func:`sync` makes the patches match ``AUDIT_EVENTS`` (``apps.py`` calls it
when the app is ready and whenever the setting changes, as
``override_settings`` does); each patch it installs it removes again when no
registered model needs it. Registering a model connects its signals (per
sender, so unregistered models keep Django's fast delete path and pay
nothing), makes its ``save_base`` atomic, lets the UPDATE and INSERT of its
saves return the rows they write (``capture.do_update``,
``capture.do_insert``), groups each ``delete()`` into one operation and
records its QuerySet writes (``querysets.install``); unregistering undoes
exactly that. Each patch's comment names the Django behaviour it relies on.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.core.serializers.base import DeserializedObject
from django.db import models, router
from django.db.models import signals
from django.db.models.sql import UpdateQuery
from django.db.models.sql.constants import GET_ITERATOR_CHUNK_SIZE

from . import capture, inheritance, m2m, querysets, registry
from .context import is_paused
from .operations import operation
from .registry import ModelSpec, ModelType, family
from .transactions import atomic_write, immediate

# The methods a patched model had in its own __dict__ (None: inherited), by model: registered
# models; unregistered explicit or auto-created through models; unregistered deleting parents.
_wrapped: dict[ModelType, dict[str, Callable[..., Any] | None]] = {}
_through_wrapped: dict[ModelType, dict[str, Callable[..., Any] | None]] = {}
_parents_wrapped: dict[ModelType, dict[str, Callable[..., Any] | None]] = {}


def sync() -> None:
    """Make the registry and the patches match the current setting."""
    wanted = registry.wanted()
    _unwire_inheritance()  # first: it wraps the save_base that registering snapshots
    _restore_all(_parents_wrapped)  # first: a parent may be registered now, and must not be torn down after
    _restore_all(_through_wrapped)  # the same
    _disconnect_links()
    for model in [m for m in _wrapped if m not in wanted]:
        _unregister(model)
    for model, spec in wanted.items():
        if model in _wrapped:
            _unregister(model)
        _register(spec)
    registry.rebuild(list(wanted.values()))
    _connect_links()
    _wrap_deleting_parents()
    _wire_inheritance()  # writes through the parents of registered multi-table children
    _wrap_through_models()
    recorded = bool(registry.registered_specs() or registry.through_models())
    # DeserializedObject.save() (loaddata) calls models.Model.save_base() itself, past the model's own.
    DeserializedObject.save = _atomic_deserialized_save if recorded else _django_deserialized_save  # type: ignore[method-assign]


def _uid(signal_name: str, model: ModelType) -> str:
    return f"audit_events.{signal_name}.{model._meta.label_lower}"


def _patch(model: ModelType, saved: dict[str, Callable[..., Any] | None], name: str, method: Any) -> None:
    """Set ``model.<name>``, keeping what the model's own ``__dict__`` had (None: inherited)."""
    saved[name] = model.__dict__.get(name)
    setattr(model, name, method)


def _restore(model: ModelType, saved: dict[str, Callable[..., Any] | None]) -> None:
    for name, original in saved.items():
        if original is None:
            delattr(model, name)
        else:
            setattr(model, name, original)


def _restore_all(wrapped: dict[ModelType, dict[str, Callable[..., Any] | None]]) -> None:
    for model, saved in list(wrapped.items()):
        for sender in family(model):
            _plain_querysets(sender)
        _restore(model, saved)
    wrapped.clear()


# --- registered models ---------------------------------------------------------------


def _register(spec: ModelSpec) -> None:
    model = spec.model
    registry.add(spec)
    for sender in family(model):
        # Django sends the model signals with the instance's class, a proxy too: one receiver per sender.
        signals.pre_save.connect(capture.pre_save, sender=sender, dispatch_uid=_uid("pre_save", sender))
        signals.post_save.connect(capture.post_save, sender=sender, dispatch_uid=_uid("post_save", sender))
        signals.pre_delete.connect(capture.pre_delete, sender=sender, dispatch_uid=_uid("pre_delete", sender))
        signals.post_delete.connect(capture.post_delete, sender=sender, dispatch_uid=_uid("post_delete", sender))
        _audit_querysets(sender)
    saved = _wrapped[model] = {}
    # Model.save() writes through save_base(), which calls _do_update()/_do_insert() per table
    # (Model._save_table); Model.delete() runs the Collector.
    _patch(model, saved, "save_base", _atomic_save_base(model.save_base))
    _patch(model, saved, "_do_update", _returning(model._do_update, capture.do_update))
    _patch(model, saved, "_do_insert", _returning(model._do_insert, capture.do_insert))  # type: ignore[attr-defined]
    _patch(model, saved, "delete", _one_operation(model.delete))


def _unregister(model: ModelType) -> None:
    for sender in family(model):
        _plain_querysets(sender)
        signals.pre_save.disconnect(sender=sender, dispatch_uid=_uid("pre_save", sender))
        signals.post_save.disconnect(sender=sender, dispatch_uid=_uid("post_save", sender))
        signals.pre_delete.disconnect(sender=sender, dispatch_uid=_uid("pre_delete", sender))
        signals.post_delete.disconnect(sender=sender, dispatch_uid=_uid("post_delete", sender))
    registry.remove(model)
    _restore(model, _wrapped.pop(model))


def _atomic_save_base(save_base: Callable[..., Any]) -> Callable[..., Any]:
    """Make one transaction of the save and its event.

    Django sends ``pre_save``/``post_save`` outside its own transaction; without
    this, a failing event insert in autocommit mode would leave the write
    committed and unrecorded. A save that fails between the two signals
    leaves nothing for a later save of the instance (``capture.handoffs``).
    """

    @functools.wraps(save_base)
    def atomic_save_base(self: models.Model, *args: Any, **kwargs: Any) -> Any:
        if not registry.recorded(type(self)):
            return save_base(self, *args, **kwargs)
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        depth = capture.handoff_depth(self)
        try:
            with atomic_write(using):
                return save_base(self, *args, **kwargs)
        finally:
            capture.forget_handoffs(self, depth)

    return atomic_save_base


_django_deserialized_save = DeserializedObject.save


def _atomic_deserialized_save(
    self: DeserializedObject, save_m2m: bool = True, using: str | None = None, **kwargs: Any
) -> None:
    """``DeserializedObject.save()`` (``loaddata``, or a deserialized object saved by hand): it calls
    ``models.Model.save_base`` itself, past the model's own (:func:`_atomic_save_base`), so outside a
    transaction the save and its event would not be one; for a recorded model, they are made one here."""
    model = type(self.object)
    if not registry.recorded(model):
        return _django_deserialized_save(self, save_m2m, using, **kwargs)
    depth = capture.handoff_depth(self.object)
    try:
        with atomic_write(using or router.db_for_write(model, instance=self.object)):
            return _django_deserialized_save(self, save_m2m, using, **kwargs)
    finally:
        capture.forget_handoffs(self.object, depth)


def _returning(method: Callable[..., Any], capture: Callable[..., Any]) -> Callable[..., Any]:
    """Let the UPDATE or INSERT of a save (``Model._do_update``/``_do_insert``) return the rows it
    writes (``capture.do_update``/``do_insert``). A registered child inherits its registered
    parent's wrapper and wraps it again: the inner one does the work (``audit_events_wrapper``)."""

    @functools.wraps(method)
    def returning(self: models.Model, *args: Any, **kwargs: Any) -> Any:
        return capture(method, self, *args, **kwargs)

    returning.audit_events_wrapper = True  # type: ignore[attr-defined]
    return returning


def _one_operation(delete: Callable[..., Any]) -> Callable[..., Any]:
    """Group everything one ``delete()`` writes (cascades, SET_NULL updates) into one operation,
    whose DELETE statements return the rows they delete (``capture.deleting``)."""

    @functools.wraps(delete)
    def delete_in_one_operation(self: models.Model, *args: Any, **kwargs: Any) -> Any:
        if not registry.groups_deletes(type(self)):
            return delete(self, *args, **kwargs)
        using = kwargs.get("using") or (args[0] if args else None) or router.db_for_write(type(self), instance=self)
        with immediate(using), operation(), capture.deleting():
            return delete(self, *args, **kwargs)

    return delete_in_one_operation


# --- many-to-many fields -------------------------------------------------------------


def _link_receivers() -> list[tuple[Any, list[ModelType], Callable[..., Any], str]]:
    """Each (signal, senders, receiver, uid name) recording the links of the registered many-to-many fields:
    ``m2m_changed`` per auto-created through model, the deletes of the models they point at, the save and
    delete signals of explicit through models (whose rows are written directly too; an auto-created one's
    deletes have none, so that Django keeps deleting its rows without reading them), the deletes of the
    owners of explicit through rows."""
    throughs = registry.through_models()
    explicit = [model for model in throughs if not model._meta.auto_created]
    return [
        (signals.m2m_changed, registry.auto_throughs(), m2m.m2m_changed, "m2m_changed"),
        (signals.pre_delete, registry.link_targets(), m2m.target_pre_delete, "m2m_target_pre"),
        (signals.post_delete, registry.link_targets(), m2m.target_post_delete, "m2m_target_post"),
        (signals.pre_save, throughs, m2m.through_pre_save, "through_through_pre_save"),
        (signals.post_save, throughs, m2m.through_post_save, "through_through_post_save"),
        (signals.pre_delete, explicit, m2m.through_pre_delete, "through_through_pre_delete"),
        (signals.post_delete, explicit, m2m.through_post_delete, "through_through_post_delete"),
        (signals.pre_delete, registry.link_owners(), m2m.owner_pre_delete, "link_owner_pre"),
    ]


def _connect_links() -> None:
    for signal, senders, receiver, name in _link_receivers():
        for sender in senders:
            signal.connect(receiver, sender=sender, dispatch_uid=_uid(name, sender))


def _disconnect_links() -> None:
    for signal, senders, _receiver, name in _link_receivers():
        for sender in senders:
            signal.disconnect(sender=sender, dispatch_uid=_uid(name, sender))


def _wrap_through_models() -> None:
    """An unregistered explicit through model's save is one transaction with its events, and its
    deletes and QuerySet writes are recorded (``m2m``), as a registered model's."""
    for model in {m._meta.concrete_model for m in registry.through_models()}:
        assert model is not None
        if model in _wrapped:
            continue
        saved = _through_wrapped[model] = {}
        _patch(model, saved, "save_base", _atomic_save_base(model.save_base))
        if model._meta.auto_created:
            _patch(model, saved, "_save_table", _saving_links(model._save_table))  # type: ignore[attr-defined]
            _patch(model, saved, "delete", _deleting_links(model.delete))
        elif model not in _parents_wrapped:  # else its delete is one operation already
            _patch(model, saved, "delete", _one_operation(model.delete))
        for sender in family(model):
            _audit_querysets(sender)


def _saving_links(save_table: Callable[..., Any]) -> Callable[..., Any]:
    """The write of a saved row of an auto-created through table: Django sends it no
    ``pre_save``/``post_save`` (``Model.save_base`` skips them for auto-created models), and
    ``loaddata`` calls ``Model.save_base`` itself, past the model's own; both call the
    instance's ``_save_table`` (``Model._save_table(raw, cls, force_insert, force_update,
    using, update_fields)``). The links it changes are recorded as for an explicit through
    model's row, in the save's transaction."""

    @functools.wraps(save_table)
    def save_recording_links(self: models.Model, *args: Any, **kwargs: Any) -> Any:
        using = kwargs["using"] if "using" in kwargs else args[4]
        with atomic_write(using), m2m.through_row_saved(self, using):
            return save_table(self, *args, **kwargs)

    return save_recording_links


def _deleting_links(delete: Callable[..., Any]) -> Callable[..., Any]:
    """``row.delete()`` of an auto-created through table: Django deletes it by key, without a
    signal; the owners' links it changes are recorded as for a ``QuerySet.delete()`` of it."""

    @functools.wraps(delete)
    def delete_recording_links(self: models.Model, *args: Any, **kwargs: Any) -> Any:
        using = kwargs.get("using") or (args[0] if args else None) or router.db_for_write(type(self), instance=self)
        row: models.QuerySet[Any] = models.QuerySet(type(self), using=using)
        with m2m.through_rows_written(row.filter(pk=self.pk), matched=True):
            return delete(self, *args, **kwargs)

    return delete_recording_links


# --- unregistered models whose deletes reach registered rows ---------------------------


def _wrap_deleting_parents() -> None:
    """Their ``delete()`` is one operation and their QuerySets are audited, as a registered model's
    (``registry.deleting_parents``); nothing else of theirs is recorded."""
    for model in registry.deleting_parents():
        if model in _wrapped:
            continue
        _patch(model, _parents_wrapped.setdefault(model, {}), "delete", _one_operation(model.delete))
        for sender in family(model):
            _audit_querysets(sender)


# --- models whose writes reach registered multi-table children -------------------------

_inheritance_wrapped: dict[ModelType, dict[str, Callable[..., Any] | None]] = {}
_inheritance_querysets: list[ModelType] = []  # models given audited QuerySets for their children only


def _wire_inheritance() -> None:
    """Wrap the ``save_base`` and hook the QuerySets of every model with registered children
    (``inheritance``). Django's Model.save() writes every table through save_base(): wrapping it there
    sees every save of the model and its proxies (those of a registered model too, over its own
    wrapper). loaddata calls Model.save_base() itself: the signals connected here see those."""
    for model in inheritance.find_children(registry.registered_specs()):
        _patch(
            model,
            _inheritance_wrapped.setdefault(model, {}),
            "save_base",
            inheritance.recording_save_base(model.save_base),
        )
        for sender in family(model):
            signals.pre_save.connect(
                inheritance.raw_pre_save, sender=sender, dispatch_uid=_uid("inheritance.pre_save", sender)
            )
            signals.post_save.connect(
                inheritance.raw_post_save, sender=sender, dispatch_uid=_uid("inheritance.post_save", sender)
            )
        if registry.spec_for(model) is None and not registry.groups_deletes(model):
            _inheritance_querysets.append(model)
            for sender in family(model):
                _audit_querysets(sender)


def _unwire_inheritance() -> None:
    for model, saved in _inheritance_wrapped.items():
        _restore(model, saved)
        for sender in family(model):
            signals.pre_save.disconnect(sender=sender, dispatch_uid=_uid("inheritance.pre_save", sender))
            signals.post_save.disconnect(sender=sender, dispatch_uid=_uid("inheritance.post_save", sender))
    for model in _inheritance_querysets:
        for sender in family(model):
            _plain_querysets(sender)
    _inheritance_wrapped.clear()
    _inheritance_querysets.clear()
    inheritance.forget_children()


# --- QuerySet writes ----------------------------------------------------------------------

_audited: set[ModelType] = set()  # models (and proxies) whose QuerySet writes are recorded or grouped


def _audit_querysets(model: ModelType) -> None:
    """Record the QuerySet writes of ``model`` (a registered model, or one whose deletes reach them).

    Django's managers, every QuerySet subclass (through ``super()``) and the
    related managers built from them look ``update``, ``delete``,
    ``bulk_create`` and ``bulk_update`` up on ``django.db.models.QuerySet``
    at call time (``BaseManager._get_queryset_methods`` copies them by name):
    wrapping them there, once, reaches every queryset of the model whatever
    class built it. The wrappers go while no model needs them.
    """
    if not _audited:
        for name in querysets.django_method:
            setattr(models.QuerySet, name, _queryset_method(name))
        UpdateQuery.update_batch = _update_batch  # type: ignore[method-assign]
    _audited.add(model)


def _plain_querysets(model: ModelType) -> None:
    _audited.discard(model)
    if not _audited:
        for name, original in querysets.django_method.items():
            setattr(models.QuerySet, name, original)
        UpdateQuery.update_batch = _django_update_batch  # type: ignore[method-assign]


def _queryset_method(name: str) -> Callable[..., Any]:
    original, audited = querysets.django_method[name], getattr(querysets.AuditedQuerySet, name)

    @functools.wraps(original)  # keeps alters_data and queryset_only, which managers read
    def method(self: models.QuerySet[Any], *args: Any, **kwargs: Any) -> Any:
        if self.model not in _audited or is_paused(self.model):  # one lookup for an unregistered model
            return original(self, *args, **kwargs)
        capture.record_finished_saves()  # a save whose post_save has not come yet wrote before this
        return audited(self, *args, **kwargs)

    return method


_django_update_batch = UpdateQuery.update_batch


def _update_batch(self: UpdateQuery, pk_list: list[Any], values: dict[str, Any], using: str) -> None:
    """``UpdateQuery.update_batch``, which Django's Collector calls to set the foreign keys of rows it has
    loaded (``on_delete=SET(callable)``, whose rows Django reads before it deletes): for a model whose
    QuerySet writes are recorded, the same UPDATEs by key through ``QuerySet.update()``, so recorded."""
    if self.model not in _audited or is_paused(self.model):
        return _django_update_batch(self, pk_list, values, using)
    rows = self.model._base_manager.using(using)
    for offset in range(0, len(pk_list), GET_ITERATOR_CHUNK_SIZE):
        rows.filter(pk__in=pk_list[offset : offset + GET_ITERATOR_CHUNK_SIZE]).update(**values)
    return None
