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
from collections.abc import Iterator
from contextvars import ContextVar

_current: ContextVar[uuid.UUID | None] = ContextVar("audit_events_operation", default=None)


def current_operation() -> uuid.UUID:
    """The operation the next event belongs to: the enclosing one, or a new one."""
    return _current.get() or uuid.uuid4()


@contextlib.contextmanager
def operation() -> Iterator[uuid.UUID]:
    """Group every event written inside into one operation (nested ones join the outer)."""
    op = _current.get() or uuid.uuid4()
    token = _current.set(op)
    try:
        yield op
    finally:
        _current.reset(token)
