"""django-simple-history: one historical row per save and delete, each a full copy of the row.

``history_type`` ``+`` / ``~`` / ``-`` become create / update / delete;
``history_date`` the event's time; ``history_user`` its actor;
``history_change_reason`` its ``reason``. Fields the historical model leaves
out (``excluded_fields``) are missing from the imported states.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from django.db import models

from .. import registry
from ..encoding import State, encode
from ..models import Action
from .base import NAMESPACE, PeerRow
from .users import Users

_ACTIONS = {"+": Action.CREATE, "~": Action.UPDATE, "-": Action.DELETE}


def historical_model(model: type[models.Model]) -> type[models.Model] | None:
    """The historical model django-simple-history keeps for ``model``, if it keeps one."""
    manager_name = getattr(model._meta, "simple_history_manager_attribute", None)
    if manager_name is None:
        return None
    history: Any = getattr(model, manager_name, None)
    return None if history is None else history.model


class SimpleHistory:
    name = "simple_history"
    id_key = "simple_history_id"

    def tracked_models(self) -> list[type[models.Model]]:
        return [spec.model for spec in registry.registered_specs() if historical_model(spec.model) is not None]

    def count(self, model: type[models.Model], using: str) -> int:
        historical = historical_model(model)
        return 0 if historical is None else historical._base_manager.using(using).count()

    def rows(self, spec: registry.ModelSpec, using: str, batch_size: int) -> Iterator[PeerRow]:
        historical = historical_model(spec.model)
        if historical is None:
            return
        copied = {f.attname for f in historical._meta.concrete_fields}
        fields = [f for f in spec.fields if f.attname in copied]
        pk_attname = spec.pk_field.attname
        user_attname = "history_user_id" if "history_user_id" in copied else None
        columns = ["history_id", "history_date", "history_type", "history_change_reason", pk_attname]
        columns += [f.attname for f in fields if f.attname != pk_attname]
        users = Users(using)
        rows = (
            historical._base_manager.using(using)
            .order_by("history_date", "history_id")
            .values_list(*columns, *([user_attname] if user_attname else []))
        )
        table = historical._meta.db_table
        for values in rows.iterator(chunk_size=batch_size):
            user_id = values[-1] if user_attname else None
            yield _peer_row(table, dict(zip(columns, values, strict=False)), spec, fields, user_id, users)

    def finish(self, spec: registry.ModelSpec, using: str, dry_run: bool, planned: dict[str, State | None]) -> int:
        return 0  # every save and delete has its historical row


def _peer_row(
    table: str,
    by_attname: dict[str, Any],
    spec: registry.ModelSpec,
    fields: list[models.Field[Any, Any]],
    user_id: Any,
    users: Users,
) -> PeerRow:
    """One historical row of ``table``, its columns by attname; ``fields``: the row's fields it copies."""
    history_id = by_attname["history_id"]  # an integer, or a UUID (SIMPLE_HISTORY_HISTORY_ID_USE_UUID)
    history_id = history_id if isinstance(history_id, int) else str(history_id)
    reason = by_attname["history_change_reason"]
    return PeerRow(
        peer_id=history_id,
        pk=by_attname[spec.pk_field.attname],
        at=by_attname["history_date"],
        action=_ACTIONS[by_attname["history_type"]],
        state={f.name: encode(f, by_attname[f.attname]) for f in fields},
        operation=uuid.uuid5(NAMESPACE, f"simple_history:{table}:{history_id}"),
        actor_id=None if user_id is None else str(user_id),
        actor_repr=users.repr(user_id),
        context={} if reason in (None, "") else {"reason": reason},
    )
