"""Recorded values shown as the Django admin shows them.

A foreign key shows its target's ``str()`` and key (a link to its change
page when it exists and the user may view it), a many-to-many field its
targets' names, choices their label, booleans Django's icons, dates and times
in the active time zone and locale with seconds, JSON pretty-printed; the rest
goes through Django's own ``display_for_field``. A model admin changes how one
of its fields is shown with ``display_recorded_value`` (see
:class:`~audit_events.admin.AuditedAdminMixin`).

Queries: a :class:`Values` collects the keys its events point to and reads
them with one query per related model, whatever the number of events shown.
"""

from __future__ import annotations

import datetime
import json
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.contrib.admin.utils import display_for_field, quote
from django.db import models
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.formats import date_format, time_format
from django.utils.html import conditional_escape, format_html, format_html_join, strip_tags
from django.utils.safestring import SafeString

from .. import registry
from ..encoding import JSONValue, State, decode
from ..replay import instance_from_state

if TYPE_CHECKING:
    from django.contrib.admin import AdminSite

EMPTY = "—"


class Values:
    """Shows recorded values for one page; ``want()`` every state first, then ``show()``."""

    def __init__(self, request: HttpRequest | None = None, site: AdminSite | None = None) -> None:
        self.request, self.site = request, site
        self._wanted: dict[type[models.Model], set[Any]] = defaultdict(set)
        self._found: dict[type[models.Model], dict[Any, models.Model]] = defaultdict(dict)
        self._read: dict[type[models.Model], set[Any]] = defaultdict(set)

    def want(self, model: type[models.Model] | None, state: dict[str, JSONValue] | None) -> None:
        """Note the rows ``state``'s foreign keys and many-to-many links point to (read on the first ``show``)."""
        spec = registry.spec_for(model) if model is not None else None
        if spec is None or not state:
            return
        for field in (*spec.fields, *spec.m2m_fields):
            value = state.get(field.name)
            if value is not None and field.is_relation and field.related_model is not None:
                self._want_keys(field, value)

    def _want_keys(self, field: Any, value: JSONValue) -> None:
        """Note the rows one recorded foreign key, or one list of many-to-many keys, points to."""
        target: Any = field.related_model
        keys = value if field.many_to_many and isinstance(value, list) else [value]
        key_field = target._meta.pk if field.many_to_many else getattr(field, "target_field", target._meta.pk)
        for key in keys:
            try:
                self._wanted[target].add(decode(key_field, key))
            except (TypeError, ValueError):
                continue

    def show(self, model: type[models.Model] | None, name: str, value: JSONValue) -> SafeString:
        """One recorded value as HTML (escaped)."""
        spec = registry.spec_for(model) if model is not None else None
        field = field_of(spec, name)
        if field is None:
            return _unknown(value)
        shown = self._hooked(model, field, value)
        if shown is not None:
            return conditional_escape(shown)
        if value is None and not isinstance(field, models.BooleanField):
            return conditional_escape(EMPTY)
        if field.many_to_many:
            return self._targets(field, value)
        if field.is_relation and field.related_model is not None:
            return self._target(field.related_model, value, getattr(field, "target_field", None))
        return _plain(field, value)

    def text(self, model: type[models.Model] | None, name: str, value: JSONValue) -> str | None:
        """A recorded value as a one-line summary shows it: the admin's ``display_recorded_value`` answer as
        plain text (its HTML stripped), or ``None`` where it gives none (the summary shows the raw value)."""
        field = field_of(registry.spec_for(model) if model is not None else None, name)
        answer = self._hooked(model, field, value) if field is not None else None
        if answer is None:
            return None
        return strip_tags(answer) if isinstance(answer, SafeString) else str(answer)

    def _hook(self, model: type[models.Model] | None) -> Any:
        admin = self.site._registry.get(model) if self.site is not None and model is not None else None
        return getattr(admin, "display_recorded_value", None)

    def _hooked(self, model: type[models.Model] | None, field: Any, value: JSONValue) -> Any:
        """The admin's ``display_recorded_value(field, decoded value)``, or ``None``."""
        hook = self._hook(model)
        if hook is None:
            return None
        try:
            decoded = None if value is None else decode(field, value) if not field.many_to_many else value
        except (TypeError, ValueError):
            decoded = value
        return hook(field, decoded)

    def _read_wanted(self) -> None:
        """One query per related model for the keys wanted and not read yet."""
        for model, keys in self._wanted.items():
            missing = keys - self._read[model]
            if missing:
                self._found[model].update(model._base_manager.in_bulk(list(missing)))
                self._read[model] |= missing

    def _targets(self, field: Any, value: JSONValue) -> SafeString:
        """A many-to-many field's recorded list of keys: each target as :meth:`_target` shows it."""
        keys = value if isinstance(value, list) else []
        shown = format_html_join(", ", "{}", ((self._target(field.related_model, k),) for k in keys))
        return shown or conditional_escape(EMPTY)

    def _target(self, model: Any, key: Any, key_field: Any = None) -> SafeString:
        try:
            pk = decode(key_field or model._meta.pk, key)
        except (TypeError, ValueError):
            return conditional_escape(str(key))
        if pk not in self._read[model]:
            self._wanted[model].add(pk)
            self._read_wanted()
        target = self._found[model].get(pk)
        if target is None:
            return format_html("<span class='audit-gone'>#{}</span>", pk)
        url = self._change_url(model, target)
        if url is None:
            return format_html("{} <small>(#{})</small>", target, pk)
        return format_html('<a href="{}">{}</a> <small>(#{})</small>', url, target, pk)

    def _change_url(self, model: Any, target: models.Model) -> str | None:
        admin = self.site._registry.get(model) if self.site is not None else None
        if admin is None or self.request is None or not admin.has_view_or_change_permission(self.request, target):
            return None
        opts = model._meta
        try:
            assert self.site is not None
            return reverse(
                f"admin:{opts.app_label}_{opts.model_name}_change",
                args=[quote(target.pk)],
                current_app=self.site.name,
            )
        except NoReverseMatch:
            return None


def field_of(spec: registry.ModelSpec | None, name: str) -> Any:
    if spec is None:
        return None
    return spec.field(name) or next((f for f in spec.m2m_fields if f.name == name), None)


def _unknown(value: JSONValue) -> SafeString:
    """A value of a field the model does not have (now), or of a model not registered: as recorded."""
    return conditional_escape(EMPTY if value is None else _json(value) if isinstance(value, dict | list) else value)


def _plain(field: Any, value: JSONValue) -> SafeString:
    try:
        decoded = decode(field, value)
    except (TypeError, ValueError):
        return conditional_escape(str(value))
    if getattr(field, "flatchoices", None) or isinstance(field, models.BooleanField):
        return conditional_escape(display_for_field(decoded, field, EMPTY))
    if isinstance(field, models.JSONField):
        return format_html('<pre class="audit-json">{}</pre>', _json(decoded))
    if isinstance(decoded, datetime.datetime):
        local = timezone.localtime(decoded) if timezone.is_aware(decoded) else decoded
        return conditional_escape(f"{date_format(local, 'DATE_FORMAT')} {time_format(local, 'H:i:s T')}".strip())
    if isinstance(decoded, datetime.time):
        return conditional_escape(time_format(decoded, "H:i:s"))
    if isinstance(decoded, datetime.date):
        return conditional_escape(date_format(decoded, "DATE_FORMAT"))
    if isinstance(field, models.DecimalField | models.FileField):
        return conditional_escape(str(decoded))  # a Decimal as entered; a file by its name
    return conditional_escape(display_for_field(decoded, field, EMPTY, avoid_link=True))


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def want_events(values: Values, events: Iterable[Any]) -> None:
    """Note what a page of events points to, from both sides of each change."""
    for event in events:
        model = event.content_type.model_class()
        values.want(model, event.state)
        if event.changes:
            values.want(model, {name: change[0] for name, change in event.changes.items()})
            values.want(model, {name: change[1] for name, change in event.changes.items()})


def state_label(model: type[models.Model], state: State | None) -> str:
    """``str()`` of the row a recorded state describes (a deleted row's label)."""
    spec = registry.spec_for(model)
    if spec is None or state is None:
        return ""
    try:
        return str(instance_from_state(model, spec, state))
    except Exception:  # a __str__ that needs related rows the state does not carry
        return ""
