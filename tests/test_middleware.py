"""AuditContextMiddleware: who, which request and from where, on every event a request writes; sync and async."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient, Client
from django.urls import path
from pytest_django.fixtures import Settings
from rest_framework.authentication import BasicAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit_events.middleware import AuditContextMiddleware
from audit_events.models import Event
from tests.models import Author

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "audit_events.middleware.AuditContextMiddleware",
]


def create_author(request: HttpRequest) -> HttpResponse:
    author = Author.objects.create(name=request.GET.get("name", "from a view"))
    return HttpResponse(str(author.pk))


def authenticate_late(request: HttpRequest) -> HttpResponse:
    """Like Django REST framework: the user is set by the view, after every middleware ran."""
    request.user = User.objects.get(username=request.GET["as"])
    return create_author(request)


async def create_author_async(request: HttpRequest) -> HttpResponse:
    author = await Author.objects.acreate(name="from an async view")
    return HttpResponse(str(author.pk))


def read_only(request: HttpRequest) -> HttpResponse:
    return HttpResponse("nothing written")


async def every_async_write(request: HttpRequest) -> HttpResponse:
    """asave(), aupdate(), abulk_update(), adelete(): Django's async ORM methods, from an async view."""
    author = await Author.objects.acreate(name="one")
    author.name = "two"
    await author.asave()
    await Author.objects.filter(pk=author.pk).aupdate(name="three")
    author.name = "four"
    await Author.objects.abulk_update([author], ["name"])
    await author.adelete()
    return HttpResponse()


class CreateAuthorApi(APIView):
    """A Django REST framework view: it authenticates the request itself (HTTP Basic here; token and JWT
    authentication work the same way), after every middleware ran with an anonymous user."""

    authentication_classes = [BasicAuthentication]
    permission_classes = [IsAuthenticated]

    def post(self, request: Request) -> Response:
        author = Author.objects.create(name="from the API")
        return Response({"id": author.pk})


urlpatterns = [
    path("api/authors/", CreateAuthorApi.as_view()),
    path("async-writes/", every_async_write),
    path("create/", create_author),
    path("create/<str:label>/", lambda request, label: create_author(request)),
    path("late/", authenticate_late),
    path("async/", create_author_async),
    path("read/", read_only),
]

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]


@pytest.fixture(autouse=True)
def _middleware(settings: Settings) -> None:
    settings.MIDDLEWARE = MIDDLEWARE


def only_event() -> Event:
    return Event.objects.get()


def test_events_carry_user_request_id_method_path_and_address() -> None:
    user = User.objects.create_user("teller", password="pw")
    client = Client(REMOTE_ADDR="203.0.113.7")
    client.force_login(user)

    response = client.post("/create/?name=x")

    event = only_event()
    assert (event.actor_id, event.actor_repr) == (str(user.pk), "teller")
    assert event.context["method"] == "POST"
    assert event.context["path"] == "/create/"
    assert event.context["remote_addr"] == "203.0.113.7"
    assert event.context["request_id"] == response.headers["X-Request-ID"]
    assert len(event.context["request_id"]) == 32


def test_each_request_gets_its_own_id() -> None:
    client = Client()
    first = client.post("/create/").headers["X-Request-ID"]
    second = client.post("/create/").headers["X-Request-ID"]
    assert first != second
    assert sorted(e.context["request_id"] for e in Event.objects.all()) == sorted([first, second])


def test_a_plain_incoming_request_id_is_kept_and_an_odd_one_replaced() -> None:
    Client().post("/create/", headers={"X-Request-ID": "lb-1234.abc"})
    assert only_event().context["request_id"] == "lb-1234.abc"

    odd = Client().post("/create/", headers={"X-Request-ID": "x" * 200 + "\u2028"})
    latest = Event.objects.order_by("-id").first()
    assert latest is not None
    assert latest.context["request_id"] == odd.headers["X-Request-ID"] != "x" * 200


def test_anonymous_requests_have_no_actor() -> None:
    Client().post("/create/")
    event = only_event()
    assert (event.actor_id, event.actor_repr) == (None, "")
    assert event.context["method"] == "POST"


def test_the_user_is_read_when_the_event_is_written_not_when_the_request_arrives() -> None:
    User.objects.create_user("late")
    Client().post("/late/?as=late")
    assert only_event().actor_repr == "late"


def test_a_django_rest_framework_view_s_own_authentication_is_the_actor() -> None:
    User.objects.create_user("api-client", password="pw")
    credentials = base64.b64encode(b"api-client:pw").decode()

    response = Client().post("/api/authors/", HTTP_AUTHORIZATION=f"Basic {credentials}")

    assert response.status_code == 200, response.content
    event = only_event()
    assert (event.actor_repr, event.context["path"]) == ("api-client", "/api/authors/")


def test_a_request_that_writes_nothing_never_loads_the_user(django_assert_num_queries: object) -> None:
    user = User.objects.create_user("reader", password="pw")
    client = Client()
    client.force_login(user)
    with django_assert_num_queries(0):  # type: ignore[operator]
        # Only the session would be read by loading the user; the session itself is read lazily too.
        assert client.get("/read/").content == b"nothing written"


def test_async_views_get_the_same_context() -> None:
    user = User.objects.create_user("async-teller", password="pw")
    client = AsyncClient()
    client.force_login(user)

    response = async_to_sync(client.post)("/async/")

    event = only_event()
    assert event.actor_repr == "async-teller"
    assert event.context["remote_addr"] == "127.0.0.1"  # the ASGI scope's peer, as AsyncClient sends it
    assert event.context["path"] == "/async/"
    assert event.context["request_id"] == response.headers["X-Request-ID"]


def test_every_async_write_is_recorded_with_the_request_s_actor() -> None:
    user = User.objects.create_user("async-writer", password="pw")
    client = AsyncClient()
    client.force_login(user)

    async_to_sync(client.post)("/async-writes/")

    events = list(Event.objects.order_by("id"))
    assert [(e.action, e.changes.get("name")) for e in events] == [
        ("create", None),
        ("update", ["one", "two"]),
        ("update", ["two", "three"]),
        ("update", ["three", "four"]),
        ("delete", None),
    ]
    assert {(e.actor_repr, e.context["path"]) for e in events} == {("async-writer", "/async-writes/")}


def test_the_middleware_runs_natively_in_async_mode() -> None:
    async def get_response(request: HttpRequest) -> HttpResponse:
        await sync_to_async(Author.objects.create)(name="inner")
        return HttpResponse()

    middleware = AuditContextMiddleware(get_response)
    assert asyncio.iscoroutinefunction(middleware)
    request = HttpRequest()
    request.method, request.path, request.META["REMOTE_ADDR"] = "PUT", "/direct/", "192.0.2.1"

    response = async_to_sync(middleware)(request)

    event = only_event()
    assert json.loads(json.dumps(event.context)) == {
        "request_id": response.headers["X-Request-ID"],
        "method": "PUT",
        "path": "/direct/",
        "remote_addr": "192.0.2.1",
    }
    assert event.actor_id is None  # no AuthenticationMiddleware ran: no user, no actor


def test_the_context_ends_with_the_request() -> None:
    Client().post("/create/")
    Author.objects.create(name="outside any request")
    outside = Event.objects.order_by("-id").first()
    assert outside is not None
    assert outside.context == {}


def test_a_nul_in_the_request_path_is_recorded_as_u_fffd_and_the_write_kept() -> None:
    response = Client().post("/create/a%00b/?name=kept")

    assert response.status_code == 200
    assert Author.objects.filter(name="kept").exists()
    assert only_event().context["path"] == "/create/a\ufffdb/"
