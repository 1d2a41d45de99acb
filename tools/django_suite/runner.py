"""The test runner ``run.py`` gives Django's ``runtests.py`` (``TEST_RUNNER`` in ``settings``).

It records every test's outcome in a JSON file (``DJANGO_SUITE_RESULTS``),
installs audit_events when ``DJANGO_SUITE_AUDIT=1``, and switches query-count
assertions off when ``DJANGO_SUITE_NO_QUERY_COUNTS=1`` (the rerun that tells a
test failing only on its count from one failing on what it checks).

Both runs, with and without audit_events, go through the same steps, so the
app is the only difference between them.
"""

from __future__ import annotations

import json
import os
import sys
import unittest
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.management import get_commands
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.test import TransactionTestCase
from django.test.runner import DiscoverRunner
from django.test.utils import CaptureQueriesContext

Outcome = tuple[str, str]  # ("pass" | "fail" | "error" | "skip" | "xfail" | "xpass", first line of the error)


def test_id(test: Any) -> str:
    """A test's id; a subtest counts as its test."""
    case = getattr(test, "test_case", test)
    return str(case.id())


def first_line(err: Any) -> str:
    kind, value = err[0], err[1]
    lines = str(value).strip().splitlines()
    return f"{getattr(kind, '__name__', kind)}: {lines[0] if lines else ''}"[:400]


class RecordingResult(unittest.TextTestResult):
    """A text result that also keeps each test's outcome; a failing subtest fails its test."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outcomes: dict[str, Outcome] = {}

    def _record(self, test: Any, outcome: str, detail: str = "") -> None:
        key = test_id(test)
        if self.outcomes.get(key, ("pass", ""))[0] in {"fail", "error"}:
            return  # the first failure of its subtests stands
        self.outcomes[key] = (outcome, detail)

    def addSuccess(self, test: Any) -> None:
        super().addSuccess(test)
        self._record(test, "pass")

    def addFailure(self, test: Any, err: Any) -> None:
        super().addFailure(test, err)
        self._record(test, "fail", first_line(err))

    def addError(self, test: Any, err: Any) -> None:
        super().addError(test, err)
        self._record(test, "error", first_line(err))

    def addSkip(self, test: Any, reason: str) -> None:
        super().addSkip(test, reason)
        self._record(test, "skip", reason[:200])

    def addExpectedFailure(self, test: Any, err: Any) -> None:
        super().addExpectedFailure(test, err)
        self._record(test, "xfail")

    def addUnexpectedSuccess(self, test: Any) -> None:
        super().addUnexpectedSuccess(test)
        self._record(test, "xpass")

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            self._record(test, "fail" if failed else "error", f"{subtest._subDescription()} {first_line(err)}")


def _any_number_of_queries(
    self: TransactionTestCase, num: int, func: Any = None, *args: Any, using: str = DEFAULT_DB_ALIAS, **kwargs: Any
) -> Any:
    """``assertNumQueries`` that captures the queries as the real one does, and asserts nothing."""
    context = CaptureQueriesContext(connections[using])
    if func is None:
        return context
    with context:
        func(*args, **kwargs)
    return None


def _install_apps(audit: bool) -> None:
    """Populate the app registry once more, with audit_events last when ``audit``.

    ``runtests.py`` replaces ``INSTALLED_APPS`` with its own list, then adds the
    test apps with ``apps.set_installed_apps()``: audit_events can only join
    here, after that. Repopulating calls every app's ``ready()`` again, so
    audit_events' registry syncs with the test apps installed, resolving ``"*"``.
    """
    if audit:
        settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "audit_events"]
    apps.set_installed_apps(settings.INSTALLED_APPS)
    if audit:
        # Management commands are found once per process: audit_events' commands join only now.
        # (The flush between transactional tests needs none of them: ``protection`` lets any
        # flush empty the event table.)
        get_commands.cache_clear()
        _check_every_model_registered()


def _check_every_model_registered() -> None:
    from audit_events import registry

    missing, registered = [], 0
    for app_config in apps.get_app_configs():
        if not registry.implied_by_wildcard(app_config):
            continue
        for model in app_config.get_models():
            if registry.spec_for(model) is None:
                missing.append(model._meta.label)
            else:
                registered += 1
    if missing:
        raise RuntimeError(f"audit_events did not register: {', '.join(missing)}")
    print(f"django_suite: audit_events installed, {registered} models registered", file=sys.stderr)


def _verify_after_each_test(directory: str) -> None:
    """Before each test's data is rolled back or flushed, replay the recorded history against the live rows.

    Findings (``audit_events.verify``: drift, gap, tampered) are appended, per
    test id, to a file per process in ``directory``. Only models with events
    in a database are checked there (checking all of them would cost two
    queries per model per test); a row changed by raw SQL shows as drift too.
    """
    post_teardown = TransactionTestCase._post_teardown

    lost: list[str] = []

    def verify_then_post_teardown(self: TransactionTestCase) -> None:
        found = _verify(self)
        if not lost:  # reported once per process: the first test after which it happened
            lost.extend(_managers_no_longer_audited())
            if lost:
                found.append(f"capture lost from here on (managers rebuilt): {', '.join(lost[:3])}, ...")
        if found:
            with open(os.path.join(directory, f"{os.getpid()}.jsonl"), "a", encoding="utf-8") as out:
                out.write(json.dumps({"test": self.id(), "findings": found}) + "\n")
        post_teardown(self)

    TransactionTestCase._post_teardown = verify_then_post_teardown  # type: ignore[method-assign]


def _managers_no_longer_audited() -> list[str]:
    """Registered models whose default manager lost its audited class (``apps.clear_cache()``, issue 19 #10)."""
    from audit_events import registry

    return [
        spec.label
        for spec in registry.registered_specs()
        if not type(spec.model._default_manager).__name__.startswith("Audited")
    ]


def _verify(test: TransactionTestCase) -> list[str]:
    from django.contrib.contenttypes.models import ContentType

    from audit_events import registry, verify
    from audit_events.models import Event

    aliases = list(connections) if test.databases == "__all__" else sorted(test.databases)
    found = []
    for alias in aliases:
        try:
            with transaction.atomic(using=alias):  # a failure here must not break the test's transaction
                ids = Event.objects.using(alias).order_by().values_list("content_type_id", flat=True).distinct()
                for content_type in ContentType.objects.db_manager(alias).filter(pk__in=list(ids)):
                    model = content_type.model_class()
                    if model is not None and registry.spec_for(model) is not None:
                        found += [f"{alias}: {finding}" for finding in verify.verify_model(model, using=alias)]
        except Exception as error:  # reported, never raised into the test
            found.append(f"{alias}: verify failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}")
    return found


def _resync_when_capture_lost() -> None:
    """Sync the registry again before a test if capture was lost (issue 19 #10), so that the
    defects it hides show: a diagnostic (``run.py --resync``), not what a project gets."""
    from audit_events import registry, wiring

    models = [spec.model for spec in registry.registered_specs()]
    pre_setup = TransactionTestCase.__dict__["_pre_setup"].__func__

    def pre_setup_then_resync(cls: type[TransactionTestCase]) -> None:
        pre_setup(cls)
        if any(
            registry.spec_for(model) is None or not type(model._default_manager).__name__.startswith("Audited")
            for model in models
        ):
            wiring.sync()

    TransactionTestCase._pre_setup = classmethod(pre_setup_then_resync)  # type: ignore[method-assign,assignment]


class SuiteRunner(DiscoverRunner):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _install_apps(audit=os.environ.get("DJANGO_SUITE_AUDIT") == "1")
        if os.environ.get("DJANGO_SUITE_NO_QUERY_COUNTS") == "1":
            TransactionTestCase.assertNumQueries = _any_number_of_queries  # type: ignore[method-assign,assignment]
        if os.environ.get("DJANGO_SUITE_RESYNC") == "1":
            _resync_when_capture_lost()
        if verify_directory := os.environ.get("DJANGO_SUITE_VERIFY_DIR"):
            _verify_after_each_test(verify_directory)

    def get_resultclass(self) -> type[unittest.TextTestResult]:
        return RecordingResult

    def run_suite(self, suite: Any, **kwargs: Any) -> Any:
        result = super().run_suite(suite, **kwargs)
        path = os.environ.get("DJANGO_SUITE_RESULTS")
        if path:
            with open(path, "w", encoding="utf-8") as out:
                json.dump(result.outcomes, out, indent=0, sort_keys=True)
        return result
