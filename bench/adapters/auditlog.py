"""django-auditlog: auditlog.register(); LogEntry rows written from signals
(create: post_save, update: pre_save + a SELECT of the old row, delete: post_delete);
Project's many-to-many links through ``m2m_fields``."""

from . import Adapter


class Auditlog(Adapter):
    dists = ("django-auditlog",)
    apps = ("auditlog",)
    audit_models = ("auditlog.LogEntry",)

    def register(self, model):
        from auditlog.registry import auditlog

        if model.__name__ == "Project":
            auditlog.register(model, m2m_fields={"tags"})
        else:
            auditlog.register(model)


ADAPTER = Auditlog()
