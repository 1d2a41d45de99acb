"""PostgreSQL: the statements that write a row and return it, old and new, and the triggers.

* a save's UPDATE returns the row it overwrote and the row it leaves:
  ``UPDATE t SET ... FROM (SELECT ... FOR NO KEY UPDATE) AS old WHERE t.pk =
  old.pk RETURNING old.*, t.<columns>``, prepared once per session
  (``prepared``): the save costs no statement more than plain Django's;
* the DELETE of Django's Collector returns the rows it deletes
  (:class:`ReturningDeletes`), recognised by its SQL text;
* the event table's append-only triggers, taken off around a flush only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from django.db import models

from .. import prepared, registry, rows
from ..replay import recorded_state
from . import postgresql_events, postgresql_single
from .base import DELETE, TRUNCATE, Returning

if TYPE_CHECKING:
    from ..encoding import State
    from .base import Changes, WholeRow, Written

    Field = models.Field[Any, Any]

# The subquery's name in a save's UPDATE: its columns are the row as it was.
_OLD_ROW = '"_audit_events_old"'


class PostgreSQL(Returning):
    update_returns_old_row = True
    delete_returns_rows = True
    expected_triggers = ("audit_events_no_truncate", "audit_events_no_update_delete")
    autocommit_commits = False
    commit_order = "snapshots"
    events_in_one_document = True
    event_values_as_text = True
    events_in_statement = True
    before_statement_events = postgresql_events.JIT_OFF
    single_row_events = postgresql_single

    def event_drafts(self, columns: tuple[str, ...], rows: int) -> str:
        """``json_to_recordset`` of one JSON document, whatever the number of drafts: times, UUIDs and
        JSON come as text and are cast (:meth:`event_cast`)."""
        kinds = {"content_type_id": "integer", "created_at": "timestamptz", "operation": "uuid"}
        record = ", ".join(f"{column} {kinds.get(column, 'text')}" for column in columns)
        return f"json_to_recordset(%s::json) AS d({record})"

    def event_numbered(self, drafts: str, latest: str) -> str:
        # One index lookup per event for both the version and the previous hash.
        last = f"LEFT JOIN LATERAL ({latest.format(column='e.version, e.hash')}) AS last ON true"
        return (
            "SELECT d.*, COALESCE(last.version, 0) + 1 AS version, COALESCE(last.hash, '') AS previous "
            f"FROM {drafts} {last} OFFSET 0"
        )

    def event_cast(self, kind: str | None, value: str) -> str:
        return f"CAST({value} AS {kind})" if kind else value

    def sha256(self, value: str) -> str:
        return f"encode(sha256(convert_to({value}, 'UTF8')), 'hex')"

    def json_text(self, field: Field, value: str) -> str | None:
        return postgresql_events.json_text(field, value)

    def links_text(self, field: models.ManyToManyField[Any, Any], owner: str) -> str | None:
        return postgresql_events.links_text(field, owner)

    def update_with_events(
        self, update: str, width: int, changes: Changes, object_pk: str, table: str, every: int, state: WholeRow = None
    ) -> str:
        return postgresql_events.update_with_events(update, width, changes, object_pk, table, every, state)

    def delete_with_events(
        self, delete: str, width: int, state: list[tuple[str, str]], object_pk: str, table: str
    ) -> str:
        return postgresql_events.delete_with_events(delete, width, state, object_pk, table)

    def insert_with_events(
        self, insert: str, width: int, state: list[tuple[str, str]], object_pk: str, table: str
    ) -> str:
        return postgresql_events.insert_with_events(insert, width, state, object_pk, table)

    def update_sql(self, select: rows.RowSelect, assignments: str, columns: str, with_old: bool) -> str:
        """With ``with_old``: one statement locks the row (the subquery's ``FOR NO KEY UPDATE``),
        writes it and brings it back as it was and as it is."""
        if not with_old:
            return super().update_sql(select, assignments, columns, with_old)
        quote = select.connection.ops.quote_name
        table, pk_column = quote(select.spec.model._meta.db_table), quote(select.spec.pk_field.column)
        return (
            f"UPDATE {table} SET {assignments} FROM ({select.sql}) AS {_OLD_ROW} "
            f"WHERE {table}.{pk_column} = {_OLD_ROW}.{quote(select.names[select.pk_index])} "
            f"RETURNING {_OLD_ROW}.*, {columns}"
        )

    def returning_old(
        self, select: rows.RowSelect, sql: str, params: list[Any], fields: list[int], converters: dict[int, Any]
    ) -> Written:
        cursor = prepared.cursor(select.connection)  # planned once per connection (``prepared``)
        prepared.execute(cursor, sql, params)
        returned = cursor.fetchall()
        if not returned:
            return None, None
        width = len(select.columns)  # old.*, then the key and the columns written
        old = select.states([row[:width] for row in returned])
        return next(iter(old.values())), select.new_states([row[width:] for row in returned], fields, converters)[0]

    def returning_deletes(self, connection: Any) -> ReturningDeletes:
        return ReturningDeletes(connection)

    def installed_triggers(self, connection: Any, cursor: Any, table: str) -> list[str]:
        cursor.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = to_regclass(%s) AND NOT tgisinternal AND tgenabled <> 'D'",
            [connection.ops.quote_name(table)],
        )
        return sorted(row[0] for row in cursor.fetchall())

    def erases_events(self, statement: str, names_events: bool) -> int:
        if statement.startswith("TRUNCATE"):  # TRUNCATE ... CASCADE may reach the event table without naming it
            return TRUNCATE
        return DELETE if statement.startswith("DELETE") and names_events else 0

    @contextlib.contextmanager
    def lifted(self, connection: Any, cursor: Any, table: str, events: int) -> Iterator[None]:
        """Disable the triggers ``events`` fires (``pg_trigger.tgtype``'s bits), then enable them again."""
        quoted = connection.ops.quote_name(table)
        cursor.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = to_regclass(%s) "
            "AND NOT tgisinternal AND tgenabled <> 'D' AND tgtype & %s <> 0",
            [quoted, events],
        )
        names = [connection.ops.quote_name(row[0]) for row in cursor.fetchall()]
        for name in names:
            cursor.execute(f"ALTER TABLE {quoted} DISABLE TRIGGER {name}")
        yield
        for name in names:
            cursor.execute(f"ALTER TABLE {quoted} ENABLE TRIGGER {name}")


class ReturningDeletes:
    """An execute wrapper that adds ``RETURNING`` to the Collector's DELETE of expected rows,
    on one connection for one ``delete()`` call (``handoffs.deleting``).

    ``expected`` maps the start of the DELETE Django's Collector sends for a
    model (``DELETE FROM t WHERE t.pk IN (``) to the columns to return. A
    DELETE of such a table in another form (a custom compiler adding its own
    filter, say) is preceded by the locking SELECT of the rows marked for
    deletion, so their state is read all the same.
    """

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.expected: dict[str, rows.RowSelect] = {}
        self.marked: dict[type[models.Model], set[str]] = {}  # canonical pks pre_delete marked
        self.covered: set[tuple[type[models.Model], str]] = set()  # rows a DELETE was seen for
        self.rows: dict[tuple[type[models.Model], str], State] = {}
        # Rows read gone, of models whose DELETE cannot return a whole state, by their table's DELETE
        # (``DELETE FROM t ``): read again, locked, just before it (:meth:`read_again`).
        self.gone: dict[str, tuple[registry.ModelSpec, set[str]]] = {}
        connection.execute_wrappers.insert(0, self)

    def expect(self, spec: registry.ModelSpec, pk: Any) -> None:
        quote = self.connection.ops.quote_name
        table, pk_column = quote(spec.model._meta.db_table), quote(spec.pk_field.column)
        self.expected.setdefault(
            f"DELETE FROM {table} WHERE {table}.{pk_column} IN (", rows.row_select(spec, self.connection)
        )
        self.marked.setdefault(spec.model, set()).add(spec.object_pk(pk))

    def read_again(self, spec: registry.ModelSpec, pk: Any) -> None:
        """``pre_delete`` read the row of ``spec`` (several tables, or a composite key) gone.

        Just before the Collector's DELETE of the model's own table, the row is read
        again, locked: one made again in between is recorded as deleted, like a row
        the DELETE returns (:meth:`made_again`). That DELETE returns the keys it took:
        one made again after that read too (its snapshot is the statement's own) cannot
        be recorded, and the delete is refused.
        """
        table = self.connection.ops.quote_name(spec.model._meta.db_table)
        self.gone.setdefault(f"DELETE FROM {table} ", (spec, set()))[1].add(spec.object_pk(pk))

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        if not isinstance(sql, str) or not sql.startswith("DELETE FROM "):
            return execute(sql, params, many, context)
        for start, (spec, pks) in self.gone.items():
            if sql.startswith(start) and pks:
                return self._gone_again(spec, pks, execute, sql, params, many, context)
        for start, select in self.expected.items():
            if sql.startswith(start):
                return self._returning(select, execute, sql, params, many, context)
            if sql.startswith(start.split(" WHERE ")[0] + " "):  # this table, another form: read first
                self._read_marked(select)
                break
        return execute(sql, params, many, context)

    def _returning(
        self, select: rows.RowSelect, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        result = execute(f"{sql} RETURNING {', '.join(select.columns)}", params, many, context)
        model, object_pk = select.spec.model, select.spec.object_pk
        self.covered.update((model, object_pk(p)) for p in params or ())  # the keys of its IN (...)
        for pk, state in select.states(context["cursor"].fetchall()).items():
            self.rows[(model, pk)] = state
        return result

    def _gone_again(
        self,
        spec: registry.ModelSpec,
        pks: set[str],
        execute: Callable[..., Any],
        sql: str,
        params: Any,
        many: bool,
        context: Any,
    ) -> Any:
        model, alias = spec.model, self.connection.alias
        key_fields: tuple[Field, ...] = getattr(spec.pk_field, "fields", None) or (spec.pk_field,)
        # This batch's keys (the Collector sends one DELETE per batch of keys): a row of a later batch,
        # made again after this one ran, is read with its own; one of an earlier batch stays alive.
        batch = pks & self._keys(spec, key_fields, list(params or ()))
        found = rows.lock_rows(spec, alias, {"pk__in": [spec.pk_field.to_python(pk) for pk in batch]}) if batch else {}
        for pk, state in found.items():
            self.rows[(model, spec.object_pk(pk))] = state
        pks.difference_update(spec.object_pk(pk) for pk in found)
        columns = ", ".join(self.connection.ops.quote_name(f.column) for f in key_fields)
        result = execute(f"{sql} RETURNING {columns}", params, many, context)
        taken = self._keys(spec, key_fields, [v for values in context["cursor"].fetchall() for v in values])
        if unread := taken & pks:
            raise RuntimeError(
                f"audit_events: the {spec.label} row {min(unread)}, read gone by this delete, was made again "
                "by another transaction as it ran, and its DELETE took it unread, so it could not be "
                "recorded; the delete is undone. Retry it."
            )
        pks.difference_update(batch)
        return result

    @staticmethod
    def _keys(spec: registry.ModelSpec, key_fields: tuple[Field, ...], values: list[Any]) -> set[str]:
        """The canonical keys of ``values``, the key's columns one after another (a DELETE's ``IN`` list)."""
        width = len(key_fields)
        keys = set()
        for start in range(0, len(values) - width + 1, width):
            parts = [f.to_python(v) for f, v in zip(key_fields, values[start : start + width], strict=True)]
            keys.add(spec.object_pk(tuple(parts) if width > 1 else parts[0]))
        return keys

    def _read_marked(self, select: rows.RowSelect) -> None:
        spec = select.spec
        pks = [pk for pk in self.marked.get(spec.model, ()) if (spec.model, pk) not in self.covered]
        found = rows.lock_rows(spec, self.connection.alias, {"pk__in": [spec.pk_field.to_python(pk) for pk in pks]})
        for pk, state in found.items():
            self.rows[(spec.model, spec.object_pk(pk))] = state
        self.covered.update((spec.model, pk) for pk in pks)

    def has_deleted(self, spec: registry.ModelSpec, pk: Any) -> bool:
        return (spec.model, spec.object_pk(pk)) in self.covered

    def deleted_row(self, spec: registry.ModelSpec, pk: Any) -> State | None:
        """The row as it was deleted; ``None`` if it was gone already (another transaction deleted it).

        If no DELETE of the row was seen (``post_delete`` sent by code that
        deleted nothing, or deleted by other means), the row is read now: a row
        still there is recorded as deleted, as a ``pre_delete`` read would have
        had it; a row gone unseen cannot be recorded, and the delete is refused.
        """
        key = (spec.model, spec.object_pk(pk))
        if key in self.covered:
            return self.rows.pop(key, None)
        state = rows.live_state(spec, self.connection.alias, pk)
        if state is None:
            raise RuntimeError(
                f"audit_events: the {spec.label} row {key[1]} was deleted by a statement this app did not "
                "see, so it could not be recorded; the delete is undone. Please report this with your "
                "Django version."
            )
        return state

    def made_again(self, spec: registry.ModelSpec, pk: Any) -> State | None:
        """The row the DELETE deleted although ``pre_delete`` read it gone: another transaction made it
        again, with the same key, and committed in between (PostgreSQL, READ COMMITTED). ``None`` if the
        DELETE deleted no such row.

        Its columns are the DELETE's answer; its links, which the Collector's DELETE of the
        through rows removed before, are those its maker recorded (committed before this DELETE
        could see the row).
        """
        state = self.rows.pop((spec.model, spec.object_pk(pk)), None)
        if state is not None and spec.m2m_fields:
            recorded = recorded_state(spec, pk, using=self.connection.alias) or {}
            state.update({f.name: recorded.get(f.name, []) for f in spec.m2m_fields})
        return state

    def remove(self) -> None:
        if self in self.connection.execute_wrappers:
            self.connection.execute_wrappers.remove(self)
