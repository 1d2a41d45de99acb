from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core.signals import setting_changed
from django.utils.translation import gettext_lazy as _


class AuditEventsConfig(AppConfig):
    name = "audit_events"
    verbose_name = _("Audit events")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, wiring  # noqa: F401  (checks registers itself)

        wiring.sync()
        setting_changed.connect(_setting_changed, dispatch_uid="audit_events.setting_changed")


def _setting_changed(setting: str, **kwargs: Any) -> None:
    if setting == "AUDIT_EVENTS":
        from . import prepared, wiring

        wiring.sync()
        prepared.forget()
