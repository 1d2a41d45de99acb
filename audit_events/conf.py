"""The one namespaced setting, ``AUDIT_EVENTS``, read at call time.

Reading at call time (never caching at import) keeps ``override_settings``
working in tests; ``registry`` rebuilds itself on ``setting_changed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

SETTING_NAME = "AUDIT_EVENTS"
KNOWN_KEYS = frozenset({"MODELS", "EXCLUDE_FIELDS", "SNAPSHOT_EVERY", "PREPARE_STATEMENTS"})
DEFAULT_SNAPSHOT_EVERY = 100
# In MODELS: "*" is every model of the installed apps (but this app's and django.contrib's),
# "app_label.*" every model of one app; both resolved when the registry syncs.
WILDCARD = "*"


@dataclass(frozen=True)
class Config:
    """The parsed ``AUDIT_EVENTS`` setting, with defaults filled in."""

    models: tuple[str, ...] = ()
    exclude_fields: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    snapshot_every: int = DEFAULT_SNAPSHOT_EVERY
    prepare_statements: bool = True  # PostgreSQL: see ``prepared``


def raw_setting() -> Any:
    return getattr(settings, SETTING_NAME, {})


def get_config() -> Config:
    """Return the settings, tolerating malformed values.

    Malformed values are reported by the system checks (``checks.py``); here
    they are ignored so that a bad setting never breaks start-up or a save.
    """
    raw = raw_setting()
    if not isinstance(raw, Mapping):
        return Config()
    models = raw.get("MODELS", ())
    if isinstance(models, str) or not isinstance(models, (list, tuple)):
        models = ()
    exclude = raw.get("EXCLUDE_FIELDS", {})
    if not isinstance(exclude, Mapping):
        exclude = {}
    snapshot_every = raw.get("SNAPSHOT_EVERY", DEFAULT_SNAPSHOT_EVERY)
    if isinstance(snapshot_every, bool) or not isinstance(snapshot_every, int) or snapshot_every < 1:
        snapshot_every = DEFAULT_SNAPSHOT_EVERY
    prepare_statements = raw.get("PREPARE_STATEMENTS", True)
    return Config(
        prepare_statements=prepare_statements if isinstance(prepare_statements, bool) else True,
        models=tuple(label for label in models if isinstance(label, str)),
        exclude_fields={
            str(label).lower(): tuple(names) for label, names in exclude.items() if isinstance(names, (list, tuple))
        },
        snapshot_every=snapshot_every,
    )
