"""audit_events (this checkout): registered by settings; capture from signals,
events written in the same transaction; state_at()/restore() from the events."""

from __future__ import annotations

from typing import Any

from . import Adapter


class AuditEvents(Adapter):
    dists = ("django-audit-events",)
    apps = ("audit_events",)
    settings = {"AUDIT_EVENTS": {"MODELS": ["core.Account"]}}
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


ADAPTER = AuditEvents()
