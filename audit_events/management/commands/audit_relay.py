"""``manage.py audit_relay``: publish every committed event to a message broker, until stopped."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any

from django.apps import apps
from django.contrib.contenttypes.models import ContentType
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, NotSupportedError, connections
from django.utils.module_loading import import_string

from ... import backends, conf
from ...models import RelayPosition
from ...relay.publishers import Publisher, Unpublishable
from ...relay.runner import Relay, Unrecoverable, log

_LEVELS = {0: logging.WARNING, 1: logging.INFO}


class Command(BaseCommand):
    help = (
        "Publish every committed audit event, in order per row and at least once, to the broker "
        "AUDIT_EVENTS['RELAY'] names (RabbitMQ by default), saving its position after each acknowledged "
        "batch. Runs until SIGTERM or SIGINT (Ctrl-C); resumes where it stopped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--name", default="default", help="The relay's name: its saved position (several relays, several names)."
        )
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="Database alias (default: 'default').")
        parser.add_argument("--once", action="store_true", help="Publish what is committed now, then exit.")
        parser.add_argument(
            "--from-now",
            action="store_true",
            help="A relay without a saved position starts after the events committed now, not at the first one.",
        )
        parser.add_argument(
            "--models",
            nargs="+",
            metavar="APP_LABEL.MODEL",
            help="Publish only these models' events: one partition of the stream, under its own --name.",
        )
        parser.add_argument(
            "--exclude",
            nargs="+",
            metavar="APP_LABEL.MODEL",
            help="Publish every model's events but these (the complement of another relay's --models).",
        )
        parser.add_argument("--url", default=None, help="The broker's URL (default: AUDIT_EVENTS['RELAY']['URL']).")

    def handle(self, *args: Any, **options: Any) -> None:
        config = conf.get_relay_config()
        longest = RelayPosition._meta.get_field("name").max_length or 0
        if not options["name"] or len(options["name"]) > longest:
            raise CommandError(f"--name: 1 to {longest} characters, not {len(options['name'])}.")
        publisher_class = self._publisher_class(config.publisher)
        self._check_database(options["database"])
        content_types = self._partition(options["models"], options["exclude"], options["database"])
        self._log_to_stderr(options["verbosity"])
        publisher = publisher_class(options["url"] or config.url, config.options)
        stop = threading.Event()

        def stopping(signum: int, frame: Any) -> None:
            log.info(
                "relay %r: %s received, stopping after the current batch", options["name"], signal.Signals(signum).name
            )
            stop.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, stopping)
        try:
            relay = Relay(
                options["name"], publisher, config, options["database"], stop, content_types, bool(options["exclude"])
            )
            relay.run(once=options["once"], from_now=options["from_now"])
        except Unpublishable as error:
            raise CommandError(
                f"{error}. The relay stopped before this event's batch (retrying cannot help); "
                "its saved position is unchanged. See docs/relay.rst, 'A message the broker cannot take'."
            ) from error
        except Unrecoverable as error:
            raise CommandError(
                f"The relay stopped: {error}. Its saved position is unchanged; start it again once this is fixed. "
                "See docs/relay.rst, 'Errors that stop the relay'."
            ) from error

    def _publisher_class(self, path: str) -> type[Publisher]:
        """The class ``AUDIT_EVENTS['RELAY']['PUBLISHER']`` names, a :class:`Publisher`."""
        try:
            publisher_class = import_string(path)
        except ImportError as error:
            raise CommandError(f"AUDIT_EVENTS['RELAY']['PUBLISHER'] {path!r}: {error}") from None
        if not (isinstance(publisher_class, type) and issubclass(publisher_class, Publisher)):
            raise CommandError(f"{path!r} is not a subclass of audit_events.relay.Publisher.")
        return publisher_class

    def _check_database(self, using: str) -> None:
        """``--database``: a configured alias, of a backend the relay can read in commit order."""
        if using not in connections:
            raise CommandError(f"Unknown database {using!r}.")
        connection = connections[using]
        if backends.of(connection).commit_order is None:
            name = connection.display_name
            raise CommandError(str(NotSupportedError(f"audit_relay does not support {name}: see docs/relay.rst.")))

    def _partition(self, models: list[str] | None, exclude: list[str] | None, using: str) -> set[int] | None:
        """The content type ids of ``--models`` or ``--exclude`` (None: every model)."""
        if models and exclude:
            raise CommandError("Give --models or --exclude, not both.")
        labels, option = (models, "--models") if models else (exclude, "--exclude")
        if not labels:
            return None
        ids = set()
        for label in labels:
            try:
                model = apps.get_model(label)
            except (LookupError, ValueError):
                raise CommandError(f"{option}: no model {label!r} (give app_label.ModelName).") from None
            ids.add(ContentType.objects.db_manager(using).get_for_model(model).pk)  # as events record it
        return ids

    def _log_to_stderr(self, verbosity: int) -> None:
        """Log to stderr, unless the project's LOGGING already sends this logger somewhere."""
        log.setLevel(_LEVELS.get(verbosity, logging.DEBUG))
        if not log.hasHandlers():
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            log.addHandler(handler)
