"""Models the tests record: every field type, relations, inheritance, odd keys."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from model_utils.models import TimeStampedModel


class Everything(models.Model):
    """One field of each concrete type Django ships (ImageField needs Pillow: FileField stands in)."""

    char = models.CharField(max_length=100, blank=True, default="")
    text = models.TextField(blank=True, default="")
    slug = models.SlugField(blank=True, default="")
    email = models.EmailField(blank=True, default="")
    url = models.URLField(blank=True, default="")
    small = models.SmallIntegerField(default=0)
    integer = models.IntegerField(default=0)
    big = models.BigIntegerField(default=0)
    positive = models.PositiveIntegerField(default=0)
    positive_small = models.PositiveSmallIntegerField(default=0)
    positive_big = models.PositiveBigIntegerField(default=0)
    floating = models.FloatField(default=0.0)
    decimal = models.DecimalField(max_digits=12, decimal_places=4, default=0)
    flag = models.BooleanField(default=False)
    maybe = models.BooleanField(null=True)
    day = models.DateField(null=True)
    moment = models.DateTimeField(null=True)
    clock = models.TimeField(null=True)
    span = models.DurationField(null=True)
    ident = models.UUIDField(null=True)
    blob = models.BinaryField(null=True)
    data = models.JSONField(null=True)
    ip = models.GenericIPAddressField(null=True)
    document = models.FileField(null=True, blank=True)
    note = models.CharField(max_length=50, null=True)
    author = models.ForeignKey("Author", null=True, on_delete=models.SET_NULL, related_name="+")


class Typed(models.Model):
    """Everything but the IP address: each field the database writes into events itself (``statement_events``)."""

    char = models.CharField(max_length=100, blank=True, default="")
    text = models.TextField(blank=True, default="")
    slug = models.SlugField(blank=True, default="")
    email = models.EmailField(blank=True, default="")
    url = models.URLField(blank=True, default="")
    small = models.SmallIntegerField(default=0)
    integer = models.IntegerField(default=0)
    big = models.BigIntegerField(default=0)
    positive = models.PositiveIntegerField(default=0)
    positive_small = models.PositiveSmallIntegerField(default=0)
    positive_big = models.PositiveBigIntegerField(default=0)
    floating = models.FloatField(default=0.0)
    decimal = models.DecimalField(max_digits=12, decimal_places=4, default=0)
    flag = models.BooleanField(default=False)
    maybe = models.BooleanField(null=True)
    day = models.DateField(null=True)
    moment = models.DateTimeField(null=True)
    clock = models.TimeField(null=True)
    span = models.DurationField(null=True)
    ident = models.UUIDField(null=True)
    blob = models.BinaryField(null=True)
    data = models.JSONField(null=True)
    document = models.FileField(null=True, blank=True)
    note = models.CharField(max_length=50, null=True)
    # DO_NOTHING: a delete of an author costs no statement more for this model's sake.
    author = models.ForeignKey("Author", null=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")


class Author(models.Model):
    name = models.CharField(max_length=100)
    email = models.EmailField(unique=True, null=True)
    last_seen = models.DateTimeField(null=True)

    def __str__(self) -> str:
        return self.name


class Tag(models.Model):
    name = models.CharField(max_length=50)


class Book(models.Model):
    author = models.ForeignKey(Author, on_delete=models.CASCADE, related_name="books")
    title = models.CharField(max_length=100)
    pages = models.IntegerField(default=0)
    editor = models.ForeignKey(Author, null=True, blank=True, on_delete=models.SET_NULL, related_name="edited")
    tags = models.ManyToManyField(Tag, blank=True, related_name="books")
    readers = models.ManyToManyField("Reader", through="Loan", blank=True, related_name="books")


class Reader(models.Model):
    name = models.CharField(max_length=50)


class Loan(models.Model):
    """An explicit many-to-many ``through`` model."""

    book = models.ForeignKey(Book, on_delete=models.CASCADE)
    reader = models.ForeignKey(Reader, on_delete=models.CASCADE)


class Review(models.Model):
    book = models.ForeignKey(Book, on_delete=models.CASCADE, related_name="reviews")
    stars = models.IntegerField(default=3)


class BookProxy(Book):
    class Meta:
        proxy = True


class Place(models.Model):
    name = models.CharField(max_length=100)


class Restaurant(Place):
    serves_pizza = models.BooleanField(default=False)


class Ticket(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    title = models.CharField(max_length=100)


class Code(models.Model):
    code = models.CharField(max_length=20, primary_key=True)
    label = models.CharField(max_length=100)


class Stamped(TimeStampedModel):
    """auto_now fields (django-model-utils) and a custom save() with a side effect."""

    name = models.CharField(max_length=100)
    saves = models.IntegerField(default=0)

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.saves += 1
        super().save(*args, **kwargs)


class Unregistered(models.Model):
    name = models.CharField(max_length=100)


class Pin(models.Model):
    """Protects a book from deletion (PROTECT), to make deletes fail."""

    book = models.ForeignKey(Book, on_delete=models.PROTECT)


class Line(models.Model):
    """A composite primary key (Django 5.2); registered by the tests that need it."""

    pk = models.CompositePrimaryKey("order", "number")
    order = models.IntegerField()
    number = models.IntegerField()
    qty = models.IntegerField(default=1)


class ExpressionCharField(models.CharField):  # type: ignore[type-arg]
    """A field whose database value is an SQL expression (as some custom fields make it)."""

    def get_db_prep_save(self, value: Any, connection: Any) -> Any:
        value = super().get_db_prep_save(value, connection)
        return None if value is None else models.Value(value, output_field=models.CharField())


class Prepared(models.Model):
    """Saves whose UPDATE Django must compile itself; registered by the tests that need it."""

    name = ExpressionCharField(max_length=50)


class SelectOnSave(models.Model):
    """``select_on_save``: Django looks for the row before updating it; registered by the tests that need it."""

    name = models.CharField(max_length=50)

    class Meta:
        select_on_save = True


class OwnUpdate(models.Model):
    """Its own ``_do_update``, as optimistic-locking libraries add; registered by the tests that need it."""

    name = models.CharField(max_length=50)

    def _do_update(self, *args: Any, **kwargs: Any) -> Any:
        if self.name == "refused":
            raise ValueError("refused by the model's own _do_update")
        return super()._do_update(*args, **kwargs)  # type: ignore[misc]


class Venue(models.Model):
    """A multi-table grandparent: only its grandchild ``Cinema`` is registered, by the tests that need it."""

    name = models.CharField(max_length=100)


class Theatre(Venue):
    seats = models.IntegerField(default=0)


class Cinema(Theatre):
    screens = models.IntegerField(default=1)


class Hall(Venue):
    """Another child of ``Venue``: its saves write the Venue table a ``Cinema`` row may share."""

    capacity = models.IntegerField(default=0)


class LongKey(models.Model):
    """A text primary key of any length; registered by the tests that need it.

    MySQL and MariaDB cannot index a TEXT column: there the key is as long as their index allows
    (3072 bytes, 768 characters of utf8mb4), and as the event table's ``object_pk`` holds (760)."""

    key = (
        models.CharField(primary_key=True, max_length=760)
        if settings.DATABASES["default"]["ENGINE"].endswith("mysql")
        else models.TextField(primary_key=True)
    )
    name = models.CharField(max_length=50)


class ShelfQuerySet(models.QuerySet["Shelf"]):
    """A QuerySet class of the project's own, with its own update() and delete()."""

    def update(self, **kwargs: Any) -> int:
        return super().update(**kwargs)

    def delete(self) -> tuple[int, dict[str, int]]:
        return super().delete()


class ShelfManager(models.Manager["Shelf"]):
    """Builds its QuerySet itself, as most managers are written."""

    def get_queryset(self) -> ShelfQuerySet:
        return ShelfQuerySet(self.model, using=self._db)


class CountingManager(models.Manager["Shelf"]):
    def get_queryset(self) -> models.QuerySet[Shelf]:
        return super().get_queryset().annotate(writer_books=models.Count("writer__books"))


class Shelf(models.Model):
    """A manager building its own QuerySet; ordering over a nullable foreign key and an
    annotating base manager (PostgreSQL refuses both under FOR UPDATE); registered by
    the tests that need it."""

    name = models.CharField(max_length=50)
    writer = models.ForeignKey(Author, null=True, on_delete=models.SET_NULL, related_name="+")

    objects = ShelfManager()
    counted = CountingManager()

    class Meta:
        ordering = ["writer__name"]
        base_manager_name = "counted"


class Album(models.Model):
    """Links through a table whose foreign keys hold ``to_field`` values; registered by the tests that need it."""

    code = models.CharField(max_length=20, unique=True)
    fans = models.ManyToManyField("Fan", through="Fandom", blank=True, related_name="albums")


class Fan(models.Model):
    name = models.CharField(max_length=50, unique=True)


class Fandom(models.Model):
    album = models.ForeignKey(Album, to_field="code", on_delete=models.CASCADE)
    fan = models.ForeignKey(Fan, to_field="name", on_delete=models.CASCADE)


class DbDefaultKey(models.Model):
    """A primary key the database fills in (``db_default``); registered by the tests that need it."""

    id = models.IntegerField(primary_key=True, db_default=1)
    number = models.IntegerField(db_default=7)


class Team:
    """A value object a custom field holds in Python; the database stores its name."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Team) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)


class TeamField(models.CharField):  # type: ignore[type-arg]
    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return None if value is None else Team(value)

    def to_python(self, value: Any) -> Any:
        return value if value is None or isinstance(value, Team) else Team(value)

    def get_prep_value(self, value: Any) -> Any:
        return value.name if isinstance(value, Team) else value


class Key:
    """What a custom auto field hands Python instead of the integer (as Django's own tests do)."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Key) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)


class KeyField(models.BigAutoField):  # type: ignore[type-arg]
    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return None if value is None else Key(value)

    def get_prep_value(self, value: Any) -> Any:
        return super().get_prep_value(value.value if isinstance(value, Key) else value)


class Player(models.Model):
    """Values that are objects in Python; registered by the tests that need it."""

    id = KeyField(primary_key=True)
    team = TeamField(max_length=50)
    author = models.ForeignKey(Author, null=True, on_delete=models.SET_NULL, related_name="+")


class Stamp(models.Model):
    """A composite key with parts filled in by Python (a datetime, a UUID); registered by the tests that need it."""

    pk = models.CompositePrimaryKey("id", "at", "key")
    id = models.IntegerField()
    at = models.DateTimeField(auto_now_add=True)
    key = models.UUIDField(default=uuid.uuid4)
    note = models.CharField(max_length=20, default="")


class LyingQuerySet(models.QuerySet):  # type: ignore[type-arg]
    """Says an UPDATE matched no row, as some databases do (Django's own select_on_save tests)."""

    def _update(self, values: Any, returning_fields: Any = None) -> Any:  # Django 6 adds returning_fields
        super()._update(values, *([] if returning_fields is None else [returning_fields]))
        return 0 if returning_fields is None else []


class SelectOnSaveLying(models.Model):
    """``select_on_save`` over a base manager whose ``_update`` lies; registered by the tests that need it."""

    name = models.CharField(max_length=50)
    objects = models.Manager()
    lying = LyingQuerySet.as_manager()

    class Meta:
        select_on_save = True
        base_manager_name = "lying"


class ShownManager(models.Manager):  # type: ignore[type-arg]
    def get_queryset(self) -> models.QuerySet[Any]:
        return super().get_queryset().filter(hidden=False)


class Hideable(models.Model):
    """A base manager that leaves rows out: Django's save does not update them; registered by the tests that need it."""

    name = models.CharField(max_length=50)
    hidden = models.BooleanField(default=False)
    objects = models.Manager()
    shown = ShownManager()

    class Meta:
        base_manager_name = "shown"


# Relations over several columns, as in Django's own ``foreign_object`` tests: a
# ``ForeignObject`` has no column of its own, its ``from_fields`` are the columns.
# Registered by the tests that need them (tests/test_foreign_object.py).


class Club(models.Model):
    name = models.CharField(max_length=50)
    country = models.CharField(max_length=2)
    members = models.ManyToManyField("Member", through="ClubMembership", related_name="clubs")


class Member(models.Model):
    name = models.CharField(max_length=50)
    country = models.CharField(max_length=2)
    favourite_id = models.IntegerField(null=True)
    favourite = models.ForeignObject(
        Club,
        models.DO_NOTHING,
        from_fields=["favourite_id", "country"],
        to_fields=["id", "country"],
        null=True,
        related_name="fans",
    )


class HonoraryMember(Member):
    """A multi-table child whose parent has a ``ForeignObject`` among its local fields."""

    title = models.CharField(max_length=50)


class ClubMembership(models.Model):
    """A through model whose links are ``ForeignObject`` s over two columns each."""

    country = models.CharField(max_length=2)
    club_id = models.IntegerField(null=True)
    member_id = models.IntegerField()
    club = models.ForeignObject(
        Club, models.CASCADE, from_fields=["club_id", "country"], to_fields=["id", "country"], null=True
    )
    member = models.ForeignObject(
        Member, models.CASCADE, from_fields=["member_id", "country"], to_fields=["id", "country"]
    )


class Crew:
    """A value object that cannot be shown as text (Django's serializers tests' ``Team``)."""

    def __init__(self, title: str) -> None:
        self.title = title

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Crew) and other.title == self.title

    def __hash__(self) -> int:
        return hash(self.title)

    def __str__(self) -> str:
        raise NotImplementedError("Not so simple")


class CrewField(models.CharField):  # type: ignore[type-arg]
    """Prepares only for a write (``get_db_prep_save``), as Django's serializers tests' ``TeamField``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["max_length"] = 100
        super().__init__(*args, **kwargs)

    def get_db_prep_save(self, value: Any, connection: Any) -> Any:
        return str(value.title)

    def to_python(self, value: Any) -> Any:
        return value if isinstance(value, Crew) else Crew(value)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return Crew(value)


class Wrapped:
    """What Django's custom_pk tests' ``MyAutoField`` hands Python: its own ``int()`` of it fails."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return self.value == (other.value if isinstance(other, Wrapped) else other)

    def __hash__(self) -> int:
        return hash(self.value)


class WrappedAutoField(models.BigAutoField):  # type: ignore[type-arg]
    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return None if value is None else Wrapped(value)

    def get_prep_value(self, value: Any) -> Any:
        return None if value is None else int(value)


class Sailor(models.Model):
    """Values the field's own methods cannot turn back into what the database stores; registered by the tests."""

    id = WrappedAutoField(primary_key=True)
    crew = CrewField()


def fallback_author() -> int:
    """``on_delete=SET(fallback_author)``: Django's documented sentinel pattern."""
    return Author.objects.get_or_create(name="fallback")[0].pk


class Memo(models.Model):
    """A foreign key a delete sets with ``SET(callable)``; registered by the tests that need it."""

    writer = models.ForeignKey(Author, on_delete=models.SET(fallback_author), related_name="+")
    text = models.CharField(max_length=50, default="")


class Person(models.Model):
    """Symmetrical links to rows of its own model: Django writes both directions of each link.
    Registered by the tests that need it (tests/test_m2m_symmetrical.py)."""

    name = models.CharField(max_length=50)
    friends = models.ManyToManyField("self", blank=True)  # symmetrical, through an auto-created table
    allies = models.ManyToManyField("self", through="Alliance", symmetrical=True, blank=True)


class Alliance(models.Model):
    """The explicit through model of a symmetrical self-referential many-to-many."""

    person = models.ForeignKey(Person, on_delete=models.CASCADE, related_name="alliances")
    ally = models.ForeignKey(Person, on_delete=models.CASCADE, related_name="allied")
    since = models.IntegerField(default=0)


class Crate(models.Model):
    """What a ``Depot`` links to (a model of its own: deleting tags costs what tests/test_queries.py says)."""

    name = models.CharField(max_length=50)


class Depot(models.Model):
    """A multi-table parent declaring links; registered by the tests that need it."""

    name = models.CharField(max_length=50)
    crates = models.ManyToManyField(Crate, blank=True, related_name="depots")


class Warehouse(Depot):
    floors = models.IntegerField(default=1)
