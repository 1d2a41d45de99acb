"""Publishers: what sends the relay's messages to a broker and waits for its acknowledgement.

A publisher is a class named by ``AUDIT_EVENTS["RELAY"]["PUBLISHER"]`` (a
dotted path), built with the ``URL`` and ``OPTIONS`` settings. Its
:meth:`~Publisher.publish` returns only once the broker has acknowledged every
message it was given (stored it, for a persistent broker); an exception means
"not all of them": the relay then reconnects and publishes the batch again,
except :class:`Unpublishable`, raised for a message that no retry can send
(too large for the broker, say), which stops the relay.

Per row, order holds even then: messages are sent in *waves* in which no row
appears twice (:func:`waves`), and a wave starts only once the previous one is
acknowledged.
A failed wave can have stored some of its messages and not others, but never
a row's version without that row's earlier ones, so the first copy of each
event a consumer receives comes after the first copy of the row's previous
version. Within a wave, messages are pipelined (one round trip per wave, not
per message).

Two are provided, each imported only when used (``pip install
'django-audit-events[relay]'``): :class:`RabbitMQ` (kombu) and
:class:`NATSJetStream` (nats-py).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import importlib
import struct
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .messages import Message


class PublishError(Exception):
    """The broker refused, or did not acknowledge in time, some message of a wave."""


class Unpublishable(Exception):
    """A message that can never be sent as it is (too large, a field above the protocol's limit).

    Retrying cannot help: the relay stops, with this error, without saving a
    position past the message's batch.
    """

    def __init__(self, message: Message, publisher: Publisher, reason: str) -> None:
        key = message.key if len(message.key) <= 200 else f"{message.key[:200]}..."
        super().__init__(f"event {key} cannot be published to {publisher}: {reason}")
        self.message = message


def waves(messages: Sequence[Message]) -> list[list[Message]]:
    """``messages`` in waves: the first holds each row's first message, the second each row's second...

    Within a wave, messages keep their order; a row's messages are in
    successive waves, in order. A batch of distinct rows is one wave; one
    that updates a few rows many times takes as many waves as its most
    written row has messages.
    """
    result: list[list[Message]] = []
    count: dict[tuple[str, str], int] = {}
    for message in messages:
        row = (message.model, message.pk)
        index = count.get(row, 0)
        count[row] = index + 1
        if index == len(result):
            result.append([])
        result[index].append(message)
    return result


def client(module: str) -> Any:
    """A broker client's module, typed loosely (kombu's and nats-py's types are partial or absent)."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{error}: install the relay's clients with pip install 'django-audit-events[relay]'"
        ) from error


def redacted(url: str) -> str:
    """``url`` without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class Publisher(abc.ABC):
    """Base class of publishers: :meth:`connect`, :meth:`send` a wave, :meth:`close`."""

    #: How long to wait for a wave's acknowledgements, in seconds (option ``ack_timeout``).
    ack_timeout = 30.0

    def __init__(self, url: str, options: Mapping[str, Any]) -> None:
        self.url = url
        self.options = dict(options)
        self.ack_timeout = float(self.options.get("ack_timeout", self.ack_timeout))

    def __str__(self) -> str:
        return f"{type(self).__name__} at {redacted(self.url)}"

    @abc.abstractmethod
    def connect(self) -> None:
        """Open the connection and declare what the messages go to (idempotent declarations)."""

    @abc.abstractmethod
    def send(self, wave: Sequence[Message]) -> None:
        """Send ``wave`` (no row twice) and return once the broker acknowledged all of it."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the connection, quietly: it may be broken already."""

    def publish(self, messages: Sequence[Message]) -> None:
        """Publish ``messages`` in order per row; return once every one is acknowledged."""
        for wave in waves(messages):
            self.send(wave)


class RabbitMQ(Publisher):
    """RabbitMQ (AMQP 0-9-1) through kombu, with publisher confirms.

    Options: ``exchange`` (default ``"audit_events"``, a durable topic
    exchange), ``queue`` (default ``"audit_events"``, a durable queue bound
    with ``"#"`` so that no message is dropped for want of a consumer; ``None``
    to declare none), ``ack_timeout``. Messages are persistent, their routing
    key ``app_label.modelname.action``, their ``message_id`` the event's
    :attr:`~.messages.Message.id`.
    """

    def connect(self) -> None:
        kombu = client("kombu")
        Connection, Exchange, Queue = kombu.Connection, kombu.Exchange, kombu.Queue
        self.connection: Any = Connection(self.url, connect_timeout=self.ack_timeout)
        self.connection.ensure_connection(max_retries=1)  # the relay retries, with its own backoff
        self.channel: Any = self.connection.channel()
        self.exchange = str(self.options.get("exchange", "audit_events"))
        exchange = Exchange(self.exchange, type="topic", durable=True)
        exchange(self.channel).declare()
        queue = self.options.get("queue", "audit_events")
        if queue:
            Queue(str(queue), exchange, routing_key="#", durable=True)(self.channel).declare()
        self.channel.confirm_select()
        self.channel.events["basic_ack"].add(self._acked)
        self.channel.events["basic_nack"].add(self._nacked)
        self.sent = 0  # delivery tags: 1, 2, ... per channel once confirms are on
        self.waiting: set[int] = set()
        self.refused = 0

    def _acked(self, tag: int, multiple: bool) -> None:
        if multiple:
            self.waiting = {t for t in self.waiting if t > tag}
        else:
            self.waiting.discard(tag)

    def _nacked(self, tag: int, multiple: bool, requeue: bool = False) -> None:
        self.refused += 1
        self._acked(tag, multiple)

    def send(self, wave: Sequence[Message]) -> None:
        AMQPMessage = client("amqp").Message

        for message in wave:
            body = AMQPMessage(message.body, content_type="application/json", delivery_mode=2, message_id=message.id)
            try:
                self.channel.basic_publish(body, exchange=self.exchange, routing_key=message.topic)
            except struct.error as error:  # a short string above 255 bytes, found before anything is written
                raise Unpublishable(message, self, f"a field above an AMQP limit ({error})") from error
            self.sent += 1
            self.waiting.add(self.sent)
        deadline = time.monotonic() + self.ack_timeout
        while self.waiting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PublishError(f"RabbitMQ did not confirm {len(self.waiting)} messages in {self.ack_timeout} s")
            self.connection.drain_events(timeout=remaining)
        if self.refused:
            raise PublishError(f"RabbitMQ refused {self.refused} messages (basic.nack)")

    def close(self) -> None:
        connection = getattr(self, "connection", None)
        if connection is not None:
            with contextlib.suppress(Exception):  # already broken: nothing to close
                connection.release()
            self.connection = None


class NATSJetStream(Publisher):
    """NATS JetStream through nats-py: each message stored in a stream, acknowledged by it.

    Options: ``stream`` (default ``"AUDIT_EVENTS"``, created if missing, file
    storage), ``subject_prefix`` (default ``"audit_events"``: subjects are
    ``audit_events.app_label.modelname.action``), ``ack_timeout``. Each
    message carries its :attr:`~.messages.Message.id` as ``Nats-Msg-Id``, so JetStream itself drops a
    copy published again within its duplicate window (two minutes by default).
    """

    def connect(self) -> None:
        nats = client("nats")
        StreamConfig, NotFoundError = client("nats.js.api").StreamConfig, client("nats.js.errors").NotFoundError
        self.loop: Any = asyncio.new_event_loop()
        self.prefix = str(self.options.get("subject_prefix", "audit_events"))
        stream = str(self.options.get("stream", "AUDIT_EVENTS"))

        async def connect() -> Any:
            client = await nats.connect(
                self.url, allow_reconnect=False, connect_timeout=self.ack_timeout, max_reconnect_attempts=0
            )
            context = client.jetstream(timeout=self.ack_timeout)
            try:
                await context.stream_info(stream)
            except NotFoundError:
                await context.add_stream(StreamConfig(name=stream, subjects=[f"{self.prefix}.>"]))
            return client, context

        self.client, self.context = self.loop.run_until_complete(connect())

    def send(self, wave: Sequence[Message]) -> None:
        MaxPayloadError = client("nats.errors").MaxPayloadError

        async def send() -> None:
            acks = []
            for message in wave:
                try:
                    acks.append(
                        await self.context.publish_async(
                            f"{self.prefix}.{message.topic}", message.body, headers={"Nats-Msg-Id": message.id}
                        )
                    )
                except MaxPayloadError as error:
                    reason = f"{len(message.body)} bytes, above the server's max_payload ({self.client.max_payload})"
                    raise Unpublishable(message, self, reason) from error
            await asyncio.wait_for(asyncio.gather(*acks), self.ack_timeout)

        try:
            self.loop.run_until_complete(send())
        except TimeoutError:
            raise PublishError(f"NATS JetStream did not acknowledge the wave in {self.ack_timeout} s") from None

    def close(self) -> None:
        loop = getattr(self, "loop", None)
        if loop is None:
            return
        client = getattr(self, "client", None)
        try:
            if client is not None:
                loop.run_until_complete(asyncio.wait_for(client.close(), 5))
        except Exception:
            pass
        finally:
            loop.close()
            self.loop = None
