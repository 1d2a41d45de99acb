"""One room per database: the SQL of this app that one backend alone speaks.

The rest of the app asks :func:`of` for the connection's backend and never
tests ``connection.vendor``: what a backend can do is said by its
:class:`.base.Backend` (whether a save's UPDATE returns the row it overwrote,
whether the Collector's DELETE returns the rows it deletes, which triggers
keep the event table append-only), and its statements are its methods.

* :mod:`.postgresql`: ``UPDATE ... FROM (SELECT ... FOR NO KEY UPDATE) AS old
  ... RETURNING old.*, ...`` of a save, ``DELETE ... RETURNING`` of the
  Collector's deletes, statements prepared (``prepared``), the triggers;
* :mod:`.sqlite`: ``UPDATE ... RETURNING`` of a save, an UPDATE that hands
  back what it overwrites (a composite key), the triggers, ``BEGIN IMMEDIATE``;
* :mod:`.mysql` (MySQL and MariaDB): the event INSERT from ``JSON_TABLE``, the
  triggers; old rows read by a locking SELECT, as :mod:`.base`;
* :mod:`.base`: any other database, whose old rows are all read by a locking
  SELECT first, and the ``UPDATE ... RETURNING`` both of the above share.

The event INSERT (``inserts``) is written once; each backend gives its parts: the
drafts' table (:meth:`.base.Backend.event_drafts`), the version lookup, casts and
SHA-256.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from django.db import connections, models

from .. import rows
from .base import Backend

if TYPE_CHECKING:
    from ..registry import ModelSpec
    from .base import Written

    Field = models.Field[Any, Any]


def of(connection: Any) -> Backend:
    """The backend of ``connection`` (a Django connection)."""
    return _backend(connection.vendor)


@functools.cache
def _backend(vendor: str) -> Backend:
    # Imported on first use, once per vendor: only the databases a project uses are loaded, and
    # after the app registry (``postgresql`` reads recorded history through ``replay``, its models).
    if vendor == "postgresql":
        from .postgresql import PostgreSQL

        return PostgreSQL()
    if vendor == "sqlite":
        from .sqlite import SQLite

        return SQLite()
    if vendor == "mysql":
        from .mysql import MySQL

        return MySQL()
    return Backend()


def returns_old_row(spec: ModelSpec, using: str) -> bool:
    """Whether a save's UPDATE of a row of ``spec`` returns the row it overwrote, and a delete's
    DELETE the row it deletes (PostgreSQL): one table (no multi-table parents), a single-column key."""
    returns = of(connections[using]).update_returns_old_row
    return returns and not spec.model._meta.parents and not rows.composite_key(spec)


def hands_back_overwritten(spec: ModelSpec, connection: Any) -> bool:
    """Whether a save's UPDATE hands back what it overwrites (SQLite): one table, a composite key."""
    hands_back = of(connection).hands_back_overwritten
    return hands_back and not spec.model._meta.parents and rows.composite_key(spec)


def update(
    spec: ModelSpec,
    base_qs: models.QuerySet[Any],
    using: str,
    pk: Any,
    values: list[tuple[Field, Any, Any]],
    with_old: bool,
) -> Written | None:
    """The UPDATE of a save (Django's ``values`` for the row with key ``pk``) by the statement of
    the backend that returns the rows: the row it overwrote (where it can, with ``with_old``;
    else ``None``) and the row it left, both ``None`` if no row has the key. ``None`` where
    Django's own UPDATE must run: nothing has run.

    One table, and either a single-column key, the UPDATE returning the rows
    (:meth:`.base.Backend.update`), or a composite key, handing back what it
    overwrites (:meth:`.base.Backend.update_overwriting`).
    """
    connection = connections[using]
    backend = of(connection)
    if hands_back_overwritten(spec, connection):
        return backend.update_overwriting(spec, base_qs, using, pk, values)
    if backend.update_returns_rows(connection) and not spec.model._meta.parents and not rows.composite_key(spec):
        return backend.update(rows.row_select(spec, connection, no_key=True), pk, values, with_old)
    return None
