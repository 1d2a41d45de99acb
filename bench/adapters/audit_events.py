"""audit_events (this checkout): registered by settings; capture from signals,
events written in the same transaction; state_at()/restore() from the events."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from . import Adapter


class AuditEvents(Adapter):
    dists = ("django-audit-events",)
    apps = ("audit_events",)
    # Project's many-to-many links are recorded on the declaring row, nothing else to declare
    settings = {"AUDIT_EVENTS": {"MODELS": ["core.Account", "core.Project"]}}
    audit_models = ("audit_events.Event",)
    has_history_api = True

    def moments(self, model: Any, obj: Any) -> list[Any]:
        from audit_events import history

        return list(history(model, obj.pk).values_list("created_at", flat=True))

    def state_at(self, model: Any, obj: Any, at: Any) -> Any:
        from audit_events import state_at

        return state_at(model, obj.pk, at=at)

    def restore(self, model: Any, obj: Any, at: Any) -> Any:
        from audit_events import restore

        return restore(model, obj.pk, at=at)

    def synthesize(self, model: Any, obj: Any, size: int, every: int | None = None) -> None:
        """Append events up to version ``size`` in the shape capture writes them (status += 1 each,
        the full state every SNAPSHOT_EVERY-th), 1 µs apart, then set the live row to match.

        Only replay reads them: their hashes are placeholders (audit_verify would reject them).
        """
        import uuid

        from audit_events import conf, history, registry
        from audit_events.context import capture_paused
        from audit_events.models import Event

        every = every or conf.get_config().snapshot_every
        last = history(model, obj.pk).last()
        state = dict(registry.spec_for(model).state_of(obj))
        events = []
        for version in range(last.version + 1, size + 1):
            status = state["status"] + 1
            changes = {"status": [state["status"], status]}
            state["status"] = status
            events.append(
                Event(
                    content_type_id=last.content_type_id,
                    object_pk=last.object_pk,
                    version=version,
                    action="update",
                    changes=changes,
                    state=dict(state) if version % every == 0 else None,
                    created_at=last.created_at + timedelta(microseconds=version - last.version),
                    operation=uuid.uuid4(),
                    hash="0" * 64,
                )
            )
        Event.objects.bulk_create(events, batch_size=2000)
        with capture_paused():
            model.objects.filter(pk=obj.pk).update(status=state["status"])
        obj.status = state["status"]


ADAPTER = AuditEvents()
