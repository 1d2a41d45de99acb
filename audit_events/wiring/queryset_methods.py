"""The QuerySet writes of registered models, and of models whose writes reach registered rows."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.db import models
from django.db.models.sql import UpdateQuery
from django.db.models.sql.constants import GET_ITERATOR_CHUNK_SIZE

from .. import querysets, recording
from ..context import is_paused
from ..registry import ModelType

_audited: set[ModelType] = set()  # models (and proxies) whose QuerySet writes are recorded or grouped


def audit_querysets(model: ModelType) -> None:
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


def plain_querysets(model: ModelType) -> None:
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
        recording.record_finished_saves()  # a save whose post_save has not come yet wrote before this
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
