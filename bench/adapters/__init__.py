"""Adapters: one module per library, named as BENCH_LIB, exposing ``ADAPTER``.

An adapter only describes *how the library is wired in* and how its own API
does the history operations; run.py does the rest. This module is imported by
settings.py, so adapter modules must not import Django models (or the
library's models) at import time: do it inside methods.

Adapted from the peer harness (shared/bench-peers/adapters).
"""

from __future__ import annotations

import importlib
from contextlib import nullcontext
from typing import Any

_NULL = nullcontext()
BULK_UPDATE_BATCH = 1000


class Adapter:
    #: shown in tables (defaults to the module name)
    label: str = ""
    #: PyPI distributions whose versions are reported
    dists: tuple[str, ...] = ()
    #: extra INSTALLED_APPS / MIDDLEWARE / settings for this library
    apps: tuple[str, ...] = ()
    middleware: tuple[str, ...] = ()
    settings: dict[str, Any] = {}
    #: "app_label.ModelName" of the tables that hold audit rows (counted per op); empty = writes nothing
    audit_models: tuple[str, ...] = ()
    #: the tables whose bytes on disk the storage study sums (default: audit_models); rows counted
    #: as recorded changes: those of the first
    storage_models: tuple[str, ...] = ()
    #: database vendors the library works on
    vendors: tuple[str, ...] = ("postgresql", "sqlite")
    #: True when the adapter implements moments()/state_at()/restore()
    has_history_api = False

    def model_attrs(self, name: str = "Account") -> dict[str, Any]:
        """Class attributes to put on Account (or Project, the model with a many-to-many) when it is created."""
        return {}

    def register(self, model: Any) -> None:
        """Called once with the Account class, then the Project class, right after each is created."""

    def after_migrate(self, connection: Any) -> None:
        """Called after `migrate --run-syncdb` on the fresh database."""

    def op_context(self) -> Any:
        """Context manager wrapped around every single write (e.g. reversion.create_revision())."""
        return _NULL

    # -- bulk writes: the library's own helper where it has one --
    def bulk_create(self, model: Any, objs: list[Any]) -> list[Any]:
        return model.objects.bulk_create(objs)

    def bulk_update(self, model: Any, objs: list[Any], fields: list[str]) -> Any:
        # In batches: one CASE WHEN per column over 10,000 rows is quadratic in PostgreSQL.
        return model.objects.bulk_update(objs, fields, batch_size=BULK_UPDATE_BATCH)

    # -- history reads/restores (when has_history_api) --
    def moments(self, model: Any, obj: Any) -> list[Any]:
        """Times of the row's recorded events, oldest first."""
        raise NotImplementedError

    def state_at(self, model: Any, obj: Any, at: Any) -> Any:
        raise NotImplementedError

    def restore(self, model: Any, obj: Any, at: Any) -> Any:
        raise NotImplementedError

    # -- helpers run.py uses; normally no need to override --
    def audit_count(self) -> int | None:
        if not self.audit_models:
            return None
        from django.apps import apps

        return sum(apps.get_model(label).objects.count() for label in self.audit_models)


def load_adapter(name: str) -> Adapter:
    module = importlib.import_module(f"adapters.{name}")
    adapter: Adapter = module.ADAPTER
    adapter.label = adapter.label or name
    return adapter
