"""django-simple-history: HistoricalRecords on the model, a history row per
save/delete written from post_save/post_delete signals; bulk writes through its
bulk_create_with_history/bulk_update_with_history helpers (QuerySet.update() is
not recorded)."""

from __future__ import annotations

from typing import Any

from . import BULK_UPDATE_BATCH, Adapter


class SimpleHistory(Adapter):
    dists = ("django-simple-history",)
    apps = ("simple_history",)
    audit_models = ("core.HistoricalAccount", "core.HistoricalProject")
    storage_models = ("core.HistoricalAccount",)
    has_history_api = True

    def model_attrs(self, name: str = "Account") -> dict[str, Any]:
        from simple_history.models import HistoricalRecords

        # Project's many-to-many: the documented m2m_fields (a history table of the links per history row)
        return {"history": HistoricalRecords(m2m_fields=["tags"] if name == "Project" else ())}

    def bulk_create(self, model: Any, objs: list[Any]) -> list[Any]:
        from simple_history.utils import bulk_create_with_history

        return bulk_create_with_history(objs, model)

    def bulk_update(self, model: Any, objs: list[Any], fields: list[str]) -> Any:
        from simple_history.utils import bulk_update_with_history

        return bulk_update_with_history(objs, model, fields, batch_size=BULK_UPDATE_BATCH)

    def moments(self, model: Any, obj: Any) -> list[Any]:
        return list(model.history.filter(id=obj.pk).order_by("history_id").values_list("history_date", flat=True))

    def state_at(self, model: Any, obj: Any, at: Any) -> Any:
        return obj.history.as_of(at)

    def restore(self, model: Any, obj: Any, at: Any) -> Any:
        instance = obj.history.as_of(at)
        instance.save()
        return instance


ADAPTER = SimpleHistory()


def _synthesize(model: Any, obj: Any, size: int) -> None:
    """Append history rows up to ``size`` (status += 1 each), 1 µs apart, in the shape the library writes."""
    from datetime import timedelta

    history = model.history.model
    last = model.history.filter(id=obj.pk).order_by("history_id").last()
    count = model.history.filter(id=obj.pk).count()
    values = {f.attname: getattr(obj, f.attname) for f in model._meta.concrete_fields}
    rows = []
    for k in range(count + 1, size + 1):
        values["status"] += 1
        rows.append(history(**values, history_date=last.history_date + timedelta(microseconds=k), history_type="~"))
    history.objects.bulk_create(rows, batch_size=2000)
    model.objects.filter(pk=obj.pk).update(status=values["status"])
    obj.status = values["status"]


ADAPTER.synthesize = _synthesize  # type: ignore[attr-defined]
