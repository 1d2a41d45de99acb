"""What a backend says of itself, and the statements of a database with none of its own.

A database this app has no statements for (any but PostgreSQL and SQLite)
reads every old row by a locking SELECT before the write, and every new one
after it; :class:`Returning` is the ``UPDATE ... RETURNING`` of a save that
PostgreSQL and SQLite share.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from django.db import models

if TYPE_CHECKING:
    from ..encoding import State
    from ..registry import ModelSpec
    from ..rows import RowSelect
    from .postgresql import ReturningDeletes

    Field = models.Field[Any, Any]
    # What a save's UPDATE brought back: the row it overwrote (``None`` where it returns only the
    # new one) and the row it left, both ``None`` if no row has the key.
    Written = tuple[State | None, State | None]
    # A compiled UPDATE: its SQL, which of ``spec.fields`` (by position) it returns after the key,
    # and their converters (by position in what it returns).
    Statement = tuple[str, list[int], dict[int, Any]]
    # SQL of canonical JSON members, in their key order: (``"name"``, SQL of the value's text), and of
    # changes: (``"name"``, SQL of the old value's text, of the new one's).
    Members = list[tuple[str, str]]
    Changes = list[tuple[str, str, str]]
    WholeRow = Members | None  # a state's members, where the database writes it

# The triggers a flush statement fires on the event table, as PostgreSQL's ``pg_trigger.tgtype`` bits
# (:meth:`Backend.erases_events`).
TRUNCATE, DELETE = 32, 8


class Backend:
    """A database whose old rows are read by a locking SELECT before each write (``rows``)."""

    # A save's UPDATE returns the row it overwrote, for a one-table model with a single-column key.
    update_returns_old_row = False
    # A save's UPDATE of a composite-key row hands back the values it overwrites (:meth:`update_overwriting`).
    hands_back_overwritten = False
    # The Collector's DELETE returns the rows it deletes (:meth:`returning_deletes`).
    delete_returns_rows = False
    # The triggers migrations 0002 and 0004 install on the event table (audit_verify reports any missing).
    expected_triggers: tuple[str, ...] = ()
    # Turning autocommit on commits the open transaction (SQLite, MySQL); PostgreSQL's drivers refuse it.
    autocommit_commits = True
    # The event INSERT reads its drafts from one JSON document (:meth:`event_drafts`), not VALUES rows.
    events_in_one_document = False
    # The event INSERT takes times and UUIDs as text, casting them itself (:meth:`event_cast`).
    event_values_as_text = False
    # How ``stream`` reads committed events in a gap-free order: "snapshots" (windows between the
    # transaction snapshots of PostgreSQL), "single writer" (SQLite: commit order is id order); None: it cannot.
    commit_order: str | None = None
    # A QuerySet.update()'s or delete()'s events are made by the database in its statement (``statement_events``).
    events_in_statement = False
    # A statement run before that one, if any.
    before_statement_events: str | None = None
    # The statements that write one row and insert its event, in autocommit mode (``single_statement``).
    single_row_events: Any = None

    # --- the event INSERT (``inserts``): the database decides each event's version and hash ---

    def event_drafts(self, columns: tuple[str, ...], rows: int) -> str:
        """The derived table ``d`` of the drafts, one column per name in ``columns``: here ``rows``
        ``VALUES`` rows, one parameter per column."""
        values = ", ".join("(" + ", ".join(["%s"] * len(columns)) + ")" for _ in range(rows))
        named = ", ".join(f"v.column{i + 1} AS {name}" for i, name in enumerate(columns))
        return f"(SELECT {named} FROM (VALUES {values}) AS v) AS d"

    def event_numbered(self, drafts: str, latest: str) -> str:
        """The drafts with each one's ``version`` and ``previous`` hash, from ``latest`` (a SELECT of the
        row's latest event, with ``{column}`` for what it selects). ``OFFSET 0``: computed once."""
        return (
            f"SELECT d.*, COALESCE(({latest.format(column='e.version')}), 0) + 1 AS version, "
            f"COALESCE(({latest.format(column='e.hash')}), '') AS previous FROM {drafts} LIMIT -1 OFFSET 0"
        )

    def event_cast(self, kind: str | None, value: str) -> str:
        """``value`` as a column of ``kind`` (``timestamptz``, ``uuid``, ``jsonb``; None: as it is)."""
        return value

    def concat(self, *parts: str) -> str:
        """The SQL of the texts ``parts`` one after another."""
        return " || ".join(parts)

    def sha256(self, value: str) -> str:
        """The SQL of the hex SHA-256 of the text ``value``."""
        return f"SHA256({value})"

    def update_returns_rows(self, connection: Any) -> bool:
        """Whether a save's UPDATE can return the row it leaves (:meth:`update`)."""
        return False

    # --- a QuerySet.update() or delete() that inserts its events itself (where :attr:`events_in_statement`) ---

    def json_text(self, field: Field, value: str) -> str | None:
        """SQL of the canonical JSON text of the column ``value`` of ``field``, as ``encoding`` writes
        it; ``None`` where the database cannot write it exactly."""
        return None

    def links_text(self, field: models.ManyToManyField[Any, Any], owner: str) -> str | None:
        """SQL of the canonical JSON text of a row's links of ``field`` (its key in the through table:
        ``owner``), as a state holds them; ``None`` where the database cannot write them exactly."""
        return None

    def update_with_events(
        self, update: str, width: int, changes: Changes, object_pk: str, table: str, every: int, state: WholeRow = None
    ) -> str:
        """The statement that runs ``update`` and inserts its events (``statement_events``); ``state``:
        the row's whole new state, where the database writes the snapshots too."""
        raise NotImplementedError(f"{type(self).__name__}: an UPDATE inserts no events here")

    def delete_with_events(
        self, delete: str, width: int, state: list[tuple[str, str]], object_pk: str, table: str
    ) -> str:
        """The statement that runs ``delete`` and inserts its events (``statement_events``)."""
        raise NotImplementedError(f"{type(self).__name__}: a DELETE inserts no events here")

    def insert_with_events(
        self, insert: str, width: int, state: list[tuple[str, str]], object_pk: str, table: str
    ) -> str:
        """The statement that runs ``insert`` and inserts its events (``statement_events``)."""
        raise NotImplementedError(f"{type(self).__name__}: an INSERT inserts no events here")

    def update(
        self, select: RowSelect, pk: Any, values: list[tuple[Field, Any, Any]], with_old: bool
    ) -> Written | None:
        """The UPDATE of a save by key, returning the row it leaves; ``None`` where Django must run its own."""
        return None

    def update_overwriting(
        self, spec: ModelSpec, base_qs: models.QuerySet[Any], using: str, pk: Any, values: list[tuple[Field, Any, Any]]
    ) -> Written | None:
        """Django's UPDATE of a save, handing back what it overwrites; ``None`` where it cannot (nothing ran)."""
        return None

    def begins_deferred(self, connection: Any) -> bool:
        """Whether a transaction ``connection`` begins takes its write lock only at its first write."""
        return False

    def returning_deletes(self, connection: Any) -> ReturningDeletes:
        """The execute wrapper that makes the Collector's DELETE return rows (where :attr:`delete_returns_rows`)."""
        raise NotImplementedError(f"{type(self).__name__}: a DELETE returns no rows here")

    def installed_triggers(self, connection: Any, cursor: Any, table: str) -> list[str]:
        """Names of the enabled triggers on ``table``, sorted."""
        return []

    def erases_events(self, statement: str, names_events: bool) -> int:
        """The triggers (:data:`TRUNCATE`, :data:`DELETE`) a flush ``statement`` (upper case) fires
        on the event table, which it names or not; 0 for none."""
        return 0

    @contextlib.contextmanager
    def lifted(self, connection: Any, cursor: Any, table: str, events: int) -> Iterator[None]:
        """Take the event table's triggers for ``events`` off, then put them back (inside a transaction)."""
        yield


class Returning(Backend):
    """A database whose UPDATE returns the row it leaves: ``UPDATE t SET ... WHERE pk = %s RETURNING ...``."""

    def update_returns_rows(self, connection: Any) -> bool:
        return bool(connection.features.can_return_columns_from_insert)  # SQLite 3.35+, as for its INSERT

    def update(
        self, select: RowSelect, pk: Any, values: list[tuple[Field, Any, Any]], with_old: bool
    ) -> Written | None:
        """The UPDATE of a save, returning the row it leaves (and, ``with_old``, the row it overwrote).

        ``UPDATE t SET ... WHERE pk = %s RETURNING <columns>``: ``<columns>``
        are the key and the columns the save writes, so the new row holds those
        fields only, the others are as the old row (``capture``). With
        ``with_old``, the backend's own statement (:meth:`returning_old`).
        ``None`` where the values need Django's own compiler (expressions,
        fields with their own placeholder, model instances): nothing ran.
        """
        connection = select.connection
        bound = _bound(values, connection)
        if bound is None:
            return None
        shape, params = bound
        sql, fields, converters = self._compiled(select, values, shape, with_old)
        if with_old:
            return self.returning_old(select, sql, params + select.key_params(pk), fields, converters)
        with connection.cursor() as cursor:
            cursor.execute(sql, [*params, select.spec.pk_field.get_db_prep_value(pk, connection)])
            rows = cursor.fetchall()
        return None, next(iter(select.new_states(rows, fields, converters)), None)

    def returning_old(
        self, select: RowSelect, sql: str, params: list[Any], fields: list[int], converters: dict[int, Any]
    ) -> Written:
        """Run an UPDATE that returns the old row too (:attr:`update_returns_old_row`)."""
        raise NotImplementedError(f"{type(self).__name__}: an UPDATE returns no old row here")

    def _compiled(
        self, select: RowSelect, values: list[tuple[Field, Any, Any]], shape: list[tuple[str, bool]], with_old: bool
    ) -> Statement:
        """:meth:`statement`, compiled once per row select and shape."""
        key = (tuple(shape), with_old)
        statement: Statement | None = select.statements.get(key)
        if statement is None:
            if len(select.statements) >= 100:  # saves of ever other fields (update_fields): keep a few
                select.statements.clear()
            statement = select.statements[key] = self.statement(select, values, shape, with_old)
        return statement

    def statement(
        self, select: RowSelect, values: list[tuple[Field, Any, Any]], shape: list[tuple[str, bool]], with_old: bool
    ) -> Statement:
        """:meth:`update`'s SQL for the columns of ``values``, each set to ``%s`` or NULL as ``shape``
        says; which of ``spec.fields`` (by position) it returns after the key, and their converters
        (by position in what it returns)."""
        quote = select.connection.ops.quote_name
        assignments = ", ".join(f"{quote(column)} = {'NULL' if null else '%s'}" for column, null in shape)
        # The key and the columns written, no other: the rest are as the old row read under the same lock.
        written = {field.attname for field, _, _ in values}
        fields = [j for j, f in enumerate(select.spec.fields) if f.attname in written]
        columns = ", ".join([select.columns[select.pk_index], *(select.columns[select.indexes[j]] for j in fields)])
        converters = {
            k: select.converters[select.indexes[j]]
            for k, j in enumerate(fields, 1)
            if select.indexes[j] in select.converters
        }
        return self.update_sql(select, assignments, columns, with_old), fields, converters

    def update_sql(self, select: RowSelect, assignments: str, columns: str, with_old: bool) -> str:
        """The UPDATE of the row by key, setting ``assignments``, returning ``columns`` of the row it leaves."""
        quote = select.connection.ops.quote_name
        table, pk_column = quote(select.spec.model._meta.db_table), quote(select.spec.pk_field.column)
        return f"UPDATE {table} SET {assignments} WHERE {table}.{pk_column} = %s RETURNING {columns}"


def _bound(values: list[tuple[Field, Any, Any]], connection: Any) -> tuple[list[tuple[str, bool]], list[Any]] | None:
    """Each column a save writes and whether it is set to NULL, and the parameters of the others;
    ``None`` where a value is Django's to compile (an expression, a field's own placeholder, a model)."""
    shape: list[tuple[str, bool]] = []
    params: list[Any] = []
    for field, _model, value in values:
        if hasattr(value, "resolve_expression") or hasattr(value, "prepare_database_save"):
            return None
        if hasattr(field, "get_placeholder"):
            return None
        value = field.get_db_prep_save(value, connection=connection)
        if hasattr(value, "as_sql"):
            return None
        shape.append((str(field.column), value is None))
        if value is not None:
            params.append(value)
    return shape, params
