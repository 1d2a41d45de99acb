"""Recorded values shown as Django's admin shows them, the display hook, and a page's bounded queries."""

from __future__ import annotations

import datetime
import decimal
from typing import Any

import pytest
from django.db import connection, models
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape, strip_tags

from audit_events.admin import values as display
from audit_events.admin.values import Values
from audit_events.models import Event
from tests.models import Author, Book, Everything

pytestmark = pytest.mark.django_db


def shown(event: Event, name: str) -> str:
    values = Values()
    return str(values.show(Everything, name, event.state[name]))  # type: ignore[index]


def test_values_as_the_admin_shows_them() -> None:
    moment = datetime.datetime(2026, 3, 4, 5, 6, 7, tzinfo=datetime.UTC)
    Everything.objects.create(
        flag=True, maybe=None, decimal=decimal.Decimal("12.5000"), moment=moment, data={"b": [1, 2], "a": "é"}
    )
    event = Event.objects.get(content_type__model="everything")
    assert 'alt="True"' in shown(event, "flag")  # Django's boolean icon
    assert 'alt="None"' in shown(event, "maybe")
    assert shown(event, "decimal") == "12.5000"  # as entered, not rounded or localized away
    with timezone.override("Europe/Paris"):
        assert shown(event, "moment") == "March 4, 2026 06:06:07 CET"  # the active zone, with seconds
    pretty = '{\n  "a": "é",\n  "b": [\n    1,\n    2\n  ]\n}'  # indented, sorted, not a Python repr
    assert shown(event, "data") == f'<pre class="audit-json">{escape(pretty)}</pre>'


def test_choices_show_their_label() -> None:
    field: Any = models.CharField(choices=[("gold", "Gold card")], max_length=10)
    assert display._plain(field, "gold") == "Gold card"


def test_a_foreign_key_shows_its_target_with_its_key_and_a_link(admin_client: Client) -> None:
    ursula = Author.objects.create(name="Ursula")
    book = Book.objects.create(author=ursula, title="t")
    page = admin_client.get(reverse("admin:tests_book_history", args=[book.pk])).content.decode()
    link = reverse("admin:tests_author_change", args=[ursula.pk])
    assert f'<a href="{link}">Ursula</a> <small>(#{ursula.pk})</small>' in page
    gone = Author.objects.create(name="Gone")
    book.author = gone
    book.save()
    gone_pk = gone.pk
    book.author = ursula
    book.save()
    gone.delete()
    page = admin_client.get(reverse("admin:tests_book_history", args=[book.pk])).content.decode()
    assert f"#{gone_pk}" in strip_tags(page)  # a target deleted since: its key, no link


def test_a_project_changes_how_a_field_is_shown(admin_client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.admin import AuthorAdmin

    def masked(self: Any, field: Any, value: Any) -> str | None:
        return "•••" if field.name == "email" else None

    monkeypatch.setattr(AuthorAdmin, "display_recorded_value", masked, raising=False)
    author = Author.objects.create(name="Ursula", email="u@example.com")
    page = admin_client.get(reverse("admin:tests_author_history", args=[author.pk])).content.decode()
    assert "•••" in page
    assert "u@example.com" not in page


def test_the_event_changelists_summary_shows_a_masked_field_as_the_admin_does(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.utils.html import format_html

    from tests.admin import AuthorAdmin

    def masked(self: Any, field: Any, value: Any) -> Any:
        return format_html("<b>{}</b>", "hidden@") if field.name == "email" else None

    monkeypatch.setattr(AuthorAdmin, "display_recorded_value", masked, raising=False)
    author = Author.objects.create(name="Ursula", email="u@example.com")
    author.email = "v@example.com"
    author.save()
    page = admin_client.get(reverse("admin:audit_events_event_changelist")).content.decode()
    assert "u@example.com" not in page
    assert "v@example.com" not in page
    assert "email: hidden@ → hidden@" in page  # its HTML as text, in the one-line summary
    assert "name=&#x27;Ursula&#x27;" in page  # the fields it leaves to the default keep their summary


def test_a_page_of_history_reads_names_in_a_bounded_number_of_queries(admin_client: Client) -> None:
    authors = [Author.objects.create(name=f"a{i}") for i in range(12)]
    book = Book.objects.create(author=authors[0], title="t", editor=authors[1])
    url = reverse("admin:tests_book_history", args=[book.pk])

    def queries() -> int:
        admin_client.get(url)  # writes the events still waiting for the transaction's next statement
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(url).status_code == 200
        return len(captured)

    short = queries()
    for author in authors[2:]:
        book.author, book.editor = author, author
        book.save()
    # One query for all the authors the page names, however many versions name them.
    assert queries() == short
    # session, user, the row (get_object), the key's later creates (an earlier row with its key?), the count,
    # the page of events, the authors named
    assert short == 7
