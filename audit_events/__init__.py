"""audit_events: every write to a registered model, recorded as an append-only event.

The public API. Importing this package touches no app registry: the names
below are loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .context import audit_context, unrecorded
from .exceptions import AppendOnlyError, NoHistory, RestoreError

if TYPE_CHECKING:
    from .deletions import deleted, operation_events
    from .moments import as_of, diff
    from .replay import history, state_at
    from .restoration import restore
    from .snapshots import snapshot_rows

__all__ = [
    "AppendOnlyError",
    "NoHistory",
    "RestoreError",
    "as_of",
    "audit_context",
    "deleted",
    "diff",
    "history",
    "operation_events",
    "restore",
    "snapshot_rows",
    "state_at",
    "unrecorded",
]

_LAZY = {
    "as_of": "moments",
    "diff": "moments",
    "deleted": "deletions",
    "operation_events": "deletions",
    "history": "replay",
    "state_at": "replay",
    "restore": "restoration",
    "snapshot_rows": "snapshots",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
