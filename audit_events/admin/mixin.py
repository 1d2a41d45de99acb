"""``AuditedAdminMixin``: history, restore a version and undo delete, inside the user's own model admin.

The mixin adds the audit views' URLs, links its changelist to the deleted rows
and makes the admin user the actor of what the admin writes. The views are in
:mod:`.history` (a row's history, restore a version) and :mod:`.deleted` (the
deleted rows, undo delete); what they share, and the two hooks a model admin
overrides, in :mod:`.pages`.
"""

from __future__ import annotations

from functools import update_wrapper
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path
from django.utils.translation import gettext as _

from .. import registry
from ..context import audit_context
from .deleted import DeletedViews
from .history import HistoryViews


class AuditedAdminMixin(HistoryViews, DeletedViews):
    """Mix into a ``ModelAdmin`` of a registered model, before ``admin.ModelAdmin``.

    Replaces the object's "History" page by its recorded events, with a
    "Restore this version" button each, and adds a "Deleted …" page to the
    changelist with an "Undo delete" button per deleted row. Writes made
    through this admin carry the admin user as their actor.
    """

    change_list_template = "audit_events/change_list.html"

    def get_urls(self) -> list[URLPattern]:
        def wrap(view: Any) -> Any:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                return self.admin_site.admin_view(view)(*args, **kwargs)

            return update_wrapper(wrapper, view)

        info = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("deleted/", wrap(self.deleted_view), name=f"{info}_audit_deleted"),
            path("deleted/<int:event_id>/undo/", wrap(self.undo_delete_view), name=f"{info}_audit_undo"),
            path(
                "<path:object_id>/history/<int:event_id>/restore/",
                wrap(self.restore_version_view),
                name=f"{info}_audit_restore",
            ),
            *super().get_urls(),
        ]

    # --- writes through the admin carry the admin user ----------------------

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        with audit_context(actor=request.user):
            return super().changeform_view(request, *args, **kwargs)

    def delete_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        with audit_context(actor=request.user):
            return super().delete_view(request, *args, **kwargs)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra = dict(extra_context or {})
        if registry.spec_for(self.model) is not None:
            extra.setdefault("audit_deleted_url", self._url("audit_deleted"))
            extra.setdefault("audit_deleted_label", _("Deleted %s") % self.opts.verbose_name_plural)
        with audit_context(actor=request.user):  # actions and list_editable write here
            return super().changelist_view(request, extra)
