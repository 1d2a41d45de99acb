"""The relay loop: read committed events, publish them, record how far, again.

At least once, in order per row: a batch is read from the saved position
(``audit_events.stream``), published (:class:`~.publishers.Publisher` returns
once the broker acknowledged all of it), and only then is the new position
saved, in the relay's row of :class:`~audit_events.models.RelayPosition`. A
crash anywhere loses nothing: the relay restarts from the last saved position
and publishes again at most the batch it had not recorded. A broker or
database error closes that connection and retries, waiting a little longer
each time (doubling, with jitter, up to ``MAX_BACKOFF``). A message that no
retry can send (:class:`~.publishers.Unpublishable`) stops the relay instead,
with that error: retrying it would stall every event after it, forever.

The saved position is moved with a compare-and-set on its previous value: a
second relay running by mistake under the same name is noticed (logged) and
costs duplicates, never a loss.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from django.contrib.contenttypes.models import ContentType
from django.db import (
    DEFAULT_DB_ALIAS,
    DatabaseError,
    DataError,
    IntegrityError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    connections,
)
from django.db.models import F
from django.utils import timezone

from .. import conf, prepared, stream
from ..models import Event, RelayPosition
from .messages import message
from .publishers import Publisher, Unpublishable

log = logging.getLogger("audit_events.relay")

PROGRESS_EVERY = 10.0  # seconds between two progress lines in the log


def saved_position(row: RelayPosition) -> stream.Position:
    return stream.Position(snapshot=row.snapshot, window=row.window_snapshot, after_id=row.after_id)


class Unrecoverable(Exception):
    """An error no retry can fix (a missing table, a missing broker client): the relay stops with it."""


@dataclass
class Backoff:
    """Waits after consecutive failures: ``first``, then doubling up to ``longest``, with jitter."""

    longest: float
    first: float = 0.5
    failures: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next(self) -> float:
        self.failures += 1
        # The exponent is capped: 2.0 ** 1024 overflows a float, and a long outage must not stop the relay.
        delay: float = min(self.longest, self.first * 2.0 ** min(self.failures - 1, 64))
        return delay * (0.5 + self.rng.random() / 2)

    def reset(self) -> None:
        self.failures = 0


class Relay:
    """Publishes the committed events of database ``using`` through ``publisher``, as relay ``name``."""

    def __init__(
        self,
        name: str,
        publisher: Publisher,
        config: conf.RelayConfig,
        using: str = DEFAULT_DB_ALIAS,
        stop: threading.Event | None = None,
        content_types: Collection[int] | None = None,
        exclude: bool = False,
    ) -> None:
        """``content_types`` (ids), or all but those with ``exclude``: this relay's partition of the events."""
        self.name = name
        self.publisher = publisher
        self.config = config
        self.using = using
        self.stop = stop or threading.Event()
        self.content_types = content_types
        self.exclude = exclude
        self.backoff = Backoff(config.max_backoff)
        self.connected = False
        self.published = 0  # by this process
        self._progress = (time.monotonic(), 0)

    def load(self, from_now: bool) -> tuple[stream.Position, int]:
        """The saved position (created on first run: the start, or now with ``from_now``) and its count."""
        row = RelayPosition.objects.using(self.using).filter(name=self.name).first()
        if row is None:
            start = stream.now(self.using) if from_now else stream.Position.start()
            row, _ = RelayPosition.objects.using(self.using).get_or_create(
                name=self.name,
                defaults={"snapshot": start.snapshot, "window_snapshot": start.window, "after_id": start.after_id},
            )
        return saved_position(row), row.published

    def save(self, saved: stream.Position, position: stream.Position, count: int) -> bool:
        """Move the saved position from ``saved`` to ``position``; False if another process had moved it."""
        moved = (
            RelayPosition.objects.using(self.using)
            .filter(name=self.name, snapshot=saved.snapshot, window_snapshot=saved.window, after_id=saved.after_id)
            .update(
                snapshot=position.snapshot,
                window_snapshot=position.window,
                after_id=position.after_id,
                published=F("published") + count,
                updated_at=timezone.now(),  # update() skips auto_now: the liveness probe reads this
            )
        )
        return moved == 1

    def run(self, once: bool = False, from_now: bool = False) -> None:
        """Publish until stopped (``stop`` set, or, with ``once``, until nothing is left to publish).

        Raises :class:`~.publishers.Unpublishable` for a message no retry can send.
        """
        try:
            self._run(once, from_now)
        except (Unpublishable, Unrecoverable) as error:
            log.error("relay %r: stopped, %s", self.name, error)
            raise
        finally:
            self._disconnect()
        log.info("relay %r: stopped; %d events published by this run", self.name, self.published)

    def _run(self, once: bool, from_now: bool) -> None:
        position: stream.Position | None = None
        saved = position
        while not self.stop.is_set():
            try:
                if position is None or saved is None:
                    saved = position = self._resume(from_now)
                self._connect()
                batch = stream.read(
                    position, self.config.batch_size, self.using, content_types=self.content_types, exclude=self.exclude
                )
                if batch.events:
                    if not self._publish(batch, saved):
                        position = saved = None
                        continue
                    saved = batch.position
                position = batch.position
                self.backoff.reset()
                if not batch.events:
                    if once:
                        break
                    self.stop.wait(self.config.poll_interval)
            except DatabaseError as error:
                self._database_failed(error)
            except ImportError as error:  # a broker client not installed: the publisher's connect() says which
                raise Unrecoverable(_one_line(error)) from error
            except Unpublishable:
                raise
            except Exception as error:  # whatever a broker's client raises: reconnect and publish again
                self._retry("broker", error, self._disconnect)

    def _resume(self, from_now: bool) -> stream.Position:
        """The saved position, read again (at the start, and after another process moved it)."""
        saved, total = self.load(from_now)
        log.info(
            "relay %r: publishing to %s, resuming after %s (%d events published so far)",
            self.name, self.publisher, _describe(saved), total,
        )  # fmt: skip
        return saved

    def _connect(self) -> None:
        if not self.connected:
            self.publisher.connect()
            self.connected = True
            log.info("relay %r: connected to %s", self.name, self.publisher)

    def _publish(self, batch: stream.Batch, saved: stream.Position) -> bool:
        """Publish ``batch`` and move the saved position past it; False (nothing saved) if another
        process had moved it: the caller reloads it."""
        content_types = ContentType.objects.db_manager(self.using)
        self.publisher.publish([message(event, content_types) for event in batch.events])
        if not self.save(saved, batch.position, len(batch.events)):
            log.warning(
                "relay %r: its saved position was moved by another process (two relays of one name?); "
                "reloading it: events may be published twice",
                self.name,
            )
            return False
        self._count(len(batch.events), batch.events[-1].id)
        return True

    def _database_failed(self, error: DatabaseError) -> None:
        """Stop with an error no retry can fix; else close the connection and retry."""
        advice = self._unrecoverable(error)
        if advice:
            raise Unrecoverable(advice) from error
        self._retry("database", error, lambda: connections[self.using].close())

    def _unrecoverable(self, error: DatabaseError) -> str:
        """What to do about a database error no retry can fix ("": a transient one, retried).

        Lost connections, timeouts, deadlocks, a database restarting (``OperationalError``,
        ``InterfaceError``) are retried; a missing table, a value the column refuses, a
        statement the database rejects are not.
        """
        text = str(error)
        missing = prepared.sqlstate(error) in ("42P01", "42703") or any(
            words in text for words in ("no such table", "no such column", "does not exist")
        )
        if missing and any(table in text for table in _TABLES):
            database = "" if self.using == DEFAULT_DB_ALIAS else f" --database {self.using}"
            command = f"manage.py migrate audit_events{database}"
            return f"the relay's tables are missing or out of date ({_one_line(error)}): run `{command}`"
        if isinstance(error, (DataError, IntegrityError, ProgrammingError, NotSupportedError)):
            return f"{type(error).__name__}: {_one_line(error)} (retrying cannot fix this)"
        if isinstance(error, OperationalError) and missing:
            return f"{type(error).__name__}: {_one_line(error)}"
        return ""

    def _disconnect(self) -> None:
        self.publisher.close()  # also after a failed connect(), which may have left half a connection
        self.connected = False

    def _retry(self, what: str, error: Exception, close: Callable[[], None]) -> None:
        close()
        delay = self.backoff.next()
        log.warning(
            "relay %r: %s error (%s: %s); retrying in %.1f s (failure %d in a row)",
            self.name, what, type(error).__name__, _one_line(error), delay, self.backoff.failures,
        )  # fmt: skip
        self.stop.wait(delay)

    def _count(self, count: int, last_id: int) -> None:
        self.published += count
        log.debug("relay %r: published %d events, up to event id %d", self.name, count, last_id)
        since, before = self._progress
        elapsed = time.monotonic() - since
        if elapsed >= PROGRESS_EVERY:
            rate = (self.published - before) / elapsed
            log.info(
                "relay %r: %d events published by this run (%.0f/s lately); last event id %d",
                self.name, self.published, rate, last_id,
            )  # fmt: skip
            self._progress = (time.monotonic(), self.published)


_TABLES = (Event._meta.db_table, RelayPosition._meta.db_table)


def _one_line(error: BaseException) -> str:
    """An exception's message on one line (a PostgreSQL error's has several, and ends with a newline)."""
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip())


def _describe(position: stream.Position) -> str:
    if position == stream.Position.start():
        return "the start"
    if position.snapshot or position.window:
        return f"snapshot {position.snapshot} (window {position.window or '-'}, id {position.after_id})"
    return f"event id {position.after_id}"
