"""Run by tests/test_stream.py in a process of its own: many writers and a streaming reader on a SQLite file.

``python tests/sqlite_stream.py <file> <seconds>`` runs writer threads (each its own connection,
transactions of random length, some rolled back) while a reader thread streams, then prints, as
JSON, what the reader saw and what the table holds, for the test to compare.
"""

from __future__ import annotations

import json
import os
import random
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
from django.db import connection, transaction  # noqa: E402
from django.db.models import F  # noqa: E402

from audit_events import stream  # noqa: E402
from audit_events.models import Event  # noqa: E402
from tests.models import Author, Book  # noqa: E402


class Rollback(Exception):
    pass


def write(seed: int, deadline: float, books: list[int], errors: list[BaseException]) -> None:
    rng = random.Random(seed)
    try:
        while time.monotonic() < deadline:
            try:
                with transaction.atomic():
                    for _ in range(rng.randrange(1, 5)):
                        if rng.random() < 0.5:
                            Book.objects.filter(pk=rng.choice(books)).update(pages=F("pages") + 1)
                        else:
                            Author.objects.create(name=f"w{seed}")
                        if rng.random() < 0.3:
                            Event.objects.filter(pk=0).exists()  # the events inserted now, before COMMIT
                        time.sleep(rng.random() / 100)
                    if rng.random() < 0.15:
                        raise Rollback
            except Rollback:
                pass
    except BaseException as error:
        errors.append(error)
    finally:
        connection.close()


def read(stop: threading.Event, seen: list[list[object]], errors: list[BaseException]) -> None:
    rng = random.Random(0)
    position = stream.Position.start()
    try:
        while True:
            finishing = stop.is_set()
            batch = stream.read(position, limit=rng.choice([1, 7, 50]))
            seen.extend([e.id, e.content_type_id, e.object_pk, e.version] for e in batch.events)
            position = batch.position
            if finishing and not batch.events:
                return
            time.sleep(rng.random() / 200)
    except BaseException as error:
        errors.append(error)
    finally:
        connection.close()


def main() -> None:
    call_command("migrate", run_syncdb=True, verbosity=0)
    author = Author.objects.create(name="Ann")
    books = [Book.objects.create(author=author, title="t").pk for _ in range(10)]
    connection.close()
    errors: list[BaseException] = []
    seen: list[list[object]] = []
    stop = threading.Event()
    deadline = time.monotonic() + SECONDS
    writers = [threading.Thread(target=write, args=(seed, deadline, books, errors)) for seed in range(4)]
    reader = threading.Thread(target=read, args=(stop, seen, errors))
    reader.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    reader.join()
    table = [list(row) for row in Event.objects.order_by("id").values_list("id", "content_type_id", "object_pk", "version")]  # fmt: skip
    print(json.dumps({"errors": [repr(e) for e in errors], "seen": seen, "table": table}))


main()
