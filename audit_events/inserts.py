"""The event INSERT: the one statement that writes events, and how many it takes at once.

The database computes each event's version and hash inside the statement,
from the row's latest event (see ``journal`` for why, and ``hashing`` for
what the hash covers). This is the only SQL of the journal, kept in one
place; what differs per database is its backend's (``backends``: the drafts' table, the
version lookup, casts and SHA-256).
"""

from __future__ import annotations

import functools
import json
from typing import Any

from django.db import connections

from . import backends, prepared
from .models import Event

BATCH_SIZE = 500
_PARAMS_PER_EVENT = 20

# One row of the derived table the INSERT reads: the draft's values, then its
# version and the hash of the row's previous event, looked up by the database.
_COLUMNS = (
    "content_type_id",
    "object_pk",
    "action",
    "changes",
    "state",  # always stored (create, delete, restore...), or NULL
    "snapshot",  # stored only if the version falls on a snapshot, or NULL
    "created_at",
    "operation",
    "actor_id",
    "actor_repr",
    "context",
    # The hashed content up to its state, which comes last: the database appends
    # the state's canonical text (the one stored) or null, and the closing brace.
    "content_head",
)
_JSON = {"changes", "state", "snapshot", "context"}


@functools.lru_cache(maxsize=64)
def _sql(alias: str, rows: int, every: int) -> str:
    """``INSERT INTO event ... SELECT ...`` for ``rows`` drafts.

    The statement is plain SQL, built once per batch shape: compiling ORM
    expressions per event cost far more than the round trip it saves. On
    PostgreSQL and SQLite the drafts come as one JSON document, a list of
    records by ``_COLUMNS`` name (``json_to_recordset``, ``json_each``): the
    statement is the same whatever the batch size, and short, where a
    ``VALUES`` list of 500 rows was 6,500 parameters for the driver to parse
    and quote (and SQLite's 999 parameters held a batch to 49 events).
    Elsewhere they come as ``VALUES`` rows (``rows`` of them). The database
    computes each event's version (the row's latest + 1), whether it stores a
    state (always, or when the version is 1 or a multiple of SNAPSHOT_EVERY)
    and its hash (SHA-256 of the previous hash + the content).
    """
    connection = connections[alias]
    backend = backends.of(connection)
    quote = connection.ops.quote_name
    table = quote(Event._meta.db_table)

    def cast(column: str, value: str) -> str:
        kind = {"created_at": "timestamptz", "operation": "uuid"}.get(column, "jsonb" if column in _JSON else None)
        return backend.event_cast(kind, value)

    latest = (
        f"SELECT {{column}} FROM {table} AS e WHERE e.content_type_id = d.content_type_id "
        "AND e.object_pk = d.object_pk ORDER BY e.version DESC LIMIT 1"
    )
    numbered = backend.event_numbered(backend.event_drafts(_COLUMNS, rows), latest)
    # OFFSET 0: w is computed once per event, not once per use of w.version below.
    # "%%": a literal % for the drivers' parameter style (SQLite's too, through Django).
    keeps = f"(w.state IS NOT NULL OR (w.snapshot IS NOT NULL AND (w.version = 1 OR w.version %% {int(every)} = 0)))"
    hashed_state = f"CASE WHEN {keeps} THEN COALESCE(w.state, w.snapshot) ELSE 'null' END"
    columns = [
        "content_type_id", "object_pk", "version", "action", "changes", "state",
        "created_at", "operation", "actor_id", "actor_repr", "context", "hash",
    ]  # fmt: skip
    select = [
        "w.content_type_id",
        "w.object_pk",
        "w.version",
        "w.action",
        cast("changes", "w.changes"),
        f"CASE WHEN w.state IS NOT NULL THEN {cast('state', 'w.state')} WHEN {keeps} "
        f"THEN {cast('state', 'w.snapshot')} ELSE NULL END",
        cast("created_at", "w.created_at"),
        cast("operation", "w.operation"),
        "w.actor_id",
        "w.actor_repr",
        cast("context", "w.context"),
        backend.sha256(backend.concat("w.previous", "w.content_head", hashed_state, "'}'")),
    ]
    into = f"INSERT INTO {table} ({', '.join(quote(c) for c in columns)})"
    return f"{into} SELECT {', '.join(select)} FROM ({numbered}) AS w"


def _one_document(connection: Any) -> bool:
    """Whether the INSERT takes its drafts as one JSON document (:func:`_sql`)."""
    return backends.of(connection).events_in_one_document


def batch_size(connection: Any) -> int:
    """Events per INSERT: ``BATCH_SIZE``, or fewer where each draft is parameters of its own
    (``VALUES`` rows) and the backend caps them.

    Such an event binds about ``_PARAMS_PER_EVENT`` parameters (its columns and
    the row key twice more for the version and hash subqueries); Django sizes
    batches by columns only, which would overshoot a cap.
    """
    limit = None if _one_document(connection) else connection.features.max_query_params
    return BATCH_SIZE if limit is None else max(1, min(BATCH_SIZE, limit // _PARAMS_PER_EVENT))


# Made once: json.dumps(..., ensure_ascii=False) makes one per call. A UUID (MariaDB's native uuid
# column, where the values are not sent as text) is written as its text, which that column reads.
_DOCUMENT = json.JSONEncoder(ensure_ascii=False, default=str)


def insert(cursor: Any, connection: Any, records: list[dict[str, Any]], every: int) -> None:
    """Insert one batch of events, each a record by ``_COLUMNS`` name (``journal``): one statement.

    ``every`` is SNAPSHOT_EVERY: a version that is 1 or a multiple of it stores
    its full state.
    """
    if _one_document(connection):  # a list of rows
        prepared.execute(cursor, _sql(connection.alias, 0, every), [_DOCUMENT.encode(records)])
    else:
        values = [record[column] for record in records for column in _COLUMNS]
        cursor.execute(_sql(connection.alias, len(records), every), values)
