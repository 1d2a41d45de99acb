"""django-auditlog: a ``LogEntry`` per create, update and delete, holding the changed fields as text.

auditlog keeps no copy of the row, only ``changes``: ``{field: [old, new]}``
of the fields that differ, the values as text (``"None"`` for a null;
datetimes naive, in UTC). A row's state is rebuilt from them: a create starts
from every field's default (auditlog leaves out the fields equal to it), and
each update sets the fields it names. Values are read back through each
field's ``to_python``, so what text cannot say is lost (a text ``"None"``
reads as null; masked fields read as the mask). Entries of ``access`` are
not writes: not imported.
"""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Iterator
from typing import Any

from auditlog import get_logentry_model
from auditlog.registry import auditlog
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from .. import registry
from ..encoding import JSONValue, State, encode, value_field
from ..models import Action
from .base import NAMESPACE, PeerRow
from .users import Users

_ACTIONS = {0: Action.CREATE, 1: Action.UPDATE, 2: Action.DELETE}  # 3, access, is not a write


class Auditlog:
    name = "auditlog"
    id_key = "auditlog_id"

    def tracked_models(self) -> list[type[models.Model]]:
        return [spec.model for spec in registry.registered_specs() if auditlog.contains(spec.model)]

    def _entries(self, model: type[models.Model], using: str) -> Any:
        content_type = ContentType.objects.db_manager(using).get_for_model(model)
        return get_logentry_model()._base_manager.using(using).filter(content_type=content_type, action__in=_ACTIONS)

    def count(self, model: type[models.Model], using: str) -> int:
        return self._entries(model, using).count()  # type: ignore[no-any-return]

    def rows(self, spec: registry.ModelSpec, using: str, batch_size: int) -> Iterator[PeerRow]:
        by_name = {f.name: f for f in spec.fields}
        users = Users(using)
        entries = (
            self._entries(spec.model, using)
            .order_by("timestamp", "id")
            .values_list(
                "id", "object_pk", "action", "changes", "timestamp", "actor_id", "actor_email", "remote_addr", "cid"
            )
        )
        for entry_id, object_pk, action, changes, at, actor_id, actor_email, remote_addr, cid in entries.iterator(
            chunk_size=batch_size
        ):
            pk = spec.pk_field.to_python(object_pk)
            context: dict[str, JSONValue] = {}
            if remote_addr:
                context["remote_addr"] = remote_addr
            if cid:
                context["correlation_id"] = cid
            yield PeerRow(
                peer_id=entry_id,
                pk=pk,
                at=at,
                action=_ACTIONS[action],
                state=_state(spec, by_name, pk, action, changes),
                operation=uuid.uuid5(NAMESPACE, f"auditlog:{entry_id}"),
                actor_id=None if actor_id is None else str(actor_id),
                actor_repr=users.repr(actor_id) or actor_email or "",
                context=context,
            )

    def finish(self, spec: registry.ModelSpec, using: str, dry_run: bool, planned: dict[str, State | None]) -> int:
        return 0  # deletes are logged


def _state(
    spec: registry.ModelSpec, by_name: dict[str, models.Field[Any, Any]], pk: Any, action: int, changes: Any
) -> State:
    """The values an entry gives: the new ones it names (the old ones, for a delete); a create's are
    every field's, the fields left out being those equal to their default."""
    values = {
        name: _value(by_name[name], pair[0 if action == 2 else 1])
        for name, pair in (changes or {}).items()
        if name in by_name and isinstance(pair, list) and len(pair) == 2
    }
    if action == 0:
        values = {**_defaults(spec), **values, spec.pk_field.name: encode(spec.pk_field, pk)}
    return values


def _defaults(spec: registry.ModelSpec) -> State:
    return {f.name: encode(f, f.get_default()) for f in spec.fields if not f.primary_key}


def _value(field: models.Field[Any, Any], text: Any) -> JSONValue:
    """A value as auditlog wrote it (text, or JSON with AUDITLOG_STORE_JSON_CHANGES), encoded for ``field``."""
    if text is None or text == "None":
        return None
    if isinstance(field, models.DateTimeField) and isinstance(text, str):
        moment: datetime.datetime | None = parse_datetime(text)
        if moment is not None and settings.USE_TZ and timezone.is_naive(moment):
            moment = timezone.make_aware(moment, datetime.UTC)  # auditlog made it naive in UTC
        return encode(field, moment)
    if isinstance(field, models.JSONField) and isinstance(text, str):
        try:
            return encode(field, json.loads(text))
        except ValueError:
            return encode(field, text)
    return encode(field, value_field(field).to_python(text))
