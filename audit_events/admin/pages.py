"""What every audit page of ``AuditedAdminMixin`` shares: the user's two hooks, the row an URL names, the page.

Every view answers as Django's own views do (see :mod:`.rules`): a row the
admin's ``get_queryset()`` leaves out is "missing" (a redirect with a warning),
a row it shows but ``has_view_permission(request, obj)`` /
``has_change_permission(request, obj)`` refuses is a 403; a deleted row is
judged on the instance rebuilt from its last recorded state, with
``deleted_row_in_queryset()`` standing in for ``get_queryset()``. The pages
show only the fields the change form shows this user. Restoring a version
needs change (and add, when the row is deleted now) and writes only the fields
the change form lets this user edit; undoing a delete needs the permissions of
every model it writes. Every refusal comes before any write.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.text import capfirst
from django.utils.translation import gettext as _

from .. import registry
from ..models import Action, Event
from ..replay import instance_from_state
from . import rules

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

    _Base = ModelAdmin[Any]
    _PaginatorBase = Paginator[Event]
else:
    _Base = object
    _PaginatorBase = Paginator

PER_PAGE = 50


@cache
def breadcrumbs_are_a_list() -> bool:
    """Whether the admin's ``base.html`` marks breadcrumbs up as ``<ol class="breadcrumbs">`` (Django 6) or a div.

    Read from the template itself, so the audit pages follow whichever Django
    (or project override of ``admin/base.html``) renders them.
    """
    from django.template.loader import get_template

    source = getattr(getattr(get_template("admin/base.html"), "template", None), "source", "")
    return '<ol class="breadcrumbs">' in source


class CappedPaginator(_PaginatorBase):
    """Counts at most ``cap`` events (``cap + 1`` means "more than ``cap``").

    An exact ``COUNT(*)`` over a million events costs more than the whole page
    (a fifth of a second on PostgreSQL, over a second for the deleted rows'
    ``NOT EXISTS``); pages past the cap are reached by filtering, not paging.
    """

    cap = 10_000

    @cached_property
    def count(self) -> int:
        if isinstance(self.object_list, list):
            return min(len(self.object_list), self.cap + 1)
        return int(self.object_list[: self.cap + 1].count())  # type: ignore[attr-defined]


class AuditPages(_Base):
    """The base of the audit views: the hooks a model admin overrides, and what the views share."""

    def display_recorded_value(self, field: Any, value: Any) -> str | None:
        """How the audit pages show a recorded ``value`` of ``field``; ``None`` shows it as Django's admin does.

        ``value`` is decoded (a ``Decimal``, an aware ``datetime``, a foreign
        key's raw key, a list of keys for a many-to-many field; never
        ``None`` unless recorded so). Return text (escaped for you) or HTML
        built with ``format_html``. Override it to mask a field or show it
        your way::

            def display_recorded_value(self, field, value):
                if field.name == "iban":
                    return "•••• " + value[-4:] if value else None
                return super().display_recorded_value(field, value)
        """
        return None

    def deleted_row_in_queryset(self, request: HttpRequest, obj: Any) -> bool | None:
        """Whether ``get_queryset(request)`` would hold ``obj``, a deleted row rebuilt from its last recorded state.

        A deleted row is not in the table, so ``get_queryset()`` cannot be
        asked. ``None`` (the default) lets the audit pages decide from
        ``get_queryset(request)`` itself: when it leaves no row out for this
        request the row passes, when it filters rows (a ``filter()``, an
        ``exclude()``, a filtering manager) every deleted row is refused. An
        admin that filters rows writes the same rule here, in Python, to show
        its users the deleted rows they may see::

            def get_queryset(self, request):
                return super().get_queryset(request).filter(team=request.user.team)

            def deleted_row_in_queryset(self, request, obj):
                return obj.team_id == request.user.team_id

        ``has_view_permission(request, obj)`` and the other row rules are asked
        as well; this answers only for ``get_queryset()``.
        """
        return None

    def _judges_deleted_rows(self) -> bool:
        """Whether this admin gives its own ``deleted_row_in_queryset()`` (else a filtering queryset refuses all)."""
        return type(self).deleted_row_in_queryset is not AuditPages.deleted_row_in_queryset

    def _spec(self) -> registry.ModelSpec:
        spec = registry.spec_for(self.model)
        if spec is None:
            raise Http404(_("%s is not registered in AUDIT_EVENTS['MODELS'].") % self.opts.label)
        return spec

    def _object_pk(self, spec: registry.ModelSpec, object_id: str) -> str:
        try:
            return spec.object_pk(unquote(object_id))
        except (ValidationError, ValueError, TypeError) as error:
            raise Http404(str(error)) from error

    def _row(self, request: HttpRequest, object_id: str) -> tuple[Any, Any]:
        """``(obj, None)`` for a row this admin shows, ``(None, rebuilt)`` for a deleted one, else ``(None, None)``.

        A row that is in the table but not in ``get_queryset()`` is hidden, not
        deleted: it gets ``(None, None)`` as a missing row does; so does a
        deleted row that ``get_queryset()`` would not hold (as
        ``deleted_row_in_queryset()`` or its default answers).
        """
        obj = self.get_object(request, unquote(object_id))
        if obj is not None:
            return obj, None
        spec = self._spec()
        try:
            pk = spec.pk_field.to_python(unquote(object_id))
            if self.model._base_manager.filter(pk=pk).exists():
                return None, None
        except (ValidationError, ValueError, TypeError):
            return None, None
        state = self._deletion_state(spec, spec.object_pk(pk))
        if state is None:
            return None, None
        gone = instance_from_state(self.model, spec, state)
        return None, (gone if rules.in_queryset_when_deleted(self, request, gone) else None)

    def _row_crumbs(self, obj: Any, row: Any) -> list[tuple[str, str | None]]:
        if obj is not None:
            return [(str(obj), self._url("change", quote(obj.pk)))]
        return [(_("Deleted"), self._url("audit_deleted")), (str(row), None)]

    def _missing(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Django's own answer for a row its admin does not show: a warning and a redirect to the index."""
        redirect = self._get_obj_does_not_exist_redirect  # type: ignore[attr-defined]  # private in the stubs
        response: HttpResponse = redirect(request, self.opts, object_id)
        return response

    def _deletion(self, spec: registry.ModelSpec, object_pk: str) -> Event | None:
        """The row's latest event if it is a deletion."""
        events = Event.objects.filter(content_type_id=spec.content_type_id(), object_pk=object_pk)
        latest = events.order_by("-version").first()
        return latest if latest is not None and latest.action == Action.DELETE else None

    def _deletion_state(self, spec: registry.ModelSpec, object_pk: str) -> Any:
        deletion = self._deletion(spec, object_pk)
        return deletion.state if deletion is not None else None

    def _url(self, name: str, *args: Any) -> str:
        return reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_{name}", args=args, current_app=self.admin_site.name
        )

    def _context(self, request: HttpRequest, title: str, crumbs: list[tuple[str, str | None]]) -> dict[str, Any]:
        """The admin's context; ``crumbs`` are the breadcrumbs after the model's, (label, url or None)."""
        request.current_app = self.admin_site.name
        return {
            **self.admin_site.each_context(request),
            "audit_breadcrumbs_list": breadcrumbs_are_a_list(),
            "crumbs": [{"label": label, "url": url} for label, url in crumbs],
            "title": title,
            "subtitle": None,
            "opts": self.opts,
            "module_name": str(capfirst(self.opts.verbose_name_plural)),
            "changelist_url": self._url("changelist"),
            "deleted_url": self._url("audit_deleted"),
        }
