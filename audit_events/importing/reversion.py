"""django-reversion: a ``Version`` per saved object per revision, the object serialized whole.

A revision's ``date_created`` becomes the event's time, its ``user`` the
actor, its ``comment`` the ``reason``, and its versions share one operation.
An object's first version is imported as a create, the others as updates.
Reversion records no deletes: a row whose versions say it exists but whose
table row is gone gets a delete event at the time of the import (its real
time is unknown), so that replay agrees with the table. Fields a version does
not hold (``fields=`` at registration, fields added since) keep their
previous values, or are missing from a first state.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import reversion
from django.contrib.contenttypes.models import ContentType
from django.core import serializers
from django.db import models
from reversion.models import Version

from .. import registry
from ..encoding import State, encode
from ..models import Action
from .base import NAMESPACE, PeerRow, deletes_for_gone_rows
from .users import Users

DELETED_REASON = (
    "deleted before the import from django-reversion, which records no deletes: the time of the delete is unknown"
)


class Reversion:
    name = "reversion"
    id_key = "reversion_version_id"

    def tracked_models(self) -> list[type[models.Model]]:
        return [spec.model for spec in registry.registered_specs() if reversion.is_registered(spec.model)]

    def _versions(self, model: type[models.Model], using: str) -> Any:
        content_type = ContentType.objects.db_manager(using).get_for_model(model)
        return Version.objects.using(using).filter(content_type=content_type, db=using)

    def count(self, model: type[models.Model], using: str) -> int:
        return self._versions(model, using).count()  # type: ignore[no-any-return]

    def rows(self, spec: registry.ModelSpec, using: str, batch_size: int) -> Iterator[PeerRow]:
        model = spec.model
        natural = reversion.is_registered(model) and reversion.revisions._get_options(model).use_natural_foreign_keys
        by_name = {f.name: f for f in spec.fields}
        users = Users(using)
        seen: set[Any] = set()
        versions = (
            self._versions(model, using)
            .order_by("revision__date_created", "revision_id", "id")
            .values_list(
                "id",
                "object_id",
                "format",
                "serialized_data",
                "revision_id",
                "revision__date_created",
                "revision__user_id",
                "revision__comment",
            )
        )
        for version_id, object_id, format_, data, revision_id, at, user_id, comment in versions.iterator(
            chunk_size=batch_size
        ):
            pk = spec.pk_field.to_python(object_id)
            objects = serializers.deserialize(format_, data, ignorenonexistent=True, use_natural_foreign_keys=natural)
            obj = next(iter(objects))
            held = _held_fields(format_, data, by_name)
            yield PeerRow(
                peer_id=version_id,
                pk=pk,
                at=at,
                action=Action.UPDATE if pk in seen else Action.CREATE,
                state={name: encode(by_name[name], getattr(obj.object, by_name[name].attname)) for name in held},
                operation=uuid.uuid5(NAMESPACE, f"reversion:revision:{revision_id}"),
                actor_id=None if user_id is None else str(user_id),
                actor_repr=users.repr(user_id),
                context={} if not comment else {"reason": comment},
            )
            seen.add(pk)

    def finish(self, spec: registry.ModelSpec, using: str, dry_run: bool, planned: dict[str, State | None]) -> int:
        """A delete event for each row imported as existing whose table row is gone (reversion records none)."""
        return deletes_for_gone_rows(self, spec, using, dry_run, planned, DELETED_REASON)


def _held_fields(format_: str, data: str, by_name: dict[str, Any]) -> list[str]:
    """The fields a version holds: those serialized (JSON), or all of them (another format)."""
    if format_ != "json":
        return list(by_name)
    record = json.loads(data)[0]
    names = set(record.get("fields", {}))
    return [name for name, f in by_name.items() if name in names or f.primary_key]
