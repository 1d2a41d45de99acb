"""Runtime switches, on contextvars so threads, async views and tasks each see their own.

All are context managers that also work as decorators.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import math
import re
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction
from django.core.serializers.json import DjangoJSONEncoder

_Actor = Any  # a user-like object, or a callable returning one (resolved at write time)


@dataclass(frozen=True)
class AuditContext:
    """Who is writing, and why; carried by every event written inside it."""

    actor: _Actor = None
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def resolve_actor(self) -> Any:
        actor = self.actor
        if callable(actor) and not hasattr(actor, "_meta"):
            actor = actor()
        if actor is None or getattr(actor, "is_anonymous", False):
            return None
        return actor

    def event_fields(self) -> dict[str, Any]:
        """``actor_id``, ``actor_repr`` and ``context`` (plain JSON) for an event written now.

        All text is :func:`storable`: what the user put in the context must never
        fail the write it describes.
        """
        actor = self.resolve_actor()
        key = None if actor is None else getattr(actor, "pk", actor)
        context = {}
        if self.extra:  # as it will read back: plain JSON
            context = storable(json.loads(json.dumps(dict(self.extra), cls=DjangoJSONEncoder)))
        return {
            # An unsaved user has no id: not "None". The column holds 255 characters.
            "actor_id": None if key is None else storable(str(key))[:255],
            "actor_repr": "" if actor is None else storable(str(actor))[:255],
            "context": context,
        }


# What no database text takes: NUL (PostgreSQL's text and jsonb refuse it) and
# surrogates (not UTF-8: every driver refuses to encode them).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: Any) -> Any:
    """``value`` (text, or plain JSON) with each NUL and surrogate replaced by U+FFFD, keys included, and
    each float JSON cannot hold (NaN, the infinities) by its text ("NaN", "Infinity", "-Infinity")."""
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, float) and not math.isfinite(value):
        return json.dumps(value)
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [storable(item) for item in value]
    return value


_current: ContextVar[AuditContext] = ContextVar("audit_events_context", default=AuditContext())  # noqa: B039 (frozen)
_paused: ContextVar[bool] = ContextVar("audit_events_paused", default=False)
_unrecorded: ContextVar[_Unrecorded | None] = ContextVar("audit_events_unrecorded", default=None)

_UNSET: Any = object()
_S = TypeVar("_S", bound="_Switch")
_F = TypeVar("_F", bound=Callable[..., Any])


class _Switch(contextlib.AbstractContextManager[Any], contextlib.ContextDecorator):
    """A context manager that is also a decorator, of plain and of ``async`` functions.

    A decorator is one object shared by every call of the function, in every
    thread and task: each call enters a fresh copy, so overlapping calls never
    reset each other's tokens.
    """

    _tokens: list[Any]

    def _recreate_cm(self: _S) -> _S:
        fresh = copy.copy(self)
        fresh._tokens = []
        return fresh

    def __call__(self, func: _F) -> _F:
        if not iscoroutinefunction(func):
            return super().__call__(func)

        @functools.wraps(func)
        async def inner(*args: Any, **kwargs: Any) -> Any:
            with self._recreate_cm():  # around the awaited body, not around creating the coroutine
                return await func(*args, **kwargs)

        return inner  # type: ignore[return-value]


def current_context() -> AuditContext:
    return _current.get()


def is_paused(*models: Any) -> bool:
    """Whether capture is off here; inside :class:`unrecorded`, ``models`` (those the write reaches) are noted."""
    if not _paused.get():
        return False
    block = _unrecorded.get()
    if block is not None:
        block.models.update(models)
    return True


class audit_context(_Switch):
    """Attach an actor, a reason and any extra keys to the events written inside.

    Nests: inner values override outer ones, the rest are inherited::

        with audit_context(actor=request.user, reason="refund #991"):
            account.save()

    ``actor`` may be a callable returning the user; it is called when an event
    is written, so authentication that happens late (DRF) is still seen.
    A NUL or a lone surrogate, in the actor's text or anywhere in the context,
    is recorded as U+FFFD: no database takes them, and the context must never
    fail the write it describes.
    """

    def __init__(self, actor: _Actor = _UNSET, reason: str | None = None, **extra: Any) -> None:
        self.actor = actor
        self.extra = dict(extra)
        if reason is not None:
            self.extra["reason"] = reason
        self._tokens: list[Any] = []

    def __enter__(self) -> AuditContext:
        outer = _current.get()
        merged = AuditContext(
            actor=outer.actor if self.actor is _UNSET else self.actor,
            extra=MappingProxyType({**outer.extra, **self.extra}),
        )
        self._tokens.append(_current.set(merged))
        return merged

    def __exit__(self, *exc: object) -> None:
        _current.reset(self._tokens.pop())


class capture_paused(_Switch):
    """Record nothing inside (used by restore, which writes its own events)."""

    def __init__(self) -> None:
        self._tokens: list[Any] = []

    def __enter__(self) -> None:
        # The writes inside record themselves another way: not the unrecorded writes of an enclosing block.
        self._tokens.append((_paused.set(True), _unrecorded.set(None)))

    def __exit__(self, *exc: object) -> None:
        paused, unrecorded_ = self._tokens.pop()
        _unrecorded.reset(unrecorded_)
        _paused.reset(paused)


@dataclass
class _Unrecorded:
    reason: str
    started_at: Any
    models: set[Any] = field(default_factory=set)


class unrecorded(_Switch):
    """Write without recording, for a reason: a bulk import, a data fix.

    ::

        with unrecorded(reason="import of the 2024 ledger"):
            Entry.objects.bulk_create(entries)

    The writes inside cost what plain Django's do and leave no event. What
    is left is a note per registered model written to: the reason, the
    actor and context around the block, when it began and ended
    (:class:`~audit_events.models.UnrecordedWrite`, in the same transaction
    as the writes when the block is inside one). ``audit_verify`` names that
    note in the drift it then finds on those rows, and ``audit_verify
    --repair`` records them, the events carrying the note's reason. A block
    whose writes fail and roll back leaves no note.
    """

    def __init__(self, reason: str) -> None:
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError("unrecorded() needs a reason: say why these writes are not recorded.")
        self.reason = reason
        self._tokens: list[Any] = []

    def __enter__(self) -> None:
        from django.utils import timezone

        block = _Unrecorded(self.reason, timezone.now())
        self._tokens.append((block, _paused.set(True), _unrecorded.set(block)))

    def __exit__(self, exc_type: object, *exc: object) -> None:
        block, paused, unrecorded_ = self._tokens.pop()
        _unrecorded.reset(unrecorded_)
        _paused.reset(paused)
        if block.models:
            from .notes import note

            fields = current_context().event_fields()
            note(block.reason, block.started_at, block.models, failed=exc_type is not None, fields=fields)
