"""The one package that patches Django: what makes the registered models' writes recorded.

:func:`sync` makes the patches match ``AUDIT_EVENTS`` (``apps.py`` calls it
when the app is ready and whenever the setting changes, as
``override_settings`` does); each patch it installs it removes again when no
registered model needs it. Registering a model connects its signals (per
sender, so unregistered models keep Django's fast delete path and pay
nothing), makes its ``save_base`` atomic, lets the UPDATE and INSERT of its
saves return the rows they write (``capture.do_update``,
``capture.do_insert``), groups each ``delete()`` into one operation and
records its QuerySet writes (``queryset_methods``); unregistering undoes
exactly that. Each patch's comment names the Django behaviour it relies on.
"""

from __future__ import annotations

from django.core.serializers.base import DeserializedObject

from .. import pending, registry
from ..registry import ModelType, family
from . import connections, flush
from .base import Saved, restore
from .children import unwire_children, wire_children
from .links import connect_links, disconnect_links, through_wrapped, wrap_through_models
from .queryset_methods import plain_querysets
from .saves import (
    atomic_deserialized_save,
    django_deserialized_save,
    register,
    sources_wrapped,
    unregister,
    wrap_cascade_sources,
    wrapped,
)


def sync() -> None:
    """Make the registry and the patches match the current setting."""
    wanted = registry.wanted()
    flush.allow()  # the test framework's flush may empty the append-only event table
    pending.hooks = connections.HOOKS  # a transaction's first event wraps its connection's methods till it ends
    unwire_children()  # first: it wraps the save_base that registering snapshots
    restore_all(sources_wrapped)  # first: a cascade source may be registered now, and must not be torn down after
    restore_all(through_wrapped)  # the same
    disconnect_links()
    for model in [m for m in wrapped if m not in wanted]:
        unregister(model)
    for model, spec in wanted.items():
        if model in wrapped:
            unregister(model)
        register(spec)
    registry.rebuild(list(wanted.values()))
    connect_links()
    wrap_cascade_sources()
    wire_children()  # writes through the parents of registered multi-table children
    wrap_through_models()
    recorded = bool(registry.registered_specs() or registry.through_models())
    # DeserializedObject.save() (loaddata) calls models.Model.save_base() itself, past the model's own.
    DeserializedObject.save = atomic_deserialized_save if recorded else django_deserialized_save  # type: ignore[method-assign]


def restore_all(wrapped: dict[ModelType, Saved]) -> None:
    for model, saved in list(wrapped.items()):
        for sender in family(model):
            plain_querysets(sender)
        restore(model, saved)
    wrapped.clear()
