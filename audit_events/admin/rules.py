"""Django's admin rules, applied to what the audit views show and write.

A model registered on the admin site is judged by its ``ModelAdmin``
(``get_queryset()``, ``has_*_permission(request, obj)``, the fields its form
shows this user and lets them edit), exactly as Django's own views judge it; a
model that is not registered there is for superusers only (its admin on another
site may restrict rows this site cannot judge).

A deleted row is judged on the instance rebuilt from its last recorded state:
by the ``has_*_permission(request, obj)`` methods and, since ``get_queryset()``
cannot see a row that is not in the table, by the admin's
``deleted_row_in_queryset(request, obj)`` when it gives one. Without one, a
deleted row passes only when ``get_queryset(request)`` leaves no row out for
this request: a restriction written in ``get_queryset()`` alone is never
bypassed through deleted rows.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from django.contrib.admin.utils import flatten_fieldsets
from django.db import models
from django.http import HttpRequest
from django.utils.translation import gettext as _

from ..deletions import ModelRows, UndoPlan

if TYPE_CHECKING:
    from django.contrib.admin import AdminSite, ModelAdmin


def model_admin(site: AdminSite, model: type[models.Model]) -> ModelAdmin[Any] | None:
    return site._registry.get(model)


def may(request: HttpRequest, site: AdminSite, model: type[models.Model], action: str, obj: Any = None) -> bool:
    """Whether the user may ``action`` (view, add, change) ``obj`` (or any row of ``model``) on ``site``.

    A model without an admin on ``site`` is for superusers only: its rows may be
    restricted by its admin on another site, whose rules this site cannot know,
    and the model permission alone would bypass them.
    """
    admin = model_admin(site, model)
    if admin is None:
        user: Any = request.user
        return bool(user.is_active and user.is_superuser)
    if action == "view":
        return admin.has_view_or_change_permission(request, obj)
    if action == "add":
        return admin.has_add_permission(request)
    return admin.has_change_permission(request, obj)


def has_row_rules(admin: ModelAdmin[Any]) -> bool:
    """Whether ``admin`` overrides a row-level permission method (then each row must be asked)."""
    return _overrides(admin, "has_view_permission", "has_change_permission", "has_view_or_change_permission")


def fields_per_row(admin: ModelAdmin[Any]) -> bool:
    """Whether ``admin``'s change form may show different fields on different rows (it overrides a method
    that gets the row); else :func:`visible_fields` of one row answers for all."""
    names = ("get_fieldsets", "get_fields", "get_form", "get_exclude", "get_readonly_fields")
    return _overrides(admin, *names, "_get_form_for_get_fields")


def _overrides(admin: ModelAdmin[Any], *names: str) -> bool:
    from django.contrib.admin import ModelAdmin

    return any(getattr(type(admin), name, None) is not getattr(ModelAdmin, name, None) for name in names)


def filters_rows(queryset: models.QuerySet[Any]) -> bool:
    """Whether ``queryset`` leaves rows of its model out: a filter (its manager's too), a slice, a set operation.

    Ordering, ``select_related()`` and annotations leave every row in.
    """
    query = queryset.query
    return bool(query.where) or query.is_sliced or bool(query.combinator) or bool(query.extra_tables)


def in_queryset_when_deleted(
    admin: ModelAdmin[Any], request: HttpRequest, obj: models.Model, restricted: bool | None = None
) -> bool:
    """Whether ``admin.get_queryset(request)`` would hold the deleted row ``obj`` (rebuilt from its last state).

    The admin's ``deleted_row_in_queryset(request, obj)`` says, when it gives an
    answer; otherwise only an unrestricted ``get_queryset()`` holds it (pass
    ``restricted``, :func:`filters_rows` of it, when judging many rows).
    """
    rule = getattr(admin, "deleted_row_in_queryset", None)
    said = rule(request, obj) if rule is not None else None
    if said is not None:
        return bool(said)
    if restricted is None:
        restricted = filters_rows(admin.get_queryset(request))
    return not restricted


def may_view_deleted(
    request: HttpRequest, site: AdminSite, model: type[models.Model], obj: models.Model, restricted: bool | None = None
) -> bool:
    """Whether the user may view the deleted row ``obj`` (rebuilt from its last state) on ``site``."""
    admin = model_admin(site, model)
    if admin is None:
        return may(request, site, model, "view")
    return admin.has_view_or_change_permission(request, obj) and in_queryset_when_deleted(
        admin, request, obj, restricted
    )


def visible_fields(admin: ModelAdmin[Any], request: HttpRequest, obj: models.Model) -> set[str]:
    """The fields the change form shows this user on ``obj``, editable or read-only, and the primary key.

    Django's own answer: the names of ``get_fieldsets(request, obj)``, which
    follow ``fields``/``fieldsets``/``exclude``, ``get_fields(request, obj)``,
    the form and ``readonly_fields``. The key is shown anyway (it is in every
    URL of the row).
    """
    return {*flatten_fieldsets(admin.get_fieldsets(request, obj)), admin.opts.pk.name}


def editable_fields(admin: ModelAdmin[Any], request: HttpRequest, obj: models.Model) -> set[str]:
    """The fields this user may edit on ``obj`` in ``admin``'s change form.

    Django's own answer: the form ``get_form(request, obj, change=True)`` builds
    leaves out ``get_readonly_fields(request, obj)``, the fields outside
    ``fields``/``fieldsets``/``exclude`` and, without change permission, all of
    them; a field the form disables is not editable either, whether the form
    class disables it or its ``__init__`` does for this row (the form is built
    on ``obj`` as the change view builds it, ``form(instance=obj)``).
    """
    form = admin.get_form(request, obj, change=True)(instance=copy.copy(obj))
    return {name for name, field in form.fields.items() if not field.disabled}


def permissions_needed(plan: UndoPlan) -> list[str]:
    """The permissions an undo needs, by name ("Can add book"), for the preview."""
    needed = [_("Can add %s") % group.model._meta.verbose_name for group in plan.recreated]
    return needed + [_("Can change %s") % group.model._meta.verbose_name for group in plan.reattached]


def undo_refusals(request: HttpRequest, site: AdminSite, plan: UndoPlan) -> list[str]:
    """Why this user may not undo the deletion (empty: allowed).

    Every recreated row needs add permission on its model and must be a row the
    user may view (:func:`may_view_deleted` on the rebuilt row); every live row
    the undo writes (a foreign key the deletion set to NULL, any update made in
    the deletion's operation) needs change permission, must be in the admin's
    ``get_queryset()``, pass ``has_change_permission(request, obj)``, and every
    field written must be one its change form lets the user edit.
    """
    reasons = []
    for group in plan.recreated:
        names = group.model._meta.verbose_name_plural
        if not may(request, site, group.model, "add"):
            reasons.append(_("undoing this deletion recreates %s, which you may not add") % names)
        elif not all(_may_view_each(request, site, group)):
            reasons.append(_("undoing this deletion recreates %s that you may not view") % names)
    for group in plan.reattached:
        names = group.model._meta.verbose_name_plural
        if not may(request, site, group.model, "change"):
            reasons.append(_("undoing this deletion also writes %s, which you may not change") % names)
        elif not _may_change_each(request, site, group):
            reasons.append(_("undoing this deletion also writes %s that you may not change") % names)
        elif locked := _uneditable(request, site, group):
            fields = ", ".join(str(getattr(group.model._meta.get_field(name), "verbose_name", name)) for name in locked)
            message = _("undoing this deletion also writes %(fields)s of %(names)s, which you may not edit")
            reasons.append(message % {"fields": fields, "names": names})
    return reasons


def _uneditable(request: HttpRequest, site: AdminSite, group: ModelRows) -> list[str]:
    """The fields an undo writes on ``group``'s live rows that their change form does not let this user edit
    (:func:`editable_fields`, asked per row when the form may differ per row), in field order."""
    admin = model_admin(site, group.model)
    if admin is None:
        return []  # superusers only (may()), as on a change form that shows every field
    locked: set[str] = set()
    editable: set[str] | None = None
    for row in group.rows:
        if editable is None or fields_per_row(admin):
            editable = editable_fields(admin, request, row.instance)
        locked |= set(row.fields) - editable
    return [f.name for f in group.model._meta.get_fields() if f.name in locked]


def shown(request: HttpRequest, site: AdminSite, group: ModelRows, live: bool) -> list[tuple[Any, bool]]:
    """The group's rows, each with whether the preview may name it (the user may view it; a live row must
    also be in the admin's ``get_queryset()``): a preview never shows what the user could not see elsewhere."""
    if not live:
        return list(zip(group.rows, _may_view_each(request, site, group), strict=True))
    admin = model_admin(site, group.model)
    in_queryset = None
    if admin is not None:
        pks = [row.pk for row in group.rows]
        in_queryset = set(admin.get_queryset(request).filter(pk__in=pks).values_list("pk", flat=True))
    return [
        (row, may(request, site, group.model, "view", row.instance) and (in_queryset is None or row.pk in in_queryset))
        for row in group.rows
    ]


def conflicts_shown(request: HttpRequest, site: AdminSite, plan: UndoPlan) -> list[str]:
    """The plan's conflicts as the preview may say them: one about a row the user may not view (as
    :func:`shown` judges the rows that come back) says so instead of naming it."""
    hidden = {
        id(row) for group in plan.recreated for row, visible in shown(request, site, group, live=False) if not visible
    }
    return [c.masked if c.row is not None and id(c.row) in hidden else c.message for c in plan.conflicts]


def _may_view_each(request: HttpRequest, site: AdminSite, group: ModelRows) -> list[bool]:
    """Whether the user may view each row of ``group``, deleted rows rebuilt from their last state."""
    admin = model_admin(site, group.model)
    restricted = filters_rows(admin.get_queryset(request)) if admin is not None else None
    return [may_view_deleted(request, site, group.model, row.instance, restricted) for row in group.rows]


def _may_change_each(request: HttpRequest, site: AdminSite, group: ModelRows) -> bool:
    admin = model_admin(site, group.model)
    if admin is None:
        return True  # no admin to ask about rows: may() let superusers only through
    pks = [row.pk for row in group.rows]
    shown = set(admin.get_queryset(request).filter(pk__in=pks).values_list("pk", flat=True))
    return all(row.pk in shown and admin.has_change_permission(request, row.instance) for row in group.rows)
