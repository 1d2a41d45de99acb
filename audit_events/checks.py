"""System checks for the ``AUDIT_EVENTS`` setting: ``manage.py check`` fails on bad settings.

Ids are stable: E001 unknown model (or app, for ``"app_label.*"``), E002 unknown
excluded field, E003 the event model registered, E004 unknown key, E005 malformed
value (``RELAY``'s included), E006 a relay publisher that cannot be imported;
W001 a field excluded on a multi-table child only, which its registered parent
still records; W002 a MySQL or MariaDB connection whose charset is not utf8mb4.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.apps import AppConfig, apps
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.utils.module_loading import import_string

from . import conf

_HINT_MODELS = 'List models as "app_label.ModelName", for example AUDIT_EVENTS = {"MODELS": ["bank.Account"]}.'


@register(Tags.models)
def check_settings(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    raw = conf.raw_setting()
    if not isinstance(raw, Mapping):
        return [Error("AUDIT_EVENTS must be a dict.", hint=_HINT_MODELS, id="audit_events.E005")]
    errors = _unknown_keys("AUDIT_EVENTS", raw, conf.KNOWN_KEYS)
    errors += _check_models(raw.get("MODELS", []))
    errors += _check_excludes(raw.get("EXCLUDE_FIELDS", {}))
    errors += _check_inherited_exclusions(raw.get("MODELS", []), raw.get("EXCLUDE_FIELDS", {}))
    snapshot_every = raw.get("SNAPSHOT_EVERY", conf.DEFAULT_SNAPSHOT_EVERY)
    if isinstance(snapshot_every, bool) or not isinstance(snapshot_every, int) or snapshot_every < 1:
        errors.append(
            Error(
                f"AUDIT_EVENTS['SNAPSHOT_EVERY'] must be a positive integer, not {snapshot_every!r}.",
                id="audit_events.E005",
            )
        )
    if "RELAY" in raw:
        errors += _check_relay(raw["RELAY"])
    prepare = raw.get("PREPARE_STATEMENTS", True)
    if not isinstance(prepare, bool):
        errors.append(
            Error(f"AUDIT_EVENTS['PREPARE_STATEMENTS'] must be True or False, not {prepare!r}.", id="audit_events.E005")
        )
    return errors


def _unknown_keys(name: str, setting: Mapping[Any, Any], known: frozenset[str]) -> list[CheckMessage]:
    return [
        Error(
            f"{name} has an unknown key {key!r}.",
            hint=f"Known keys: {', '.join(sorted(known))}.",
            id="audit_events.E004",
        )
        for key in sorted(set(setting) - known)
    ]


def _model(label: Any) -> tuple[Any, str | None]:
    if not isinstance(label, str) or label.count(".") != 1:
        return None, f"{label!r} is not a model label of the form 'app_label.ModelName'."
    app_label, model_name = label.split(".")
    try:
        app = apps.get_app_config(app_label)
    except LookupError:
        return None, f"{label!r}: no installed app has the label {app_label!r}."
    try:
        return app.get_model(model_name), None
    except LookupError:
        return None, f"{label!r}: app {app_label!r} has no model {model_name!r}."


def _label_hint(label: Any) -> str:
    """The installed labels closest to a mistyped one (``"app_label.*"`` too), else how to write one."""
    if not isinstance(label, str):
        return _HINT_MODELS
    if label.endswith("." + conf.WILDCARD):  # compare the app labels alone: they are short
        label, suffix, cutoff = label[: -len(conf.WILDCARD) - 1], "." + conf.WILDCARD, 0.6
        known = {app.label.lower(): app.label for app in apps.get_app_configs()}
    else:  # whole labels: the app label they share makes any two of an app look alike
        suffix, cutoff = "", 0.8
        known = {model._meta.label_lower: model._meta.label for model in apps.get_models()}
    close = difflib.get_close_matches(label.lower(), known, n=3, cutoff=cutoff)
    if not close:
        return _HINT_MODELS
    return f"Did you mean {' or '.join(repr(known[name] + suffix) for name in close)}?"


def _check_models(labels: Any) -> list[CheckMessage]:
    if isinstance(labels, str) or not isinstance(labels, (list, tuple)):
        return [
            Error("AUDIT_EVENTS['MODELS'] must be a list of model labels.", hint=_HINT_MODELS, id="audit_events.E005")
        ]
    errors: list[CheckMessage] = []
    for label in labels:
        if label == conf.WILDCARD:
            continue
        if isinstance(label, str) and label.endswith("." + conf.WILDCARD):
            errors += _check_app_wildcard(label)
            continue
        model, problem = _model(label)
        if problem:
            errors.append(Error(f"AUDIT_EVENTS['MODELS']: {problem}", hint=_label_hint(label), id="audit_events.E001"))
        elif model._meta.app_label == "audit_events":
            errors.append(
                Error(
                    f"AUDIT_EVENTS['MODELS'] lists {label!r}: the event table cannot record itself.",
                    hint="Remove it; events are append-only and protected by the database instead.",
                    id="audit_events.E003",
                )
            )
    return errors


def _check_app_wildcard(label: str) -> list[CheckMessage]:
    app_label = label[: -len(conf.WILDCARD) - 1]
    if app_label == "audit_events":
        return [
            Error(
                f"AUDIT_EVENTS['MODELS'] lists {label!r}: the event table cannot record itself.",
                hint='Remove it; "*" never includes audit_events\' own models.',
                id="audit_events.E003",
            )
        ]
    if not any(app.label == app_label for app in apps.get_app_configs()):
        return [
            Error(
                f"AUDIT_EVENTS['MODELS']: {label!r}: no installed app has the label {app_label!r}.",
                hint=_label_hint(label),
                id="audit_events.E001",
            )
        ]
    return []


def _check_excludes(excludes: Any) -> list[CheckMessage]:
    if not isinstance(excludes, Mapping):
        return [
            Error(
                "AUDIT_EVENTS['EXCLUDE_FIELDS'] must be a dict of model label to a list of field names.",
                id="audit_events.E005",
            )
        ]
    errors: list[CheckMessage] = []
    for label, names in excludes.items():
        model, problem = _model(label)
        if problem:
            errors.append(
                Error(f"AUDIT_EVENTS['EXCLUDE_FIELDS']: {problem}", hint=_label_hint(label), id="audit_events.E001")
            )
            continue
        if model._meta.proxy:
            concrete = model._meta.concrete_model._meta.label
            errors.append(
                Error(
                    f"AUDIT_EVENTS['EXCLUDE_FIELDS'] names the proxy model {label!r}: its events are recorded "
                    f"under {concrete}, so these exclusions would be ignored.",
                    hint=f"List the fields under {concrete!r} instead.",
                    id="audit_events.E001",
                )
            )
            continue
        if isinstance(names, str) or not isinstance(names, (list, tuple)):
            errors.append(
                Error(
                    f"AUDIT_EVENTS['EXCLUDE_FIELDS'][{label!r}] must be a list of field names.", id="audit_events.E005"
                )
            )
            continue
        known = {f.name for f in [*model._meta.concrete_fields, *model._meta.many_to_many]}
        for name in names:
            if name not in known:
                errors.append(
                    Error(
                        f"AUDIT_EVENTS['EXCLUDE_FIELDS'][{label!r}] names {name!r}, which is not a field of "
                        f"{model._meta.label}.",
                        hint=f"Its fields: {', '.join(sorted(known))}.",
                        id="audit_events.E002",
                    )
                )
            elif name == model._meta.pk.name:
                errors.append(
                    Error(
                        f"AUDIT_EVENTS['EXCLUDE_FIELDS'][{label!r}] excludes the primary key {name!r}.",
                        hint="The primary key identifies the row and is always recorded.",
                        id="audit_events.E002",
                    )
                )
    return errors


def _check_inherited_exclusions(labels: Any, excludes: Any) -> list[CheckMessage]:
    """W001: a child excludes a field its registered multi-table parent declares and records."""
    if not isinstance(labels, (list, tuple)) or not isinstance(excludes, Mapping):
        return []  # E005, reported above
    registered = {model for label in labels if (model := _model(label)[0]) is not None}
    excluded = _excluded(excludes)
    warnings: list[CheckMessage] = []
    for model, name in sorted(excluded, key=lambda item: (item[0]._meta.label, str(item[1]))):
        parent = _declaring_parent(model, name)
        if parent is None or parent not in registered or (parent, name) in excluded:
            continue
        warnings.append(
            Warning(
                f"AUDIT_EVENTS['EXCLUDE_FIELDS'] excludes {name!r} from {model._meta.label} only: it is "
                f"{parent._meta.label}'s field, and {parent._meta.label}'s events still record it, "
                f"for its {model._meta.verbose_name_plural} too.",
                hint=f"To keep it out of every event, exclude it under {parent._meta.label!r}.",
                id="audit_events.W001",
            )
        )
    return warnings


def _excluded(excludes: Mapping[Any, Any]) -> set[tuple[Any, Any]]:
    """Each (model, name) that ``EXCLUDE_FIELDS`` lists, for the labels of installed models."""
    return {
        (model, name)
        for label, names in excludes.items()
        if (model := _model(label)[0]) is not None and isinstance(names, (list, tuple))
        for name in names
    }


def _declaring_parent(model: Any, name: Any) -> Any:
    """The multi-table parent of ``model`` that declares its field ``name``; ``None`` if ``model`` does, or is a
    proxy (E001), or has no such field (E002)."""
    field = next((f for f in model._meta.concrete_fields if f.name == name), None)
    parent = None if field is None else field.model
    if model._meta.proxy or parent is None or parent is model:
        return None
    return parent


@register(Tags.database, Tags.compatibility)
def check_charset(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """W002 (:func:`charset_warnings`) for the project's databases, from the settings: no connection is opened."""
    from django.db import connections

    return charset_warnings({alias: connections.settings[alias] for alias in connections})


def charset_warnings(databases: Mapping[str, Mapping[str, Any]]) -> list[CheckMessage]:
    """W002: a MySQL or MariaDB database (``DATABASES``' entries) that connects in another charset than
    utf8mb4 (Django's default is ``utf8``, three bytes a character: an emoji in a recorded value fails
    the event INSERT)."""
    warnings: list[CheckMessage] = []
    for alias, settings_dict in databases.items():
        if not str(settings_dict.get("ENGINE", "")).endswith("mysql"):
            continue
        charset = (settings_dict.get("OPTIONS") or {}).get("charset", "utf8")
        if str(charset).lower() != "utf8mb4":
            warnings.append(
                Warning(
                    f"Database {alias!r} connects with charset {charset!r}: events hold the whole of Unicode only "
                    "in utf8mb4.",
                    hint=f"Set DATABASES[{alias!r}]['OPTIONS']['charset'] = 'utf8mb4' (docs/installation.rst).",
                    id="audit_events.W002",
                )
            )
    return warnings


def _check_relay(relay: Any) -> list[CheckMessage]:
    if not isinstance(relay, Mapping):
        return [Error("AUDIT_EVENTS['RELAY'] must be a dict.", hint="See docs/relay.rst.", id="audit_events.E005")]
    errors = _unknown_keys("AUDIT_EVENTS['RELAY']", relay, conf.RELAY_KEYS)
    shapes: list[tuple[str, str, Callable[[Any], bool]]] = [
        ("PUBLISHER", "a dotted path", lambda v: isinstance(v, str) and "." in v),
        ("URL", "a non-empty string", lambda v: isinstance(v, str) and bool(v)),
        ("OPTIONS", "a dict", lambda v: isinstance(v, Mapping)),
        ("BATCH_SIZE", "a positive integer", lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0),
        ("POLL_INTERVAL", "a positive number", lambda v: conf._positive(v, None) is not None),
        ("MAX_BACKOFF", "a positive number", lambda v: conf._positive(v, None) is not None),
    ]
    for key, kind, test in shapes:
        if key in relay and not test(relay[key]):
            errors.append(
                Error(f"AUDIT_EVENTS['RELAY']['{key}'] must be {kind}, not {relay[key]!r}.", id="audit_events.E005")
            )
    publisher = relay.get("PUBLISHER", conf.DEFAULT_PUBLISHER)
    if isinstance(publisher, str) and "." in publisher:
        try:
            import_string(publisher)
        except ImportError as error:
            errors.append(
                Error(
                    f"AUDIT_EVENTS['RELAY']['PUBLISHER'] {publisher!r} cannot be imported: {error}.",
                    hint="Install the broker's client (pip install 'django-audit-events[relay]') or fix the path.",
                    id="audit_events.E006",
                )
            )
    return errors
