"""What every patch of ``wiring`` shares: the methods a patched model had, the receivers' uids."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..registry import ModelType

Saved = dict[str, Callable[..., Any] | None]  # the methods a patched model had in its own __dict__ (None: inherited)


def uid(signal_name: str, model: ModelType) -> str:
    return f"audit_events.{signal_name}.{model._meta.label_lower}"


def patch(model: ModelType, saved: Saved, name: str, method: Any) -> None:
    """Set ``model.<name>``, keeping what the model's own ``__dict__`` had (None: inherited)."""
    saved[name] = model.__dict__.get(name)
    setattr(model, name, method)


def restore(model: ModelType, saved: Saved) -> None:
    for name, original in saved.items():
        if original is None:
            delattr(model, name)
        else:
            setattr(model, name, original)
