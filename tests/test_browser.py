"""End to end in a real browser: an author's history, restoring a version, deleting it with its books, undoing that.

Drives Debian's Chromium through Playwright (never a browser Playwright
downloads). Skipped, saying how to enable it, when either is missing; with
``REQUIRE_BROWSER=1`` (CI) that is a failure instead. It saves the
screenshots of each page under ``artifacts/screenshots/`` (gitignored; CI
keeps them as artifacts; ``AUDIT_EVENTS_SCREENSHOTS=<dir>`` writes them
elsewhere); the docs show copies of them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, NoReturn

import pytest
from django.contrib.auth.models import User
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.servers.basehttp import ThreadedWSGIServer
from django.test import override_settings
from pytest_django.live_server_helper import LiveServer

from audit_events.models import Action, Event
from tests.models import Author, Book, Review

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
HOW_TO_ENABLE = "apt-get install -y chromium && pip install playwright (never `playwright install`)"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


class JoiningServer(ThreadedWSGIServer):
    """Waits for its request threads on close: each closes its database connection when its socket ends,
    and PostgreSQL refuses to drop the test database while one is open (keep-alive leaves them lingering)."""

    daemon_threads = False
    block_on_close = True


@pytest.fixture
def live_server(transactional_db: None) -> Iterator[LiveServer]:
    """pytest-django's live server, also serving the admin's CSS and JavaScript.

    The test settings install no ``staticfiles`` and set no ``STATIC_URL``, so
    the stock fixture would serve no static file (and fail on the missing
    URL); this one finds them in the apps, as ``runserver`` does.
    """
    with override_settings(STATIC_URL="/static/"):
        server = LiveServer("localhost", start=False)
        server.thread.static_handler = StaticFilesHandler
        server.thread.server_class = JoiningServer
        server.start()
        try:
            yield server
        finally:
            server.stop()


def unavailable(reason: str) -> NoReturn:
    """Skip, or fail where the browser test must run (CI sets ``REQUIRE_BROWSER=1``)."""
    if os.environ.get("REQUIRE_BROWSER"):
        pytest.fail(f"{reason} (REQUIRE_BROWSER is set): {HOW_TO_ENABLE}")
    pytest.skip(f"{reason}: {HOW_TO_ENABLE}")


@pytest.fixture
def chromium() -> Callable[[], AbstractContextManager[Any]]:
    """Opens a Chromium page. Use it in a ``with`` block that makes no ORM call: while Playwright's sync API
    runs, this thread holds an event loop and another context, where Django would open a second connection."""
    if not CHROMIUM.exists():
        unavailable(f"browser test needs {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("browser test needs the playwright package")

    @contextmanager
    def open_page() -> Iterator[Any]:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1200, "height": 760})
                page.set_default_timeout(15_000)
                yield page
            finally:
                browser.close()

    return open_page


SCREENSHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"  # gitignored; CI keeps it


def shoot(page: Any, name: str) -> None:
    """Save what the page shows, for CI's artifacts and the docs (``AUDIT_EVENTS_SCREENSHOTS`` moves it)."""
    folder = Path(os.environ.get("AUDIT_EVENTS_SCREENSHOTS") or SCREENSHOTS)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / name), full_page=False)


def test_delete_an_author_with_its_books_then_undo_it(
    live_server: LiveServer, chromium: Callable[[], AbstractContextManager[Any]]
) -> None:
    User.objects.create_superuser("admin", "admin@example.com", "correct horse")
    author = Author.objects.create(name="Ursula K. Le Guin", email="ursula@example.com")
    for title, pages, stars in (("The Dispossessed", 387, (5, 4)), ("The Lathe of Heaven", 184, (5,))):
        book = Book.objects.create(author=author, title=title, pages=pages)
        for star in stars:
            Review.objects.create(book=book, stars=star)
    admin = f"{live_server.url}/admin"
    with chromium() as page:
        page.goto(f"{admin}/login/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", "correct horse")
        page.click("input[type=submit]")
        page.wait_for_url(f"{admin}/")

        # An edit through the admin, so the history shows who did it.
        page.goto(f"{admin}/tests/author/{author.pk}/change/")
        page.fill("#id_name", "Ursula Le Guin")
        page.click("input[name=_save]")
        page.wait_for_url(f"{admin}/tests/author/")
        page.goto(f"{admin}/tests/author/{author.pk}/change/")
        page.click("a.historylink")
        page.wait_for_selector("#audit-history")
        assert page.locator("tr.audit-event").count() == 2
        assert "Restore this version" in page.content()
        assert page.locator("ol.breadcrumbs li, div.breadcrumbs a").count() >= 3  # Django's own markup, styled
        shoot(page, "admin-history.png")

        # Restore version 1: a preview first, nothing written until confirmed.
        page.locator("a", has_text="Restore this version").click()  # version 1: the latest has no button
        page.wait_for_selector("#audit-preview")
        preview = page.locator("#audit-preview").inner_text()
        assert "Ursula Le Guin" in preview
        assert "Ursula K. Le Guin" in preview
        shoot(page, "admin-restore-preview.png")
        page.click("input[value='Yes, restore this version']")
        page.wait_for_url(f"{admin}/tests/author/{author.pk}/change/")
        assert "Restored “Ursula K. Le Guin” to version 1." in page.locator(".messagelist").inner_text()
        assert page.input_value("#id_name") == "Ursula K. Le Guin"

        # Delete the author: its books and reviews go with it.
        page.goto(f"{admin}/tests/author/{author.pk}/delete/")
        page.click("input[type=submit]")
        page.wait_for_url(f"{admin}/tests/author/")
        assert "Ursula K. Le Guin" not in page.locator("#changelist-form").inner_text()

        # Undo it from the deleted-objects view: a preview of what comes back, then the confirmation.
        page.click("text=Deleted authors")
        page.wait_for_selector("#audit-deleted")
        row = page.locator("tr.audit-deleted-row", has_text="Ursula K. Le Guin")
        assert re.search(r"2 books, 3 reviews", row.inner_text())
        shoot(page, "admin-deleted.png")
        row.locator("a", has_text="Undo delete").click()
        page.wait_for_selector("#audit-recreated")
        coming_back = page.locator("#audit-recreated").inner_text()
        assert "1 author" in coming_back
        assert "2 books" in coming_back
        assert "3 reviews" in coming_back
        assert "Can add review" in page.locator("#audit-permissions").inner_text()
        shoot(page, "admin-undo-preview.png")
        page.click("input[value='Yes, undo the deletion']")
        page.wait_for_url(f"{admin}/tests/author/")
        message = page.locator(".messagelist").inner_text()
        assert "Restored author “Ursula K. Le Guin” together with 2 books, 3 reviews." in message
        assert "Ursula K. Le Guin" in page.locator("#result_list").inner_text()
        page.goto(f"{admin}/tests/book/")
        books = page.locator("#result_list").inner_text()
        assert "The Dispossessed" in books
        assert "The Lathe of Heaven" in books
        page.goto(f"{admin}/tests/review/")
        assert page.locator("#result_list tbody tr").count() == 3

    # Checked after the browser work: the rows are back, recorded as restores by the admin user.
    assert (Author.objects.count(), Book.objects.count(), Review.objects.count()) == (1, 2, 3)
    assert {e.actor_repr for e in Event.objects.filter(action__in=[Action.DELETE, Action.RESTORE])} == {"admin"}
