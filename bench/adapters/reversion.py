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
    has_history_api = True

    def register(self, model: Any) -> None:
        import reversion

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
