"""The links of registered many-to-many fields: their signals, and the through models' own writes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.db import models, router
from django.db.models import signals

from .. import m2m, registry
from ..registry import ModelType, family
from ..transactions import atomic_write
from .base import Saved, patch, uid
from .queryset_methods import audit_querysets
from .saves import atomic_save_base, one_operation, sources_wrapped, wrapped

through_wrapped: dict[ModelType, Saved] = {}  # unregistered explicit or auto-created through models


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


def connect_links() -> None:
    for signal, senders, receiver, name in _link_receivers():
        for sender in senders:
            signal.connect(receiver, sender=sender, dispatch_uid=uid(name, sender))


def disconnect_links() -> None:
    for signal, senders, _receiver, name in _link_receivers():
        for sender in senders:
            signal.disconnect(sender=sender, dispatch_uid=uid(name, sender))


def wrap_through_models() -> None:
    """An unregistered explicit through model's save is one transaction with its events, and its
    deletes and QuerySet writes are recorded (``m2m``), as a registered model's."""
    for model in {m._meta.concrete_model for m in registry.through_models()}:
        assert model is not None
        if model in wrapped:
            continue
        saved = through_wrapped[model] = {}
        patch(model, saved, "save_base", atomic_save_base(model.save_base))
        if model._meta.auto_created:
            patch(model, saved, "_save_table", _saving_links(model._save_table))  # type: ignore[attr-defined]
            patch(model, saved, "delete", _deleting_links(model.delete))
        elif model not in sources_wrapped:  # else its delete is one operation already
            patch(model, saved, "delete", one_operation(model.delete))
        for sender in family(model):
            audit_querysets(sender)


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
