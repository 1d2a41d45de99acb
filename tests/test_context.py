"""audit_context and capture_paused: contextvars switches, as context managers and decorators."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.utils.functional import SimpleLazyObject

from audit_events import audit_context
from audit_events.context import capture_paused, current_context, is_paused
from audit_events.models import Event
from tests.models import Author

WAIT = 30  # a safety net against a hang, never a timing assumption


def fields() -> dict[str, Any]:
    return current_context().event_fields()


def test_outside_any_context_there_is_no_actor_and_no_context() -> None:
    assert fields() == {"actor_id": None, "actor_repr": "", "context": {}}


def test_nesting_inner_values_override_the_rest_is_inherited() -> None:
    with audit_context(actor="cron", reason="nightly", job=1):
        with audit_context(reason="retry", attempt=2):
            assert fields() == {
                "actor_id": "cron",
                "actor_repr": "cron",
                "context": {"reason": "retry", "job": 1, "attempt": 2},
            }
            with audit_context(actor=None):
                assert fields()["actor_id"] is None  # an explicit None clears the actor
                assert fields()["context"]["reason"] == "retry"
        assert fields()["context"] == {"reason": "nightly", "job": 1}
    assert fields() == {"actor_id": None, "actor_repr": "", "context": {}}


def test_the_same_instance_can_be_entered_twice() -> None:
    context = audit_context(reason="again")
    with context, context:
        assert fields()["context"] == {"reason": "again"}
    assert fields()["context"] == {}


def test_context_is_restored_when_the_block_raises() -> None:
    with pytest.raises(ZeroDivisionError), audit_context(reason="boom"):
        _ = 1 / 0
    assert fields()["context"] == {}


def test_decorator() -> None:
    @audit_context(reason="decorated", source="job")
    def job(extra: int) -> dict[str, Any]:
        return dict(fields()["context"], extra=extra)

    assert job(1) == {"reason": "decorated", "source": "job", "extra": 1}
    assert job(2)["extra"] == 2
    assert fields()["context"] == {}


@pytest.mark.django_db
def test_decorated_function_events_carry_the_context() -> None:
    @audit_context(actor="importer", reason="nightly import")
    def import_author(name: str) -> Author:
        return Author.objects.create(name=name)

    author = import_author("Imported")
    event = Event.objects.get(object_pk=str(author.pk), content_type__model="author")
    assert (event.actor_id, event.actor_repr, event.context) == ("importer", "importer", {"reason": "nightly import"})


def in_thread(target: Callable[[], Any]) -> Any:
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = target()
        except BaseException as error:  # report it in the test thread
            result["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive()
    if "error" in result:
        raise result["error"]
    return result["value"]


def test_a_thread_does_not_see_the_context_of_the_thread_that_started_it() -> None:
    with audit_context(actor="main", reason="main thread"):
        assert in_thread(fields) == {"actor_id": None, "actor_repr": "", "context": {}}
        assert fields()["actor_id"] == "main"


def test_a_context_set_in_a_thread_does_not_leak_out() -> None:
    def worker() -> dict[str, Any]:
        with audit_context(actor="worker", reason="in thread"):
            inside = fields()
        return inside

    assert in_thread(worker)["actor_id"] == "worker"
    assert fields() == {"actor_id": None, "actor_repr": "", "context": {}}


def test_one_decorated_function_running_in_two_threads_at_once() -> None:
    """A decorator is one object shared by every call: overlapping calls must not share its state."""
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, Any] = {}
    errors: list[BaseException] = []

    @audit_context(reason="shared decorator")
    def handler(name: str, arrived: threading.Event, wait_for: threading.Event) -> None:
        with audit_context(actor=name):
            arrived.set()
            assert wait_for.wait(WAIT)
            seen[name] = fields()

    def first() -> None:
        try:
            handler("first", first_in, second_in)  # leaves while the second call is still inside
        except BaseException as error:
            errors.append(error)
        finally:
            first_out.set()

    def second() -> None:
        try:
            assert first_in.wait(WAIT)
            handler("second", second_in, first_out)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert errors == []
    assert seen["first"] == {"actor_id": "first", "actor_repr": "first", "context": {"reason": "shared decorator"}}
    assert seen["second"] == {"actor_id": "second", "actor_repr": "second", "context": {"reason": "shared decorator"}}


def test_asyncio_tasks_each_see_their_own_context() -> None:
    async def task(name: str, ready: asyncio.Event, go: asyncio.Event) -> dict[str, Any]:
        with audit_context(actor=name, task=name):
            ready.set()
            await go.wait()  # the other task sets its own context meanwhile
            return fields()

    async def main() -> list[dict[str, Any]]:
        with audit_context(reason="outer"):
            ready = [asyncio.Event(), asyncio.Event()]
            go = asyncio.Event()
            tasks = [asyncio.create_task(task(name, ready[i], go)) for i, name in enumerate(["a", "b"])]
            await ready[0].wait()
            await ready[1].wait()
            assert fields()["context"] == {"reason": "outer"}  # the tasks' contexts stay in the tasks
            go.set()
            return await asyncio.gather(*tasks)

    a, b = asyncio.run(main())
    assert a == {"actor_id": "a", "actor_repr": "a", "context": {"reason": "outer", "task": "a"}}
    assert b == {"actor_id": "b", "actor_repr": "b", "context": {"reason": "outer", "task": "b"}}
    assert fields()["context"] == {}


def test_decorating_a_coroutine_function() -> None:
    @audit_context(actor="async-job", reason="async")
    async def job() -> dict[str, Any]:
        await asyncio.sleep(0)
        return fields()

    assert asyncio.run(job()) == {"actor_id": "async-job", "actor_repr": "async-job", "context": {"reason": "async"}}
    assert fields()["context"] == {}


def test_capture_paused_as_decorator_of_sync_and_async_functions() -> None:
    @capture_paused()
    def sync() -> bool:
        return is_paused()

    @capture_paused()
    async def coroutine() -> bool:
        await asyncio.sleep(0)
        return is_paused()

    assert sync() is True
    assert asyncio.run(coroutine()) is True
    assert is_paused() is False


@pytest.mark.django_db
def test_a_callable_actor_is_resolved_when_the_event_is_written() -> None:
    holder: dict[str, Any] = {"user": None}
    calls: list[int] = []

    def actor() -> Any:
        calls.append(1)
        return holder["user"]

    with audit_context(actor=actor):
        assert not calls  # entering resolves nothing
        anonymous = Author.objects.create(name="before login")
        holder["user"] = User.objects.create(username="late")
        identified = Author.objects.create(name="after login")
    events = {e.object_pk: e for e in Event.objects.filter(content_type__model="author")}
    assert events[str(anonymous.pk)].actor_id is None
    assert (events[str(identified.pk)].actor_id, events[str(identified.pk)].actor_repr) == (
        str(holder["user"].pk),
        "late",
    )
    assert len(calls) == 2  # once per event written


@pytest.mark.django_db
@pytest.mark.parametrize(
    "actor",
    [
        AnonymousUser(),
        lambda: AnonymousUser(),
        SimpleLazyObject(AnonymousUser),
        None,
    ],
    ids=["anonymous", "callable", "lazy", "none"],
)
def test_anonymous_user_means_no_actor(actor: Any) -> None:
    with audit_context(actor=actor, reason="r"):
        author = Author.objects.create(name="x")
    event = Event.objects.get(object_pk=str(author.pk), content_type__model="author")
    assert (event.actor_id, event.actor_repr, event.context) == (None, "", {"reason": "r"})


@pytest.mark.django_db
def test_a_lazy_user_like_request_user_is_recorded() -> None:
    user = User.objects.create(username="lazy")
    with audit_context(actor=SimpleLazyObject(lambda: User.objects.get(pk=user.pk))):
        author = Author.objects.create(name="x")
    event = Event.objects.get(object_pk=str(author.pk), content_type__model="author")
    assert (event.actor_id, event.actor_repr) == (str(user.pk), "lazy")


@pytest.mark.django_db
def test_an_unsaved_user_is_recorded_by_name_without_an_id() -> None:
    with audit_context(actor=User(username="not-saved-yet")):
        author = Author.objects.create(name="x")
    event = Event.objects.get(object_pk=str(author.pk), content_type__model="author")
    assert (event.actor_id, event.actor_repr) == (None, "not-saved-yet")


def test_an_actor_that_is_not_a_user_is_recorded_as_text() -> None:
    with audit_context(actor="billing-cron"):
        assert fields()["actor_id"] == "billing-cron"
    with audit_context(actor=lambda: "resolved-later"):
        assert (fields()["actor_id"], fields()["actor_repr"]) == ("resolved-later", "resolved-later")
    long_name = "x" * 300
    with audit_context(actor=long_name):
        assert len(fields()["actor_repr"]) == 255


@pytest.mark.django_db
def test_a_long_plain_text_actor_is_cut_to_the_column() -> None:
    from audit_events.models import Event
    from tests.models import Author

    with audit_context(actor="x" * 300):
        Author.objects.create(name="A")
    event = Event.objects.get()
    assert event.actor_id == "x" * 255
    assert event.actor_repr == "x" * 255


class _OddActor:
    """An actor whose id and text hold what no text column takes: a NUL, a lone surrogate."""

    pk = "id\x00\ud800"

    def __str__(self) -> str:
        return "name\udfff\x00"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("bad", "clean"),
    [
        ("\x00", "\ufffd"),
        ("a\ud800b", "a\ufffdb"),
        ("\udfff", "\ufffd"),
        ("\ud83d\ude00", "\U0001f600"),  # a pair as two code points: JSON reads it back as the one character
    ],
)
def test_nul_and_lone_surrogates_in_the_context_never_fail_the_write(bad: str, clean: str) -> None:
    """The context is this app's: a value no database text or jsonb takes becomes U+FFFD, and the write commits."""
    from audit_events.verify import verify_model

    with audit_context(actor=_OddActor(), reason=bad, **{f"key{bad}": [bad, {bad: bad}]}):
        author = Author.objects.create(name="A")
    event = Event.objects.get()
    assert event.context == {"reason": clean, f"key{clean}": [clean, {clean: clean}]}
    assert (event.actor_id, event.actor_repr) == ("id\ufffd\ufffd", "name\ufffd\ufffd")
    assert Author.objects.filter(pk=author.pk).exists()
    assert list(verify_model(Author)) == []  # the hash covers what is stored


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("atomic", [True, False], ids=["in a transaction", "autocommit"])
def test_a_context_value_json_cannot_hold_never_fails_the_write(atomic: bool) -> None:
    """NaN and the infinities are no JSON: each is recorded as its text, the write goes on."""
    from django.db import transaction

    with audit_context(score=float("nan"), top=float("inf"), low=[float("-inf")]):
        if atomic:
            with transaction.atomic():
                author = Author.objects.create(name="A")
        else:
            author = Author.objects.create(name="A")
    event = Event.objects.get(object_pk=str(author.pk))
    assert event.context == {"score": "NaN", "top": "Infinity", "low": ["-Infinity"]}
