"""The models whose writes reach registered multi-table children (``inheritance``)."""

from __future__ import annotations

from django.db.models import signals

from .. import inheritance, registry
from ..registry import ModelType, family
from .base import Saved, patch, restore, uid
from .queryset_methods import audit_querysets, plain_querysets

_inheritance_wrapped: dict[ModelType, Saved] = {}
_inheritance_querysets: list[ModelType] = []  # models given audited QuerySets for their children only


def wire_children() -> None:
    """Wrap the ``save_base`` and hook the QuerySets of every model with registered children
    (``inheritance``). Django's Model.save() writes every table through save_base(): wrapping it there
    sees every save of the model and its proxies (those of a registered model too, over its own
    wrapper). loaddata calls Model.save_base() itself: the signals connected here see those."""
    for model in inheritance.find_children(registry.registered_specs()):
        patch(
            model,
            _inheritance_wrapped.setdefault(model, {}),
            "save_base",
            inheritance.recording_save_base(model.save_base),
        )
        for sender in family(model):
            signals.pre_save.connect(
                inheritance.raw_pre_save, sender=sender, dispatch_uid=uid("inheritance.pre_save", sender)
            )
            signals.post_save.connect(
                inheritance.raw_post_save, sender=sender, dispatch_uid=uid("inheritance.post_save", sender)
            )
        if registry.spec_for(model) is None and not registry.groups_deletes(model):
            _inheritance_querysets.append(model)
            for sender in family(model):
                audit_querysets(sender)


def unwire_children() -> None:
    for model, saved in _inheritance_wrapped.items():
        restore(model, saved)
        for sender in family(model):
            signals.pre_save.disconnect(sender=sender, dispatch_uid=uid("inheritance.pre_save", sender))
            signals.post_save.disconnect(sender=sender, dispatch_uid=uid("inheritance.post_save", sender))
    for model in _inheritance_querysets:
        for sender in family(model):
            plain_querysets(sender)
    _inheritance_wrapped.clear()
    _inheritance_querysets.clear()
    inheritance.forget_children()
