"""Run by tests/test_stream.py in a process of its own: many writers and a streaming reader on a SQLite file.

``python tests/sqlite_stream.py <file> <seconds>`` runs the many-writers harness's threads
(tests/test_stream.py: each its own connection, transactions of random length, some rolled back)
while its reader streams, then prints, as JSON, what the reader saw and what the table holds, for
the test to compare.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

os.environ["SQLITE_FILE"], SECONDS = sys.argv[1], float(sys.argv[2])
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
os.environ["TEST_DB"] = "sqlite"

import django  # noqa: E402

import tests.settings  # noqa: E402

# One writer at a time, as SQLite has it: each transaction takes the write lock when it begins
# (a transaction that read first could not wait for it), and waits up to 30 s for it.
tests.settings.DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 30}
django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from audit_events.models import Event  # noqa: E402
from tests.models import Author, Book  # noqa: E402
from tests.test_stream import reader, writer  # noqa: E402  (the PostgreSQL harness's own threads)


def main() -> None:
    call_command("migrate", run_syncdb=True, verbosity=0)
    author = Author.objects.create(name="Ann")
    books = [Book.objects.create(author=author, title="t").pk for _ in range(20)]
    connection.close()
    errors: list[BaseException] = []
    seen: list[tuple[int, int, str, int]] = []
    stop = threading.Event()
    deadline = time.monotonic() + SECONDS
    writers = [threading.Thread(target=writer, args=(seed, deadline, books, errors)) for seed in range(4)]
    read = threading.Thread(target=reader, args=(stop, seen, errors))
    read.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    read.join()
    table = list(Event.objects.order_by("id").values_list("id", "content_type_id", "object_pk", "version"))
    print(json.dumps({"errors": [repr(e) for e in errors], "seen": seen, "table": table}))


main()
