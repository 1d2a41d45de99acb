"""Operations: the events of one user action share one ``operation`` UUID.

A single save is its own operation. A cascade delete, one ``QuerySet``
call or one restore groups all its events, which is what lets an undo-delete
bring back everything deleted together.
"""

from __future__ import annotations

import contextlib
import uuid
from contextvars import ContextVar
from typing import Any

_current: ContextVar[uuid.UUID | None] = ContextVar("audit_events_operation", default=None)
_DELETION = "_audit_events_deletion"


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


def deletion_begin(origin: Any) -> uuid.UUID:
    """The operation of one ``Collector.delete()``, keyed on its ``origin``.

    Django sends every ``pre_delete`` of a deletion before any ``post_delete``;
    counting them tells when the deletion is over.
    """
    enclosing = _current.get()
    if enclosing is not None:
        return enclosing
    if origin is None:
        return uuid.uuid4()
    slot = origin.__dict__.setdefault(_DELETION, [uuid.uuid4(), 0])
    slot[1] += 1
    return slot[0]  # type: ignore[no-any-return]


def deletion_end(origin: Any) -> None:
    if _current.get() is not None or origin is None:
        return
    slot = origin.__dict__.get(_DELETION)
    if slot is not None:
        slot[1] -= 1
        if slot[1] <= 0:
            del origin.__dict__[_DELETION]
