"""Many-to-many links, recorded on the row that declares the field.

``book.tags.add(t)`` and ``tag.books.add(book)`` both record an ``update`` of
the book: ``{"tags": [[1, 2], [1, 2, 5]]}``, the sorted related primary keys
before and after. Full states carry each many-to-many field the same way, so
replay and restore bring links back. A through table may hold ``to_field``
values instead of primary keys: they are mapped to primary keys.

What the rest of the app uses is below; the modules of the package:

* :mod:`.links`: a row's links read (by capture, restore, verify, snapshots),
  and the through table's ends that name them;
* :mod:`.restore`: links written back by restore;
* :mod:`.changes`: one change of links, its owners locked and read before the
  write and recorded after it; the changes of one deletion;
* :mod:`.relations`: the receivers of the relation managers' calls
  (``m2m_changed``) and of the related rows' deletion;
* :mod:`.through`: through rows written directly, and an explicit through
  model's rows however written;
* :mod:`.deferred`: links written before the rows they name exist.

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

from ..links import decode_keys, linked_keys, mirrored, read_links, without_links
from .relations import m2m_changed, target_post_delete, target_pre_delete
from .restore import missing_targets, write_links
from .through import (
    owner_pre_delete,
    through_post_delete,
    through_post_save,
    through_pre_delete,
    through_pre_save,
    through_row_restored,
    through_row_saved,
    through_rows_deleted,
    through_rows_written,
)

__all__ = [
    "decode_keys",
    "linked_keys",
    "m2m_changed",
    "mirrored",
    "missing_targets",
    "owner_pre_delete",
    "read_links",
    "target_post_delete",
    "target_pre_delete",
    "through_post_delete",
    "through_post_save",
    "through_pre_delete",
    "through_pre_save",
    "through_row_restored",
    "through_row_saved",
    "through_rows_deleted",
    "through_rows_written",
    "without_links",
    "write_links",
]
