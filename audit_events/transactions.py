"""The transaction this app opens around a write it records.

A recorded write reads before it writes (the old row, on SQLite, which
returns only new values; the rows a cascade reaches). In a transaction that
SQLite begins ``DEFERRED``, a read then a write asks to upgrade a read lock
while another connection may be writing: SQLite answers "database is
locked" at once rather than wait (its busy timeout does not apply where
waiting could deadlock). Plain Django's write in autocommit mode is one
statement, which waits its turn. So where this app opens the transaction
itself (the connection is in autocommit mode) on SQLite, it begins it
``IMMEDIATE``: the write lock is taken first, waiting as a plain write
would. A transaction the application opened is left as it is (set
``"transaction_mode": "IMMEDIATE"`` in the database's ``OPTIONS`` for those).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from django.db import connections, transaction

from . import backends


@contextlib.contextmanager
def immediate(using: str) -> Iterator[None]:
    """On SQLite in autocommit mode, a transaction begun inside the block begins ``IMMEDIATE``.

    For a write whose transaction Django opens itself (a delete's ``Collector``):
    its own ``atomic()`` begins it, and raises what it raises at its end.
    """
    connection = connections[using]
    if not (
        backends.of(connection).begins_deferred(connection)
        and connection.get_autocommit()
        and not connection.in_atomic_block
    ):
        yield
        return
    connection.transaction_mode = "IMMEDIATE"  # type: ignore[attr-defined]
    try:
        yield
    finally:
        connection.transaction_mode = None  # type: ignore[attr-defined]


@contextlib.contextmanager
def atomic_write(using: str) -> Iterator[None]:
    """``transaction.atomic(using, savepoint=False)``, begun ``IMMEDIATE`` if it begins one on SQLite."""
    with immediate(using), transaction.atomic(using=using, savepoint=False):
        yield
