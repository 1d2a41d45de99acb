"""``manage.py audit_relay`` and what it publishes, against the real brokers.

The end-to-end tests run the relay as a process of its own, publishing to
RabbitMQ and to NATS JetStream while writer threads commit events, kill it
with SIGKILL mid-way and start it again, or cut its broker connection for a
while (a TCP proxy between them), and check that a consumer received every
event at least once and, after de-duplication, exactly the table's events,
each row's versions in order. They print the throughput and latency figures
docs/relay.rst quotes (``make relay-test`` runs them with 100,000 events).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.test.utils import override_settings
from django.utils import timezone

from audit_events import audit_context
from audit_events.conf import get_relay_config
from audit_events.models import Event, RelayPosition
from audit_events.relay import Deduplicator, Message, Publisher, Unpublishable, decode, message
from audit_events.relay.messages import MESSAGE_ID_BYTES
from audit_events.relay.publishers import client, redacted, waves
from audit_events.relay.runner import Backoff, Relay, Unrecoverable
from tests.models import Author, Book

ROOT = Path(__file__).resolve().parent.parent
EVENTS = int(os.environ.get("RELAY_EVENTS", "5000"))
WAIT = float(os.environ.get("RELAY_WAIT", "120"))  # seconds for the consumer to catch up
# Stop and start the broker itself while the relay publishes (``make relay-test``; not in ``make test``,
# whose brokers other runs on the machine may be using).
RESTART_BROKER = os.environ.get("RELAY_RESTART_BROKER") == "1"


# --- the message, the consumer's de-duplication, waves ----------------------------------


@pytest.mark.django_db
def test_the_message_carries_the_documented_fields() -> None:
    with audit_context(actor="7", reason="refund #991"):
        author = Author.objects.create(name="Ada")
    event = Event.objects.get()
    sent = message(event)
    body = decode(sent.body)
    assert set(body) == {
        "format", "id", "model", "pk", "version", "action", "changes", "state",
        "created_at", "operation", "actor", "context", "hash",
    }  # fmt: skip
    assert (body["model"], body["pk"], body["version"], body["action"]) == ("tests.author", str(author.pk), 1, "create")
    assert body["changes"] == event.changes
    assert body["hash"] == event.hash
    assert body["context"]["reason"] == "refund #991"
    assert body["actor"]["repr"] == "7"
    assert body["created_at"].endswith("+00:00")
    assert sent.key == f"tests.author:{author.pk}:1"
    assert sent.topic == "tests.author.create"


@pytest.mark.django_db
def test_created_at_is_utc_without_use_tz() -> None:
    """USE_TZ = False stores naive datetimes in TIME_ZONE: the message gives them in UTC, as documented."""
    with override_settings(USE_TZ=False, TIME_ZONE="America/Chicago"):
        before = datetime.datetime.now(datetime.UTC)
        Author.objects.create(name="tz")
        body = decode(message(Event.objects.get()).body)
        after = datetime.datetime.now(datetime.UTC)
    created_at = datetime.datetime.fromisoformat(body["created_at"])
    assert body["created_at"].endswith("+00:00")
    assert before - datetime.timedelta(seconds=1) <= created_at <= after + datetime.timedelta(seconds=1)


def test_decode_refuses_what_is_not_a_message() -> None:
    with pytest.raises(ValueError, match="not an audit_events message"):
        decode(b'{"hello": 1}')


def test_the_deduplicator_drops_what_it_has_seen_by_row_and_version() -> None:
    dedup = Deduplicator()
    handled: list[tuple[str, str, int]] = []
    sent = [("m", "1", 1), ("m", "1", 2), ("m", "1", 1), ("m", "2", 1), ("m", "1", 2), ("m", "1", 3)]
    accepted = [
        dedup.accept(
            {"model": m, "pk": pk, "version": v}, lambda d: handled.append((d["model"], d["pk"], d["version"]))
        )
        for m, pk, v in sent
    ]
    assert accepted == [True, True, False, True, False, True]
    assert handled == [("m", "1", 1), ("m", "1", 2), ("m", "2", 1), ("m", "1", 3)]
    assert dedup.duplicates == 2
    assert dedup.seen == {"m:1": 3, "m:2": 1}


def test_an_event_whose_handler_failed_is_not_taken_for_a_duplicate_when_it_comes_again() -> None:
    dedup = Deduplicator()
    event = {"model": "m", "pk": "1", "version": 1}

    def crash(data: Any) -> None:
        raise RuntimeError("the handler crashed")

    with pytest.raises(RuntimeError, match="crashed"):
        dedup.accept(event, crash)
    assert dedup.seen == {}
    assert not dedup.is_duplicate(event)
    handled: list[Any] = []
    assert dedup.accept(event, handled.append)  # redelivered: handled this time
    assert handled == [event]
    assert dedup.is_duplicate(event)
    assert not dedup.accept(event, handled.append)
    assert handled == [event]


def fake(model: str, pk: str, version: int = 1) -> Message:
    return Message(model, pk, version, "update", b"{}")


def test_waves_never_hold_a_row_twice_and_keep_each_rows_order() -> None:
    messages = [fake("a", "1", 1), fake("a", "2"), fake("b", "1"), fake("a", "1", 2), fake("a", "1", 3), fake("c", "9")]
    assert [[(m.model, m.pk, m.version) for m in w] for w in waves(messages)] == [
        [("a", "1", 1), ("a", "2", 1), ("b", "1", 1), ("c", "9", 1)],
        [("a", "1", 2)],
        [("a", "1", 3)],
    ]
    assert waves([]) == []


def test_urls_in_logs_hide_the_password() -> None:
    assert redacted("amqp://guest:secret@host:5672//") == "amqp://guest:***@host:5672//"
    assert redacted("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"


def test_backoff_doubles_up_to_its_longest_then_resets() -> None:
    backoff = Backoff(longest=4, rng=random.Random(1))
    delays = [backoff.next() for _ in range(6)]
    assert all(0.25 <= d <= 0.5 for d in delays[:1])
    assert all(2 <= d <= 4 for d in delays[3:])
    backoff.reset()
    assert backoff.next() <= 0.5


def test_backoff_keeps_waiting_its_longest_after_any_number_of_failures() -> None:
    """2 ** 1024 overflows a float: failure 1,025 in a row (a long outage) must not kill the relay."""
    backoff = Backoff(longest=30.0, rng=random.Random(0))
    delays = [backoff.next() for _ in range(5000)]
    assert all(15.0 <= d <= 30.0 for d in delays[10:])
    assert backoff.failures == 5000


class Down(Publisher):
    """A broker that stays down."""

    def connect(self) -> None:
        raise ConnectionRefusedError("broker down")

    def send(self, wave: Sequence[Message]) -> None:  # pragma: no cover
        raise AssertionError

    def close(self) -> None:
        pass


@pytest.mark.django_db(transaction=True)
def test_a_long_broker_outage_is_retried_at_the_longest_wait_forever() -> None:
    Author.objects.create(name="x")
    config = type(get_relay_config())(poll_interval=0.01, max_backoff=0.0)  # waits of 0 s: many failures fast
    relay = Relay("down", Down("amqp://down", {}), config)

    def stop_after_1100_failures() -> None:
        deadline = time.monotonic() + 60
        while relay.backoff.failures <= 1100 and time.monotonic() < deadline:
            time.sleep(0.01)
        relay.stop.set()

    stopper = threading.Thread(target=stop_after_1100_failures)
    stopper.start()
    try:
        relay.run()  # documented: retries, waiting up to MAX_BACKOFF, until stopped
    finally:
        relay.stop.set()
        stopper.join()
    assert relay.backoff.failures > 1100


def test_the_relay_settings_have_defaults_and_checks() -> None:
    with override_settings(AUDIT_EVENTS={"MODELS": []}):
        config = get_relay_config()
        assert (config.publisher, config.batch_size) == ("audit_events.relay.publishers.RabbitMQ", 500)
    from audit_events.checks import check_settings

    bad = {"MODELS": [], "RELAY": {"PUBLISHER": "no.such.Thing", "BATCH_SIZE": 0, "TYPO": 1}}
    with override_settings(AUDIT_EVENTS=bad):
        ids = sorted(error.id for error in check_settings())
    assert ids == ["audit_events.E004", "audit_events.E005", "audit_events.E006"]


# --- the relay's loop, in this process, with a publisher that fails on purpose -----------


class Flaky(Publisher):
    """Keeps what it is sent; the sends listed in ``fail`` raise, as a broker that went away."""

    def __init__(self, url: str, options: Any) -> None:
        super().__init__(url, options)
        self.received: list[Message] = []
        self.sends = 0
        self.fail: set[int] = set(options.get("fail", ()))
        self.connects = 0

    def connect(self) -> None:
        self.connects += 1

    def send(self, wave: Sequence[Message]) -> None:
        self.sends += 1
        if self.sends in self.fail:
            self.received += wave[: len(wave) // 2]  # half of it made it, no acknowledgement came
            raise ConnectionResetError("the broker went away")
        self.received += wave

    def close(self) -> None:
        pass


@pytest.mark.django_db(transaction=True)
def test_a_failed_publish_is_retried_and_the_position_saved_only_after_it() -> None:
    authors = [Author.objects.create(name=f"a{i}") for i in range(30)]
    for author in authors[:10]:
        author.name += "!"
        author.save()
    config = get_relay_config()
    config = type(config)(batch_size=7, poll_interval=0.01, max_backoff=0.01)
    publisher = Flaky("test://", {"fail": {2, 3, 6}})
    relay = Relay("flaky", publisher, config)
    relay.run(once=True)
    dedup = Deduplicator()
    first: list[str] = []
    for m in publisher.received:
        dedup.accept({"model": m.model, "pk": m.pk, "version": m.version}, lambda _, key=m.key: first.append(key))
    table = [message(e).key for e in Event.objects.order_by("id")]
    assert sorted(first) == sorted(table)
    assert dedup.duplicates > 0  # the failed sends were published again
    assert publisher.connects == 4  # once, then after each failure
    saved = RelayPosition.objects.get(name="flaky")
    assert saved.published == len(table)
    publisher.received.clear()
    Relay("flaky", publisher, config).run(once=True)  # a restart: resumes, publishes nothing again
    assert publisher.received == []


@pytest.mark.django_db(transaction=True)
def test_a_relay_started_from_now_skips_the_past() -> None:
    Author.objects.create(name="before")
    publisher = Flaky("test://", {})
    config = type(get_relay_config())(poll_interval=0.01)
    Relay("recent", publisher, config).run(once=True, from_now=True)
    assert publisher.received == []
    Author.objects.create(name="after")
    Relay("recent", publisher, config).run(once=True)
    assert [decode(m.body)["state"]["name"] for m in publisher.received] == ["after"]


def test_the_command_refuses_a_publisher_that_is_not_one() -> None:
    with (
        override_settings(AUDIT_EVENTS={"MODELS": [], "RELAY": {"PUBLISHER": "audit_events.models.Event"}}),
        pytest.raises(CommandError, match=r"is not a subclass of audit_events\.relay\.Publisher"),
    ):
        call_command("audit_relay", "--once")


@pytest.mark.django_db(transaction=True)
def test_the_saved_position_says_when_it_last_moved() -> None:
    """``updated_at`` moves with each saved batch: docs/relay.rst offers it as a liveness probe."""
    publisher = Flaky("test://", {})
    config = type(get_relay_config())(poll_interval=0.01)
    Author.objects.create(name="first")
    Relay("alive", publisher, config).run(once=True)
    RelayPosition.objects.filter(name="alive").update(updated_at=timezone.now() - datetime.timedelta(hours=1))
    Author.objects.create(name="second")
    before = timezone.now()
    Relay("alive", publisher, config).run(once=True)
    assert RelayPosition.objects.get(name="alive").updated_at >= before


def run_bounded(relay: Relay, seconds: float = 20) -> None:
    """``relay.run(once=True)``, stopped after ``seconds`` if it is still retrying then."""
    timer = threading.Timer(seconds, relay.stop.set)
    timer.start()
    try:
        relay.run(once=True)
    finally:
        timer.cancel()


# --- errors no retry can fix stop the relay with what to do ----------------------------


class MissingClient(Flaky):
    """A publisher whose broker client is not installed."""

    def connect(self) -> None:
        client("no_such_broker_client")


@contextlib.contextmanager
def renamed(table: str) -> Iterator[None]:
    """``table`` missing for a while, as before ``migrate audit_events``."""
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} RENAME TO {table}_away")
    try:
        yield
    finally:
        connection.close()  # a PostgreSQL connection may be in a failed transaction
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {table}_away RENAME TO {table}")


def command_fails(publisher: str, name: str, match: str) -> None:
    """``audit_relay --once`` exits with a CommandError matching ``match``, not retrying forever: SIGTERM
    after 10 s (its handler stops the relay, which then returns without an error)."""
    settings_ = {"MODELS": [], "RELAY": {"PUBLISHER": f"tests.test_relay.{publisher}", "MAX_BACKOFF": 0.01}}
    timer = threading.Timer(10, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        with override_settings(AUDIT_EVENTS=settings_), pytest.raises(CommandError, match=match):
            call_command("audit_relay", "--once", "--name", name)
    finally:
        timer.cancel()


@pytest.mark.parametrize("model", [Event, RelayPosition], ids=["events", "positions"])
@pytest.mark.django_db(transaction=True)
def test_a_missing_table_stops_the_relay_saying_to_migrate(model: Any) -> None:
    Author.objects.create(name="x")
    config = type(get_relay_config())(poll_interval=0.01, max_backoff=0.01)
    relay = Relay("unmigrated", Flaky("test://", {}), config)
    with renamed(model._meta.db_table):
        with pytest.raises(Unrecoverable, match=r"run `manage.py migrate audit_events`"):
            run_bounded(relay, 10)
        command_fails("Flaky", "unmigrated", r"missing or out of date .*run `manage.py migrate audit_events`")
    assert relay.backoff.failures == 0


@pytest.mark.django_db(transaction=True)
def test_a_missing_broker_client_stops_the_relay_saying_what_to_install() -> None:
    Author.objects.create(name="x")
    config = type(get_relay_config())(poll_interval=0.01, max_backoff=0.01)
    relay = Relay("no-client", MissingClient("test://", {}), config)
    with pytest.raises(Unrecoverable, match=r"pip install 'django-audit-events\[relay\]'"):
        run_bounded(relay, 10)
    command_fails("MissingClient", "no-client", r"No module named 'no_such_broker_client'.*pip install")


@pytest.mark.django_db(transaction=True)
def test_a_relay_name_too_long_for_its_position_is_refused_up_front() -> None:
    command_fails("Flaky", "n" * 101, r"--name: 1 to 100 characters, not 101")
    assert not RelayPosition.objects.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_data_error_stops_the_relay() -> None:
    """PostgreSQL enforces the name's length (SQLite does not): a DataError, which no retry fixes."""
    config = type(get_relay_config())(poll_interval=0.01, max_backoff=0.01)
    relay = Relay("n" * 101, Flaky("test://", {}), config)
    with pytest.raises(Unrecoverable, match=r"DataError: value too long"):
        run_bounded(relay, 10)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_lost_database_connection_is_retried_and_logged_on_one_line(caplog: pytest.LogCaptureFixture) -> None:
    Author.objects.create(name="x")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]

    def terminate() -> None:  # from another connection, as a database restart or failover would
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        finally:
            connection.close()

    killer = threading.Thread(target=terminate)
    killer.start()
    killer.join()
    config = type(get_relay_config())(poll_interval=0.01, max_backoff=0.01)
    publisher = Flaky("test://", {})
    relay = Relay("reconnects", publisher, config)
    with caplog.at_level("WARNING", "audit_events.relay"):
        run_bounded(relay, 10)
    assert len(publisher.received) == 1
    warnings = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(warnings) == 1, warnings
    # The driver reports the server's FATAL message when it reads it before the socket closes
    # (psycopg 3 often does), else the closed socket.
    lost = ("server closed the connection unexpectedly ", "terminating connection due to administrator command")
    assert any(f"database error (OperationalError: {text}" in warnings[0] for text in lost), warnings[0]
    assert "\n" not in warnings[0]


# --- partitioned by content type ------------------------------------------------------


def run_in_thread(relay: Relay) -> threading.Thread:
    def run() -> None:
        try:
            relay.run()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_relays_partitioned_by_content_type_publish_every_event_once_in_order(books: list[int]) -> None:
    """Two relays, ``--models tests.Author`` and ``--exclude tests.Author``, while four writers commit."""
    config = type(get_relay_config())(batch_size=50, poll_interval=0.01, max_backoff=0.01)
    authors = {ContentType.objects.get_for_model(Author).pk}
    parts = [
        Relay("authors", Flaky("test://", {}), config, content_types=authors),
        Relay("the-rest", Flaky("test://", {}), config, content_types=authors, exclude=True),
    ]
    relays = [run_in_thread(relay) for relay in parts]
    commits: dict[str, float] = {}
    errors: list[BaseException] = []
    writers = [threading.Thread(target=write, args=(i, 300, books, commits, errors)) for i in range(4)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    assert not errors, errors
    table = table_keys()
    deadline = time.monotonic() + WAIT
    while sum(len(relay.publisher.received) for relay in parts) < len(table) and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.05)
    time.sleep(0.2)  # anything more would be a duplicate
    for relay, thread in zip(parts, relays, strict=True):
        relay.stop.set()
        thread.join(WAIT)
    received = [m for relay in parts for m in relay.publisher.received]  # type: ignore[attr-defined]
    keys = [(m.model, m.pk, m.version) for m in received]
    assert len(keys) == len(set(keys)) == len(table)  # every event exactly once (no failure: no retry)
    assert set(keys) == set(table)
    assert {m.model for m in parts[0].publisher.received} == {"tests.author"}  # type: ignore[attr-defined]
    assert "tests.author" not in {m.model for m in parts[1].publisher.received}  # type: ignore[attr-defined]
    versions: dict[tuple[str, str], list[int]] = {}
    for m in received:
        versions.setdefault((m.model, m.pk), []).append(m.version)
    assert all(v == list(range(1, len(v) + 1)) for v in versions.values())  # each row's versions in order


@pytest.mark.django_db(transaction=True)
def test_the_command_partitions_by_model_labels() -> None:
    author = Author.objects.create(name="a")
    Book.objects.create(author=author, title="t")
    settings_ = {"MODELS": [], "RELAY": {"PUBLISHER": "tests.test_relay.Flaky", "MAX_BACKOFF": 0.01}}
    with override_settings(AUDIT_EVENTS=settings_):
        call_command("audit_relay", "--once", "--name", "books", "--models", "tests.Book")
        call_command("audit_relay", "--once", "--name", "not-books", "--exclude", "tests.book")
        with pytest.raises(CommandError, match=r"--models: no model 'tests.Nope'"):
            call_command("audit_relay", "--once", "--name", "x", "--models", "tests.Nope")
        with pytest.raises(CommandError, match=r"--models or --exclude, not both"):
            call_command("audit_relay", "--once", "--name", "x", "--models", "tests.Book", "--exclude", "tests.Author")
    counts = dict(RelayPosition.objects.values_list("name", "published"))
    assert counts == {"books": 1, "not-books": 1}


def test_a_message_id_is_the_events_key_or_a_digest_of_a_long_or_odd_one() -> None:
    assert fake("tests.author", "32", 5).id == "tests.author:32:5"
    for pk in ("k" * 300, "é" * 200, "a\r\nb"):
        long = fake("tests.longkey", pk, 2)
        assert long.id.startswith("sha256:")
        assert len(long.id) <= MESSAGE_ID_BYTES
        assert long.id == fake("tests.longkey", pk, 2).id != fake("tests.longkey", pk, 3).id


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
def test_a_key_longer_than_an_amqp_short_string_is_published() -> None:
    """AMQP's ``message_id`` is a short string (255 bytes): a long primary key once raised struct.error forever."""
    from kombu import Connection, Exchange, Queue

    from audit_events.relay import RabbitMQ as RabbitMQPublisher
    from tests.models import LongKey

    tag = f"t{os.getpid()}_{uuid.uuid4().hex[:8]}"
    key = "k" * 300 + "é" * 100
    with override_settings(AUDIT_EVENTS={**settings.AUDIT_EVENTS, "MODELS": ["tests.LongKey"]}):
        LongKey.objects.create(key=key, name="one")
    publisher = RabbitMQPublisher("amqp://guest:guest@127.0.0.1:5672//", {"exchange": tag, "queue": tag})
    relay = Relay("long", publisher, type(get_relay_config())(poll_interval=0.01, max_backoff=0.1))
    try:
        run_bounded(relay)
        assert RelayPosition.objects.get(name="long").published == 1
        with Connection("amqp://guest:guest@127.0.0.1:5672//") as conn:
            queue = Queue(tag, Exchange(tag, type="topic", durable=True), routing_key="#", durable=True)
            got = conn.SimpleQueue(queue).get(timeout=5)
            assert decode(got.body)["pk"] == key
            assert got.properties["message_id"] == message(Event.objects.get()).id
    finally:
        with Connection("amqp://guest:guest@127.0.0.1:5672//") as conn:
            channel = conn.channel()
            Queue(tag)(channel).delete()
            Exchange(tag)(channel).delete()


@pytest.mark.broker
def test_rabbitmq_refuses_a_routing_key_above_an_amqp_short_string_as_unpublishable() -> None:
    """A publisher of one's own may route by longer topics: what AMQP cannot encode is no broker error."""
    from audit_events.relay import RabbitMQ as RabbitMQPublisher

    tag = f"t{os.getpid()}_{uuid.uuid4().hex[:8]}"
    publisher = RabbitMQPublisher("amqp://guest:guest@127.0.0.1:5672//", {"exchange": tag, "queue": None})
    publisher.connect()
    try:
        with pytest.raises(Unpublishable, match=r"event x{200}\.\.\. cannot be published .*AMQP limit"):
            publisher.publish([fake("x" * 300, "1")])
        publisher.publish([fake("tests.author", "1")])  # the connection is still usable: nothing was written
    finally:
        publisher.channel.exchange_delete(tag)
        publisher.close()


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
def test_a_message_the_broker_can_never_take_stops_the_relay_with_a_clear_error() -> None:
    """An event above NATS's max_payload (1 MB): no retry can succeed; the relay stops, naming it."""
    from audit_events.relay import NATSJetStream
    from tests.models import Everything

    tag = f"t{os.getpid()}_{uuid.uuid4().hex[:8]}"
    Author.objects.create(name="small")
    row = Everything.objects.create(text="x" * 1_100_000)
    options = {"stream": tag.upper(), "subject_prefix": tag}
    publisher = NATSJetStream("nats://127.0.0.1:4222", options)
    relay = Relay("big", publisher, type(get_relay_config())(poll_interval=0.01, max_backoff=0.1))
    try:
        with pytest.raises(Unpublishable, match=rf"tests\.everything:{row.pk}:1 .*max_payload"):
            run_bounded(relay)
        assert RelayPosition.objects.get(name="big").published == 0  # not past it, and not retrying
        with (
            override_settings(AUDIT_EVENTS={**settings.AUDIT_EVENTS, "RELAY": {
                "PUBLISHER": "audit_events.relay.NATSJetStream", "URL": "nats://127.0.0.1:4222", "OPTIONS": options,
            }}),
            pytest.raises(CommandError, match=rf"tests\.everything:{row.pk}:1 .*cannot be published"),
        ):  # fmt: skip
            call_command("audit_relay", "--once", "--name", "big", "-v", "0")
    finally:
        asyncio.run(delete_stream(tag.upper()))


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
def test_a_consumer_whose_handler_failed_gets_the_event_again_from_rabbitmq() -> None:
    """The documented consumer: a handler that raises leaves the message unacknowledged, RabbitMQ redelivers it."""
    from kombu import Connection, Consumer, Exchange, Queue

    from audit_events.relay import RabbitMQ as RabbitMQPublisher

    tag = f"t{os.getpid()}_{uuid.uuid4().hex[:8]}"
    authors = [Author.objects.create(name=f"a{i}") for i in range(3)]
    for author in authors:
        author.name += "!"
        author.save()
    publisher = RabbitMQPublisher("amqp://guest:guest@127.0.0.1:5672//", {"exchange": tag, "queue": tag})
    run_bounded(Relay("redelivered", publisher, type(get_relay_config())(poll_interval=0.01, max_backoff=0.1)))
    dedup = Deduplicator()
    handled: list[tuple[str, int]] = []
    failed: list[tuple[str, int]] = []

    def handle(data: dict[str, Any]) -> None:
        key = (data["pk"], data["version"])
        if data["pk"] == str(authors[1].pk) and not failed:
            failed.append(key)
            raise RuntimeError("the handler crashed")
        handled.append(key)

    def on_message(body: Any, msg: Any) -> None:
        try:
            dedup.accept(msg.body, handle)
        except RuntimeError:
            msg.requeue()  # not acknowledged: the broker delivers it again
        else:
            msg.ack()

    try:
        with Connection("amqp://guest:guest@127.0.0.1:5672//") as conn:
            queue = Queue(tag, Exchange(tag, type="topic", durable=True), routing_key="#", durable=True)
            with Consumer(conn.channel(), [queue], callbacks=[on_message], prefetch_count=1):
                deadline = time.monotonic() + 20
                while len(handled) < 6 and time.monotonic() < deadline:
                    with contextlib.suppress(TimeoutError):
                        conn.drain_events(timeout=0.2)
    finally:
        with Connection("amqp://guest:guest@127.0.0.1:5672//") as conn:
            channel = conn.channel()
            Queue(tag)(channel).delete()
            Exchange(tag)(channel).delete()
    assert failed == [(str(authors[1].pk), 1)]
    assert sorted(handled) == sorted((str(a.pk), v) for a in authors for v in (1, 2))
    assert handled.index((str(authors[1].pk), 1)) < handled.index((str(authors[1].pk), 2))


async def delete_stream(name: str) -> None:
    import nats

    client = await nats.connect("nats://127.0.0.1:4222")
    with contextlib.suppress(Exception):
        await client.jetstream().delete_stream(name)
    await client.close()


# --- end to end: a relay process, real brokers, writers, SIGKILL ------------------------


class Broker:
    """One broker as the tests use it: the relay's settings, a consumer thread recording what arrives, a restart.

    The consumer acknowledges each message once recorded and reconnects when
    the broker goes away (``reconnects`` counts it), resuming where it was: it
    receives every message the broker stored at least once.
    """

    name = ""
    publisher = ""
    address = ("127.0.0.1", 0)

    def __init__(self) -> None:
        self.tag = f"t{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self.received: list[tuple[dict[str, Any], float]] = []
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.errors: list[BaseException] = []
        self.reconnects = 0

    def url(self, port: int) -> str:
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        raise NotImplementedError

    def consume(self) -> None:
        """Receive until ``stop`` is set; raise on a lost connection (``_consume`` connects again)."""
        raise NotImplementedError

    def clean_up(self) -> None:
        """Delete what ``consume`` declared."""
        raise NotImplementedError

    def restart(self) -> None:
        """Stop the broker itself, then start it again, as its operator would; always leaves it running."""
        raise NotImplementedError

    def start(self) -> None:
        self.thread = threading.Thread(target=self._consume, daemon=True)
        self.thread.start()
        assert self.ready.wait(30), "the consumer did not start"

    def _consume(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    self.consume()
                except Exception:
                    if not self.ready.is_set():
                        raise
                    self.reconnects += 1
                    self.stop.wait(0.5)
            self.clean_up()
        except BaseException as error:
            self.errors.append(error)
            self.ready.set()

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(60)
        assert not self.errors, self.errors


def reachable(address: tuple[str, int]) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(address, timeout=2):
        return True
    return False


def wait_reachable(address: tuple[str, int], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not reachable(address):
        assert time.monotonic() < deadline, f"{address} did not come back in {seconds} s"
        time.sleep(0.2)


class RabbitMQ(Broker):
    name, publisher, address = "rabbitmq", "audit_events.relay.publishers.RabbitMQ", ("127.0.0.1", 5672)

    def url(self, port: int) -> str:
        return f"amqp://guest:guest@127.0.0.1:{port}//"

    def options(self) -> dict[str, Any]:
        return {"exchange": self.tag, "queue": self.tag}

    def _queue(self) -> Any:
        from kombu import Exchange, Queue

        return Queue(self.tag, Exchange(self.tag, type="topic", durable=True), routing_key="#", durable=True)

    def consume(self) -> None:
        from kombu import Connection, Consumer

        with Connection(self.url(5672), connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=1)
            channel = conn.channel()
            queue = self._queue()
            queue(channel).declare()  # as the relay declares it, so nothing published is dropped

            def on_message(body: Any, msg: Any) -> None:
                self.received.append((decode(msg.body), time.time()))
                msg.ack()

            with Consumer(channel, [queue], callbacks=[on_message], prefetch_count=1000, accept=["application/json"]):
                self.ready.set()
                while not self.stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        conn.drain_events(timeout=0.2)

    def clean_up(self) -> None:
        from kombu import Connection

        with Connection(self.url(5672)) as conn:
            channel = conn.channel()
            queue = self._queue()
            queue(channel).delete()
            queue.exchange(channel).delete()

    def restart(self) -> None:
        try:
            subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=120)
            time.sleep(2)
        finally:
            subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=300)
            wait_reachable(self.address)


def nats_server() -> tuple[int, list[str]]:
    """The running nats-server's pid and command line (to start it again exactly so)."""
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and (proc / "comm").read_text().strip() == "nats-server":
                return int(proc.name), (proc / "cmdline").read_bytes().decode().split("\0")[:-1]
    raise AssertionError("no nats-server process")


class NATS(Broker):
    name, publisher, address = "nats", "audit_events.relay.publishers.NATSJetStream", ("127.0.0.1", 4222)

    def __init__(self) -> None:
        super().__init__()
        self.sequence = 0  # the stream sequence of the last message received

    def url(self, port: int) -> str:
        return f"nats://127.0.0.1:{port}"

    def options(self) -> dict[str, Any]:
        return {"stream": self.tag.upper(), "subject_prefix": self.tag}

    def consume(self) -> None:
        import nats
        from nats.js.api import ConsumerConfig, DeliverPolicy, StreamConfig

        async def quiet(error: Exception) -> None:
            pass

        async def consume() -> None:
            client = await nats.connect(self.url(4222), allow_reconnect=False, error_cb=quiet, connect_timeout=5)
            try:
                js = client.jetstream()
                if not self.ready.is_set():
                    await js.add_stream(StreamConfig(name=self.tag.upper(), subjects=[f"{self.tag}.>"]))
                after = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self.sequence + 1)
                subscription = await js.subscribe(
                    f"{self.tag}.>", stream=self.tag.upper(), ordered_consumer=True, config=after
                )
                self.ready.set()
                while not self.stop.is_set():
                    if client.is_closed:
                        raise ConnectionError("NATS closed the connection")
                    try:
                        msg = await subscription.next_msg(timeout=0.2)
                    except nats.errors.TimeoutError:
                        continue
                    self.received.append((decode(msg.data), time.time()))
                    self.sequence = msg.metadata.sequence.stream
            finally:
                with contextlib.suppress(Exception):
                    await client.close()

        asyncio.run(consume())

    def clean_up(self) -> None:
        asyncio.run(delete_stream(self.tag.upper()))

    def restart(self) -> None:
        pid, command = nats_server()
        try:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while reachable(self.address) and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1)
        finally:
            if not reachable(self.address):
                daemon = ["start-stop-daemon", "--start", "--oknodo", "--background", "--exec", command[0], "--"]
                subprocess.run([*daemon, *command[1:]], check=True, timeout=60)
            wait_reachable(self.address)


BROKERS = [RabbitMQ, NATS]


class Proxy:
    """A TCP proxy to a broker that can be cut (every connection dropped, new ones refused) and restored."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open = threading.Event()
        self.open.set()
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
            source.close()  # each socket is the source of one pipe: the other pipe closes the sink

    def cut(self) -> None:
        self.open.clear()
        with self.lock:
            for end in self.sockets:
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
            self.sockets.clear()

    def restore(self) -> None:
        self.open.set()

    def close(self) -> None:
        self.cut()
        self.listener.close()


class RelayProcess:
    """``manage.py audit_relay`` in a process of its own, its log in a file."""

    def __init__(self, broker: Broker, url: str, log: Path) -> None:
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "TEST_DB": "postgres",
            "PGDATABASE": connection.settings_dict["NAME"],
            "TEST_RELAY_PUBLISHER": broker.publisher,
            "TEST_RELAY_URL": url,
            "TEST_RELAY_OPTIONS": json.dumps(broker.options()),
            "PYTHONPATH": str(ROOT),
        }
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "django", "audit_relay", "--name", "e2e", "-v", "2"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def kill(self) -> None:
        assert self.process is not None
        assert self.process.poll() is None, self.log.read_text()[-3000:]
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)

    def close(self) -> None:
        """Kill the process if a failed test left it running (it holds a connection to the test database)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)


@pytest.fixture
def relays() -> Iterator[list[RelayProcess]]:
    """The relay processes a test starts, killed at its end whatever happened."""
    started: list[RelayProcess] = []
    yield started
    for relay in started:
        relay.close()


def write(thread: int, writes: int, books: list[int], commits: dict[str, float], errors: list[BaseException]) -> None:
    """``writes`` events in transactions of 1 to 5 writes, some held open a while; commit times by reason."""
    rng = random.Random(thread)
    done = n = 0
    try:
        while done < writes:
            n += 1
            reason = f"w{thread}-{n}"
            size = min(rng.randrange(1, 6), writes - done)
            try:
                with audit_context(reason=reason), transaction.atomic():
                    for _ in range(size):
                        if rng.random() < 0.4:
                            Author.objects.create(name=reason)
                        else:
                            Book.objects.filter(pk=rng.choice(books)).update(pages=F("pages") + 1)
                    if rng.random() < 0.2:
                        time.sleep(rng.random() / 20)
            except DatabaseError as error:
                if "deadlock detected" not in str(error):
                    raise
                continue
            commits[reason] = time.time()
            done += size
    except BaseException as error:
        errors.append(error)
    finally:
        connection.close()


def table_keys() -> dict[tuple[str, str, int], str]:
    return {(m.model, m.pk, m.version): decode(m.body)["hash"] for m in map(message, Event.objects.all())}


def wait_for(condition: Any, seconds: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; relay log:\n{log.read_text()[-4000:]}")
        time.sleep(0.05)


def unique(received: list[tuple[dict[str, Any], float]]) -> int:
    return len({(m["model"], m["pk"], m["version"]) for m, _ in list(received)})


def check_delivery(broker: Broker, table: dict[tuple[str, str, int], str]) -> int:
    """Every event at least once; after de-duplication exactly the table's, each row's versions 1, 2, 3..."""
    dedup = Deduplicator()
    first: dict[tuple[str, str, int], str] = {}

    def record(body: dict[str, Any]) -> None:
        key = (body["model"], body["pk"], body["version"])
        assert body["version"] == 1 or (body["model"], body["pk"], body["version"] - 1) in first, (
            f"{key}: received before the row's previous version"
        )
        first[key] = body["hash"]

    for body, _ in broker.received:
        dedup.accept(body, record)
    assert first == table
    return dedup.duplicates


def percentile(values: list[float], share: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(share * len(values)))]


@pytest.fixture
def books() -> list[int]:
    author = Author.objects.create(name="Ann")
    return [Book.objects.create(author=author, title="t").pk for _ in range(50)]


@pytest.fixture(params=BROKERS, ids=lambda b: b.name)
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    broker: Broker = request.param()
    broker.start()
    yield broker
    broker.finish()


@pytest.mark.postgres
@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
def test_killed_and_restarted_the_relay_delivers_every_event(
    broker: Broker, books: list[int], tmp_path: Path, relays: list[RelayProcess]
) -> None:
    relay = RelayProcess(broker, broker.url(broker.address[1]), tmp_path / "relay.log")
    relays.append(relay)
    relay.start()
    wait_for(lambda: "connected to" in relay.log.read_text(), WAIT, "the relay to start", relay.log)
    commits: dict[str, float] = {}
    errors: list[BaseException] = []
    writers = [threading.Thread(target=write, args=(i, EVENTS // 4, books, commits, errors)) for i in range(4)]
    started = time.time()
    for thread in writers:
        thread.start()
    # Live: the relay publishes while the writers commit. Then SIGKILL, mid-way.
    wait_for(lambda: unique(broker.received) >= EVENTS // 3, WAIT, "a third of the events", relay.log)
    live = list(broker.received)
    relay.kill()
    for thread in writers:
        thread.join()
    assert not errors, errors
    writing = time.time() - started
    # The writers are done: the restarted relay drains the backlog the kill left.
    table = table_keys()
    before = len(broker.received)
    backlog = len(table) - unique(broker.received)
    relay.start()
    wait_for(lambda: unique(broker.received) >= len(table), WAIT, "every event", relay.log)
    after_restart = [seen for _, seen in broker.received[before:]]
    drained = after_restart[-1] - after_restart[0]
    restarted, written = "", len(table)
    if RESTART_BROKER:  # writers again, and the broker stopped and started while the relay publishes
        more = max(EVENTS // 20, 400)
        writers = [threading.Thread(target=write, args=(10 + i, more // 2, books, commits, errors)) for i in range(2)]
        for thread in writers:
            thread.start()
        wait_for(lambda: unique(broker.received) >= len(table) + more // 4, WAIT, "new events", relay.log)
        connected, down = relay.log.read_text().count("connected to"), time.monotonic()
        broker.restart()
        restarted = f"broker stopped and started again in {time.monotonic() - down:.1f} s, with {more} more events; "
        for thread in writers:
            thread.join()
        assert not errors, errors
        table = table_keys()
        wait_for(lambda: unique(broker.received) >= len(table), WAIT, "every event after the restart", relay.log)
        assert "broker error" in relay.log.read_text()
        assert relay.log.read_text().count("connected to") > connected  # the relay reconnected
        assert broker.reconnects >= 1  # and so did the consumer: the broker really went away
    assert relay.stop() == 0
    time.sleep(0.5)  # whatever else was on its way
    duplicates = check_delivery(broker, table)
    latencies = [(seen - commits[m["context"]["reason"]]) * 1000 for m, seen in live if m["context"].get("reason")]
    print(
        f"\n{broker.name}: {written} events by 4 writers in {writing:.1f} s; SIGKILL after {len(live)} received; "
        f"{restarted}{duplicates} duplicates received.\n"
        f"  after the restart, a backlog of {backlog} events: first to last received in {drained:.1f} s, "
        f"{backlog / drained:.0f} events/s\n"
        f"  live, commit to consume: p50 {percentile(latencies, 0.5):.0f} ms, p99 {percentile(latencies, 0.99):.0f} ms "
        f"(mean {statistics.mean(latencies):.0f} ms, {len(latencies)} events)"
    )
    log = relay.log.read_text()
    assert "resuming after snapshot" in log
    assert "stopped;" in log


@pytest.mark.postgres
@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
def test_a_broker_outage_loses_nothing(broker: Broker, books: list[int], tmp_path: Path) -> None:
    proxy = Proxy(broker.address)
    relay = RelayProcess(broker, broker.url(proxy.port), tmp_path / "relay.log")
    relay.start()
    commits: dict[str, float] = {}
    errors: list[BaseException] = []
    total = max(EVENTS // 5, 400)
    writers = [threading.Thread(target=write, args=(i, total // 2, books, commits, errors)) for i in range(2)]
    try:
        for thread in writers:
            thread.start()
        wait_for(lambda: unique(broker.received) >= total // 4, WAIT, "a quarter of the events", relay.log)
        proxy.cut()  # as a broker restart: connections dropped, new ones refused a while
        wait_for(lambda: "broker error" in relay.log.read_text(), WAIT, "the relay to notice", relay.log)
        time.sleep(1.5)
        proxy.restore()
        for thread in writers:
            thread.join()
        assert not errors, errors
        table = table_keys()
        wait_for(lambda: unique(broker.received) >= len(table), WAIT, "every event", relay.log)
        assert relay.stop() == 0
    finally:
        proxy.close()
        if relay.process is not None and relay.process.poll() is None:
            relay.kill()
    time.sleep(0.3)
    check_delivery(broker, table)
    assert "retrying in" in relay.log.read_text()
