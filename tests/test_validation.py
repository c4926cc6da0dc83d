"""The pure validators: what they accept, what they refuse, and which field they name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from oncal_feed.errors import ValidationError
from oncal_feed.validation import (
    ScheduleInput,
    ShiftInput,
    UserInput,
    is_known_zone,
    parse_external_id,
    parse_instant,
    parse_page,
    parse_public_id,
    parse_schedule,
    parse_schedule_key,
    parse_shift,
    parse_shift_list,
    parse_user,
    parse_window,
)

SHIFT = {
    "external_id": "w1",
    "user_email": "Alice@Example.com",
    "starts_at": "2026-03-02T09:00:00+01:00",
    "ends_at": "2026-03-09T09:00:00+01:00",
}


def fields_of(caught: pytest.ExceptionInfo[ValidationError]) -> list[str]:
    """The fields a ValidationError names, in order."""
    return [error.field for error in caught.value.errors]


# ---------------------------------------------------------------- instants


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-02T09:00:00Z", datetime(2026, 3, 2, 9, tzinfo=UTC)),
        ("2026-03-02t09:00:00z", datetime(2026, 3, 2, 9, tzinfo=UTC)),
        ("2026-03-02T09:00:00+01:00", datetime(2026, 3, 2, 8, tzinfo=UTC)),
        ("2026-03-02T09:00:00-05:30", datetime(2026, 3, 2, 14, 30, tzinfo=UTC)),
        ("2026-03-02T09:00:00.5Z", datetime(2026, 3, 2, 9, 0, 0, 500_000, tzinfo=UTC)),
        ("2026-03-02T09:00:00.123456789Z", datetime(2026, 3, 2, 9, 0, 0, 123_456, tzinfo=UTC)),
        ("1900-01-01T00:00:00Z", datetime(1900, 1, 1, tzinfo=UTC)),
    ],
)
def test_parse_instant_accepts_rfc3339_with_offset(text: str, expected: datetime) -> None:
    """Offsets are applied; the result is aware UTC."""
    parsed = parse_instant(text, "at")
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "value",
    [
        "2026-03-02T09:00:00",
        "2026-03-02",
        "2026-03-02 09:00:00Z",
        "2026-03-02T09:00Z",
        "2026-03-02T09:00:00+0100",
        "2026-03-02T09:00:00Z\n",
        " 2026-03-02T09:00:00Z",
        "\u0662\u0660\u0662\u0666-03-02T09:00:00Z",
        "2026-02-29T09:00:00Z",
        "2026-03-02T25:00:00Z",
        "2026-03-02T09:00:60Z",
        "2026-03-02T09:00:00+24:00",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "1899-12-31T23:59:59Z",
        "9000-01-01T00:00:00Z",
        "",
        None,
        1772438400,
        ["2026-03-02T09:00:00Z"],
    ],
)
def test_parse_instant_refuses_everything_else(value: Any) -> None:
    """Naive, date-only, malformed, impossible and far-out values name the field."""
    with pytest.raises(ValidationError) as caught:
        parse_instant(value, "starts_at")
    assert fields_of(caught) == ["starts_at"]


def test_plus_decoded_as_space_gets_a_hint() -> None:
    """'+01:00' in an unescaped query string arrives as ' 01:00'."""
    with pytest.raises(ValidationError) as caught:
        parse_instant("2026-03-02T09:00:00 01:00", "from")
    assert "%2B" in caught.value.errors[0].problem


# ---------------------------------------------------------------- shifts


def test_parse_shift_normalises() -> None:
    """Email lower-cased, instants in UTC, defaults for role and notes."""
    assert parse_shift(SHIFT) == ShiftInput(
        "w1",
        "alice@example.com",
        datetime(2026, 3, 2, 8, tzinfo=UTC),
        datetime(2026, 3, 9, 8, tzinfo=UTC),
        "primary",
        "",
    )


def test_parse_shift_names_every_problem_at_once() -> None:
    """One error per bad field, in one exception."""
    bad = {"external_id": "has space", "user_email": "nope", "starts_at": "x", "role": "boss"}
    with pytest.raises(ValidationError) as caught:
        parse_shift({**bad, "colour": "red"})
    assert sorted(fields_of(caught)) == [
        "colour",
        "ends_at",
        "external_id",
        "role",
        "starts_at",
        "user_email",
    ]
    problems = {e.field: e.problem for e in caught.value.errors}
    assert (problems["colour"], problems["ends_at"]) == ("unknown field", "is required")


@pytest.mark.parametrize(
    ("end", "problem"),
    [
        ("2026-03-02T09:00:00+01:00", "must be after starts_at"),
        ("2026-03-01T09:00:00+01:00", "must be after starts_at"),
        ("2026-04-02T09:00:01+01:00", "a shift may last at most 31 days"),
    ],
)
def test_parse_shift_checks_the_span(end: str, problem: str) -> None:
    """End after start, at most 31 days later; the error is on ends_at."""
    with pytest.raises(ValidationError) as caught:
        parse_shift({**SHIFT, "ends_at": end})
    assert [(e.field, e.problem) for e in caught.value.errors] == [("ends_at", problem)]


def test_parse_shift_allows_exactly_31_days() -> None:
    """The limit itself is allowed."""
    shift = parse_shift({**SHIFT, "ends_at": "2026-04-02T09:00:00+01:00"})
    assert shift.ends_at - shift.starts_at == timedelta(days=31)


def test_parse_shift_with_external_id_from_the_url() -> None:
    """The body may leave the id out or repeat it, but not contradict it."""
    body = {k: v for k, v in SHIFT.items() if k != "external_id"}
    assert parse_shift(body, external_id="w9").external_id == "w9"
    assert parse_shift({**body, "external_id": "w9"}, external_id="w9").external_id == "w9"
    with pytest.raises(ValidationError) as caught:
        parse_shift({**body, "external_id": "w1"}, external_id="w9")
    assert fields_of(caught) == ["external_id"]


@pytest.mark.parametrize(
    ("notes", "ok"),
    [("a\nb\tc\r\n", True), ("a\x00b", False), ("a\x1bb", False), ("\ud800", False)],
    ids=["line-breaks", "nul", "escape", "lone-surrogate"],
)
def test_notes_characters(notes: str, ok: bool) -> None:
    """Notes keep line breaks and tabs, refuse other control characters and surrogates."""
    if ok:
        assert parse_shift({**SHIFT, "notes": notes}).notes == notes.strip()
    else:
        with pytest.raises(ValidationError) as caught:
            parse_shift({**SHIFT, "notes": notes})
        assert fields_of(caught) == ["notes"]


@pytest.mark.parametrize("data", [None, [], "shift", 3, True])
def test_parse_shift_needs_an_object(data: Any) -> None:
    """A non-object names `body`, or the item's index with a prefix."""
    with pytest.raises(ValidationError) as caught:
        parse_shift(data)
    assert fields_of(caught) == ["body"]
    with pytest.raises(ValidationError) as caught:
        parse_shift(data, prefix="[4].")
    assert fields_of(caught) == ["[4]"]


def test_parse_shift_list_indexes_item_errors() -> None:
    """Every bad item is named by index; good items are not mentioned."""
    items = [SHIFT, {**SHIFT, "starts_at": "2026-03-02"}, SHIFT, "x", {**SHIFT, "role": 1}]
    with pytest.raises(ValidationError) as caught:
        parse_shift_list(items)
    assert fields_of(caught) == ["[1].starts_at", "[3]", "[4].role"]
    assert len(parse_shift_list([SHIFT, SHIFT])) == 2
    assert parse_shift_list([]) == []


@pytest.mark.parametrize("data", [None, {}, SHIFT, "[]"])
def test_parse_shift_list_needs_an_array(data: Any) -> None:
    """Anything but a list names `body`."""
    with pytest.raises(ValidationError) as caught:
        parse_shift_list(data)
    assert fields_of(caught) == ["body"]


# ---------------------------------------------------------------- users and schedules


def test_parse_user_full_and_partial() -> None:
    """Creating needs email and display name; a partial update needs nothing."""
    assert parse_user({"email": " A@B.CO ", "display_name": " Al "}) == UserInput(
        "a@b.co", "Al", None
    )
    assert parse_user({}, partial=True) == UserInput()
    with pytest.raises(ValidationError) as caught:
        parse_user({})
    assert sorted(fields_of(caught)) == ["display_name", "email"]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"time_zone": "Europe/Berln"}, "time_zone"),
        ({"time_zone": "localtime"}, "time_zone"),
        ({"time_zone": "Factory"}, "time_zone"),
        ({"email": "a@b"}, "email"),
        ({"email": "a b@c.de"}, "email"),
        ({"display_name": "Tab\there"}, "display_name"),
        ({"display_name": "x" * 201}, "display_name"),
        ({"id": "u_1"}, "id"),
    ],
)
def test_parse_user_refuses(data: dict[str, Any], field: str) -> None:
    """Each bad field is named."""
    with pytest.raises(ValidationError) as caught:
        parse_user(data, partial=True)
    assert fields_of(caught) == [field]


def test_known_zones() -> None:
    """IANA names are known; machine-specific or made-up ones are not."""
    assert is_known_zone("Europe/Berlin")
    assert is_known_zone("UTC")
    assert not is_known_zone("localtime")
    assert not is_known_zone("Europe/Nowhere")
    assert not is_known_zone("")


def test_parse_schedule() -> None:
    """Name and zone required; URL optional, null allowed, http(s) only."""
    assert parse_schedule({"name": "Payments", "time_zone": "UTC"}) == ScheduleInput(
        "Payments", "UTC"
    )
    assert parse_schedule({"name": "P", "time_zone": "UTC", "url": None}).url is None
    link = "https://pager.example.com/s/1?x=y"
    assert parse_schedule({"name": "P", "time_zone": "UTC", "url": link}).url == link
    for bad in ("ftp://x.org", "https://", "/relative", "https://a b.org", "javascript:x"):
        with pytest.raises(ValidationError) as caught:
            parse_schedule({"name": "P", "time_zone": "UTC", "url": bad})
        assert fields_of(caught) == ["url"], bad


# ---------------------------------------------------------------- path and query parameters


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("payments", True),
        ("a", True),
        ("team_1-eu", True),
        ("x" * 64, True),
        ("x" * 65, False),
        ("Payments", False),
        ("-payments", False),
        ("payments\n", False),
        ("", False),
        ("pay ments", False),
        ("p\u0430yments", False),  # a Cyrillic a
    ],
)
def test_parse_schedule_key(key: str, ok: bool) -> None:
    """Lowercase ASCII letters, digits, - and _, starting with a letter or digit."""
    if ok:
        assert parse_schedule_key(key) == key
    else:
        with pytest.raises(ValidationError) as caught:
            parse_schedule_key(key)
        assert fields_of(caught) == ["key"]


@pytest.mark.parametrize(
    ("value", "ok"),
    [("w1", True), ("a.b_c:d~e@f-g", True), ("x" * 255, True), ("x" * 256, False),
     ("a/b", False), ("w1\n", False), ("", False), ("é", False)],
)  # fmt: skip
def test_parse_external_id(value: str, ok: bool) -> None:
    """Safe URL characters only, 1-255 of them."""
    if ok:
        assert parse_external_id(value) == value
    else:
        with pytest.raises(ValidationError) as caught:
            parse_external_id(value)
        assert fields_of(caught) == ["external_id"]


def test_parse_public_id() -> None:
    """Ids look like u_ plus URL-safe base64; anything else is refused as `id`."""
    assert parse_public_id("u_3kTq0sZ1mNw8-_") == "u_3kTq0sZ1mNw8-_"
    for bad in ("", "u 1", "u\x00", "x" * 41, "u_1\n"):
        with pytest.raises(ValidationError) as caught:
            parse_public_id(bad)
        assert fields_of(caught) == ["id"]


@pytest.mark.parametrize(
    ("limit", "after", "expected"),
    [(None, None, (100, "")), ("1", "b@x.org", (1, "b@x.org")), ("500", "", (500, ""))],
)
def test_parse_page_accepts(limit: str | None, after: str | None, expected: tuple) -> None:
    """Defaults, and the bounds of limit."""
    assert parse_page(limit, after) == expected


@pytest.mark.parametrize(
    ("limit", "after", "field"),
    [("0", None, "limit"), ("501", None, "limit"), ("²", None, "limit"), ("٣", None, "limit"),
     ("9" * 5000, None, "limit"), (" 5", None, "limit"), (None, "a\x00", "after")],
)  # fmt: skip
def test_parse_page_refuses(limit: str | None, after: str | None, field: str) -> None:
    """Only ASCII digits in range; `after` without control characters."""
    with pytest.raises(ValidationError) as caught:
        parse_page(limit, after)
    assert fields_of(caught) == [field]


def test_parse_window() -> None:
    """[from, to): both required, to after from, at most 3 years."""
    start, end = parse_window("2026-03-01T00:00:00+01:00", "2026-04-01T00:00:00Z")
    assert (start, end) == (datetime(2026, 2, 28, 23, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
    cases = [
        ((None, None), ["from", "to"]),
        (("2026-03-01T00:00:00Z", None), ["to"]),
        (("2026-03-02T00:00:00Z", "2026-03-01T00:00:00Z"), ["to"]),
        (("2026-03-01T00:00:00Z", "2026-03-01T00:00:00Z"), ["to"]),
        (("2026-01-01T00:00:00Z", "2029-02-01T00:00:00Z"), ["to"]),
        (("2026-03-01", "tomorrow"), ["from", "to"]),
    ]
    for (low, high), fields in cases:
        with pytest.raises(ValidationError) as caught:
            parse_window(low, high)
        assert fields_of(caught) == fields, (low, high)
