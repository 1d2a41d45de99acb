"""Run by tests/test_transactions.py in a process of its own: a write on a SQLite file while
another connection holds the write lock.

``python tests/sqlite_writers.py <file> <write> <registered: 0|1>`` prints what the write
did: ``done``, or the error it raised. The other connection (plain ``sqlite3``) takes the
write lock first (``BEGIN IMMEDIATE``) and commits once the write has begun its transaction
``IMMEDIATE`` or runs its first write statement, so a write that waits its turn gets it
(one that read first in a ``DEFERRED`` transaction is refused: SQLite does not wait there).
"""

from __future__ import annotations

import os
import sqlite3
import sys
import threading

os.environ["SQLITE_FILE"], WRITE, REGISTERED = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
os.environ["TEST_DB"] = "sqlite"

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import DatabaseError, connection  # noqa: E402
from django.test.utils import override_settings  # noqa: E402

from tests.models import Author  # noqa: E402

WRITES = {
    "save": lambda author: (setattr(author, "name", "saved"), author.save()),
    "update": lambda author: Author.objects.filter(pk=author.pk).update(name="updated"),
    "delete": lambda author: author.delete(),
    "queryset_delete": lambda author: Author.objects.filter(pk=author.pk).delete(),
    "bulk_update": lambda author: Author.objects.bulk_update([author], ["name"]),
    "create": lambda author: Author.objects.create(name="new"),
}


def main() -> None:
    call_command("migrate", run_syncdb=True, verbosity=0)
    labels = ["tests.Author"] if REGISTERED else []
    with override_settings(AUDIT_EVENTS={"MODELS": labels}):
        author = Author.objects.create(name="first")
        began = threading.Event()
        holder = sqlite3.connect(os.environ["SQLITE_FILE"], check_same_thread=False, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # the write lock, as another process's write holds it
        holder.execute("UPDATE django_content_type SET model = model WHERE id = 0")

        def traced(sql: str) -> None:
            if sql.startswith(("BEGIN IMMEDIATE", "UPDATE", "INSERT", "DELETE")):
                began.set()

        def release() -> None:
            began.wait(10)
            holder.execute("COMMIT")

        connection.ensure_connection()
        connection.connection.set_trace_callback(traced)
        releaser = threading.Thread(target=release)
        releaser.start()
        try:
            WRITES[WRITE](author)
            print("done")
        except DatabaseError as error:
            print(f"{type(error).__name__}: {error}")
        finally:
            began.set()
            releaser.join()


main()
