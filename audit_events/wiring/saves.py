"""The registered models' saves and deletes; the deletes of unregistered models that reach registered rows."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.core.serializers.base import DeserializedObject
from django.db import models, router
from django.db.models import signals
from django.dispatch import Signal

from .. import capture, handoffs, registry, single_statement
from ..operations import operation
from ..registry import ModelSpec, ModelType, family
from ..transactions import atomic_write, immediate
from .base import Saved, patch, restore, uid
from .queryset_methods import audit_querysets, plain_querysets

# The methods each patched model had: registered models; unregistered cascade sources.
wrapped: dict[ModelType, Saved] = {}
sources_wrapped: dict[ModelType, Saved] = {}


def register(spec: ModelSpec) -> None:
    model = spec.model
    registry.add(spec)
    for sender in family(model):
        # Django sends the model signals with the instance's class, a proxy too: one receiver per sender.
        signals.pre_save.connect(capture.pre_save, sender=sender, dispatch_uid=uid("pre_save", sender))
        signals.post_save.connect(capture.post_save, sender=sender, dispatch_uid=uid("post_save", sender))
        signals.pre_delete.connect(capture.pre_delete, sender=sender, dispatch_uid=uid("pre_delete", sender))
        signals.post_delete.connect(capture.post_delete, sender=sender, dispatch_uid=uid("post_delete", sender))
        audit_querysets(sender)
    saved = wrapped[model] = {}
    # Model.save() writes through save_base(), which calls _do_update()/_do_insert() per table
    # (Model._save_table); Model.delete() runs the Collector.
    patch(model, saved, "save_base", atomic_save_base(model.save_base))
    patch(model, saved, "_do_update", _returning(model._do_update, capture.do_update))
    patch(model, saved, "_do_insert", _returning(model._do_insert, capture.do_insert))  # type: ignore[attr-defined]
    patch(model, saved, "delete", one_operation(model.delete))


def unregister(model: ModelType) -> None:
    for sender in family(model):
        plain_querysets(sender)
        signals.pre_save.disconnect(sender=sender, dispatch_uid=uid("pre_save", sender))
        signals.post_save.disconnect(sender=sender, dispatch_uid=uid("post_save", sender))
        signals.pre_delete.disconnect(sender=sender, dispatch_uid=uid("pre_delete", sender))
        signals.post_delete.disconnect(sender=sender, dispatch_uid=uid("post_delete", sender))
    registry.remove(model)
    restore(model, wrapped.pop(model))


# This app's receivers of a registered model's signals: a write whose signals reach no other may be written
# alone, without them (``single_statement``).
_SAVE_RECEIVERS: dict[Signal, Callable[..., Any]] = {
    signals.pre_save: capture.pre_save,
    signals.post_save: capture.post_save,
}
_DELETE_RECEIVERS: dict[Signal, Callable[..., Any]] = {
    signals.pre_delete: capture.pre_delete,
    signals.post_delete: capture.post_delete,
}


def atomic_save_base(save_base: Callable[..., Any]) -> Callable[..., Any]:
    """Make one transaction of the save and its event.

    Django sends ``pre_save``/``post_save`` outside its own transaction; without
    this, a failing event insert in autocommit mode would leave the write
    committed and unrecorded. A save that fails between the two signals
    leaves nothing for a later save of the instance (``handoffs``).
    """

    @functools.wraps(save_base)
    def atomic_save_base(self: models.Model, *args: Any, **kwargs: Any) -> Any:
        if not registry.recorded(type(self)):
            return save_base(self, *args, **kwargs)
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        depth = handoffs.handoff_depth(self)
        try:
            if single_statement.saves_alone(self, using, args, kwargs, _SAVE_RECEIVERS):
                try:
                    with single_statement.alone(self):  # outside a transaction, its statement writes its event
                        return save_base(self, *args, **kwargs)
                except single_statement.Fallback:  # nothing was written: saved the usual way
                    handoffs.forget_handoffs(self, depth)
            with atomic_write(using):
                return save_base(self, *args, **kwargs)
        finally:
            handoffs.forget_handoffs(self, depth)

    return atomic_save_base


django_deserialized_save = DeserializedObject.save


def atomic_deserialized_save(
    self: DeserializedObject, save_m2m: bool = True, using: str | None = None, **kwargs: Any
) -> None:
    """``DeserializedObject.save()`` (``loaddata``, or a deserialized object saved by hand): it calls
    ``models.Model.save_base`` itself, past the model's own (:func:`_atomic_save_base`), so outside a
    transaction the save and its event would not be one; for a recorded model, they are made one here."""
    model = type(self.object)
    if not registry.recorded(model):
        return django_deserialized_save(self, save_m2m, using, **kwargs)
    depth = handoffs.handoff_depth(self.object)
    try:
        with atomic_write(using or router.db_for_write(model, instance=self.object)):
            return django_deserialized_save(self, save_m2m, using, **kwargs)
    finally:
        handoffs.forget_handoffs(self.object, depth)


def _returning(method: Callable[..., Any], capture: Callable[..., Any]) -> Callable[..., Any]:
    """Let the UPDATE or INSERT of a save (``Model._do_update``/``_do_insert``) return the rows it
    writes (``capture.do_update``/``do_insert``). A registered child inherits its registered
    parent's wrapper and wraps it again: the inner one does the work (``audit_events_wrapper``)."""

    @functools.wraps(method)
    def returning(self: models.Model, *args: Any, **kwargs: Any) -> Any:
        return capture(method, self, *args, **kwargs)

    returning.audit_events_wrapper = True  # type: ignore[attr-defined]
    return returning


def one_operation(delete: Callable[..., Any]) -> Callable[..., Any]:
    """Group everything one ``delete()`` writes (cascades, SET_NULL updates) into one operation,
    whose DELETE statements return the rows they delete (``handoffs.deleting``)."""

    @functools.wraps(delete)
    def delete_in_one_operation(self: models.Model, *args: Any, **kwargs: Any) -> Any:
        if not registry.groups_deletes(type(self)):
            return delete(self, *args, **kwargs)
        using = kwargs.get("using") or (args[0] if args else None) or router.db_for_write(type(self), instance=self)
        if (alone := single_statement.delete(self, using, _DELETE_RECEIVERS)) is not None:
            return alone  # outside a transaction, one DELETE that writes its event
        with immediate(using), operation(), handoffs.deleting():
            return delete(self, *args, **kwargs)

    return delete_in_one_operation


def wrap_cascade_sources() -> None:
    """Their ``delete()`` is one operation and their QuerySets are audited, as a registered model's
    (``registry.cascade_sources``); nothing else of theirs is recorded."""
    for model in registry.cascade_sources():
        if model in wrapped:
            continue
        patch(model, sources_wrapped.setdefault(model, {}), "delete", one_operation(model.delete))
        for sender in family(model):
            audit_querysets(sender)
