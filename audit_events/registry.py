"""What is recorded: the registered models' specs and the relations between them. Data only.

:func:`wanted` reads ``AUDIT_EVENTS`` into specs; ``wiring.sync`` (the only
module that patches Django) stores them here with :func:`add` and
:func:`rebuild` and connects what records them. Everything else asks this
module: :func:`spec_for`, :func:`parent_specs`, the many-to-many maps,
:func:`groups_deletes`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.apps import AppConfig, apps
from django.contrib.contenttypes.models import ContentType
from django.db import models

from . import conf
from .encoding import JSONValue, converts, encode, stored_encoder, value_field

ModelType = type[models.Model]
if TYPE_CHECKING:
    Field = models.Field[Any, Any]


@dataclass(frozen=True)
class ModelSpec:
    """How one registered (concrete) model is recorded."""

    model: ModelType
    fields: tuple[Field, ...]
    m2m_fields: tuple[models.ManyToManyField[Any, Any], ...] = ()

    @property
    def label(self) -> str:
        return self.model._meta.label

    @property
    def pk_field(self) -> Field:
        return self.model._meta.pk

    @functools.cached_property
    def names(self) -> tuple[str, ...]:
        """What a state of this model holds: its fields' names, then its many-to-many fields'."""
        return tuple(f.name for f in self.fields) + tuple(f.name for f in self.m2m_fields)

    @functools.cached_property
    def encoders(self) -> tuple[tuple[Field, str, Callable[[Any], JSONValue]], ...]:
        """Each field, its attname and its encoder of the values the database gives back, not ``None``
        (:func:`.encoding.stored_encoder`: a row as read, before the field's own ``from_db_value``)."""
        return tuple((f, f.attname, stored_encoder(f)) for f in self.fields)

    @functools.cached_property
    def name_set(self) -> frozenset[str]:
        return frozenset(self.names)

    def content_type_id(self, using: str | None = None) -> int:
        """The model's content type id on database ``using`` (an event is written
        there: ids may differ between databases); the router's choice by default.
        Django's cache keeps each database's own."""
        manager = ContentType.objects
        if using is not None and using != manager.db:  # db_manager() copies the manager: asked per event
            manager = manager.db_manager(using)
        return manager.get_for_model(self.model).pk

    def object_pk(self, pk: Any) -> str:
        """The row's primary key as canonical text (what ``Event.object_pk`` holds)."""
        if type(pk) is int and self._integer_key:  # the common case, on every write: its digits
            return str(pk)
        parts: tuple[Field, ...] | None = getattr(self.pk_field, "fields", None)
        encoded: JSONValue
        if parts:  # a composite key: each part through its own field, as a JSON list
            encoded = [_key_part(f, v) for f, v in zip(parts, self.pk_field.to_python(pk), strict=True)]
        else:
            encoded = _key_part(self.pk_field, pk)
        return encoded if isinstance(encoded, str) else json.dumps(encoded)

    @functools.cached_property
    def key_converts(self) -> bool:
        """A single-column key whose field turns what the database gives into objects of its own."""
        return not getattr(self.pk_field, "fields", None) and converts(value_field(self.pk_field))

    @functools.cached_property
    def _integer_key(self) -> bool:
        return isinstance(value_field(self.pk_field), (models.IntegerField, models.AutoField))

    def field(self, name: str) -> Field | None:
        for field in self.fields:
            if field.name == name:
                return field
        return None

    def state_of(self, instance: models.Model) -> dict[str, JSONValue]:
        """The full encoded state of an instance, from its loaded attributes (deferred ones are loaded)."""
        loaded = instance.__dict__  # read directly: the field descriptors cost a call per field
        state = {}
        for field in self.fields:
            value = loaded[field.attname] if field.attname in loaded else getattr(instance, field.attname)
            state[field.name] = encode(field, value)
        return state


def _key_part(field: Field, value: Any) -> JSONValue:
    """One key value, encoded; given as text (a URL, ``restore(M, "5")``) it is read first."""
    return encode(field, value if converts(value_field(field)) else field.to_python(value))


_specs: dict[ModelType, ModelSpec] = {}  # concrete models and their proxies


_M2MLink = tuple[ModelSpec, "models.ManyToManyField[Any, Any]"]
_m2m_links: dict[ModelType, list[_M2MLink]] = {}  # through model -> fields it stores
_m2m_targets: dict[ModelType, list[_M2MLink]] = {}  # related model (and proxies) -> fields pointing at it
# Through models (and proxies), auto-created or explicit -> the fields whose links their rows are.
_through_rows: dict[ModelType, list[_M2MLink]] = {}
_link_owners: set[ModelType] = set()  # registered models (and proxies) with links in explicit through rows
# Unregistered models whose delete reaches registered rows (CASCADE, SET_NULL...): their deletes are grouped.
_cascade_sources: set[ModelType] = set()


def spec_for(model: ModelType) -> ModelSpec | None:
    return _specs.get(model)


def parent_specs(spec: ModelSpec) -> list[ModelSpec]:
    """The registered multi-table parents of a registered model: its rows are theirs too."""
    return [parent for p in spec.model._meta.get_parent_list() if (parent := _specs.get(p)) is not None]


def m2m_links(through: ModelType) -> list[_M2MLink]:
    return _m2m_links.get(through, [])


def m2m_targets(model: ModelType) -> list[_M2MLink]:
    return _m2m_targets.get(model, [])


def through_rows(model: ModelType) -> list[_M2MLink]:
    """The many-to-many fields whose links are the rows of ``model``, an explicit through model."""
    return _through_rows.get(model, [])


def registered_specs() -> list[ModelSpec]:
    return list({id(s): s for s in _specs.values()}.values())


def resolve_label(label: str) -> ModelType | None:
    try:
        return apps.get_model(label)
    except (LookupError, ValueError):
        return None


def implied_by_wildcard(app_config: AppConfig) -> bool:
    """Whether ``"*"`` covers an app: not this app, nor Django's contrib apps (name those to record them)."""
    return app_config.label != "audit_events" and not app_config.name.startswith("django.contrib.")


def resolve_models(labels: Iterable[str]) -> list[ModelType]:
    """The models ``MODELS`` names, wildcards expanded against the apps installed now.

    ``"app_label.*"`` is every model of that app, ``"*"`` every model of every
    app :func:`implied_by_wildcard` covers. Labels that name nothing, and
    ``audit_events``' own models, are left out: the system checks report them.
    """
    found: dict[ModelType, None] = {}  # ordered, without repeats
    for label in labels:
        if label == conf.WILDCARD:
            for app_config in apps.get_app_configs():
                if implied_by_wildcard(app_config):
                    found.update(dict.fromkeys(app_config.get_models()))
        elif label.endswith("." + conf.WILDCARD):
            try:
                found.update(dict.fromkeys(apps.get_app_config(label[: -len(conf.WILDCARD) - 1]).get_models()))
            except LookupError:
                continue
        elif (model := resolve_label(label)) is not None:
            found[model] = None
    return [model for model in found if model._meta.app_label != "audit_events"]


def build_spec(model: ModelType, excluded: tuple[str, ...] = ()) -> ModelSpec:
    fields = tuple(
        f for f in model._meta.concrete_fields if f.name not in excluded and not getattr(f, "generated", False)
    )
    m2m_fields = tuple(f for f in model._meta.many_to_many if f.name not in excluded and links_readable(f))
    return ModelSpec(model=model, fields=fields, m2m_fields=m2m_fields)


def links_readable(field: models.ManyToManyField[Any, Any]) -> bool:
    """Whether the links of ``field`` can be recorded: each end of its through table is one column.

    An explicit through model may link its rows with ``ForeignObject`` s over
    several columns (Django's ``foreign_object`` tests do): such links are not
    recorded (``docs/limits.rst``); the through model's rows are, if it is
    registered, by their columns.
    """
    through: Any = field.remote_field.through
    ends = (through._meta.get_field(name) for name in (field.m2m_field_name(), field.m2m_reverse_field_name()))
    return all(end.concrete for end in ends)


def _excluded(config: conf.Config, model: ModelType) -> tuple[str, ...]:
    """The fields ``model`` does not record: its own exclusions and its multi-table parents'.

    A parent's excluded field is the same column in every child's row: a secret
    kept out of the parent's events must be kept out of its children's too.
    """
    labels = [model._meta.label_lower, *(parent._meta.label_lower for parent in model._meta.get_parent_list())]
    return tuple(name for label in labels for name in config.exclude_fields.get(label, ()))


def wanted() -> dict[ModelType, ModelSpec]:
    """The specs the current setting asks for, by concrete model."""
    config = conf.get_config()
    specs: dict[ModelType, ModelSpec] = {}
    for model in resolve_models(config.models):
        concrete = model._meta.concrete_model
        assert concrete is not None
        specs[concrete] = build_spec(concrete, _excluded(config, concrete))
    return specs


def family(model: ModelType) -> Iterator[ModelType]:
    """The concrete model and every proxy of it: signals arrive with either as sender."""
    yield model
    for other in apps.get_models():
        if other._meta.proxy and other._meta.concrete_model is model:
            yield other


def add(spec: ModelSpec) -> None:
    for sender in family(spec.model):
        _specs[sender] = spec


def remove(model: ModelType) -> None:
    for sender in family(model):
        _specs.pop(sender, None)


def recorded(model: ModelType) -> bool:
    """Whether the saves of ``model`` are recorded: it is registered, or its rows are links of a registered
    model's many-to-many field."""
    return model in _specs or model in _through_rows


def groups_deletes(model: ModelType) -> bool:
    """Whether a delete of ``model`` is one operation: it is registered, or reaches registered rows."""
    return model in _specs or model in _cascade_sources or model in _through_rows


def auto_throughs() -> list[ModelType]:
    """The auto-created through models (and proxies) of registered many-to-many fields: ``m2m_changed``."""
    return list(_m2m_links)


def link_targets() -> list[ModelType]:
    """The models (and proxies) registered many-to-many fields point at: their deletes remove links."""
    return list(_m2m_targets)


def through_models() -> list[ModelType]:
    """Every through model (and proxy) of a registered many-to-many field, auto-created or explicit."""
    return list(_through_rows)


def link_owners() -> list[ModelType]:
    """The registered models (and proxies) whose links are rows of an explicit through model."""
    return list(_link_owners)


def cascade_sources() -> list[ModelType]:
    return list(_cascade_sources)


def rebuild(specs: list[ModelSpec]) -> None:
    """The many-to-many maps and the cascade sources of ``specs``, the registered models."""
    _m2m_links.clear()
    _m2m_targets.clear()
    _through_rows.clear()
    _link_owners.clear()
    for spec in specs:
        for field in spec.m2m_fields:
            _map_links(spec, field)
    _cascade_sources.clear()
    _cascade_sources.update(_reaching({spec.model for spec in specs}))


def _map_links(spec: ModelSpec, field: models.ManyToManyField[Any, Any]) -> None:
    related: Any = field.related_model
    table: Any = field.remote_field.through
    for model in family(table):
        _through_rows.setdefault(model, []).append((spec, field))
    if not table._meta.auto_created:  # Django sends signals for its rows: they say it all
        _link_owners.update(family(spec.model))
        return
    # The relation managers' writes send m2m_changed; the rows' own saves and QuerySet
    # writes are recorded as an explicit through model's, their deletes without signals
    # (``querysets``, ``wiring``): a receiver would cost remove() a SELECT.
    _m2m_links.setdefault(table, []).append((spec, field))
    for target in family(related._meta.concrete_model):
        _m2m_targets.setdefault(target, []).append((spec, field))


_INERT = (models.PROTECT, models.RESTRICT, models.DO_NOTHING)


def _reaching(registered: set[ModelType]) -> set[ModelType]:
    """The unregistered models whose deletes cascade to, or set NULL on, rows of ``registered``.

    Found transitively, through any on_delete but PROTECT, RESTRICT and
    DO_NOTHING. Without grouping them, each SET_NULL update Django's Collector
    makes would be an operation of its own, apart from the deletes of the same
    cascade.
    """
    reached = set(registered)
    found: set[ModelType] = set()
    while new := {source for source in _sources_reaching(reached) if source not in reached}:
        reached |= new
        found |= new
    return found


def _sources_reaching(reached: set[ModelType]) -> Iterator[ModelType]:
    for model in apps.get_models():
        if model._meta.concrete_model not in reached and model not in reached:
            continue
        for field in model._meta.fields:  # a ForeignObject (no column of its own) cascades too
            remote: Any = field.remote_field
            if (field.many_to_one or field.one_to_one) and remote.on_delete not in _INERT:
                yield remote.model._meta.concrete_model
