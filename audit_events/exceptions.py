"""The errors a user can act on. Messages name the model, the pk and the reason."""

from __future__ import annotations


class NoHistory(LookupError):
    """The row has no recorded events, so there is nothing to read or restore."""


class RestoreError(Exception):
    """A restore cannot be done faithfully; nothing was written."""


class NotDeleted(RestoreError):
    """``restore()`` without a moment, of a row that is not deleted: there is no deletion to undo."""


class AppendOnlyError(Exception):
    """Events are never updated or deleted: a correction is a new event."""
