"""The admin: a read-only Event admin with "undo delete", and a mixin for the user's own model admins.

Django's admin autodiscovery imports this package, which registers
:class:`EventAdmin` on the default site. What is public is below; the rest of
the package is private:

* :mod:`.events` and :mod:`.event_list`: the Event admin, its filters, its
  change list and its "undo delete" action;
* :mod:`.mixin`: :class:`AuditedAdminMixin` (history, restore a version,
  deleted rows, undo delete in the user's own model admins), whose views are
  in :mod:`.history` and :mod:`.deleted`, and :mod:`.pages`, what they share
  (:class:`CappedPaginator` among it);
* :mod:`.rules` and :mod:`.event_rules`: what Django's own admin rules let a
  user see and write, for the audit pages and for the Event admin;
* :mod:`.forms`: the change form asked about a restored version;
* :mod:`.undo`: undoing one deletion with its group;
* :mod:`.diffs` and :mod:`.values`: diffs and recorded values, shown as the
  admin shows them.
"""

from __future__ import annotations

from .events import EventAdmin
from .mixin import AuditedAdminMixin
from .pages import CappedPaginator

__all__ = ["AuditedAdminMixin", "CappedPaginator", "EventAdmin"]
