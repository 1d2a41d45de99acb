"""The actor of an imported event: the peer's user id, and the user's text while the user still exists."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError


class Users:
    """``str(user)`` of each user id, read once per user (a history names few users, many times)."""

    def __init__(self, using: str) -> None:
        self.using = using
        self.known: dict[Any, str] = {}

    def repr(self, user_id: Any) -> str:
        if user_id is None:
            return ""
        if user_id not in self.known:
            try:
                user = get_user_model()._base_manager.using(self.using).filter(pk=user_id).first()
            except (TypeError, ValueError, ValidationError):  # not a user's key (a peer may hold any value)
                user = None
            self.known[user_id] = "" if user is None else str(user)  # deleted since: its id is all there is
        return self.known[user_id]
