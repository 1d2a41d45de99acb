"""Bad AUDIT_EVENTS settings fail ``manage.py check`` with stable ids and messages naming the culprit."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import Error, Warning
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test.utils import override_settings

from audit_events.checks import check_settings
from tests.helpers import BASE


def problems(setting: Any) -> list[tuple[str, str]]:
    with override_settings(AUDIT_EVENTS=setting):
        found = check_settings()
    assert all(isinstance(message, Error) for message in found)
    return [(str(message.id), message.msg) for message in found]


def only_problem(setting: Any) -> tuple[str, str]:
    found = problems(setting)
    assert len(found) == 1, found
    return found[0]


@pytest.mark.django_db  # Django 6.1's JSONField check opens a cursor
def test_the_test_settings_pass() -> None:
    assert problems(BASE) == []
    call_command("check", verbosity=0)


@pytest.mark.parametrize(
    ("setting", "missing"),
    [
        ({}, "no key at all"),
        ({"MODELS": []}, "no models"),
        ({"MODELS": ["tests.author"]}, "a lower-case label"),
        ({"MODELS": ("tests.Author",), "EXCLUDE_FIELDS": {"tests.Author": ("last_seen",)}}, "tuples"),
        ({"MODELS": ["tests.Book"], "EXCLUDE_FIELDS": {"tests.Book": ["tags"]}}, "a many-to-many field"),
        ({"MODELS": ["tests.Restaurant"], "EXCLUDE_FIELDS": {"tests.Restaurant": ["name"]}}, "a parent's field"),
        ({"MODELS": ["tests.Author"], "SNAPSHOT_EVERY": 1}, "the smallest snapshot interval"),
    ],
)
def test_valid_settings(setting: dict[str, Any], missing: str) -> None:
    assert problems(setting) == [], missing


def test_unknown_app_label_is_e001() -> None:
    check_id, message = only_problem({"MODELS": ["tests.Author", "nosuchapp.Thing"]})
    assert check_id == "audit_events.E001"
    assert "'nosuchapp.Thing'" in message
    assert "'nosuchapp'" in message


def test_unknown_model_is_e001() -> None:
    check_id, message = only_problem({"MODELS": ["tests.Nope"]})
    assert check_id == "audit_events.E001"
    assert "'tests.Nope'" in message
    assert "'Nope'" in message


def only_hint(setting: Any) -> str:
    with override_settings(AUDIT_EVENTS=setting):
        (found,) = check_settings()
    assert found.id == "audit_events.E001"
    return str(found.hint)


@pytest.mark.parametrize(
    ("label", "suggested"),
    [
        ("tests.Autor", "'tests.Author'"),  # a model name misspelled
        ("test.Author", "'tests.Author'"),  # the app label misspelled
        ("tests.restaurants", "'tests.Restaurant'"),  # a plural, in lower case
        ("auth.Users", "'auth.User'"),
    ],
)
def test_a_model_typo_suggests_the_closest_labels(label: str, suggested: str) -> None:
    assert only_hint({"MODELS": [label]}).startswith(f"Did you mean {suggested}")
    assert only_hint({"MODELS": ["tests.Author"], "EXCLUDE_FIELDS": {label: ["name"]}}).startswith(
        f"Did you mean {suggested}"
    )


def test_an_app_wildcard_typo_suggests_the_closest_apps() -> None:
    assert only_hint({"MODELS": ["test.*"]}).startswith("Did you mean 'tests.*'")


def test_a_label_like_nothing_gets_the_format_hint() -> None:
    assert "Did you mean" not in only_hint({"MODELS": ["nosuchapp.Thing"]})
    assert "app_label.ModelName" in only_hint({"MODELS": ["nosuchapp.Thing"]})


@pytest.mark.parametrize("label", ["tests", "tests.Author.name", "", 42])
def test_malformed_model_label_is_e001(label: Any) -> None:
    check_id, message = only_problem({"MODELS": [label]})
    assert check_id == "audit_events.E001"
    assert repr(label) in message


def test_unknown_model_in_exclude_fields_is_e001() -> None:
    check_id, message = only_problem({"MODELS": ["tests.Author"], "EXCLUDE_FIELDS": {"tests.Ghost": ["name"]}})
    assert check_id == "audit_events.E001"
    assert "EXCLUDE_FIELDS" in message
    assert "'tests.Ghost'" in message


def test_unknown_excluded_field_is_e002() -> None:
    check_id, message = only_problem({"MODELS": ["tests.Author"], "EXCLUDE_FIELDS": {"tests.Author": ["nickname"]}})
    assert check_id == "audit_events.E002"
    assert "'nickname'" in message
    assert "tests.Author" in message


def test_excluded_field_by_attname_is_e002() -> None:
    check_id, message = only_problem({"MODELS": ["tests.Book"], "EXCLUDE_FIELDS": {"tests.Book": ["author_id"]}})
    assert check_id == "audit_events.E002"
    assert "'author_id'" in message


@pytest.mark.parametrize(
    ("label", "pk"), [("tests.Author", "id"), ("tests.Code", "code"), ("tests.Restaurant", "place_ptr")]
)
def test_excluding_the_primary_key_is_e002(label: str, pk: str) -> None:
    check_id, message = only_problem({"MODELS": [label], "EXCLUDE_FIELDS": {label: [pk]}})
    assert check_id == "audit_events.E002"
    assert "primary key" in message
    assert repr(pk) in message


def test_excluding_fields_of_a_proxy_is_refused_not_silently_ignored() -> None:
    """Events of a proxy are recorded under its concrete model, so a proxy's exclusions would do nothing."""
    check_id, message = only_problem({"MODELS": ["tests.Book"], "EXCLUDE_FIELDS": {"tests.BookProxy": ["title"]}})
    assert check_id == "audit_events.E001"
    assert "'tests.BookProxy'" in message
    assert "tests.Book" in message


def test_the_event_model_registered_is_e003() -> None:
    check_id, message = only_problem({"MODELS": ["tests.Author", "audit_events.Event"]})
    assert check_id == "audit_events.E003"
    assert "'audit_events.Event'" in message


def test_unknown_keys_are_e004_one_each() -> None:
    found = problems({"MODELS": ["tests.Author"], "MODLES": [], "EXCLUDE": {}})
    assert [check_id for check_id, _ in found] == ["audit_events.E004", "audit_events.E004"]
    assert "'EXCLUDE'" in found[0][1]
    assert "'MODLES'" in found[1][1]


@pytest.mark.parametrize(
    ("setting", "culprit"),
    [
        (["tests.Author"], "AUDIT_EVENTS"),
        ({"MODELS": "tests.Author"}, "MODELS"),
        ({"MODELS": {"tests.Author": True}}, "MODELS"),
        ({"MODELS": ["tests.Author"], "EXCLUDE_FIELDS": ["tests.Author"]}, "EXCLUDE_FIELDS"),
        ({"MODELS": ["tests.Author"], "EXCLUDE_FIELDS": {"tests.Author": "last_seen"}}, "EXCLUDE_FIELDS"),
        ({"MODELS": ["tests.Author"], "SNAPSHOT_EVERY": 0}, "SNAPSHOT_EVERY"),
        ({"MODELS": ["tests.Author"], "SNAPSHOT_EVERY": "10"}, "SNAPSHOT_EVERY"),
        ({"MODELS": ["tests.Author"], "SNAPSHOT_EVERY": True}, "SNAPSHOT_EVERY"),
        ({"MODELS": ["tests.Author"], "PREPARE_STATEMENTS": "yes"}, "PREPARE_STATEMENTS"),
    ],
)
def test_malformed_values_are_e005(setting: Any, culprit: str) -> None:
    check_id, message = only_problem(setting)
    assert check_id == "audit_events.E005"
    assert culprit in message


def test_several_problems_are_all_reported() -> None:
    found = problems(
        {
            "MODELS": ["tests.Nope", "audit_events.Event"],
            "EXCLUDE_FIELDS": {"tests.Author": ["id", "nickname"]},
            "SNAPSHOT_EVERY": -1,
            "EXTRA": 1,
        }
    )
    assert sorted(check_id for check_id, _ in found) == [
        "audit_events.E001",
        "audit_events.E002",
        "audit_events.E002",
        "audit_events.E003",
        "audit_events.E004",
        "audit_events.E005",
    ]


@pytest.mark.django_db  # Django 6.1's JSONField check opens a cursor
def test_manage_py_check_fails_with_the_ids() -> None:
    with (
        override_settings(AUDIT_EVENTS={"MODELS": ["tests.Nope"], "EXCLUDE_FIELDS": {"tests.Author": ["nickname"]}}),
        pytest.raises(SystemCheckError) as failure,
    ):
        call_command("check")
    report = str(failure.value)
    assert "audit_events.E001" in report
    assert "'tests.Nope'" in report
    assert "audit_events.E002" in report
    assert "'nickname'" in report


def test_bad_settings_never_break_start_up_or_saves(db: None) -> None:
    """Malformed values are the checks' business: with them the registry just records less."""
    from audit_events.models import Event
    from tests.models import Author

    with override_settings(AUDIT_EVENTS={"MODELS": "tests.Author", "SNAPSHOT_EVERY": "x"}):
        Author.objects.create(name="unrecorded")
    with override_settings(AUDIT_EVENTS=["nonsense"]):
        Author.objects.create(name="unrecorded either")
    assert Author.objects.count() == 2
    assert not Event.objects.exists()


def test_a_field_excluded_on_the_child_only_while_its_parent_records_it_is_w001() -> None:
    setting = {"MODELS": ["tests.Place", "tests.Restaurant"], "EXCLUDE_FIELDS": {"tests.Restaurant": ["name"]}}
    with override_settings(AUDIT_EVENTS=setting):
        found = check_settings()
    assert [(m.id, type(m)) for m in found] == [("audit_events.W001", Warning)]
    assert "tests.Place" in found[0].msg
    assert "'name'" in found[0].msg
    for fine in (
        {**setting, "MODELS": ["tests.Restaurant"]},  # the parent records nothing
        {**setting, "EXCLUDE_FIELDS": {"tests.Place": ["name"]}},  # excluded where it is declared
        {**setting, "EXCLUDE_FIELDS": {"tests.Place": ["name"], "tests.Restaurant": ["name"]}},
    ):
        with override_settings(AUDIT_EVENTS=fine):
            assert check_settings() == []


@pytest.mark.parametrize("models", [["*"], ["tests.*"], ["tests.*", "auth.*", "tests.Author"], ["*", "auth.User"]])
def test_wildcards_are_valid(models: list[str]) -> None:
    assert problems({"MODELS": models}) == []


def test_a_wildcard_of_an_unknown_app_is_e001() -> None:
    check_id, message = only_problem({"MODELS": ["*", "nosuchapp.*"]})
    assert check_id == "audit_events.E001"
    assert "'nosuchapp.*'" in message
    assert "'nosuchapp'" in message


def test_a_wildcard_of_the_event_app_is_e003() -> None:
    check_id, message = only_problem({"MODELS": ["audit_events.*"]})
    assert check_id == "audit_events.E003"
    assert "'audit_events.*'" in message


def test_a_wildcard_in_exclude_fields_is_e001() -> None:
    check_id, message = only_problem({"MODELS": ["*"], "EXCLUDE_FIELDS": {"tests.*": ["name"]}})
    assert check_id == "audit_events.E001"
    assert "'tests.*'" in message


@pytest.mark.parametrize(
    ("options", "warned"),
    [
        ({}, "'utf8'"),
        ({"charset": "utf8mb3"}, "'utf8mb3'"),
        ({"charset": "latin1"}, "'latin1'"),
        ({"charset": "utf8mb4"}, None),
    ],
)
def test_a_mysql_connection_not_in_utf8mb4_is_warned_of(options: dict[str, str], warned: str | None) -> None:
    from audit_events.checks import charset_warnings

    found = charset_warnings(
        {
            "default": {"ENGINE": "django.db.backends.mysql", "OPTIONS": options},
            "other": {"ENGINE": "django.db.backends.postgresql", "OPTIONS": {}},
        }
    )
    if warned is None:
        assert found == []
    else:
        assert [(m.id, type(m)) for m in found] == [("audit_events.W002", Warning)]
        assert f"'default' connects with charset {warned}" in found[0].msg
        assert "utf8mb4" in str(found[0].hint)


def test_the_charset_check_reads_the_project_databases() -> None:
    from audit_events.checks import check_charset

    # The test settings connect MariaDB in utf8mb4; SQLite and PostgreSQL are not MySQL's.
    assert check_charset() == []
