"""The change form, asked about a restored version as Django's change view would ask it.

Django's change view binds the form ``get_form(request, obj, change=True)``
to the current row (``instance=obj``) and to what the user posted; its
fields' ``clean_*()``, the form's ``clean()`` (which may compare with
``self.instance``, ``changed_data``, ``has_changed()``) and the model's
``full_clean()`` then judge the change. :func:`form_errors` does the same with
the POST data a user would send to put the version back: the restored values
of the fields they may edit, the current values of the rest, each rendered as
its widget posts it. Nothing is saved through the form.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib.admin.widgets import RelatedFieldWidgetWrapper
from django.core.exceptions import NON_FIELD_ERRORS
from django.db import models
from django.http import HttpRequest
from django.utils.text import capfirst

from ..encoding import State, decode

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin


def form_errors(
    admin: ModelAdmin[Any], request: HttpRequest, current: models.Model, restored: State, editable: set[str]
) -> list[str]:
    """What the change form of ``current`` (the live row, or a deleted row rebuilt from its last state) says of
    the ``restored`` values (recorded, as :func:`~audit_events.encoding.encode` wrote them) of the ``editable``
    fields, the others keeping their current values. Empty: the form accepts them."""
    form_class = admin.get_form(request, current, change=True)
    unbound = form_class(instance=copy.copy(current))
    data: dict[str, Any] = {}
    for bound in unbound:
        name = bound.name
        value = bound.initial  # what the change form shows now: posted back unchanged
        model_field = _model_field(current, name)
        if name in editable and name in restored and model_field is not None:
            recorded = restored[name]
            # Many-to-many: the recorded list of related keys, as the select posts them.
            value = recorded if model_field.many_to_many else decode(model_field, recorded)
        _render(bound.field, bound.html_name, value, data)
    form = form_class(data=data, files=None, instance=copy.copy(current))  # no upload: files keep theirs
    if form.is_valid():
        return []
    found = []
    for name, messages in form.errors.items():
        label = form.fields[name].label if name in form.fields else None
        prefix = f"{capfirst(label or name)}: " if name != NON_FIELD_ERRORS else ""
        found += [prefix + str(message) for message in messages]
    return found


def _model_field(obj: models.Model, name: str) -> Any:
    try:
        return obj._meta.get_field(name)
    except Exception:  # a form field that is not a model field (FieldDoesNotExist)
        return None


def _render(field: forms.Field, name: str, value: Any, data: dict[str, Any]) -> None:
    """Put ``value`` into ``data`` as ``field``'s widget posts it (what ``value_from_datadict`` reads back).

    A file is not posted (its widget then keeps the current file, as a change
    form submitted without a new upload does).
    """
    widget = field.widget
    while isinstance(widget, RelatedFieldWidgetWrapper):  # the admin's "+"/"edit" links around a select
        widget = widget.widget
    prepared = field.prepare_value(value)
    if isinstance(widget, forms.FileInput):
        return
    if isinstance(widget, forms.MultiWidget):
        data.update(_split(widget, name, prepared))
    else:
        data[name] = _posted(widget, prepared)


def _split(widget: forms.MultiWidget, name: str, prepared: Any) -> dict[str, Any]:
    """What a split widget (a date and a time) posts: one entry per sub-widget."""
    parts: Any = prepared if isinstance(prepared, list | tuple) else widget.decompress(prepared)
    suffixes = getattr(widget, "widgets_names", [f"_{i}" for i in range(len(widget.widgets))])
    entries = {}
    for suffix, sub, part in zip(suffixes, widget.widgets, parts or [], strict=False):
        formatted = sub.format_value(part)
        entries[name + suffix] = "" if formatted is None else formatted
    return entries


def _posted(widget: forms.Widget, prepared: Any) -> Any:
    """What a one-entry widget posts for ``prepared``."""
    if isinstance(widget, forms.CheckboxInput):
        return "true" if widget.check_test(prepared) else "false"
    if getattr(widget, "allow_multiple_selected", False):  # many-to-many: one entry per key
        return [str(item) for item in (prepared or [])]
    formatted = widget.format_value(prepared)
    if isinstance(formatted, list):  # a single select formats its value as a list of one
        formatted = formatted[0] if formatted else ""
    return "" if formatted is None else formatted
