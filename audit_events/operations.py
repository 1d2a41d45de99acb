"""Operations: the events of one user action share one ``operation`` UUID.

A single save is its own operation. A cascade delete, one ``QuerySet``
call or one restore groups all its events, which is what lets an undo-delete
bring back everything deleted together. ``registry`` wraps ``delete()`` (and
``QuerySet.delete()``) of registered models, and of the models whose deletes
reach them, in :class:`operation`.
"""

from __future__ import annotations

import contextlib
import uuid
from contextvars import ContextVar
from typing import Any

_current: ContextVar[uuid.UUID | None] = ContextVar("audit_events_operation", default=None)


def current_operation() -> uuid.UUID:
    """The operation the next event belongs to: the enclosing one, or a new one."""
    return _current.get() or uuid.uuid4()


class operation(contextlib.ContextDecorator):
    """Group every event written inside into one operation (nested ones join the outer)."""

    def __init__(self) -> None:
        self._tokens: list[Any] = []

    def __enter__(self) -> uuid.UUID:
        existing = _current.get()
        op = existing or uuid.uuid4()
        self._tokens.append(_current.set(op))
        return op

    def __exit__(self, *exc: object) -> None:
        _current.reset(self._tokens.pop())
