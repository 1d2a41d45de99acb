"""django-simple-history: HistoricalRecords on the model, a history row per
save/delete written from post_save/post_delete signals; bulk writes through its
bulk_create_with_history/bulk_update_with_history helpers (QuerySet.update() is
not recorded)."""

from __future__ import annotations

from typing import Any

from . import Adapter


class SimpleHistory(Adapter):
    dists = ("django-simple-history",)
    apps = ("simple_history",)
    audit_models = ("core.HistoricalAccount",)
    has_history_api = True

    def model_attrs(self) -> dict[str, Any]:
        from simple_history.models import HistoricalRecords

        return {"history": HistoricalRecords()}

    def bulk_create(self, model: Any, objs: list[Any]) -> list[Any]:
        from simple_history.utils import bulk_create_with_history

        return bulk_create_with_history(objs, model)

    def bulk_update(self, model: Any, objs: list[Any], fields: list[str]) -> Any:
        from simple_history.utils import bulk_update_with_history

        return bulk_update_with_history(objs, model, fields)

    def moments(self, model: Any, obj: Any) -> list[Any]:
        return list(model.history.filter(id=obj.pk).order_by("history_id").values_list("history_date", flat=True))

    def state_at(self, model: Any, obj: Any, at: Any) -> Any:
        return obj.history.as_of(at)

    def restore(self, model: Any, obj: Any, at: Any) -> Any:
        instance = obj.history.as_of(at)
        instance.save()
        return instance


ADAPTER = SimpleHistory()
