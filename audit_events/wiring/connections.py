"""The transaction methods of a connection whose transaction has events waiting (``pending.Pending``)."""

from __future__ import annotations

from typing import Any

from .. import pending


def install(connection: Any, waiting: pending.Pending) -> dict[str, Any]:
    """Put ``waiting``'s methods in place of the connection's transaction methods, on this connection
    instance only, until its transaction ends; return what the instance had (None: the class's).

    Django has no hook before COMMIT (``transaction.on_commit`` runs after it), and ``atomic()``, the
    transaction API and the test framework end transactions by calling these methods of
    ``BaseDatabaseWrapper`` on the connection: ``commit``, ``rollback``, ``savepoint``,
    ``savepoint_rollback``, ``close`` and ``set_autocommit`` (which commits on SQLite and MySQL).
    """
    replaced = {name: connection.__dict__.get(name) for name in waiting.WRAPPED}
    for name in waiting.WRAPPED:
        setattr(connection, name, getattr(waiting, name))
    return replaced


def remove(connection: Any, replaced: dict[str, Any]) -> None:
    for name, own in replaced.items():
        if own is None:
            connection.__dict__.pop(name, None)
        else:
            setattr(connection, name, own)


HOOKS = pending.Hooks(install=install, remove=remove)
