"""django-auditlog: auditlog.register(); LogEntry rows written from signals
(create: post_save, update: pre_save + a SELECT of the old row, delete: post_delete)."""

from . import Adapter


class Auditlog(Adapter):
    dists = ("django-auditlog",)
    apps = ("auditlog",)
    audit_models = ("auditlog.LogEntry",)

    def register(self, model):
        from auditlog.registry import auditlog

        auditlog.register(model)


ADAPTER = Auditlog()
