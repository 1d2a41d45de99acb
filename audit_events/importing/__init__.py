"""``manage.py audit_import``: the history another audit library kept, written as this app's events.

Each peer (``simple_history``, ``reversion``, ``auditlog``, ``pghistory``) reads its own tables and hands
:mod:`.base` one :class:`~.base.PeerRow` per history row, in the peer's time
order; :func:`~.base.import_model` turns them into events through
``journal.write``, which numbers them and chains their hashes as for any
other event.
"""

from __future__ import annotations

from .base import ImportResult, Peer, PeerRow, import_model

__all__ = ["PEERS", "ImportResult", "Peer", "PeerRow", "import_model", "peer"]

PEERS = ("simple_history", "reversion", "auditlog", "pghistory")


def peer(name: str) -> Peer:
    """The reader of peer ``name`` (one of :data:`PEERS`); its package must be installed."""
    if name == "simple_history":
        from .simple_history import SimpleHistory

        return SimpleHistory()
    if name == "reversion":
        from .reversion import Reversion

        return Reversion()
    if name == "auditlog":
        from .auditlog import Auditlog

        return Auditlog()
    if name == "pghistory":
        from .pghistory import Pghistory

        return Pghistory()
    raise ValueError(f"Unknown peer {name!r}: expected one of {', '.join(PEERS)}.")
