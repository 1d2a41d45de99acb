"""Many-to-many links, recorded on the row that declares the field.

``book.tags.add(t)`` and ``tag.books.add(book)`` both record an ``update`` of
the book: ``{"tags": [[1, 2], [1, 2, 5]]}``, the sorted related primary keys
before and after. Full states carry each many-to-many field the same way, so
replay and restore bring links back. A through table may hold ``to_field``
values instead of primary keys: they are mapped to primary keys.

Links are read once the owning rows are locked, by a statement of its own
(:func:`read_links`): under READ COMMITTED it sees what a writer committed
while this one waited for the lock (a subquery of the locking statement would
keep the snapshot it started with). "After" links are read after the write,
the owners still locked.

Auto-created through tables send no signal per row: ``m2m_changed`` records
the relation managers' calls, and the related model's delete signals record
the links its rows' deletion removes. Their rows written directly
(``Book.tags.through.objects.bulk_create(...)``, a save, ``QuerySet.update``,
``delete``) are recorded as an explicit through model's, by the registry's
wrappers of their ``_save_table`` and ``delete`` and :func:`through_rows_written`;
the relation manager's own write (between its ``pre_`` and ``post_`` signals)
is left to ``m2m_changed`` (:func:`_by_relation_manager`). Rows of an explicit
through model are written by the relation manager (``add`` is a
``bulk_create`` of them, ``remove``/``clear`` a ``QuerySet.delete()``) or
directly (``Loan.objects.create``, ``loan.save()``, ``QuerySet.delete/update``,
``bulk_create/bulk_update``, ``loaddata``): their save and delete signals,
and :func:`through_rows_written` around the QuerySet writes, record every
such write once on the rows at their owning end (and, if the through model
is registered, the rows are recorded as rows of their own too). The owners
are those the database rows hold, read under the owners' lock
(:meth:`_LinkChange.lock_holders`), never those a Python instance names.

A symmetrical relation to the model itself (:func:`mirrored`) holds each link
in both directions: its ``add()`` writes the other direction by a
``bulk_create`` of its own, without signals (recorded as a direct write of
the table), its ``remove()``/``clear()`` both in one DELETE, whose rows on
the other end are locked and read with the row the call is made on (for
``clear()`` found as from the related side: on PostgreSQL that row locked
``FOR UPDATE`` first, and one SELECT of the rows linked to it); restore writes
both directions.

Cost of one ``add``/``remove``/``set``/``clear`` call: one locking SELECT of
the owning rows, one SELECT of their links once locked, one SELECT of the
links after, one INSERT of events (at COMMIT); from the related side, a
``clear()`` (or the related row's deletion) first locks the related row; an
owner missing under the lock (deleted by another transaction) costs, after
the write, a check of the through table's foreign key and a second lock; a
``QuerySet.delete()`` of related rows costs that once for all of them. A
direct write of through rows costs the same, plus for a save, ``bulk_update``
or a row's ``delete()`` of existing rows one SELECT of the owner keys they
hold (on PostgreSQL one more once those are locked; for a cascaded row too, on SQLite as well),
for ``update`` or ``QuerySet.delete()`` one locking SELECT of the rows
(``update`` assigning the owner by an expression: one SELECT of its value);
Django no longer fast-deletes an explicit through model's rows (it has
delete receivers): it selects them first, as for any model with receivers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, connections, models
from django.db.models import Aggregate, OuterRef, Subquery

from . import capture, journal, pending, registry, replay
from .context import is_paused
from .encoding import JSONValue, State, encode
from .models import Action
from .operations import operation
from .transactions import atomic_write

_BEFORE = "_audit_events_m2m"


@dataclass(frozen=True)
class _Through:
    """A many-to-many field's through table, and how its columns name the rows at either end.

    The through table holds each end's ``to_field`` value, which is the
    primary key unless the foreign key says otherwise; states hold primary keys.
    """

    model: type[models.Model]
    source: Any  # the through table's foreign key to the row declaring the field (the owner)
    target: Any  # its foreign key to the related row

    @classmethod
    def of(cls, field: models.ManyToManyField[Any, Any]) -> _Through:
        through = field.remote_field.through
        assert isinstance(through, type)
        meta = through._meta
        return cls(through, meta.get_field(field.m2m_field_name()), meta.get_field(field.m2m_reverse_field_name()))

    @property
    def owner_key(self) -> str:
        """The owner's attname the source column holds (its pk's, unless ``to_field`` names another)."""
        return str(self.source.target_field.attname)

    @property
    def related_pk(self) -> str:
        """The lookup, from a through row, of the related row's primary key (a join only for ``to_field``)."""
        if self.target.target_field.primary_key:
            return str(self.target.attname)
        return f"{self.target.name}__pk"


class _JSONKeys(Aggregate):
    """The aggregated values as JSON array text (order unspecified: callers sort)."""

    function = "JSON_GROUP_ARRAY"  # SQLite
    output_field = models.TextField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, template="CAST(JSONB_AGG(%(expressions)s) AS text)", **extra)

    def as_mysql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, function="JSON_ARRAYAGG", **extra)


def linked_keys(field: models.ManyToManyField[Any, Any]) -> Subquery:
    """A subquery of the outer row's related pks, as JSON text (``None`` when it has none)."""
    ends = _Through.of(field)
    linked = ends.model._base_manager.filter(**{ends.source.attname: OuterRef(ends.owner_key)})
    pairs = linked.order_by().values(ends.source.attname)
    return Subquery(pairs.annotate(keys=_JSONKeys(ends.related_pk)).values("keys")[:1])


def decode_keys(field: models.ManyToManyField[Any, Any], text: str | None) -> list[JSONValue]:
    """What :func:`linked_keys` returned, as the sorted encoded pks a state holds."""
    target_pk = field.related_model._meta.pk
    values = json.loads(text) if text else []
    return sorted(encode(target_pk, target_pk.to_python(value)) for value in values)


_IN_CHUNK = 900  # keeps "pk IN (...)" under SQLite's 999 parameters


def read_links(
    spec: registry.ModelSpec,
    using: str,
    pks: list[Any],
    fields: Iterable[models.ManyToManyField[Any, Any]] | None = None,
) -> dict[Any, State]:
    """Each row's many-to-many links (of ``fields``, by default all), as a state holds them, by pk.

    Queries: one SELECT per 900 rows, each field a subquery of it. Read it
    once the rows are locked: a statement that starts after the lock is held
    sees the links other transactions committed before (``READ COMMITTED``).
    """
    fields = list(spec.m2m_fields if fields is None else fields)
    aliases = {f"_audit_links_{field.name}": linked_keys(field) for field in fields}
    links: dict[Any, State] = {}
    for start in range(0, len(pks), _IN_CHUNK):
        # A plain queryset: the base manager's ordering or annotations are not the rows'.
        rows: models.QuerySet[Any] = models.QuerySet(spec.model, using=using)
        rows = rows.filter(pk__in=pks[start : start + _IN_CHUNK]).order_by()
        for pk, *texts in rows.annotate(**aliases).values_list("pk", *aliases):
            links[pk] = {field.name: decode_keys(field, text) for field, text in zip(fields, texts, strict=True)}
    return links


def without_links(spec: registry.ModelSpec, state: dict[str, JSONValue]) -> dict[str, JSONValue]:
    """The state of a row just created: no links yet (no query)."""
    if not spec.m2m_fields:
        return state
    return {**state, **{field.name: [] for field in spec.m2m_fields}}


def write_links(
    spec: registry.ModelSpec,
    pk: Any,
    state: dict[str, JSONValue],
    using: str,
    coming: Iterable[tuple[type[models.Model], Any]] = (),
) -> None:
    """Make the row's links exactly what ``state`` lists (for restore). Of a symmetrical relation to
    the model itself, both directions, the rows on the other end recording the link they gain or
    lose; but links to rows ``coming`` (restored after this one, in the same group) are left to
    theirs, which write both directions once both rows are there."""
    coming = list(coming)
    for field in spec.m2m_fields:
        if field.name not in state or _through_is_recorded(field):
            continue
        ends = _Through.of(field)
        related = field.related_model
        assert isinstance(related, type)
        wanted = {related._meta.pk.to_python(value) for value in state[field.name]}
        if mirrored(field):
            wanted -= _later(related, coming)
        owner = _key_of(spec.model, ends.owner_key, [pk], using)[pk]
        others = _lock_mirrored(spec, field, owner, wanted, using) if mirrored(field) else None
        rows = ends.model._base_manager.using(using).filter(**{ends.source.attname: owner})
        rows.exclude(**{f"{ends.related_pk}__in": wanted}).delete()
        present = set(rows.values_list(ends.related_pk, flat=True))
        missing = sorted(wanted - present, key=str)
        targets = _key_of(related, ends.target.target_field.attname, missing, using)
        ends.model._base_manager.using(using).bulk_create(
            [ends.model(**{ends.source.attname: owner, ends.target.attname: targets[value]}) for value in missing]
        )
        if others is not None:
            _write_mirrored(ends, owner, *others)


def _later(related: type[models.Model], coming: list[tuple[type[models.Model], Any]]) -> set[Any]:
    """The keys of the rows of ``related`` among those ``coming``."""
    return {pk for model, pk in coming if issubclass(model, related)}


def _lock_mirrored(
    spec: registry.ModelSpec, field: Any, owner: Any, wanted: set[Any], using: str
) -> tuple[set[Any], _LinkChange]:
    """For restore: the keys (as the through table holds them) of the rows a symmetrical relation
    to the model itself is to link ``owner`` to; and those rows, with the rows linked to it now,
    locked and read: each gains or loses its link to ``owner`` in the other direction."""
    ends = _Through.of(field)
    keys = set(_key_of(ends.target.target_field.model, ends.target.target_field.attname, list(wanted), using).values())
    _lock_targets(ends, using, None, owner)  # no link to it commits meanwhile (PostgreSQL)
    rows = ends.model._base_manager.using(using).filter(**{ends.target.attname: owner})
    change = _LinkChange(using)
    change.lock_keys(spec, field, (keys | set(rows.values_list(ends.source.attname, flat=True))) - {owner})
    return keys, change


def _write_mirrored(ends: _Through, owner: Any, keys: set[Any], change: _LinkChange) -> None:
    """The other direction of the links :func:`write_links` wrote (Django keeps both), recorded on
    the rows on the other end, in the restore's operation."""
    rows = ends.model._base_manager.using(change.using).filter(**{ends.target.attname: owner})
    rows.exclude(**{f"{ends.source.attname}__in": keys}).delete()
    missing = sorted(keys - set(rows.values_list(ends.source.attname, flat=True)), key=str)
    ends.model._base_manager.using(change.using).bulk_create(
        [ends.model(**{ends.source.attname: key, ends.target.attname: owner}) for key in missing]
    )
    change.record()


def _key_of(model: type[models.Model], attname: str, pks: list[Any], using: str) -> dict[Any, Any]:
    """The value of ``attname`` (a ``to_field``) of each row, by pk; no query when it is the pk."""
    if attname == model._meta.pk.attname:
        return {pk: pk for pk in pks}
    return dict(model._base_manager.using(using).filter(pk__in=pks).values_list("pk", attname))


def missing_targets(
    spec: registry.ModelSpec,
    state: dict[str, JSONValue],
    using: str,
    coming: Iterable[tuple[type[models.Model], Any]] = (),
) -> list[str]:
    """Descriptions of related rows named in ``state`` that no longer exist; of a symmetrical
    relation to the model itself, nor are among the rows ``coming`` (restored in the same group,
    after this one: :func:`write_links`)."""
    coming = list(coming)
    problems = []
    for field in spec.m2m_fields:
        if field.name not in state or _through_is_recorded(field):
            continue
        related = field.related_model
        assert isinstance(related, type)
        wanted = {related._meta.pk.to_python(value) for value in state[field.name]}
        found = set(related._base_manager.using(using).filter(pk__in=wanted).values_list("pk", flat=True))
        if mirrored(field):
            found |= _later(related, coming)
        problems += [f"{field.name}: {related._meta.label} pk={pk}" for pk in sorted(wanted - found, key=str)]
    return problems


def _through_is_recorded(field: models.ManyToManyField[Any, Any]) -> bool:
    """An explicit through model that is registered records (and restores) its own rows."""
    through = field.remote_field.through
    return isinstance(through, type) and registry.spec_for(through) is not None


# --- signal receivers ---------------------------------------------------


def _owners(
    field: models.ManyToManyField[Any, Any],
    instance: models.Model,
    reverse: bool,
    pk_set: Any,
    using: str,
    mirrored: bool = False,
) -> dict[str, Any]:
    """The lookup of the rows declaring ``field`` whose links the change touches.

    From the related side, ``pk_set`` holds their ``to_field`` values, as the
    through table does; without it (``clear()``, a related row deleted) they
    are the rows linked to ``instance`` now. ``mirrored``: a ``remove()`` or
    ``clear()`` of a symmetrical relation to the model itself, whose one
    DELETE takes both directions of each link: the rows on the other end
    lose their links to ``instance`` too, and are found as from the related side.
    """
    if not reverse and not mirrored:
        return {"pk__in": [instance.pk]}
    ends = _Through.of(field)
    if pk_set is None:
        values = _lock_targets(ends, using, None, getattr(instance, ends.target.target_field.attname))
        rows = ends.model._base_manager.using(using).filter(**{f"{ends.target.attname}__in": values})
        pk_set = rows.values_list(ends.source.attname, flat=True).distinct()
    if mirrored and not reverse:
        return {f"{ends.owner_key}__in": [getattr(instance, ends.owner_key), *pk_set]}
    return {f"{ends.owner_key}__in": list(pk_set)}


def mirrored(field: models.ManyToManyField[Any, Any]) -> bool:
    """Whether Django writes each link of ``field`` in both directions: a symmetrical relation
    to its own model (``ManyToManyField("self")``), its through table auto-created or explicit."""
    return bool(field.remote_field.symmetrical) and field.related_model is field.model


def _lock_targets(ends: _Through, using: str, rows: models.QuerySet[Any] | None, *values: Any) -> list[Any]:
    """Lock the related rows whose links are all going (those of ``rows``, or whose key the
    through table holds is one of ``values``), before their links are read; return their keys.

    The DELETE of their links that follows matches every link committed by
    then, found by no earlier read; a link another transaction adds takes,
    by its foreign key check, a ``KEY SHARE`` lock of the related row, which
    ``FOR UPDATE`` alone conflicts with: once it is locked, no new link to it
    commits until this transaction ends (one that did is seen by the read of
    the owners that follows), and the owners read are exactly the rows whose
    links the DELETE changes. No query for ``values`` where nothing is locked.
    """
    key, model = ends.target.target_field.attname, ends.target.target_field.model
    if rows is None and not connections[using].features.has_select_for_update:
        return list(values)
    locked: models.QuerySet[Any] = models.QuerySet(model, using=using)
    if rows is None:
        locked = locked.filter(**{f"{key}__in": values})
    else:
        locked = locked.filter(pk__in=rows.order_by().values("pk"))
    if connections[using].features.has_select_for_update:
        locked = locked.select_for_update()
    return list(locked.order_by().values_list(key, flat=True))


def _check_keys(field: models.ManyToManyField[Any, Any], reverse: bool, pk_set: Any) -> None:
    """Fail on a key ``remove()`` was given that is not one, as Django would, before any query.

    Django checks them only after ``pre_remove``, by the lookup built here (no
    query): a query of ours first would fail instead, with another error,
    in a transaction already marked for rollback.
    """
    ends = _Through.of(field)
    ends.model._base_manager.filter(**{f"{(ends.source if reverse else ends.target).name}__in": list(pk_set)})


class _LinkChange:
    """The owning rows a write of links touches, locked and read before it; their events after it.

    Keyed by ``(model, field name)``: the states of the owners, by pk, read
    under their lock (:func:`.capture.lock_rows`: the links by a statement
    after the lock). :meth:`record` reads the links again after the write,
    the owners still locked, and writes an ``update`` for each that changed.
    """

    def __init__(self, using: str) -> None:
        self.using = using
        self.before: dict[tuple[type[models.Model], str], tuple[registry.ModelSpec, Any, dict[Any, State]]] = {}
        self.keys: set[tuple[type[models.Model], str, Any]] = set()  # owner keys already read
        self.deleted: set[tuple[type[models.Model], Any]] = set()  # owners deleted by the same write
        # Owners asked for but not found under the lock, by (model, field name): their lookups.
        self.absent: dict[tuple[type[models.Model], str], list[dict[str, Any]]] = {}

    def lock(self, spec: registry.ModelSpec, field: Any, lookup: dict[str, Any]) -> None:
        rows = capture.lock_rows(spec, self.using, lookup, no_key=True)  # as an UPDATE of the row: keys stay
        known = self.before.setdefault((spec.model, field.name), (spec, field, {}))[2]
        for pk, state in rows.items():
            known.setdefault(pk, state)
        [(_, asked)] = lookup.items()  # one "<key>__in" lookup; each owner has one key value
        if len(rows) < len(set(asked)):
            self.absent.setdefault((spec.model, field.name), []).append(lookup)

    def lock_keys(self, spec: registry.ModelSpec, field: Any, keys: Iterable[Any]) -> None:
        """:meth:`lock` the owners whose ``to_field`` values (as through rows hold them) are ``keys``."""
        new = {key for key in keys if key is not None and (spec.model, field.name, key) not in self.keys}
        if new:
            self.keys.update((spec.model, field.name, key) for key in new)
            self.lock(spec, field, {f"{_Through.of(field).owner_key}__in": list(new)})

    def lock_holders(self, spec: registry.ModelSpec, field: Any, rows: models.QuerySet[Any], given: set[Any]) -> None:
        """:meth:`lock_keys` the owners ``given`` and those the through ``rows`` hold, as the database has them.

        The holders are read, then locked with ``given``; where rows are locked, read again once
        they are (a writer that moved a row in between locked the owners it took it from and
        gave it to, and committed: the row's owner is one this write has not locked), until
        every holder is locked. A recorded writer moves a row only with its owner locked: once
        this write holds it, the row stays where it is. Queries: one SELECT of the holders,
        the owners' lock, and where rows are locked one SELECT more (unless a writer moved
        a row in between: then a lock and a SELECT more).
        """
        held = set(rows.values_list(_Through.of(field).source.attname, flat=True))
        self.lock_keys(spec, field, given | held)
        self.confirm_holders(spec, field, rows)

    def confirm_holders(
        self, spec: registry.ModelSpec, field: Any, rows: models.QuerySet[Any], read_before: bool = False
    ) -> None:
        """Where rows are locked, read the owners the through ``rows`` hold again, once this write
        holds the owners it read (:meth:`lock_holders`), until it holds them all: one SELECT.

        ``read_before``: the owners were read before this transaction began (a cascade: Django's
        Collector reads the rows it deletes in autocommit mode, then begins its transaction).
        Where rows are not locked (SQLite), the transaction holds the database's write lock
        (begun ``IMMEDIATE``), or one snapshot it cannot write past if another connection
        committed since: the owners are read again once, as the DELETE will find them.
        """
        if not (read_before or connections[self.using].features.has_select_for_update):
            return
        while True:
            held = set(rows.values_list(_Through.of(field).source.attname, flat=True))
            if all((spec.model, field.name, key) in self.keys for key in held if key is not None):
                break
            self.lock_keys(spec, field, held)

    def record(self) -> None:
        with operation():
            drafts = []
            for spec, field, rows in self.before.values():
                drafts += self._appeared(spec, field, rows)
                kept = [pk for pk in rows if (spec.model, pk) not in self.deleted]  # their delete records them
                after = read_links(spec, self.using, kept, [field])
                for pk in kept:
                    old, new = rows[pk][field.name], after.get(pk, {}).get(field.name)
                    if new is None or old == new:
                        continue
                    snapshot = {**rows[pk], field.name: new}
                    changes = {field.name: [old, new]}
                    drafts.append(journal.Draft.of(spec, pk, Action.UPDATE, changes=changes, snapshot=snapshot))
            journal.write(drafts, self.using)
        self.before.clear()
        self.keys.clear()
        self.absent.clear()

    def _appeared(self, spec: registry.ModelSpec, field: Any, rows: dict[Any, State]) -> list[journal.Draft]:
        """Events for owners that were absent when locked but whose links the write changed.

        A row another transaction deleted is not found by the lock; a link the
        write adds to it waits for its foreign key check until COMMIT
        (PostgreSQL's are deferred), and passes if a restore of the row
        commits first. The check is made now (:func:`_check_now`; on SQLite
        no other transaction writes meanwhile): the row is
        there, locked by it, or no transaction has it yet. Such a row, and one
        a restore committed before a ``remove()`` ran, is locked and read now;
        its links before the write are those its history records (the
        restore's event). A row no transaction has yet is left to the
        deferred check, as without the app: this transaction may create it
        later (a fixture loads a link before the row it names), and its create
        records the links it finds then; or COMMIT fails. No query unless an
        owner was absent.
        """
        lookups = self.absent.get((spec.model, field.name))
        if not lookups:
            return []
        if not connections[self.using].features.has_select_for_update or not _check_now(
            _Through.of(field), self.using
        ):  # SQLite: no other writer, an absent row is one no transaction has
            _links_before_create(spec, field, lookups, self.using)
        drafts = []
        for lookup in lookups:
            for pk, state in capture.lock_rows(spec, self.using, lookup, no_key=True).items():
                if pk in rows or (spec.model, pk) in self.deleted:
                    continue
                recorded = replay.recorded_state(spec, pk, using=self.using) or {}
                old, new = recorded.get(field.name, []), state[field.name]
                if old != new:
                    changes = {field.name: [old, new]}
                    drafts.append(journal.Draft.of(spec, pk, Action.UPDATE, changes=changes, snapshot=state))
        return drafts


@dataclass(frozen=True)
class _Missing:
    """Links written to rows of ``spec`` that no transaction had (``lookups``, by owner), by ``author``."""

    spec: registry.ModelSpec
    field: Any
    lookups: tuple[dict[str, Any], ...]
    using: str
    author: journal.Author


def _links_before_create(spec: registry.ModelSpec, field: Any, lookups: list[dict[str, Any]], using: str) -> None:
    """Links written in this transaction to rows no transaction has yet (``lookups``, by owner).

    A row of them created later in it records the links it has then in its create event
    (:func:`_complete_creates`); just before COMMIT, those another transaction created
    meanwhile (a restore, say) are locked and their links recorded (:func:`_record_at_commit`).
    A rollback to a savepoint taken before this write drops it (``pending.Pending``).
    """
    missing = _Missing(spec, field, tuple(lookups), using, journal.Author.now())
    entry = pending.Awaiting(complete=_complete_creates, at_commit=_record_at_commit, data=missing)
    pending.Pending.of(connections[using]).awaiting.append(entry)


def _missing_by_field(awaiting: list[pending.Awaiting]) -> dict[tuple[Any, str], list[_Missing]]:
    groups: dict[tuple[Any, str], list[_Missing]] = {}
    for entry in awaiting:
        if isinstance(entry.data, _Missing):
            groups.setdefault((entry.data.spec.model, entry.data.field.name), []).append(entry.data)
    return groups


def _matching(missing: list[_Missing]) -> models.Q:
    matching = models.Q()
    for lookup in (lookup for entry in missing for lookup in entry.lookups):
        matching |= models.Q(**lookup)
    return matching


def _complete_creates(drafts: Sequence[journal.Draft], awaiting: list[pending.Awaiting]) -> None:
    """Add to the create events among ``drafts`` the links rows written before them name.

    Queries, per field awaited whose model has a create here: one SELECT of the matching
    rows' keys, and where one was created, one of their links.
    """
    for missing in _missing_by_field(awaiting).values():
        spec, field, using = missing[0].spec, missing[0].field, missing[0].using
        label = spec.model._meta.label_lower
        created = {d.object_pk: d for d in drafts if d.action == Action.CREATE and d.content_type_label == label}
        if not created or any(d.state is None for d in created.values()):
            continue
        named = _rows_named(spec, missing).order_by().values_list("pk", flat=True)
        pks = [pk for pk in named if spec.object_pk(pk) in created]
        for pk, links in read_links(spec, using, pks, [field]).items():
            state = created[spec.object_pk(pk)].state
            assert state is not None
            state.update(links)


def _record_at_commit(awaiting: list[pending.Awaiting], created: set[tuple[str, str]]) -> None:
    """Just before COMMIT: links written to rows that were missing, recorded on those another
    transaction created since (a restore), by the writes that made them.

    On PostgreSQL the deferred check runs first (it raises the ``IntegrityError`` COMMIT
    would); then each row is there and held until COMMIT. A row this transaction created
    recorded its links in its create, and later changes by their own writes: it is left
    alone. Another's are locked, and their links as recorded (their restore's) compared
    with the live ones: an update records the difference, in the actor and context of the
    write that linked them (a row linked by several: the last). Queries per field awaited:
    the check, the lock and links (two), one SELECT per actor where several linked, the
    history of each row found.
    """
    for missing in _missing_by_field(awaiting).values():
        spec, field, using = missing[0].spec, missing[0].field, missing[0].using
        connection = connections[using]
        if connection.features.has_select_for_update and (names := _deferred_constraints(_Through.of(field), using)):
            with connection.cursor() as cursor:  # COMMIT follows: the mode need not be set back
                cursor.execute(f"SET CONSTRAINTS {', '.join(names)} IMMEDIATE")
        label = spec.model._meta.label_lower
        live = capture.lock_rows(spec, using, {}, rows=_rows_named(spec, missing), no_key=True)
        authors = list(dict.fromkeys(entry.author for entry in missing))
        # Which write linked each row: the last whose rows it is (the database cannot tell more).
        author_of = dict.fromkeys(live, authors[-1])
        if len(authors) > 1:
            for author in authors:
                written = [entry for entry in missing if entry.author == author]
                author_of.update(dict.fromkeys(_rows_named(spec, written).values_list("pk", flat=True), author))
        drafts: dict[journal.Author, list[journal.Draft]] = {}
        for pk, state in live.items():
            if (label, spec.object_pk(pk)) in created:
                continue
            old = (replay.recorded_state(spec, pk, using=using) or {}).get(field.name, [])
            if old != state[field.name]:
                changes = {field.name: [old, state[field.name]]}
                draft = journal.Draft.of(spec, pk, Action.UPDATE, changes=changes, snapshot=state)
                drafts.setdefault(author_of[pk], []).append(draft)
        for author, written_drafts in drafts.items():
            with operation():
                journal.write(written_drafts, using, by=author)


def _rows_named(spec: registry.ModelSpec, missing: list[_Missing]) -> models.QuerySet[Any]:
    """The rows of ``spec`` the links written to missing rows name (a plain queryset of the model)."""
    rows: models.QuerySet[Any] = models.QuerySet(spec.model, using=missing[0].using)
    return rows.filter(_matching(missing))


def _deferred_constraints(ends: _Through, using: str) -> list[str]:
    """The names of the through table's deferred foreign keys to the owners (PostgreSQL; one query)."""
    connection = connections[using]
    table = connection.ops.quote_name(ends.model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.conname) FROM pg_constraint c"
            " JOIN pg_namespace n ON n.oid = c.connamespace JOIN pg_attribute a"
            " ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]"
            " WHERE c.conrelid = %s::regclass AND c.contype = 'f' AND c.condeferred"
            " AND array_length(c.conkey, 1) = 1 AND a.attname = %s",
            [table, ends.source.column],
        )
        return [name for (name,) in cursor.fetchall()]


def _check_now(ends: _Through, using: str) -> bool:
    """Check the through table's deferred foreign key to the owners now, as COMMIT would.

    True when each owner linked in this transaction is there (the check waits
    for a transaction inserting one: it is committed, and visible, by then).
    False when one is missing. The check runs in a savepoint rolled back
    after it, so the constraint's mode is what it was (deferred, or
    ``SET CONSTRAINTS ALL IMMEDIATE`` by the application) and COMMIT checks it
    again, as without the app. Queries: the constraint's name, a savepoint,
    ``SET CONSTRAINTS``, the rollback to the savepoint.
    """
    names = _deferred_constraints(ends, using)
    if not names:
        return True
    connection = connections[using]
    sid = connection.savepoint()  # transaction.savepoint() is deprecated in Django 6.1
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SET CONSTRAINTS {', '.join(names)} IMMEDIATE")
    except IntegrityError:
        return False
    finally:
        if sid is not None:  # None: no transaction (autocommit), where the statement's own check ran
            connection.savepoint_rollback(sid)
    return True


def _remember(
    instance: models.Model, key: Any, spec: registry.ModelSpec, field: Any, owners: dict[str, Any], using: str
) -> None:
    change = _LinkChange(using)
    change.lock(spec, field, owners)
    instance.__dict__.setdefault(_BEFORE, {})[key] = change


def _record(instance: models.Model, key: Any, spec: registry.ModelSpec, field: Any, using: str) -> None:
    change = instance.__dict__.get(_BEFORE, {}).pop(key, None)
    if change is not None:
        change.record()


def m2m_changed(
    sender: type[models.Model],
    instance: models.Model,
    action: str,
    reverse: bool,
    pk_set: Any,
    using: str,
    **kwargs: Any,
) -> None:
    if is_paused() and is_paused(*(spec.model for spec, _ in registry.m2m_links(sender))):  # noted when paused
        return
    for spec, field in registry.m2m_links(sender):
        key = (sender, spec.model, field.name)  # a multi-table parent and its child each have the field
        if action == "pre_remove":
            _check_keys(field, reverse, pk_set)
        if action.startswith("pre_"):
            _mark_relation_write(sender, using)
            # A symmetrical add() writes the other direction as a bulk_create of its own, without
            # signals (recorded as a direct write of the table); remove() and clear() in one DELETE.
            both = mirrored(field) and action in ("pre_remove", "pre_clear")
            _remember(instance, key, spec, field, _owners(field, instance, reverse, pk_set, using, both), using)
        else:
            _record(instance, key, spec, field, using)


def target_pre_delete(sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any) -> None:
    """A related row is being deleted: its links vanish with it, without a signal of their own.

    Django sends every ``pre_delete`` of a deletion before its first DELETE: the owners
    of all the related rows of one model it deletes are locked and read together, at
    the first one's, when the deletion is a ``QuerySet.delete()`` of them (its rows are
    locked first, :func:`_lock_targets`); any other row, at its own.
    """
    if is_paused():
        return
    origin = kwargs.get("origin")
    deletion = _deletion_of(origin, using)
    change = deletion.targets.setdefault(sender, _LinkChange(using))
    for spec, field in registry.m2m_targets(sender):
        ends = _Through.of(field)
        value = getattr(instance, ends.target.target_field.attname)
        if (field, value) in deletion.covered:
            continue
        if isinstance(origin, models.QuerySet) and origin.model is sender and (field, origin) not in deletion.covered:
            deletion.covered.add((field, origin))  # the deletion's own origin: kept alive by it anyway
            values = _lock_targets(ends, using, origin)
        else:
            values = _lock_targets(ends, using, None, value)
        deletion.covered.update((field, each) for each in values)
        rows = ends.model._base_manager.using(using).filter(**{f"{ends.target.attname}__in": values})
        owners = rows.values_list(ends.source.attname, flat=True).distinct()
        change.lock(spec, field, {f"{ends.owner_key}__in": list(owners)})


def target_post_delete(sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any) -> None:
    """Django sends a model's ``post_delete`` once all its rows of the deletion are deleted."""
    current = _deletion.get()
    if current is not None and current.origin() is kwargs.get("origin"):
        change = current.targets.pop(sender, None)
        if change is not None:
            fields = {field for _, field in registry.m2m_targets(sender)}
            current.covered = {each for each in current.covered if each[0] not in fields}  # a delete() again
            change.record()


# --- rows of explicit through models, written directly ------------------
#
# ``Loan.objects.create(book=b, reader=r)``, ``loan.delete()``, ``QuerySet.delete()``
# of loans, and the relation manager's own ``add``/``remove`` (a ``bulk_create``
# and a ``QuerySet.delete()`` of loans): each changes links of the rows declaring
# the field, recorded on them, from the database, as ``m2m_changed`` does for
# auto-created through tables. ``m2m_changed`` is not used for these: Django's
# signals for the rows (and the QuerySet hooks below) see every such write once.


def _ends_of(model: type[models.Model]) -> list[tuple[registry.ModelSpec, Any, _Through]]:
    return [(spec, field, _Through.of(field)) for spec, field in registry.through_rows(model)]


def _through_paused(model: type[models.Model]) -> bool:
    """:func:`is_paused`, noting the owners whose links a write of through rows of ``model`` changes."""
    return is_paused() and is_paused(*(spec.model for spec, _, _ in _ends_of(model)))


def _rows_by_key(model: type[models.Model], using: str, pks: list[Any]) -> models.QuerySet[Any]:
    """The through rows with these keys, as a plain queryset (the base manager's filters are not the table's)."""
    rows: models.QuerySet[Any] = models.QuerySet(model, using=using)
    return rows.filter(pk__in=pks).order_by()


def through_pre_save(sender: type[models.Model], instance: models.Model, raw: bool, using: str, **kwargs: Any) -> None:
    """A through row is saved, by the ORM or by ``loaddata`` (a raw save): its owners' links change the same."""
    instance.__dict__.pop(_SAVING, None)  # left by a save that failed before post_save
    if not _through_paused(sender):
        instance.__dict__[_SAVING] = _row_change(instance, using)


def _row_change(instance: models.Model, using: str) -> _LinkChange:
    """The owners of one through row about to be saved, locked and read: the one it is given,
    and, for a row with a key (a new one may overwrite a stored row), the one the database holds."""
    change = _LinkChange(using)
    for spec, field, ends in _ends_of(type(instance)):
        given = {getattr(instance, ends.source.attname)}
        if instance.pk is None:
            change.lock_keys(spec, field, given)
        else:
            change.lock_holders(spec, field, _rows_by_key(type(instance), using, [instance.pk]), given)
    return change


@contextlib.contextmanager
def through_row_restored(instance: models.Model, using: str) -> Iterator[None]:
    """Around restore's write of a row (capture paused): if it is a through row, the links it
    gives back are recorded on the rows declaring them, in the restore's operation."""
    if not registry.through_rows(type(instance)):
        yield
        return
    change = _row_change(instance, using)
    yield
    change.record()


@contextlib.contextmanager
def through_row_saved(instance: models.Model, using: str) -> Iterator[None]:
    """Around the save of a row of an auto-created through table, which sends no signal:
    what :func:`through_pre_save` and :func:`through_post_save` do for an explicit one's."""
    if is_paused():
        yield
        return
    change = _row_change(instance, using)
    yield
    change.record()


def through_post_save(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    change: _LinkChange | None = instance.__dict__.pop(_SAVING, None)
    if change is not None:
        change.record()


_SAVING = "_audit_events_links_saving"


@dataclass
class _Deletion:
    """The link changes of one deletion (one ``Collector`` run, known by its ``origin``)."""

    origin: Callable[[], Any]  # a weak reference where the origin takes one
    change: _LinkChange
    targets: dict[type[models.Model], _LinkChange] = dataclasses.field(default_factory=dict)  # by model deleted
    covered: set[tuple[Any, Any]] = dataclasses.field(default_factory=set)  # (field, key) of related rows locked


_deletion: ContextVar[_Deletion | None] = ContextVar("audit_events_link_deletion", default=None)


def _deletion_of(origin: Any, using: str) -> _Deletion:
    """Django sends every ``pre_delete`` of a deletion before its first DELETE, and the
    ``post_delete`` of a model's rows after all of them are deleted: the first
    ``post_delete`` of the through rows records every owner's change once."""
    current = _deletion.get()
    if current is None or current.origin() is not origin:
        current = _Deletion(_reference(origin), _LinkChange(using))
        _deletion.set(current)
    return current


def _reference(origin: Any) -> Callable[[], Any]:
    try:
        return weakref.ref(origin)
    except TypeError:  # None (a Collector made by hand), or an object without weak references
        return lambda: origin


def through_pre_delete(sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any) -> None:
    if _through_paused(sender):
        return
    origin = kwargs.get("origin")
    change = _deletion_of(origin, using).change
    for spec, field, ends in _ends_of(sender):
        if origin is instance:  # ``row.delete()``: the instance may be stale, the DELETE is by key
            change.lock_holders(spec, field, _rows_by_key(sender, using, [instance.pk]), set())
            continue
        change.lock_keys(spec, field, [getattr(instance, ends.source.attname)])  # read by the Collector
        if not (isinstance(origin, models.QuerySet) and origin.model is sender):
            # A cascade: the Collector read the row unlocked, before its transaction began (a
            # QuerySet.delete() of these rows read them locked, in ours: :func:`through_rows_deleted`).
            change.confirm_holders(spec, field, _rows_by_key(sender, using, [instance.pk]), read_before=True)


def through_post_delete(sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any) -> None:
    current = _deletion.get()
    if current is not None and current.origin() is kwargs.get("origin"):
        current.change.record()


def owner_pre_delete(sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any) -> None:
    """A row declaring links is deleted: its delete event holds them, its through rows' deletion records nothing."""
    if not is_paused():
        spec = registry.spec_for(sender)
        if spec is not None:
            _deletion_of(kwargs.get("origin"), using).change.deleted.add((spec.model, instance.pk))


@contextlib.contextmanager
def through_rows_written(
    queryset: models.QuerySet[Any],
    objs: Iterable[models.Model] = (),
    assigned: dict[str, Any] | None = None,
    matched: bool = False,
) -> Iterator[models.QuerySet[Any]]:
    """Around a QuerySet write of through rows that sends no signal: record the owners' link changes.

    For ``bulk_create(objs)`` and ``bulk_update(objs, ...)`` pass ``objs``; for
    ``update(**assigned)`` pass ``assigned``; for a ``delete()`` of an
    auto-created through table (Django deletes its rows without signals)
    ``matched``. Yields the queryset to write: for ``update`` and ``delete``
    the rows it matched, locked, and only those (a row that enters the filter
    after they were read is left alone, as if it came after the write);
    otherwise ``queryset``. Any other model, or the write of a relation
    manager's ``add()``/``remove()``/``clear()`` (recorded from
    ``m2m_changed``): nothing, no query.
    Queries: for ``update``/``delete`` one SELECT (locking) of the rows and
    the owner keys they hold (and for an owner assigned by an expression, one
    SELECT of its value); for ``bulk_update`` :meth:`_LinkChange.lock_holders`;
    a locking SELECT of the owners and one of their links; one of the links
    after the write; the events at COMMIT.
    """
    links = _ends_of(queryset.model)
    paused = is_paused() and is_paused(*(spec.model for spec, _, _ in links))  # the owners noted when paused
    if not links or paused or _writing.get() or _by_relation_manager(queryset.model, queryset.db):
        yield queryset  # bulk_update runs update(): recorded once, by the outer
        return
    using, objs = queryset.db, list(objs)
    token = _writing.set(True)
    try:
        with atomic_write(using), operation():
            change = _LinkChange(using)
            written, given, stored = _written_rows(queryset, [ends for _, _, ends in links], objs, assigned, matched)
            for (spec, field, _), keys in zip(links, given, strict=True):
                if stored:
                    change.lock_holders(spec, field, _rows_by_key(queryset.model, using, stored), keys)
                else:
                    change.lock_keys(spec, field, keys)
            yield written
            change.record()
    finally:
        _writing.reset(token)


_writing: ContextVar[bool] = ContextVar("audit_events_through_rows_writing", default=False)


def _written_rows(
    queryset: models.QuerySet[Any],
    links: list[_Through],
    objs: list[models.Model],
    assigned: dict[str, Any] | None,
    matched: bool,
) -> tuple[models.QuerySet[Any], list[set[Any]], list[Any]]:
    """The rows a QuerySet write of through rows is to write; for each of ``links`` the owner
    keys they touch that are known now; and the keys of stored rows whose owners are still to
    be read (:meth:`_LinkChange.lock_holders`).

    For ``update()`` and ``delete()``, where rows are locked, they are locked as they are read
    and the write is narrowed to them (the filter still applies): under READ COMMITTED the
    statement would run its filter again, and could move a row committed after this read,
    whose owner no one locked. The owners ``update()`` assigns are known too, an expression's
    from the database (the rows locked, it gives what the UPDATE will).
    """
    sources = [ends.source.attname for ends in links]
    if assigned is None and not matched:
        given = [{getattr(obj, source) for obj in objs} for source in sources]
        return queryset, given, [obj.pk for obj in objs if obj.pk is not None]
    queryset, held = _locked(queryset, sources)
    pks = [pk for pk, *_ in held]
    keys = [{row[index] for row in held} for index in range(1, len(links) + 1)]
    for found, ends in zip(keys, links, strict=True):
        found.update(_assigned_keys(queryset, pks, ends, assigned or {}))
    return queryset, keys, []


def _locked(queryset: models.QuerySet[Any], columns: list[str]) -> tuple[models.QuerySet[Any], list[tuple[Any, ...]]]:
    """The rows ``queryset`` matches, locked where rows are, as the keys and ``columns`` they hold;
    and ``queryset`` narrowed to them (its filter still applies): under READ COMMITTED a write
    would run its filter again, and could take a row committed after this read. One SELECT."""
    if queryset.query.is_sliced or not connections[queryset.db].features.has_select_for_update:
        return queryset, list(queryset.values_list("pk", *columns))
    # Of a plain queryset: DISTINCT, GROUP BY or a join would make FOR UPDATE fail or lock more.
    plain: models.QuerySet[Any] = models.QuerySet(queryset.model, using=queryset.db)
    rows = plain.filter(pk__in=queryset.order_by().values("pk")).select_for_update()
    held = list(rows.values_list("pk", *columns))
    return queryset.filter(pk__in=[pk for pk, *_ in held]), held


@contextlib.contextmanager
def through_rows_deleted(queryset: models.QuerySet[Any]) -> Iterator[models.QuerySet[Any]]:
    """Around a ``QuerySet.delete()`` of an explicit through model's rows (``remove()``, ``clear()``
    included): yields the rows to delete, locked first (one SELECT, where rows are locked), in a
    transaction begun before Django's Collector reads them, so that the owners they hold when it
    reads them (:func:`through_pre_delete`) are those they hold when they are deleted. Any
    other model: nothing, no query."""
    if not registry.through_rows(queryset.model) or queryset.model._meta.auto_created or is_paused():
        yield queryset
        return
    with atomic_write(queryset.db):  # on SQLite, the database's lock: begun IMMEDIATE, before the read
        yield _locked(queryset, [])[0] if connections[queryset.db].features.has_select_for_update else queryset


def _assigned_keys(
    queryset: models.QuerySet[Any], pks: list[Any], ends: _Through, assigned: dict[str, Any]
) -> set[Any]:
    """The owner keys ``update(**assigned)`` gives the rows ``pks`` of ``queryset``; an
    expression's as the database evaluates it for them (one SELECT), the rows locked."""
    keys = set()
    for name in (ends.source.name, ends.source.attname):
        if name not in assigned:
            continue
        value = assigned[name]
        if isinstance(value, models.Model):
            keys.add(getattr(value, ends.owner_key))
        elif hasattr(value, "resolve_expression"):
            owners = queryset.filter(pk__in=pks).annotate(_audit_events_owner=value)
            keys.update(owners.order_by().values_list("_audit_events_owner", flat=True))
        else:
            keys.add(value)
    return keys


# --- the rows of a relation manager's own write ---------------------------------
#
# ``book.tags.add(t)`` is ``Book.tags.through.objects.bulk_create(...)`` between
# ``pre_add`` and ``post_add``, ``remove()``/``clear()`` a ``QuerySet.delete()``
# between ``pre_``/``post_`` signals, each inside an ``atomic()`` block of
# Django's own: ``m2m_changed`` records them. Its ``pre_`` receiver marks the
# write to come with that block; the write of the through model made while the
# block is open is the manager's (and takes the mark), any other is direct.

_relation_write: ContextVar[tuple[type[models.Model], Any] | None] = ContextVar(
    "audit_events_relation_write", default=None
)


def _mark_relation_write(through: type[models.Model], using: str) -> None:
    blocks = connections[using].atomic_blocks
    _relation_write.set((through, blocks[-1]) if blocks else None)


def _by_relation_manager(model: type[models.Model], using: str) -> bool:
    """Whether this write of ``model`` is the one a relation manager's ``pre_`` signal announced."""
    mark = _relation_write.get()
    if mark is None or mark[0] is not model:
        return False
    _relation_write.set(None)
    return any(block is mark[1] for block in connections[using].atomic_blocks)
