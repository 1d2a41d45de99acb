"""``AuditContextMiddleware``: every event written during a request says who, which request, from where.

Put it after ``AuthenticationMiddleware``. The user is read when an event is
written, not when the request comes in, so authentication that happens later
(Django REST framework sets ``request.user`` in the view) is still seen, and a
request that writes nothing never loads the user.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

from .context import audit_context

REQUEST_ID_HEADER = "X-Request-ID"
# An incoming id is kept only if it is short and plain, so it cannot smuggle anything into logs or headers.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")


class AuditContextMiddleware:
    """Sync and async: adds ``request_id``, ``method``, ``path``, ``remote_addr`` and the user to events.

    The request id is the incoming ``X-Request-ID`` header when it looks like
    one, else a new UUID; it is sent back in the response's ``X-Request-ID``.
    ``remote_addr`` is ``REMOTE_ADDR``: behind a proxy, have the proxy or a
    middleware set it from the header you trust (``X-Forwarded-For`` can be
    forged by the client).
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        request_id = request_id_for(request)
        with audit_context(actor=_lazy_user(request), **request_context(request, request_id)):
            response: HttpResponse = self.get_response(request)
        response.headers.setdefault(REQUEST_ID_HEADER, request_id)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_for(request)
        with audit_context(actor=_lazy_user(request), **request_context(request, request_id)):
            response: HttpResponse = await self.get_response(request)
        response.headers.setdefault(REQUEST_ID_HEADER, request_id)
        return response


def request_id_for(request: HttpRequest) -> str:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    return incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex


def request_context(request: HttpRequest, request_id: str) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "method": request.method,
        "path": request.path[:1024],
        "remote_addr": request.META.get("REMOTE_ADDR"),
    }


def _lazy_user(request: HttpRequest) -> Callable[[], Any]:
    # getattr, not request.user: without AuthenticationMiddleware there is no user, and no actor.
    return lambda: getattr(request, "user", None)
