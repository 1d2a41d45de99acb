"""What a write's record becomes: its events, handed to the journal.

A save's record (``handoffs.SaveRecord``) holds the row before and the row
as the database answered the write; :func:`record_save` makes the events of
it, one per registered model the row is a row of (a multi-table child's row
is also its parents': :func:`view_event`), and a delete's
(``handoffs.DeleteRecord``) the one event of the row deleted. ``capture``
calls these from the ``post_`` signals, or earlier where a write of the same
row starts before them (:func:`record_finished_saves`, :func:`record_enclosing`):
the events are in the order the database wrote the rows.
"""

from __future__ import annotations

from typing import Any

from django.db import connections, models

from . import journal, m2m, registry
from .encoding import JSONValue, State
from .handoffs import DeleteRecord, SaveRecord, delete_scope, innermost, take_finished
from .models import Action
from .replay import recorded_state
from .rows import live_state


def diff(old: State, new: State) -> dict[str, list[JSONValue]]:
    return {name: [old.get(name), value] for name, value in new.items() if differs(old.get(name), value)}


def differs(old: JSONValue, new: JSONValue) -> bool:
    """Whether two encoded values are different JSON: ``1``, ``1.0`` and ``true`` are equal in Python,
    not in the JSON a field stores (nor in the canonical text that SQL compares, ``statement_events``)."""
    if old != new or type(old) is not type(new):
        return True
    if isinstance(old, dict):
        return any(differs(value, new[key]) for key, value in old.items())
    if isinstance(old, list):
        return any(differs(a, b) for a, b in zip(old, new, strict=True))
    return False


def view_event(
    spec: registry.ModelSpec,
    pk: Any,
    old: State | None,
    new: State,
) -> journal.Draft | None:
    """The event of a write seen as a row of ``spec``'s model (a multi-table
    child's row is also its parents'); ``None`` if nothing changed there."""
    names = spec.names
    if not spec.name_set.issuperset(new):  # a child's state seen as its parent's row
        new = {name: new[name] for name in names if name in new}
    if old is None:
        return journal.Draft.of(spec, pk, Action.CREATE, state=m2m.without_links(spec, new))
    if not spec.name_set.issuperset(old):
        old = {name: old[name] for name in names if name in old}
    changes = diff(old, new)
    if not changes:
        return None  # a write that changes nothing records nothing
    # Fields not written (links by a save) are as they were: the candidate snapshot keeps them.
    return journal.Draft.of(spec, pk, Action.UPDATE, changes=changes, snapshot={**old, **new})


def record_finished_saves() -> None:
    """Record the saves whose statement has run and whose post_save has not come yet: a write
    starting now comes after them, and so must its event (the database's order)."""
    for instance, saving, using in take_finished():
        spec = registry.spec_for(type(instance))
        if spec is not None and not saving.recorded:
            record_save(spec, instance, using, saving)


def record_enclosing(spec: registry.ModelSpec, instance: models.Model, using: str) -> None:
    """A save or delete of ``instance`` starts inside another one's post_ receivers (connected
    before this app's): record the enclosing write now, its statement done, so its event
    comes before this one's, as the writes did. Its post_ signal then records nothing."""
    enclosing = innermost(instance)
    if isinstance(enclosing, SaveRecord) and enclosing.written and not enclosing.recorded:
        record_save(spec, instance, using, enclosing)
    elif (
        isinstance(enclosing, DeleteRecord)
        and not enclosing.recorded
        and _delete_done(spec, using, instance, enclosing)
    ):
        record_delete(spec, instance, using, enclosing)


def record_save(spec: registry.ModelSpec, instance: models.Model, using: str, saving: SaveRecord) -> None:
    saving.recorded = True
    old, new = saving.old, _saved_state(spec, instance, using, saving)
    if old is None and saving.matched:
        # Django's UPDATE (by key) matched a row the locking read found gone: another transaction
        # made it again and committed in between (PostgreSQL, READ COMMITTED). It was as that
        # transaction recorded it.
        old = recorded_state(spec, instance.pk, using=using)
    # A multi-table child's row is also a row of each registered parent model:
    # record it there too, from the same states (no extra query, same INSERT).
    # Not on raw saves: loaddata saves the parent table as an object of its own.
    views = [spec] if saving.raw else [spec, *registry.parent_specs(spec)]
    drafts = [
        d
        for view in views
        if (d := view_event(view, _row_key(view, instance, new), saving.parents_old.get(view.model, old), new))
    ]
    journal.write(drafts, using)


def _row_key(spec: registry.ModelSpec, instance: models.Model, new: State) -> Any:
    """The saved row's key: the instance's, but as the database stored it (the state's) where the
    key's field makes objects of its own (``from_db_value``), which it may not prepare again."""
    field = spec.pk_field
    if spec.key_converts and new.get(field.name) is not None:
        return new[field.name]
    return getattr(instance, field.attname)


def _saved_state(spec: registry.ModelSpec, instance: models.Model, using: str, saving: SaveRecord) -> State:
    """The row as the save left it: as its statements answered, else as read now, under the save's lock.

    Fields no statement wrote (a multi-table parent's table left alone by
    ``update_fields``) are as they were.
    """
    answered = saving.new
    if not saving.read_back and (len(answered) == len(spec.fields) or saving.old is not None):
        old = saving.old or {}
        return {f.name: answered[f.name] if f.name in answered else old[f.name] for f in spec.fields}
    row = live_state(spec, using, instance.pk, no_key=True)
    if row is None:
        raise RuntimeError(
            f"audit_events: the saved {spec.label} row {spec.object_pk(instance.pk)} could not be read back; "
            "the save is undone."
        )
    return {f.name: row[f.name] for f in spec.fields}


def record_delete(spec: registry.ModelSpec, instance: models.Model, using: str, record: DeleteRecord) -> None:
    record.recorded = True
    state, scope = record.state, delete_scope()
    if record.returned:
        if scope is None:  # post_delete sent outside the delete() that marked it
            raise RuntimeError(f"audit_events: the deleted {spec.label} row was not read; the delete is undone.")
        state = scope.on(connections[using]).deleted_row(spec, instance.pk)
    elif state is None and scope is not None:
        state = scope.made_again(connections[using], spec, instance.pk)
    if state is None:
        return
    event = journal.Draft.of(spec, instance.pk, Action.DELETE, state=state, operation=record.operation)
    journal.write([event], using)


def _delete_done(spec: registry.ModelSpec, using: str, instance: models.Model, record: DeleteRecord) -> bool:
    """Whether the DELETE of ``record`` has run (asked only when the same instance is written again)."""
    if record.returned:
        scope = delete_scope()
        return scope is not None and scope.on(connections[using]).has_deleted(spec, instance.pk)
    return live_state(spec, using, instance.pk) is None
