"""Controls for the attacks on the admin: escaping and per-row fields on every page hold."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from audit_events.models import Action, Event
from tests.models import Author, Book, Tag

pytestmark = pytest.mark.django_db
X = "<script>alert(1)</script>"


def test_escaping(admin_client: Client) -> None:
    author = Author.objects.create(name=X, email="x@example.com")
    book = Book.objects.create(author=author, title=X)
    book.tags.add(Tag.objects.create(name=X))
    author.name = X + "2"
    author.save()
    first = Event.objects.filter(content_type__model="author").order_by("version").first()
    pages = [
        reverse("admin:tests_author_history", args=[author.pk]),
        reverse("admin:tests_book_history", args=[book.pk]),
        reverse("admin:tests_author_audit_restore", args=[author.pk, first.pk]),
        reverse("admin:audit_events_event_changelist"),
        reverse("admin:audit_events_event_change", args=[first.pk]),
    ]
    pk = author.pk
    author.delete()
    deletion = Event.objects.get(content_type__model="author", object_pk=str(pk), action=Action.DELETE)
    pages += [
        reverse("admin:tests_author_audit_deleted"),
        reverse("admin:tests_author_audit_undo", args=[deletion.pk]),
        reverse("admin:tests_author_history", args=[pk]),
        reverse("admin:audit_events_event_changelist") + "?deletion=deleted",
    ]
    for page in pages:
        response = admin_client.get(page)
        assert response.status_code == 200, page
        assert "<script>alert" not in response.content.decode(), page


def test_quiet_author_email_hidden_everywhere(admin_client: Client) -> None:
    author = Author.objects.create(name="Quiet one", email="quiet@example.com")
    author.name = "Quiet two"
    author.save()
    events = Event.objects.filter(content_type__model="author", object_pk=str(author.pk)).order_by("version")
    pages = [
        reverse("restricted:tests_author_history", args=[author.pk]),
        reverse("restricted:tests_author_audit_restore", args=[author.pk, events[0].pk]),
        reverse("restricted:audit_events_event_changelist"),
        reverse("restricted:audit_events_event_change", args=[events[0].pk]),
        reverse("restricted:audit_events_event_changelist") + "?_facets=1",
    ]
    for page in pages:
        body = admin_client.get(page).content.decode()
        assert "quiet@example.com" not in body, page


def test_facet_counts_exclude_hidden_rows() -> None:
    import re

    from tests.test_admin import staff

    Tag.objects.create(name="Hidden tag")
    Tag.objects.create(name="Hidden tag 2")
    Tag.objects.create(name="Open tag")
    client = staff("tests.view_tag", "audit_events.view_event")
    body = client.get(reverse("restricted:audit_events_event_changelist") + "?_facets=1").content.decode()
    counts = re.findall(r"\((\d+)\)", body)
    assert "3" not in counts, counts
    assert "2" not in counts, counts
