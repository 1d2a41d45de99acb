"""How the commands print recorded values: as the JSON they are stored as."""

from __future__ import annotations

import json
from typing import Any


def show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def show_changes(changes: dict[str, Any]) -> str:
    """``name: "old" -> "new", ...`` in field-name order."""
    return ", ".join(f"{name}: {show(old)} -> {show(new)}" for name, (old, new) in sorted(changes.items()))


def show_state(state: dict[str, Any] | None) -> str:
    """``name="value", ...`` in field-name order."""
    return ", ".join(f"{name}={show(value)}" for name, value in sorted((state or {}).items()))
