"""django-pghistory (+ django-pgtrigger): Postgres triggers write an event row
(full snapshot) for insert, update and delete; no extra client round-trips.
DeleteEvent is added because pghistory's default trackers are insert+update only.
Project's many-to-many links: its through model tracked too (insert and delete), as
pghistory's documentation asks for many-to-many fields."""

from . import Adapter


class PgHistory(Adapter):
    dists = ("django-pghistory", "django-pgtrigger")
    apps = ("pgtrigger", "pghistory")
    audit_models = ("core.AccountEvent", "core.ProjectEvent")
    storage_models = ("core.AccountEvent",)
    vendors = ("postgresql",)

    def register(self, model):
        import pghistory

        pghistory.track(pghistory.InsertEvent(), pghistory.UpdateEvent(), pghistory.DeleteEvent())(model)
        if model.__name__ == "Project":
            through = model.tags.through
            pghistory.track(
                pghistory.InsertEvent("tags.add"),
                pghistory.DeleteEvent("tags.remove"),
                obj_field=pghistory.ObjForeignKey(related_name="tag_events"),
                model_name="ProjectTagEvent",
            )(through)

    def after_migrate(self, connection):
        # core has no migration files (tables come from syncdb), so install the
        # triggers explicitly, as `manage.py pgtrigger install` would
        import pgtrigger

        pgtrigger.install(database=connection.alias)


ADAPTER = PgHistory()
