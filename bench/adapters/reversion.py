"""django-reversion: reversion.register(); each write is wrapped in
reversion.create_revision() (its own atomic block), which saves a Revision and a
Version (serialized JSON) on exit. Deletes and bulk writes are not recorded."""

from __future__ import annotations

from typing import Any

from . import Adapter


class Reversion(Adapter):
    dists = ("django-reversion",)
    apps = ("reversion",)
    audit_models = ("reversion.Version",)
    storage_models = ("reversion.Version", "reversion.Revision")
    has_history_api = True

    def register(self, model: Any) -> None:
        import reversion

        if model.__name__ == "Project":  # many-to-many: the linked tags follow the project into its revisions
            from core.models import Tag

            if not reversion.is_registered(Tag):
                reversion.register(Tag)
            reversion.register(model, follow=("tags",))
        else:
            reversion.register(model)

    def op_context(self) -> Any:
        import reversion

        return reversion.create_revision()

    def moments(self, model: Any, obj: Any) -> list[Any]:
        from reversion.models import Version

        versions = Version.objects.get_for_object(obj).order_by("pk")
        return list(versions.values_list("revision__date_created", flat=True))

    def _version(self, obj: Any, at: Any) -> Any:
        from reversion.models import Version

        return Version.objects.get_for_object(obj).filter(revision__date_created__lte=at).first()

    def state_at(self, model: Any, obj: Any, at: Any) -> Any:
        return self._version(obj, at)._object_version.object

    def restore(self, model: Any, obj: Any, at: Any) -> Any:
        import reversion

        with reversion.create_revision():
            self._version(obj, at).revert()


ADAPTER = Reversion()


def _synthesize(model: Any, obj: Any, size: int) -> None:
    """Append revisions up to ``size`` (status += 1 each), 1 µs apart, in the shape the library writes."""
    from datetime import timedelta

    from django.contrib.contenttypes.models import ContentType
    from django.core import serializers
    from reversion.models import Revision, Version

    versions = Version.objects.get_for_object(obj).order_by("pk")
    last, count = versions.last(), versions.count()
    revisions = [
        Revision(date_created=last.revision.date_created + timedelta(microseconds=k), comment="")
        for k in range(count + 1, size + 1)
    ]
    revisions = Revision.objects.bulk_create(revisions, batch_size=2000)
    rows = []
    for revision in revisions:
        obj.status += 1
        rows.append(
            Version(
                revision=revision,
                object_id=str(obj.pk),
                content_type=ContentType.objects.get_for_model(model),
                db="default",
                format="json",
                serialized_data=serializers.serialize("json", [obj]),
                object_repr=str(obj),
            )
        )
    Version.objects.bulk_create(rows, batch_size=2000)
    model.objects.filter(pk=obj.pk).update(status=obj.status)


ADAPTER.synthesize = _synthesize  # type: ignore[attr-defined]
