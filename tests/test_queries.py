"""What capture costs, in statements, pinned.

Per audited write, beyond the plain Django statements:

=====================  =========================  ===============================================
write                  inside a transaction       in autocommit mode
=====================  =========================  ===============================================
create                 + 1 INSERT at COMMIT       + BEGIN, + 1 INSERT, + COMMIT
save (full/fields)     + 1 INSERT at COMMIT (PG)  + BEGIN, + 1 INSERT, + COMMIT (PostgreSQL)
                       + 1 SELECT (others)        + BEGIN, + 1 SELECT, + 1 INSERT, + COMMIT
save changing nothing  nothing (PG)               + BEGIN, + COMMIT (PostgreSQL)
                       + 1 SELECT (others)        + BEGIN, + 1 SELECT, + COMMIT
delete                 + 1 SELECT                 + BEGIN, + 1 SELECT, + 1 INSERT, + COMMIT
save through a parent  + 2 SELECT, + 1 INSERT     + BEGIN, + 2 SELECT, + 1 INSERT, + COMMIT
of a registered child  (per child model)          (``inheritance``)
=====================  =========================  ===============================================

A save through a parent reads the child's row after its UPDATE even when the
locking SELECT found none, on PostgreSQL: a child row made again in between
(another transaction's restore) is changed by the UPDATE by key. A child row
given to an existing parent row (``Restaurant(place_ptr=place).save()``) costs
one locking SELECT of the parent's row more, per registered parent: its old values.

On PostgreSQL the UPDATE of a save brings back the row it overwrites and the
row it leaves (``UPDATE ... FROM (SELECT ... FOR NO KEY UPDATE) AS old ... RETURNING
old.*, t.<columns>``): the old values cost no statement of their own.
Elsewhere a locking SELECT reads them first (SQLite: the UPDATE returns the
new row; MySQL and MariaDB: a SELECT reads it after, under the same lock).
A create's INSERT returns every recorded column. A save whose UPDATE Django
compiles itself (``F()``, ``select_on_save``, multi-table models) costs the
locking SELECT before it and one SELECT of the row after.

Inside a transaction, the events wait and COMMIT inserts them, up to 500 per
INSERT: one statement for all the writes of the transaction, shared. The tests
here run in a transaction that is never committed; ``at_commit()`` does what
COMMIT would, and a single write's count includes it.

Django's ``CaptureQueriesContext`` records ``BEGIN`` and ``COMMIT`` as entries of
their own (``debug_transaction``), so they are counted here like statements.
The SELECT is ``FOR NO KEY UPDATE`` on PostgreSQL where the write keeps the row's
key (the lock Django's own UPDATE takes), ``FOR UPDATE`` before a delete.
Unregistered models pay nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection, models
from django.db.models import F
from django.test.utils import CaptureQueriesContext, override_settings

from audit_events import backends, history, state_at
from audit_events.models import Event
from tests.helpers import BASE, at_commit, settings_with, settings_without, statements_apart, upsert_on
from tests.models import Author, Code, Everything, Place, Restaurant, Review, Ticket, Unregistered, Venue

OFF = {**BASE, "MODELS": []}
# The UPDATE of a save returns the old row: no SELECT of its own (PostgreSQL).
RETURNING = connection.vendor == "postgresql"
# A save's UPDATE returns nothing (MySQL, MariaDB): the row is read again after it, under the same lock.
READ_AFTER = int(not backends.of(connection).update_returns_rows(connection))


@pytest.fixture(autouse=True)
def content_types(db: None) -> None:
    """Content types are cached per process; the first lookup is not what is measured."""
    for model in [Author, Review, Ticket, Code, Place, Restaurant, Everything, Unregistered]:
        ContentType.objects.get_for_model(model)


def sql(captured: CaptureQueriesContext) -> list[str]:
    """The statements run (as they are: nothing is prepared while queries are logged)."""
    return [_quoted(q["sql"]) for q in captured.captured_queries]


def _quoted(statement: str) -> str:
    """MySQL's quoted names (backticks) as the others' (double quotes), for the assertions below."""
    return statement.replace("`", '"') if connection.vendor == "mysql" else statement


def count(work: Callable[[], object]) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        work()
    return sql(captured)


def is_event_insert(statement: str) -> bool:
    return statement.startswith('INSERT INTO "audit_events_event"')


def is_lock(statement: str, table: str) -> bool:
    locking = (" FOR UPDATE", " FOR NO KEY UPDATE") if connection.features.has_select_for_update else ("",)
    return statement.startswith("SELECT") and f'FROM "{table}"' in statement and statement.endswith(locking)


# --- inside a transaction (the test's own) ---------------------------------------


def new_author() -> Author:
    return Author.objects.create(name="a", email=None)


# Every column the event records, as a save's statement returns them.
AUTHOR_COLUMNS = '"tests_author"."id", "tests_author"."name", "tests_author"."email"'


def test_create_costs_one_insert(django_assert_num_queries: Any) -> None:
    with override_settings(AUDIT_EVENTS=settings_without("tests.Author")):
        assert len(count(new_author)) == 1
        assert count(new_author)[0].endswith('RETURNING "tests_author"."id"')  # plain Django: the key
    with django_assert_num_queries(2) as captured:
        author = new_author()
        at_commit()
    assert is_event_insert(sql(captured)[1])
    if connection.features.can_return_columns_from_insert:  # the state the event records: the INSERT's answer
        assert sql(captured)[0].endswith(f"RETURNING {AUTHOR_COLUMNS}")  # not last_seen: excluded
    assert type(author.pk) is int
    assert history(author).get().state == {"id": author.pk, "name": "a", "email": None}


def test_create_with_a_fresh_uuid_key_reads_nothing(django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(2) as captured:
        Ticket.objects.create(title="t")
        at_commit()
    assert [s.split()[0] for s in sql(captured)] == ["INSERT", "INSERT"]


def test_create_with_a_given_key(django_assert_num_queries: Any) -> None:
    code = Code(code="C", label="c")
    # Plain Django: UPDATE (no row), INSERT. Auditing: the UPDATE brings back no old row
    # (PostgreSQL) or a SELECT finds none first; the event at COMMIT.
    with django_assert_num_queries(3 if RETURNING else 4 + READ_AFTER) as captured:
        code.save()
        at_commit()
    assert sql(captured)[0].startswith("UPDATE") if RETURNING else is_lock(sql(captured)[0], "tests_code")
    # create() forces the INSERT: nothing to read on PostgreSQL; elsewhere the SELECT stays.
    with django_assert_num_queries(2 if RETURNING else 3):
        Code.objects.create(code="D", label="d")
        at_commit()
    assert [e.action for e in Event.objects.filter(content_type__model="code")] == ["create", "create"]


def test_multi_table_create(django_assert_num_queries: Any) -> None:
    with override_settings(AUDIT_EVENTS=settings_without("tests.Restaurant")):
        assert len(count(lambda: Restaurant.objects.create(name="r"))) == 2  # both tables
    with django_assert_num_queries(3):
        Restaurant.objects.create(name="r")
        at_commit()


def test_a_models_first_write_looks_its_content_type_up_at_the_insert_of_its_events() -> None:
    """Django's model_inheritance test_create_child_no_update: a create's statements are its INSERTs,
    even the first of a model whose content type is not cached; the events still carry it."""
    ContentType.objects.clear_cache()
    with CaptureQueriesContext(connection) as captured:
        restaurant = Restaurant.objects.create(name="r")
    assert [s.split()[0] for s in sql(captured)] == ["INSERT", "INSERT"]
    with CaptureQueriesContext(connection) as captured:
        at_commit()
    assert [s.split()[0] for s in sql(captured)] == ["SELECT", "SELECT", "INSERT"]  # Restaurant's, Place's
    events = Event.objects.filter(object_pk=str(restaurant.pk)).select_related("content_type")
    assert {e.content_type.model_class() for e in events} == {Restaurant, Place}


@pytest.mark.parametrize("update_fields", [None, ["name"]], ids=["full", "update_fields"])
def test_save_costs_one_select_and_one_insert(django_assert_num_queries: Any, update_fields: Any) -> None:
    author = new_author()
    with override_settings(AUDIT_EVENTS=settings_without("tests.Author")):
        author.name = "plain"
        assert len(count(lambda: author.save(update_fields=update_fields))) == 1
    at_commit()
    author.name = "audited"
    with django_assert_num_queries(2 if RETURNING else 3 + READ_AFTER) as captured:
        author.save(update_fields=update_fields)
        at_commit()
    statements = sql(captured)
    # The UPDATE returns the key and the columns it writes, no other (the rest are as the old row read).
    written = AUTHOR_COLUMNS if update_fields is None else '"tests_author"."id", "tests_author"."name"'
    if RETURNING:
        assert statements[0].startswith('UPDATE "tests_author"')
        assert " FOR NO KEY UPDATE) AS " in statements[0]
        # The old row and the new one, from the one statement that wrote it.
        assert statements[0].endswith('RETURNING "_audit_events_old".*, ' + written)
    else:
        assert is_lock(statements[0], "tests_author")
        assert statements[1].startswith("UPDATE")
        if connection.vendor == "sqlite":  # the new row from the UPDATE itself
            assert statements[1].endswith(f"RETURNING {written}")
    assert is_event_insert(statements[-1])
    assert history(author).last().changes == {"name": ["plain", "audited"]}  # the old value read, not remembered


def test_a_save_that_changes_nothing_costs_at_most_the_select(django_assert_num_queries: Any) -> None:
    author = new_author()
    at_commit()
    with django_assert_num_queries(1 if RETURNING else 2 + READ_AFTER) as captured:
        author.save()
        at_commit()
    assert sql(captured)[0].startswith("UPDATE") if RETURNING else is_lock(sql(captured)[0], "tests_author")
    assert not any(is_event_insert(s) for s in sql(captured))


def test_saving_an_f_expression_reads_the_result_back(django_assert_num_queries: Any) -> None:
    row = Everything.objects.create(integer=1)
    row.integer = F("integer") + 1
    at_commit()
    # Lock, UPDATE, read the computed value under the lock, event. (Django 6.0+ has its UPDATE
    # return F() results to the instance; the recorded value is still read by the app itself.)
    with django_assert_num_queries(4):
        row.save()
        at_commit()
    assert history(row).last().changes == {"integer": [1, 2]}


@pytest.mark.parametrize(
    ("label", "plain"),
    [("tests.Restaurant", ["UPDATE", "UPDATE"]), ("tests.SelectOnSave", ["SELECT", "UPDATE"])],
    ids=["multi-table", "select_on_save"],  # an UPDATE per table; select_on_save's look first
)
def test_a_save_django_compiles_itself_reads_the_row_before_and_after(
    django_assert_num_queries: Any, label: str, plain: list[str]
) -> None:
    from django.apps import apps

    model = apps.get_model(label)
    ContentType.objects.get_for_model(model)
    row = model.objects.create(name="r")
    with override_settings(AUDIT_EVENTS=settings_without(label)):
        row.name = "plain"
        assert [s.split()[0] for s in count(row.save)] == plain
    at_commit()
    with override_settings(AUDIT_EVENTS=settings_with(label)):
        row.name = "audited"
        # The old row, Django's own two statements, the row they left, the event.
        with django_assert_num_queries(5) as captured:
            row.save()
            at_commit()
        assert is_lock(sql(captured)[0], model._meta.db_table)
        assert is_lock(sql(captured)[3], model._meta.db_table)
        assert history(row).last().changes == {"name": ["plain", "audited"]}


def test_a_composite_key_save_starts_with_djangos_update(django_assert_num_queries: Any) -> None:
    """Django's composite_pk test_save_user reads the SQL of a save's first statement and counts
    each key column once in it. On SQLite it is Django's UPDATE (the key in its WHERE), which
    hands back the values it overwrites; the row it left is read after it. PostgreSQL locks and
    reads the row first, as ``SELECT t.*``: the key named once, in its WHERE."""
    from tests.models import Line

    with override_settings(AUDIT_EVENTS=settings_with("tests.Line")):
        ContentType.objects.get_for_model(Line)
        line = Line.objects.create(order=1, number=2, qty=3)
        at_commit()
        line.qty = 4
        sqlite = connection.vendor == "sqlite"
        with django_assert_num_queries(3 if sqlite else 4) as captured:
            line.save()
            at_commit()
        statements = sql(captured)
        if sqlite:
            assert statements[0].startswith('UPDATE "tests_line" SET "qty" = ')
        else:  # the row locked and read, Django's UPDATE, the row read again
            assert is_lock(statements[0], "tests_line")
            assert statements[1].startswith('UPDATE "tests_line" SET "qty" = ')
        assert (statements[0].count('"order"'), statements[0].count('"number"')) == (1, 1)
        assert is_lock(statements[-2], "tests_line")
        assert is_event_insert(statements[-1])
        assert history(Line, (1, 2)).last().changes == {"qty": [3, 4]}
        # No row with that key: the UPDATE changes nothing, hands nothing back, and Django INSERTs.
        Line(order=5, number=6, qty=7).save()
        at_commit()
        assert [(e.action, e.state) for e in history(Line, (5, 6))] == [("create", {"order": 5, "number": 6, "qty": 7})]


def test_delete_costs_at_most_one_select_and_its_share_of_an_insert(django_assert_num_queries: Any) -> None:
    from tests.models import Book

    book = Book.objects.create(author=new_author(), title="t")
    with override_settings(AUDIT_EVENTS=settings_without("tests.Review")):
        assert len(count(Review.objects.create(book=book).delete)) == 1
    review = Review.objects.create(book=book)
    pk = review.pk
    at_commit()
    with django_assert_num_queries(2 if RETURNING else 3) as captured:
        review.delete()
        at_commit()
    statements = sql(captured)
    if RETURNING:  # the DELETE returns the row it deletes (the state below came from it)
        assert statements[0].startswith('DELETE FROM "tests_review"')
    else:
        assert is_lock(statements[0], "tests_review")
        assert statements[1].startswith("DELETE")
    assert is_event_insert(statements[-1])
    assert history(Review, pk).last().state == {"id": pk, "book": book.pk, "stars": 3}


def test_the_events_of_a_transaction_share_one_insert_at_commit(django_assert_num_queries: Any) -> None:
    authors = [new_author() for _ in range(10)]
    at_commit()
    per_save = 1 if RETURNING else 2 + READ_AFTER  # the UPDATE (and the SELECT before it, but on PostgreSQL)
    with django_assert_num_queries(10 * per_save + 1) as captured:
        for author in authors:
            author.name = "renamed"
            author.save()
        at_commit()
    assert [is_event_insert(s) for s in sql(captured)] == [False] * 10 * per_save + [True]
    assert Event.objects.filter(action="update").count() == 10


# --- writes through a multi-table parent (``inheritance``) ---------------------------


def renamed_place(restaurant: bool) -> Place:
    """A Place row (a Restaurant's, or not) loaded as a Place and renamed, not yet saved."""
    row = Restaurant.objects.create(name="r") if restaurant else Place.objects.create(name="p")
    at_commit()
    place = Place.objects.get(pk=row.pk)
    place.name = "renamed"
    return place


@override_settings(AUDIT_EVENTS={**BASE, "MODELS": ["tests.Restaurant"]})
def test_a_save_through_the_parent_reads_the_child_row_before_and_after(django_assert_num_queries: Any) -> None:
    place = renamed_place(restaurant=True)
    # Plain Django: the UPDATE. The child's row (both tables), locked, before it and read
    # again after it; the child's event at COMMIT.
    with django_assert_num_queries(4) as captured:
        place.save()
        at_commit()
    before, update, after, insert = sql(captured)
    assert is_lock(before, "tests_restaurant")
    assert update.startswith('UPDATE "tests_place"')
    assert after == before
    assert is_event_insert(insert)
    # A Place that is no Restaurant: the SELECT finds no child row. Where writers interleave
    # (PostgreSQL) it is read again after the UPDATE: a Restaurant row made again with its key
    # (a restore, committed) between the SELECT and the UPDATE by key is changed by it.
    place = renamed_place(restaurant=False)
    with django_assert_num_queries(3 if connection.features.has_select_for_update else 2) as captured:
        place.save()
        at_commit()
    if connection.features.has_select_for_update:
        before, _, after = sql(captured)
        assert is_lock(before, "tests_restaurant")
        assert after == before
    # QuerySet.update() through the parent: the same around the UPDATE, after one locking SELECT
    # of the keys the filter matches; the UPDATE changes exactly those rows (pk IN the keys).
    restaurant = Restaurant.objects.create(name="r")
    at_commit()
    with django_assert_num_queries(5):
        Place.objects.filter(pk=restaurant.pk).update(name="again")
        at_commit()


def test_giving_an_existing_parent_row_a_child_row_reads_the_parent_row_first(django_assert_num_queries: Any) -> None:
    place, other = Place.objects.create(name="p"), Place.objects.create(name="o")
    at_commit()
    restaurant = Restaurant(place_ptr=place, name="r")
    with override_settings(AUDIT_EVENTS={**BASE, "MODELS": []}):
        plain = [s.split()[0] for s in count(lambda: Restaurant(place_ptr=other, name="r").save())]
    assert plain == ["UPDATE", "UPDATE", "INSERT"]  # Place's row, no Restaurant row, then it
    # The child row, found missing; the parent's row it is given, locked (its old values);
    # Django's three statements; the child row read back; the events (Place's update,
    # Restaurant's create) at COMMIT.
    with django_assert_num_queries(7) as captured:
        restaurant.save()
        at_commit()
    child, parent = sql(captured)[:2]
    assert is_lock(child, "tests_restaurant")
    assert is_lock(parent, "tests_place")
    recorded = Event.objects.filter(object_pk=str(place.pk)).order_by("id")[1:]
    assert [(e.content_type.model, e.action) for e in recorded] == [("restaurant", "create"), ("place", "update")]


def test_a_save_through_a_registered_parent_with_a_registered_child(django_assert_num_queries: Any) -> None:
    place = renamed_place(restaurant=True)
    # The child's SELECT before and after; the parent's own save as any (no SELECT on
    # PostgreSQL); both events in one INSERT.
    with django_assert_num_queries(4 if RETURNING else 5 + READ_AFTER) as captured:
        place.save()
        at_commit()
    assert is_event_insert(sql(captured)[-1])
    assert [e.action for e in Event.objects.filter(object_pk=str(place.pk))][-2:] == ["update", "update"]


# --- autocommit mode --------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_in_autocommit_mode_each_audited_write_is_one_transaction(django_assert_num_queries: Any) -> None:
    from tests.models import Book

    assert connection.get_autocommit()
    for model in [Author, Review]:
        ContentType.objects.get_for_model(model)
    with override_settings(AUDIT_EVENTS=OFF):
        assert count(new_author)[0].startswith("INSERT")  # plain Django: one statement, no transaction
        assert len(count(new_author)) == 1
    if RETURNING:
        return  # PostgreSQL: each of these writes is one statement (below)

    begin = "BEGIN IMMEDIATE" if connection.vendor == "sqlite" else "BEGIN"  # SQLite: it reads before it writes
    with django_assert_num_queries(4) as captured:
        author = new_author()
    assert sql(captured)[0] == begin
    assert sql(captured)[-1] == "COMMIT"

    author.name = "changed"
    select = 1 + READ_AFTER  # BEGIN, SELECT, UPDATE, INSERT, COMMIT; MySQL: the SELECT after the UPDATE too
    with django_assert_num_queries(4 + select) as captured:
        author.save()
    assert (sql(captured)[0], sql(captured)[-1]) == (begin, "COMMIT")

    author.email = "e@example.com"
    with django_assert_num_queries(4 + select):
        author.save(update_fields=["email"])

    with django_assert_num_queries(3 + select):  # BEGIN, SELECT, UPDATE, COMMIT
        author.save()

    review = Review.objects.create(book=Book.objects.create(author=author, title="t"))
    with django_assert_num_queries(5) as captured:  # BEGIN, SELECT, DELETE, INSERT, COMMIT
        review.delete()
    assert (sql(captured)[0], sql(captured)[-1]) == (begin, "COMMIT")
    assert Event.objects.filter(content_type__model="review", action="delete").count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not RETURNING, reason="PostgreSQL's statements (SQLite: the test above)")
def test_in_autocommit_mode_each_audited_write_is_one_statement(django_assert_num_queries: Any) -> None:
    """A save, create or delete of a one-table model outside a transaction is one statement, as plain
    Django's, which writes its event too (``single_statement``): no BEGIN, no COMMIT."""
    from tests.models import Book

    assert connection.get_autocommit()
    for model in [Author, Review]:
        ContentType.objects.get_for_model(model)
    with django_assert_num_queries(1) as captured:
        author = new_author()
    assert sql(captured)[0].startswith("WITH w(")

    author.name = "changed"
    with django_assert_num_queries(1):
        author.save()
    author.email = "e@example.com"
    with django_assert_num_queries(1):
        author.save(update_fields=["email"])
    with django_assert_num_queries(1):  # a save changing nothing: the statement inserts no event
        author.save()

    review = Review.objects.create(book=Book.objects.create(author=author, title="t"))
    with django_assert_num_queries(1) as captured:
        assert review.delete() == (1, {"tests.Review": 1})
    assert sql(captured)[0].startswith("WITH w(")
    assert review.pk is None
    actions = [e.action for e in Event.objects.filter(content_type__model="author").order_by("id")]
    assert actions == ["create", "update", "update"]
    assert Event.objects.filter(content_type__model="review", action="delete").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_committed_transaction_inserts_its_events_in_one_statement_before_commit() -> None:
    from django.db import transaction

    ContentType.objects.get_for_model(Author)
    with CaptureQueriesContext(connection) as captured, transaction.atomic():
        for i in range(5):
            Author.objects.create(name=f"author {i}")
    statements = sql(captured)
    assert (statements[0], statements[-1]) == ("BEGIN", "COMMIT")
    assert [s.split()[0] for s in statements[1:-1]] == ["INSERT"] * 6
    assert is_event_insert(statements[-2])
    assert Event.objects.filter(action="create").count() == 5


# --- unregistered models pay nothing ---------------------------------------------


def normalized(statements: list[str]) -> list[str]:
    """Statements with the row-specific numbers taken out, to compare two runs."""
    uuids = r"\b[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\b"  # quoted, or in an array
    return [re.sub(r"\b\d+\b", "N", re.sub(uuids, "UUID", re.sub(r'"s\d+_x\d+"', "SP", s))) for s in statements]


def writes(model: type[models.Model], **fields: Any) -> list[str]:
    """Every ORM write path once, on ``model``; the statements they issued."""
    manager = model._default_manager
    statements: list[str] = []

    def run(work: Callable[[], object]) -> None:
        statements.extend(count(work))

    row = model(**fields)
    run(row.save)
    run(lambda: manager.create(**fields))
    run(lambda: manager.get_or_create(pk=row.pk, defaults=fields))
    run(lambda: manager.update_or_create(pk=row.pk, defaults=fields))
    run(row.save)
    run(lambda: row.save(update_fields=list(fields)))
    run(lambda: manager.filter(pk=row.pk).update(**fields))
    run(lambda: manager.bulk_create([model(**fields), model(**fields)]))
    run(lambda: manager.bulk_update(list(manager.all()[:2]), list(fields)))
    run(row.delete)
    run(lambda: manager.all().delete())
    return statements


@pytest.mark.parametrize(
    ("model", "fields", "label"),
    [
        (Unregistered, {"name": "x"}, None),
        (Ticket, {"title": "x"}, "tests.Ticket"),
        (Review, {"stars": 4}, "tests.Review"),
        (Venue, {"name": "x"}, None),  # a multi-table parent whose children are not registered
    ],
    ids=["never-registered", "ticket-turned-off", "review-turned-off", "parent-of-unregistered"],
)
def test_an_unregistered_model_issues_exactly_what_plain_django_issues(
    model: type[models.Model], fields: dict[str, Any], label: str | None
) -> None:
    if model is Review:
        from tests.models import Book

        fields = {**fields, "book": Book.objects.create(author=new_author(), title="t")}
    at_commit()
    with override_settings(AUDIT_EVENTS=OFF):  # nothing registered: plain Django
        plain = writes(model, **fields)
    before = Event.objects.count()
    with override_settings(AUDIT_EVENTS=settings_without(label) if label else BASE):
        others_registered = writes(model, **fields)
    assert normalized(others_registered) == normalized(plain)
    assert Event.objects.count() == before
    assert len(plain) >= 10


def test_registering_again_after_turning_off_costs_the_same_as_before(django_assert_num_queries: Any) -> None:
    with override_settings(AUDIT_EVENTS=OFF):
        pass
    author = new_author()
    at_commit()
    author.name = "again"
    with django_assert_num_queries(2 if RETURNING else 3 + READ_AFTER):
        author.save()
        at_commit()


# --- bulk_create and bulk_update: what each batch costs -------------------------


def test_bulk_create_with_ignored_conflicts_costs_only_the_event_insert() -> None:
    Code.objects.create(code="A", label="first")
    at_commit()
    statements = count(
        lambda: (
            Code.objects.bulk_create([Code(code="A", label="x"), Code(code="B", label="y")], ignore_conflicts=True),
            at_commit(),
        )
    )
    # The INSERT returns the rows it wrote (only "B"): no SELECT, before or after. On PostgreSQL it is
    # one statement with the events' INSERT (after one that turns JIT compilation off for it).
    if connection.vendor == "postgresql":
        assert len(statements) == 1 + statements_apart()  # JIT off, then the INSERT and its events' in one statement
        assert "set_config('jit', 'off', true)" in statements[0]
        assert "ON CONFLICT DO NOTHING RETURNING" in statements[-1]
        assert is_event_insert(statements[-1].split("ins AS (")[1])
    else:
        assert [s.split()[0] for s in statements] == ["INSERT", "INSERT"]
        assert "RETURNING" in statements[0]
        assert is_event_insert(statements[1])


def test_bulk_create_with_updated_conflicts_costs_one_locking_select_per_batch() -> None:
    Code.objects.create(code="A", label="first")
    at_commit()
    statements = count(
        lambda: (
            Code.objects.bulk_create(
                [Code(code="A", label="x"), Code(code="B", label="y")],
                update_conflicts=True,
                **upsert_on("code"),
                update_fields=["label"],
            ),
            at_commit(),
        )
    )
    # The rows it may update, locked; the INSERT, returning every row it wrote; for the rows the lock
    # did not see ("B"), whether another transaction recorded them meanwhile; the events.
    assert len(statements) == 4
    assert is_lock(statements[0], "tests_code")
    assert statements[1].startswith("INSERT")
    assert "RETURNING" in statements[1]
    assert statements[2].startswith("SELECT")
    assert '"audit_events_event"' in statements[2]
    assert is_event_insert(statements[3])


def test_bulk_update_costs_a_locking_select_before_and_after_per_900_rows() -> None:
    rows = [Code.objects.create(code=f"c{i}", label="old") for i in range(3)]
    at_commit()
    for row in rows:
        row.label = "new"
    statements = count(lambda: (Code.objects.bulk_update(rows, ["label"]), at_commit()))
    assert len(statements) == 4
    assert is_lock(statements[0], "tests_code")
    assert is_lock(statements[2], "tests_code")
    assert statements[1].startswith("UPDATE")
    assert is_event_insert(statements[3])


def test_bulk_update_reads_again_only_the_columns_it_writes() -> None:
    rows = [Author.objects.create(name=f"a{i}", email=f"a{i}@example.com") for i in range(2)]
    at_commit()
    for row in rows:
        row.name += "!"
    statements = count(lambda: (Author.objects.bulk_update(rows, ["name"]), at_commit()))
    assert len(statements) == 4
    assert is_lock(statements[0], "tests_author")
    assert '"tests_author"."email"' in statements[0]  # the whole row
    # After Django's UPDATE, still locked: the key and the column it wrote; the rest is as read before.
    assert is_lock(statements[2], "tests_author")
    assert '"tests_author"."email"' not in statements[2]
    event = history(rows[0]).last()
    assert event.changes == {"name": ["a0", "a0!"]}
    assert state_at(Author, rows[0].pk, at=event.created_at).email == "a0@example.com"


@pytest.mark.skipif(not RETURNING, reason="PostgreSQL: update() is one statement")
def test_update_returns_the_old_rows_and_the_columns_it_writes_to_its_event_insert() -> None:
    author = Author.objects.create(name="a", email="a@example.com")
    at_commit()
    statements = count(lambda: (Author.objects.filter(pk=author.pk).update(name="b"), at_commit()))
    assert len(statements) == 1 + statements_apart()  # JIT off, then one statement updates and inserts the events
    assert statements[0].startswith("SELECT set_config('audit_events.jit'")
    assert 'RETURNING "_audit_events_old".*, "tests_author"."id", "tests_author"."name")' in statements[-1]
    assert 'INSERT INTO "audit_events_event"' in statements[-1]
    event = history(author).last()
    assert event.changes == {"name": ["a", "b"]}
    assert state_at(Author, author.pk, at=event.created_at).email == "a@example.com"


# --- many-to-many links -----------------------------------------------------------

# Statements per call, the event INSERT at COMMIT included. Django sends m2m_changed
# only when it has receivers; with them it no longer adds with one INSERT ... ON CONFLICT
# but reads the missing links first, as it does for any project with a receiver.
# Auditing adds: a locking SELECT of the owning rows, a SELECT of their links once they
# are locked (a statement of its own: it sees what a writer committed while this one
# waited for the lock), a SELECT of the links after, the event INSERT.
# ``set`` is a remove and an add: two events of one row, so two INSERTs at COMMIT.
# Through an explicit through model (``readers``), Django's own statements are the same
# but for the rows' deletion: it selects them first, as it does for any model with delete
# receivers (their deletion is recorded from its signals). A row created directly costs
# the same as add() without Django's SELECT of the missing links.
M2M_COSTS = {"add": 6, "remove": 5, "set": 12, "clear": 5, "reverse add": 6, "reverse clear": 6}
M2M_COSTS |= {"through add": 6, "through remove": 6, "through row created": 5}
# ``clear()`` from the related side first locks the related row, where rows are locked: no
# link to it can commit until it is done, so the owners then read are all it unlinks.
M2M_COSTS["reverse clear"] += connection.features.has_select_for_update
# A QuerySet.delete() of explicit through rows (``remove()``) locks them before Django's Collector
# reads them, where rows are locked: the owners they hold then are those they hold when deleted.
M2M_COSTS["through remove"] += connection.features.has_select_for_update


def test_many_to_many_calls(django_assert_num_queries: Any) -> None:
    from tests.models import Book, Loan, Reader, Tag

    book = Book.objects.create(author=new_author(), title="t")
    tags = [Tag.objects.create(name=n) for n in "xyz"]
    x, y, z = tags
    calls: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
        ("add", lambda: book.tags.add(y), lambda: book.tags.remove(y)),
        ("remove", lambda: book.tags.remove(x), lambda: book.tags.add(x)),
        ("set", lambda: book.tags.set([y, z]), lambda: book.tags.set([x])),
        ("clear", book.tags.clear, lambda: book.tags.add(x)),
        ("reverse add", lambda: z.books.add(book), lambda: z.books.remove(book)),
        ("reverse clear", x.books.clear, lambda: x.books.add(book)),
        ("through remove", lambda: book.readers.remove(r), lambda: book.readers.add(r)),
        ("through add", lambda: book.readers.add(s), lambda: book.readers.remove(s)),
        ("through row created", lambda: Loan.objects.create(book=book, reader=s), lambda: book.readers.remove(s)),
    ]
    book.tags.add(x)
    r, s = Reader.objects.create(name="r"), Reader.objects.create(name="s")
    book.readers.add(r)
    at_commit()
    for name, call, undo in calls:
        before = Event.objects.count()
        with django_assert_num_queries(M2M_COSTS[name]):
            call()
            at_commit()
        assert Event.objects.count() == before + (2 if name == "set" else 1), name
        undo()
        at_commit()


@pytest.mark.parametrize("count", [2, 10])
def test_deleting_related_rows_costs_per_statement_not_per_row(count: int, django_assert_num_queries: Any) -> None:
    from tests.models import Book, Tag

    book = Book.objects.create(author=new_author(), title="t")
    tags = [Tag.objects.create(name=str(n)) for n in range(count)]
    book.tags.add(*tags)
    at_commit()
    # Tags not registered. Django: SELECT of the tags, DELETE of their links, DELETE of the
    # tags. Auditing the books' links adds a SELECT (locking) of the tags, a SELECT of the
    # books linked to them, the books' locking SELECT and one of their links, one SELECT of
    # the links after, the event INSERT.
    with override_settings(AUDIT_EVENTS=settings_without("tests.Tag")), django_assert_num_queries(3 + 6):
        Tag.objects.all().delete()
        at_commit()
    assert history(book).last().changes == {"tags": [sorted(tag.pk for tag in tags), []]}
