"""Which models are recorded, and the wiring that records them.

The registry is rebuilt from ``AUDIT_EVENTS`` when the app is ready and
whenever the setting changes (``override_settings``). Registering a model
connects its signals (per sender, so unregistered models keep Django's fast
delete path and pay nothing), makes its ``save_base`` atomic, lets the UPDATE
and INSERT of its saves return the rows they write (``capture.do_update``,
``capture.do_insert``), groups each ``delete()`` into one operation and
records its QuerySet writes (``querysets.install``); unregistering undoes
exactly that.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.apps import AppConfig, apps
from django.contrib.contenttypes.models import ContentType
from django.core.serializers.base import DeserializedObject
from django.db import models, router
from django.db.models import signals

from . import conf
from .encoding import JSONValue, converts, encode, stored_encoder, value_field
from .transactions import atomic_write, immediate

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

    def snapshot(self, instance: models.Model) -> dict[str, JSONValue]:
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
# model -> the save_base and delete it had in its own __dict__ (None: inherited)
_wrapped: dict[ModelType, dict[str, Callable[..., Any] | None]] = {}


_M2MLink = tuple[ModelSpec, "models.ManyToManyField[Any, Any]"]
_m2m_links: dict[ModelType, list[_M2MLink]] = {}  # through model -> fields it stores
_m2m_targets: dict[ModelType, list[_M2MLink]] = {}  # related model (and proxies) -> fields pointing at it
# Explicit through models (and proxies) -> the fields whose links their rows are; and the
# save_base and delete each had in its own __dict__ (None: inherited) if it is not registered.
_through_rows: dict[ModelType, list[_M2MLink]] = {}
_through_wrapped: dict[ModelType, dict[str, Callable[..., Any] | None]] = {}
_link_owners: set[ModelType] = set()  # registered models (and proxies) with links in such rows
# Unregistered models whose delete reaches registered rows (CASCADE, SET_NULL...),
# and the delete they had in their own __dict__ (None: inherited).
_deleting_parents: dict[ModelType, Callable[..., Any] | None] = {}


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


def sync() -> None:
    """Make the registry match the current setting."""
    from . import inheritance

    config = conf.get_config()
    wanted: dict[ModelType, ModelSpec] = {}
    for model in resolve_models(config.models):
        concrete = model._meta.concrete_model
        assert concrete is not None
        wanted[concrete] = build_spec(concrete, _excluded(config, concrete))

    inheritance.unwire()  # first: it wraps the save_base that registering snapshots
    _forget_deleting_parents()  # first: a parent may be registered now, and must not be torn down after
    _forget_through_models()  # the same
    for model in [m for m in _wrapped if m not in wanted]:
        _unregister(model)
    for model, spec in wanted.items():
        if model in _wrapped:
            _unregister(model)
        _register(spec)
    _rebuild_m2m(list(wanted.values()))
    _find_deleting_parents()
    inheritance.wire(registered_specs())  # writes through the parents of registered multi-table children
    _wrap_through_models()
    recorded = bool(_specs or _through_rows)
    DeserializedObject.save = _atomic_deserialized_save if recorded else _django_deserialized_save  # type: ignore[method-assign]


def _family(model: ModelType) -> Iterator[ModelType]:
    """The concrete model and every proxy of it: signals arrive with either as sender."""
    yield model
    for other in apps.get_models():
        if other._meta.proxy and other._meta.concrete_model is model:
            yield other


def _uid(signal_name: str, model: ModelType) -> str:
    return f"audit_events.{signal_name}.{model._meta.label_lower}"


def _register(spec: ModelSpec) -> None:
    from . import capture, querysets

    model = spec.model
    for sender in _family(model):
        _specs[sender] = spec
        signals.pre_save.connect(capture.pre_save, sender=sender, dispatch_uid=_uid("pre_save", sender))
        signals.post_save.connect(capture.post_save, sender=sender, dispatch_uid=_uid("post_save", sender))
        signals.pre_delete.connect(capture.pre_delete, sender=sender, dispatch_uid=_uid("pre_delete", sender))
        signals.post_delete.connect(capture.post_delete, sender=sender, dispatch_uid=_uid("post_delete", sender))
        querysets.install(sender)
    _wrapped[model] = {name: model.__dict__.get(name) for name in ("save_base", "_do_update", "_do_insert", "delete")}
    model.save_base = _atomic_save_base(model.save_base)  # type: ignore[method-assign]
    model._do_update = _returning(model._do_update, capture.do_update)  # type: ignore[method-assign]
    model._do_insert = _returning(model._do_insert, capture.do_insert)  # type: ignore[attr-defined]
    model.delete = _one_operation(model.delete)  # type: ignore[method-assign]


def _unregister(model: ModelType) -> None:
    from . import querysets

    for sender in _family(model):
        querysets.uninstall(sender)
        _specs.pop(sender, None)
        signals.pre_save.disconnect(sender=sender, dispatch_uid=_uid("pre_save", sender))
        signals.post_save.disconnect(sender=sender, dispatch_uid=_uid("post_save", sender))
        signals.pre_delete.disconnect(sender=sender, dispatch_uid=_uid("pre_delete", sender))
        signals.post_delete.disconnect(sender=sender, dispatch_uid=_uid("post_delete", sender))
    for name, original in _wrapped.pop(model).items():
        if original is None:
            delattr(model, name)
        else:
            setattr(model, name, original)


def _atomic_save_base(save_base: Callable[..., Any]) -> Callable[..., Any]:
    """Make one transaction of the save and its event.

    Django sends ``pre_save``/``post_save`` outside its own transaction; without
    this, a failing event insert in autocommit mode would leave the write
    committed and unrecorded. A save that fails between the two signals
    leaves nothing for a later save of the instance (``capture.handoffs``).
    """
    from .handoffs import forget_handoffs, handoff_depth

    @functools.wraps(save_base)
    def atomic_save_base(self: models.Model, *args: Any, **kwargs: Any) -> Any:
        if type(self) not in _specs and type(self) not in _through_rows:
            return save_base(self, *args, **kwargs)
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        depth = handoff_depth(self)
        try:
            with atomic_write(using):
                return save_base(self, *args, **kwargs)
        finally:
            forget_handoffs(self, depth)

    return atomic_save_base


_django_deserialized_save = DeserializedObject.save


def _atomic_deserialized_save(
    self: DeserializedObject, save_m2m: bool = True, using: str | None = None, **kwargs: Any
) -> None:
    """``DeserializedObject.save()`` (``loaddata``, or a deserialized object saved by hand): it calls
    ``models.Model.save_base`` itself, past the model's own (:func:`_atomic_save_base`), so outside a
    transaction the save and its event would not be one; for a recorded model, they are made one here."""
    from .handoffs import forget_handoffs, handoff_depth

    model = type(self.object)
    if model not in _specs and model not in _through_rows:
        return _django_deserialized_save(self, save_m2m, using, **kwargs)
    depth = handoff_depth(self.object)
    try:
        with atomic_write(using or router.db_for_write(model, instance=self.object)):
            return _django_deserialized_save(self, save_m2m, using, **kwargs)
    finally:
        forget_handoffs(self.object, depth)


def _returning(method: Callable[..., Any], capture: Callable[..., Any]) -> Callable[..., Any]:
    """Let the UPDATE or INSERT of a save (``Model._do_update``/``_do_insert``) return the rows it
    writes (``capture.do_update``/``do_insert``). A registered child inherits its registered
    parent's wrapper and wraps it again: the inner one does the work (``audit_events_wrapper``)."""

    @functools.wraps(method)
    def returning(self: models.Model, *args: Any, **kwargs: Any) -> Any:
        return capture(method, self, *args, **kwargs)

    returning.audit_events_wrapper = True  # type: ignore[attr-defined]
    return returning


def groups_deletes(model: ModelType) -> bool:
    """Whether a delete of ``model`` is one operation: it is registered, or reaches registered rows."""
    return model in _specs or model in _deleting_parents or model in _through_rows


def _one_operation(delete: Callable[..., Any]) -> Callable[..., Any]:
    """Group everything one ``delete()`` writes (cascades, SET_NULL updates) into one operation,
    whose DELETE statements return the rows they delete (``capture.deleting``)."""
    from .handoffs import deleting
    from .operations import operation

    @functools.wraps(delete)
    def delete_in_one_operation(self: models.Model, *args: Any, **kwargs: Any) -> Any:
        if not groups_deletes(type(self)):
            return delete(self, *args, **kwargs)
        using = kwargs.get("using") or (args[0] if args else None) or router.db_for_write(type(self), instance=self)
        with immediate(using), operation(), deleting():
            return delete(self, *args, **kwargs)

    return delete_in_one_operation


def _rebuild_m2m(specs: list[ModelSpec]) -> None:
    """Connect ``m2m_changed`` per auto-created through model, and the delete signals of related models;
    the save and delete signals of explicit through models, whose rows are written directly too."""
    from . import m2m

    for through in _m2m_links:
        signals.m2m_changed.disconnect(sender=through, dispatch_uid=_uid("m2m_changed", through))
    for target in _m2m_targets:
        signals.pre_delete.disconnect(sender=target, dispatch_uid=_uid("m2m_target_pre", target))
        signals.post_delete.disconnect(sender=target, dispatch_uid=_uid("m2m_target_post", target))
    for through in _through_rows:
        for signal, receiver in _through_receivers(m2m).items():
            signal.disconnect(sender=through, dispatch_uid=_uid(f"through_{receiver.__name__}", through))
    for owner in _link_owners:
        signals.pre_delete.disconnect(sender=owner, dispatch_uid=_uid("link_owner_pre", owner))
    _m2m_links.clear()
    _m2m_targets.clear()
    _through_rows.clear()
    _link_owners.clear()
    for spec in specs:
        for field in spec.m2m_fields:
            related: Any = field.related_model
            table: Any = field.remote_field.through
            for model in _family(table):
                _through_rows.setdefault(model, []).append((spec, field))
            if not table._meta.auto_created:  # Django sends signals for its rows: they say it all
                _link_owners.update(_family(spec.model))
                continue
            # The relation managers' writes send m2m_changed; the rows' own saves and QuerySet
            # writes are recorded as an explicit through model's, their deletes without signals
            # (``querysets``, ``_deleting_links``): a receiver would cost remove() a SELECT.
            _m2m_links.setdefault(table, []).append((spec, field))
            for target in _family(related._meta.concrete_model):
                _m2m_targets.setdefault(target, []).append((spec, field))
    for through in _m2m_links:
        signals.m2m_changed.connect(m2m.m2m_changed, sender=through, dispatch_uid=_uid("m2m_changed", through))
    for target in _m2m_targets:
        signals.pre_delete.connect(m2m.target_pre_delete, sender=target, dispatch_uid=_uid("m2m_target_pre", target))
        signals.post_delete.connect(m2m.target_post_delete, sender=target, dispatch_uid=_uid("m2m_target_post", target))
    for through in _through_rows:
        for signal, receiver in _through_receivers(m2m, through).items():
            signal.connect(receiver, sender=through, dispatch_uid=_uid(f"through_{receiver.__name__}", through))
    for owner in _link_owners:
        signals.pre_delete.connect(m2m.owner_pre_delete, sender=owner, dispatch_uid=_uid("link_owner_pre", owner))


def _through_receivers(m2m: Any, through: ModelType | None = None) -> dict[Any, Callable[..., Any]]:
    """The receivers of a through model's rows (all of them: ``through`` None); an auto-created
    one's deletes have none, so that Django keeps deleting its rows without reading them."""
    receivers = {signals.pre_save: m2m.through_pre_save, signals.post_save: m2m.through_post_save}
    if through is None or not through._meta.auto_created:
        receivers |= {signals.pre_delete: m2m.through_pre_delete, signals.post_delete: m2m.through_post_delete}
    return receivers


def _wrap_through_models() -> None:
    """An unregistered explicit through model's save is one transaction with its events, and its
    deletes and QuerySet writes are recorded (``m2m``), as a registered model's."""
    from . import querysets

    for model in {m._meta.concrete_model for m in _through_rows}:
        assert model is not None
        if model in _wrapped:
            continue
        wrapped = _through_wrapped[model] = {"save_base": model.__dict__.get("save_base")}
        model.save_base = _atomic_save_base(model.save_base)  # type: ignore[method-assign]
        if model._meta.auto_created:
            wrapped["_save_table"] = model.__dict__.get("_save_table")
            model._save_table = _saving_links(model._save_table)  # type: ignore[attr-defined]
            wrapped["delete"] = model.__dict__.get("delete")
            model.delete = _deleting_links(model.delete)  # type: ignore[method-assign]
        elif model not in _deleting_parents:  # else its delete is one operation already
            wrapped["delete"] = model.__dict__.get("delete")
            model.delete = _one_operation(model.delete)  # type: ignore[method-assign]
        for sender in _family(model):
            querysets.install(sender)


def _saving_links(save_table: Callable[..., Any]) -> Callable[..., Any]:
    """The write of a saved row of an auto-created through table: Django sends it no
    ``pre_save``/``post_save`` (``Model.save_base`` skips them for auto-created models), and
    ``loaddata`` calls ``Model.save_base`` itself, past the model's own; both call the
    instance's ``_save_table`` (``Model._save_table(raw, cls, force_insert, force_update,
    using, update_fields)``). The links it changes are recorded as for an explicit through
    model's row, in the save's transaction."""
    from . import m2m

    @functools.wraps(save_table)
    def save_recording_links(self: models.Model, *args: Any, **kwargs: Any) -> Any:
        using = kwargs["using"] if "using" in kwargs else args[4]
        with atomic_write(using), m2m.through_row_saved(self, using):
            return save_table(self, *args, **kwargs)

    return save_recording_links


def _deleting_links(delete: Callable[..., Any]) -> Callable[..., Any]:
    """``row.delete()`` of an auto-created through table: Django deletes it by key, without a
    signal; the owners' links it changes are recorded as for a ``QuerySet.delete()`` of it."""
    from . import m2m

    @functools.wraps(delete)
    def delete_recording_links(self: models.Model, *args: Any, **kwargs: Any) -> Any:
        using = kwargs.get("using") or (args[0] if args else None) or router.db_for_write(type(self), instance=self)
        row: models.QuerySet[Any] = models.QuerySet(type(self), using=using)
        with m2m.through_rows_written(row.filter(pk=self.pk), matched=True):
            return delete(self, *args, **kwargs)

    return delete_recording_links


def _forget_through_models() -> None:
    from . import querysets

    for model, originals in list(_through_wrapped.items()):
        for sender in _family(model):
            querysets.uninstall(sender)
        for name, original in originals.items():
            if original is None:
                delattr(model, name)
            else:
                setattr(model, name, original)
    _through_wrapped.clear()


def _forget_deleting_parents() -> None:
    from . import querysets

    for model, original in list(_deleting_parents.items()):
        for sender in _family(model):
            querysets.uninstall(sender)
        if original is None:
            del model.delete
        else:
            model.delete = original  # type: ignore[method-assign]
    _deleting_parents.clear()


def _find_deleting_parents() -> None:
    """Group the deletes of unregistered models that cascade to, or set NULL on, registered rows.

    Without this, each SET_NULL update Django's Collector makes would be an
    operation of its own, apart from the deletes of the same cascade. The
    models found (transitively, through any on_delete but PROTECT, RESTRICT
    and DO_NOTHING) get the wrapped ``delete()`` and the audited QuerySets
    registered models have; nothing else of theirs is recorded.
    """
    from . import querysets

    reached = {spec.model for spec in registered_specs()}
    parents: set[ModelType] = set()
    inert = (models.PROTECT, models.RESTRICT, models.DO_NOTHING)
    changed = True
    while changed:
        changed = False
        for model in apps.get_models():
            for field in model._meta.fields:  # a ForeignObject (no column of its own) cascades too
                if not field.many_to_one and not field.one_to_one:
                    continue
                if model._meta.concrete_model not in reached and model not in reached:
                    continue
                remote: Any = field.remote_field
                if remote.on_delete in inert:
                    continue
                parent: Any = remote.model._meta.concrete_model
                if parent not in reached:
                    reached.add(parent)
                    parents.add(parent)
                    changed = True
    for model in parents - set(_wrapped):
        _deleting_parents[model] = model.__dict__.get("delete")
        model.delete = _one_operation(model.delete)  # type: ignore[method-assign]
        for sender in _family(model):
            querysets.install(sender)
