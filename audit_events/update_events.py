"""``QuerySet.update()`` whose events the database makes, in the UPDATE's own statement (PostgreSQL).

Where every field the UPDATE writes has an exact SQL encoding
(``backends.postgresql_events.json_text``), the rows never come to Python:
one statement updates them, encodes each row's changes from its old and new
columns as the statement returned them, and inserts the events, versions and
hashes looked up as the event INSERT does (``inserts``). Python receives the
number of rows and only the rows whose event it must write itself: a
snapshot is due (the whole row, with its links), or the version looked up was
taken by a transaction that committed while the UPDATE waited for the row
(``postgresql_events``' docstring). Memory stays bounded by those.

Elsewhere (a written field of another type, a multi-table model, a
registered parent, a write inside another write's capture) ``updates``
brings every row back, as before.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.contrib.contenttypes.models import ContentType
from django.db import connections, models
from django.utils import timezone

from . import backends, conf, journal, registry
from .encoding import value_field
from .hashing import canonical_time
from .models import Event
from .operations import current_operation

if TYPE_CHECKING:
    from .updates import Change, _Rows

_KEYS = (models.CharField, models.TextField, models.UUIDField)


def statement(spec: registry.ModelSpec, rows: _Rows, update: str) -> str | None:
    """The statement around ``update`` (``UPDATE ... FROM (rows' SELECT) ... RETURNING old.*, rows.returning``);
    ``None`` where the events cannot be made by the database (Python makes them)."""
    backend = backends.of(rows.connection)
    if not backend.events_in_update or journal.written.get() is not None:
        return None
    if rows.key_written or registry.parent_specs(spec):
        return None
    key = f"w.c{rows.width}"  # the key as the UPDATE left it (it writes no key here)
    target = value_field(spec.pk_field)
    if not (spec._integer_key or type(target) in _KEYS):  # Event.object_pk: the key's digits or text
        return None
    encoders = spec.encoders
    changes = []
    for k, j in enumerate(rows.written):
        field = encoders[j][0]
        old = backend.json_text(field, f"w.c{j}")
        new = backend.json_text(field, f"w.c{rows.width + 1 + k}")
        if old is None or new is None:
            return None
        changes.append((json.dumps(field.name, ensure_ascii=False), old, new))
    changes.sort()  # canonical JSON: keys in order (the names are distinct)
    table = rows.connection.ops.quote_name(Event._meta.db_table)
    every = conf.get_config().snapshot_every
    return backend.update_with_events(update, rows.width, changes, f"({key})::text", table, every)


def run(spec: registry.ModelSpec, rows: _Rows, sql: str, params: list[Any], using: str) -> tuple[int, list[Change]]:
    """Run :func:`statement`: the number of rows updated, and those whose event is Python's."""
    connection = connections[using]
    journal.flush(using)  # this row's events waiting for COMMIT come first: the lookup must see them
    author = journal.Author.now()
    content_type = ContentType.objects.db_manager(using).get_for_model(spec.model, for_concrete_model=False)
    created_at, operation = canonical_time(timezone.now()), str(current_operation())
    label = spec.model._meta.label_lower
    pieces = content_pieces(author, label, created_at, operation)
    event: list[Any] = [content_type.pk, content_type.pk, created_at, operation, author.actor_id, author.actor_repr]
    backend = backends.of(connection)
    with connection.cursor() as cursor:
        if backend.before_update_with_events:
            cursor.execute(backend.before_update_with_events)
        cursor.execute(sql, [*params, *event, author.context, *pieces])
        returned = cursor.fetchall()
    count, key = returned[0][0], rows.width
    left = [row[2:] for row in returned if row[2 + key] is not None]  # after the count and the setting back
    left = rows.convert_new(rows.convert(left), offset=rows.width)
    return count, [rows.change(row[: rows.width], row[rows.width :]) for row in left]


def content_pieces(author: journal.Author, content_type: str, created_at: str, operation: str) -> list[str]:
    """The hashed content (``hashing.hash_content``) of an update event without a state, in three
    pieces, around its changes and around its object_pk (canonical JSON, as ``journal`` writes it)."""
    return [
        f'{{"action":"update"{author.head_actor},"changes":',
        f',"content_type":{_text(content_type)}{author.head_context},"created_at":{_text(created_at)},"object_pk":',
        f',"operation":{_text(operation)},"state":null}}',
    ]


def _text(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a str as canonical_json writes it
