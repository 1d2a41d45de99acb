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
KNOWN_KEYS = frozenset({"MODELS", "EXCLUDE_FIELDS", "SNAPSHOT_EVERY", "PREPARE_STATEMENTS", "RELAY"})
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
    prepare_statements = raw.get("PREPARE_STATEMENTS", True)
    return Config(
        prepare_statements=prepare_statements if isinstance(prepare_statements, bool) else True,
        models=_models(raw),
        exclude_fields=_exclude_fields(raw),
        snapshot_every=_snapshot_every(raw),
    )


def _models(raw: Mapping[str, Any]) -> tuple[str, ...]:
    """``MODELS``: the labels it lists (a string alone is not a list of them)."""
    models = raw.get("MODELS", ())
    if isinstance(models, str) or not isinstance(models, (list, tuple)):
        return ()
    return tuple(label for label in models if isinstance(label, str))


def _exclude_fields(raw: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """``EXCLUDE_FIELDS``: lowercased label -> the names listed for it."""
    exclude = raw.get("EXCLUDE_FIELDS", {})
    if not isinstance(exclude, Mapping):
        return {}
    return {str(label).lower(): tuple(names) for label, names in exclude.items() if isinstance(names, (list, tuple))}


def _snapshot_every(raw: Mapping[str, Any]) -> int:
    """``SNAPSHOT_EVERY``: a positive integer (a bool is not one), else the default."""
    every = raw.get("SNAPSHOT_EVERY", DEFAULT_SNAPSHOT_EVERY)
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        return DEFAULT_SNAPSHOT_EVERY
    return every


# AUDIT_EVENTS["RELAY"]: what ``manage.py audit_relay`` publishes to (docs/relay.rst).
RELAY_KEYS = frozenset({"PUBLISHER", "URL", "OPTIONS", "BATCH_SIZE", "POLL_INTERVAL", "MAX_BACKOFF"})
DEFAULT_PUBLISHER = "audit_events.relay.publishers.RabbitMQ"
DEFAULT_BROKER_URL = "amqp://guest:guest@localhost:5672//"


@dataclass(frozen=True)
class RelayConfig:
    """The parsed ``AUDIT_EVENTS["RELAY"]`` setting, with defaults filled in."""

    publisher: str = DEFAULT_PUBLISHER  # dotted path of a ``relay.publishers.Publisher`` subclass
    url: str = DEFAULT_BROKER_URL
    options: Mapping[str, Any] = field(default_factory=dict)  # the publisher's own (exchange, stream...)
    batch_size: int = 500  # events per read and per save of the position
    poll_interval: float = 0.5  # seconds between reads when nothing is new
    max_backoff: float = 30.0  # seconds, the longest wait between retries after an error


def _positive(value: Any, default: float | None) -> Any:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    return value if ok else default


def get_relay_config() -> RelayConfig:
    """Return the relay settings, malformed values replaced by defaults (``checks`` reports them)."""
    raw = raw_setting()
    relay = raw.get("RELAY", {}) if isinstance(raw, Mapping) else {}
    if not isinstance(relay, Mapping):
        relay = {}
    default = RelayConfig()
    publisher, url, options = relay.get("PUBLISHER"), relay.get("URL"), relay.get("OPTIONS")
    batch_size = _positive(relay.get("BATCH_SIZE"), default.batch_size)
    return RelayConfig(
        publisher=publisher if isinstance(publisher, str) and publisher else default.publisher,
        url=url if isinstance(url, str) and url else default.url,
        options=options if isinstance(options, Mapping) else {},
        batch_size=batch_size if isinstance(batch_size, int) else default.batch_size,
        poll_interval=float(_positive(relay.get("POLL_INTERVAL"), default.poll_interval)),
        max_backoff=float(_positive(relay.get("MAX_BACKOFF"), default.max_backoff)),
    )
