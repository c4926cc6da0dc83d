"""Shifts through the API: single PUT and DELETE, window import, a user's shifts, push hook."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from freezegun import freeze_time

from tests.api import SHIFT, assert_error, assert_valid, table_state, user_ids

URL = "/api/v1/schedules/payments/shifts"
T1 = datetime(2026, 2, 1, 12, tzinfo=UTC)
T2 = T1 + timedelta(hours=5)
WINDOW = "from=2026-03-02T08:00:00Z&to=2026-03-30T08:00:00Z"


def week(n: int, email: str = "alice@example.com", **extra: Any) -> dict[str, Any]:
    """The n-th weekly shift from Monday 2 March 2026, 09:00 in Berlin, as an import item."""
    start = datetime(2026, 3, 2, 8, tzinfo=UTC) + timedelta(weeks=n)
    return {
        "external_id": f"w{n}",
        "user_email": email,
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(weeks=1)).isoformat(),
        **extra,
    }


def live_ids(api: FlaskClient, public_id: str) -> list[str]:
    """External ids of a user's live shifts in March 2026."""
    response = api.get(
        f"/api/v1/users/{public_id}/shifts?from=2026-03-01T00:00:00Z&to=2026-04-01T00:00:00Z"
    )
    assert response.status_code == 200
    return [s["external_id"] for s in response.get_json()["shifts"]]


# ---------------------------------------------------------------- single PUT


def test_put_creates_a_shift_in_utc(api: FlaskClient, schedule: dict[str, Any], people) -> None:
    """201 with the documented shape; instants come back in UTC with a Z."""
    response = api.put(f"{URL}/w1", json={**SHIFT, "notes": "  pager duty  "})
    assert response.status_code == 201
    body = response.get_json()
    assert_valid(body, "Shift")
    assert body["starts_at"] == "2026-03-02T08:00:00Z"
    assert body["ends_at"] == "2026-03-09T08:00:00Z"
    assert (body["external_id"], body["schedule"], body["role"]) == ("w1", "payments", "primary")
    assert body["user_id"] == people["alice@example.com"]["id"]
    assert (body["revision"], body["deleted"], body["notes"]) == (1, False, "pager duty")
    assert api.get(f"{URL}/w1").get_json() == body


def test_same_put_twice_changes_nothing(
    api: FlaskClient, app: Flask, schedule: dict[str, Any], notified: list[set[int]]
) -> None:
    """Same revision, same updated_at, no notification, even hours later."""
    with freeze_time(T1) as clock:
        first = api.put(f"{URL}/w1", json=SHIFT)
        clock.move_to(T2)
        before = table_state(app)
        second = api.put(f"{URL}/w1", json=SHIFT)
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.get_json() == first.get_json()
    assert first.get_json()["updated_at"] == "2026-02-01T12:00:00Z"
    assert table_state(app) == before
    assert notified == [{user_ids(app)["alice@example.com"]}]


def test_same_instant_written_differently_is_unchanged(
    api: FlaskClient, app: Flask, schedule: dict[str, Any]
) -> None:
    """Another offset for the same instants, an upper-case email: still the same shift."""
    api.put(f"{URL}/w1", json=SHIFT)
    before = table_state(app)
    same = {
        "user_email": "ALICE@Example.com",
        "starts_at": "2026-03-02T08:00:00Z",
        "ends_at": "2026-03-09t13:30:00+05:30",
        "role": "primary",
        "external_id": "w1",
    }
    response = api.put(f"{URL}/w1", json=same)
    assert response.status_code == 200
    assert table_state(app) == before


def test_changed_put_bumps_revision_and_updated_at(
    api: FlaskClient, schedule: dict[str, Any]
) -> None:
    """A real change is a new revision stamped with the time of the change."""
    with freeze_time(T1) as clock:
        api.put(f"{URL}/w1", json=SHIFT)
        clock.move_to(T2)
        response = api.put(f"{URL}/w1", json={**SHIFT, "notes": "swap with Bob"})
    body = response.get_json()
    assert response.status_code == 200
    assert (body["revision"], body["updated_at"], body["created_at"]) == (
        2,
        "2026-02-01T17:00:00Z",
        "2026-02-01T12:00:00Z",
    )


def test_reassignment_notifies_old_and_new_owner(
    api: FlaskClient, app: Flask, schedule: dict[str, Any], notified: list[set[int]]
) -> None:
    """Both calendars change when a shift moves from Alice to Bob."""
    api.put(f"{URL}/w1", json=SHIFT)
    response = api.put(f"{URL}/w1", json={**SHIFT, "user_email": "bob@example.com"})
    ids = user_ids(app)
    assert response.get_json()["user_email"] == "bob@example.com"
    alice, bob = ids["alice@example.com"], ids["bob@example.com"]
    assert notified == [{alice}, {alice, bob}]


def test_put_on_unknown_schedule_is_404_and_writes_nothing(
    api: FlaskClient, app: Flask, people: dict[str, Any]
) -> None:
    """The schedule must exist; PUT on a shift does not create one."""
    before = table_state(app)
    response = api.put("/api/v1/schedules/nope/shifts/w1", json=SHIFT)
    assert assert_error(response, 404, "key")["error"] == "not_found"
    assert table_state(app) == before


def test_put_for_unknown_user_is_422_and_writes_nothing(
    api: FlaskClient, app: Flask, schedule: dict[str, Any], notified: list[set[int]]
) -> None:
    """The person on call must be a user already."""
    before = table_state(app)
    response = api.put(f"{URL}/w1", json={**SHIFT, "user_email": "carol@example.com"})
    assert_error(response, 422, "user_email")
    assert table_state(app) == before
    assert notified == []


@pytest.mark.parametrize(
    "external_id",
    ["x" * 256, "has%20space", "w1%0A", "caf%C3%A9", "a%00b", "semi;colon"],
    ids=["too-long", "space", "trailing-newline", "non-ascii", "nul", "semicolon"],
)
def test_bad_external_id_in_path(
    api: FlaskClient, app: Flask, schedule: dict[str, Any], external_id: str
) -> None:
    """Malformed external ids are refused on every method, naming `external_id`."""
    before = table_state(app)
    assert_error(api.put(f"{URL}/{external_id}", json=SHIFT), 422, "external_id")
    assert_error(api.get(f"{URL}/{external_id}"), 422, "external_id")
    assert_error(api.delete(f"{URL}/{external_id}"), 422, "external_id")
    assert table_state(app) == before


def test_external_id_in_body_must_match_the_path(
    api: FlaskClient, app: Flask, schedule: dict[str, Any]
) -> None:
    """The body may repeat the path's external id, but not contradict it."""
    assert api.put(f"{URL}/w1", json={**SHIFT, "external_id": "w1"}).status_code == 201
    before = table_state(app)
    assert_error(api.put(f"{URL}/w1", json={**SHIFT, "external_id": "w2"}), 422, "external_id")
    assert table_state(app) == before


def test_longest_shift_is_31_days(api: FlaskClient, schedule: dict[str, Any]) -> None:
    """Exactly 31 days is allowed; a second more is not."""
    limit = {**SHIFT, "starts_at": "2026-03-01T00:00:00Z", "ends_at": "2026-04-01T00:00:00Z"}
    assert api.put(f"{URL}/long", json=limit).status_code == 201
    over = {**limit, "ends_at": "2026-04-01T00:00:01Z"}
    assert_error(api.put(f"{URL}/long", json=over), 422, "ends_at")


# ---------------------------------------------------------------- DELETE


def test_delete_tombstones_and_notifies_once(
    api: FlaskClient, app: Flask, schedule: dict[str, Any], notified: list[set[int]]
) -> None:
    """The shift stays readable as deleted; deleting again is a no-op."""
    alice_id = user_ids(app)["alice@example.com"]
    api.put(f"{URL}/w1", json=SHIFT)
    response = api.delete(f"{URL}/w1")
    assert (response.status_code, response.data) == (204, b"")
    shift = api.get(f"{URL}/w1").get_json()
    assert (shift["deleted"], shift["revision"]) == (True, 2)
    before = table_state(app)
    assert api.delete(f"{URL}/w1").status_code == 204
    assert table_state(app) == before
    assert notified == [{alice_id}, {alice_id}]


def test_put_revives_a_deleted_shift_with_its_uid(
    api: FlaskClient, schedule: dict[str, Any]
) -> None:
    """A deleted shift put again is the same event (same uid), not a new one."""
    uid = api.put(f"{URL}/w1", json=SHIFT).get_json()["uid"]
    api.delete(f"{URL}/w1")
    response = api.put(f"{URL}/w1", json=SHIFT)
    body = response.get_json()
    assert response.status_code == 200
    assert (body["uid"], body["deleted"], body["revision"]) == (uid, False, 3)


def test_delete_unknown_shift_or_schedule_is_404(
    api: FlaskClient, schedule: dict[str, Any]
) -> None:
    """404 names the part of the path that matched nothing."""
    assert_error(api.delete(f"{URL}/never"), 404, "external_id")
    assert_error(api.delete("/api/v1/schedules/nope/shifts/w1"), 404, "key")
    assert_error(api.get(f"{URL}/never"), 404, "external_id")


# ---------------------------------------------------------------- a user's shifts


def test_user_shifts_lists_overlapping_live_shifts(
    api: FlaskClient, schedule: dict[str, Any], people: dict[str, Any]
) -> None:
    """Only the user's live shifts that overlap [from, to) come back, ordered by start."""
    for n in range(4):
        api.put(f"{URL}/w{n}", json=week(n, "alice@example.com" if n != 1 else "bob@example.com"))
    api.delete(f"{URL}/w3")
    alice = people["alice@example.com"]["id"]
    # The window ends exactly when w2 starts: [from, to) leaves it out.
    response = api.get(
        f"/api/v1/users/{alice}/shifts?from=2026-03-05T00:00:00%2B01:00&to=2026-03-16T08:00:00Z"
    )
    assert response.status_code == 200
    assert_valid(response.get_json(), "ShiftList")
    assert [s["external_id"] for s in response.get_json()["shifts"]] == ["w0"]
    assert live_ids(api, alice) == ["w0", "w2"]


@pytest.mark.parametrize(
    ("query", "fields"),
    [
        ("", ["from", "to"]),
        ("from=2026-03-01T00:00:00Z", ["to"]),
        ("from=2026-03-01&to=2026-03-02", ["from", "to"]),
        ("from=2026-03-01T00:00:00&to=2026-03-02T00:00:00Z", ["from"]),
        ("from=yesterday&to=2026-03-02T00:00:00Z", ["from"]),
        ("from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z", ["to"]),
        ("from=2026-03-01T00:00:00Z&to=2026-03-01T00:00:00Z", ["to"]),
        ("from=2026-01-01T00:00:00Z&to=2030-01-01T00:00:00Z", ["to"]),
        ("from=0001-01-01T00:00:00Z&to=0001-02-01T00:00:00Z", ["from", "to"]),
        ("from=9999-12-01T00:00:00Z&to=9999-12-31T00:00:00Z", ["from", "to"]),
    ],
    ids=[
        "missing", "missing-to", "date-only", "naive", "garbage", "reversed", "empty",
        "over-3-years", "year-1", "year-9999",
    ],
)  # fmt: skip
def test_user_shifts_bad_window(
    api: FlaskClient, people: dict[str, Any], query: str, fields: list[str]
) -> None:
    """Every bad window is a 422 naming `from` or `to`."""
    alice = people["alice@example.com"]["id"]
    assert_error(api.get(f"/api/v1/users/{alice}/shifts?{query}"), 422, *fields)


def test_plus_sign_decoded_as_space_gets_a_hint(api: FlaskClient, people) -> None:
    """An unescaped '+' in a query string arrives as a space; the message says so."""
    alice = people["alice@example.com"]["id"]
    response = api.get(
        f"/api/v1/users/{alice}/shifts?from=2026-03-01T00:00:00+01:00&to=2026-03-02T00:00:00Z"
    )
    body = assert_error(response, 422, "from")
    assert "%2B" in body["errors"][0]["problem"]


def test_user_shifts_of_unknown_user(api: FlaskClient) -> None:
    """An unknown user is 404 naming `id`, checked before the window."""
    assert_error(api.get("/api/v1/users/u_nobody/shifts?" + WINDOW), 404, "id")
    assert_error(api.get("/api/v1/users/u_nobody/shifts"), 404, "id")


# ---------------------------------------------------------------- window import


def test_import_replaces_the_window(
    api: FlaskClient, app: Flask, schedule: dict[str, Any], people, notified: list[set[int]]
) -> None:
    """Listed shifts are upserted; unlisted ones in the window are deleted; outside stays."""
    for n in range(5):
        api.put(f"{URL}/w{n}", json=week(n))
    notified.clear()
    # The window covers weeks 1-3; week 1 moves to Bob, week 3 disappears, week 2 unchanged.
    window = "from=2026-03-09T08:00:00Z&to=2026-03-30T08:00:00Z"
    items = [week(1, "bob@example.com"), week(2)]
    response = api.put(f"{URL}?{window}", json=items)
    assert response.status_code == 200
    assert_valid(response.get_json(), "ImportResult")
    assert response.get_json() == {"created": 0, "updated": 1, "unchanged": 1, "deleted": 1}
    assert live_ids(api, people["alice@example.com"]["id"]) == ["w0", "w2", "w4"]
    assert live_ids(api, people["bob@example.com"]["id"]) == ["w1"]
    ids = user_ids(app)
    assert len(notified) == 1
    assert {ids["alice@example.com"], ids["bob@example.com"]} <= notified[0]


def test_same_import_twice_changes_nothing(
    api: FlaskClient, app: Flask, schedule: dict[str, Any], notified: list[set[int]]
) -> None:
    """The second identical import is all `unchanged`, writes nothing, notifies no one."""
    items = [week(0), week(1, "bob@example.com"), week(2)]
    with freeze_time(T1) as clock:
        first = api.put(f"{URL}?{WINDOW}", json=items)
        clock.move_to(T2)
        before = table_state(app)
        second = api.put(f"{URL}?{WINDOW}", json=items)
    assert first.get_json() == {"created": 3, "updated": 0, "unchanged": 0, "deleted": 0}
    assert second.get_json() == {"created": 0, "updated": 0, "unchanged": 3, "deleted": 0}
    assert table_state(app) == before
    assert len(notified) == 1


def test_empty_import_clears_the_window(api: FlaskClient, schedule: dict[str, Any], people) -> None:
    """An empty list is valid: nobody is on call in that window any more."""
    api.put(f"{URL}/w0", json=week(0))
    response = api.put(f"{URL}?{WINDOW}", json=[])
    assert response.get_json() == {"created": 0, "updated": 0, "unchanged": 0, "deleted": 1}
    assert live_ids(api, people["alice@example.com"]["id"]) == []


@pytest.mark.parametrize(
    ("items", "fields"),
    [
        ([week(0), week(1, ends_at="2026-03-09")], ["[1].ends_at"]),
        ([week(0), week(1), week(2, starts_at=5, role="boss")], ["[2].starts_at", "[2].role"]),
        ([week(0), week(1), week(2), week(3, colour="red")], ["[3].colour"]),
        ([week(0), "w1", None], ["[1]", "[2]"]),
        ([week(0), {k: v for k, v in week(1).items() if k != "external_id"}], ["[1].external_id"]),
        ([week(0), week(0)], ["[1].external_id"]),
        ([week(0), week(9)], ["[1].starts_at"]),
        ([week(0), week(1, "carol@example.com")], ["[1].user_email"]),
        ([week(0), week(1, starts_at=week(1)["ends_at"])], ["[1].ends_at"]),
        ({"items": [week(0)]}, ["body"]),
        ("w0", ["body"]),
    ],
    ids=[
        "date-only", "several-problems", "unknown-field", "not-objects", "missing-external-id",
        "duplicate", "outside-window", "unknown-user", "empty-shift", "object-body", "string-body",
    ],
)  # fmt: skip
def test_bad_import_names_items_and_writes_nothing(
    api: FlaskClient,
    app: Flask,
    schedule: dict[str, Any],
    notified: list[set[int]],
    items: Any,
    fields: list[str],
) -> None:
    """One bad item rejects the whole import; each problem carries the item's index."""
    api.put(f"{URL}/w5", json=week(5))
    api.put(f"{URL}/w1", json=week(1))
    notified.clear()
    before = table_state(app)
    assert_error(api.put(f"{URL}?{WINDOW}", json=items), 422, *fields)
    assert table_state(app) == before
    assert notified == []


def test_single_item_import_names_the_index_of_an_unknown_user(
    api: FlaskClient, app: Flask, schedule: dict[str, Any]
) -> None:
    """A one-item import names `[0].user_email`, like any other item error."""
    response = api.put(f"{URL}?{WINDOW}", json=[week(0, "carol@example.com")])
    assert_error(response, 422, "[0].user_email")


def test_import_window_errors(api: FlaskClient, app: Flask, schedule: dict[str, Any]) -> None:
    """The window is checked like any other: missing, reversed or too long."""
    before = table_state(app)
    assert_error(api.put(URL, json=[week(0)]), 422, "from", "to")
    reversed_window = "from=2026-03-30T08:00:00Z&to=2026-03-02T08:00:00Z"
    assert_error(api.put(f"{URL}?{reversed_window}", json=[week(0)]), 422, "to")
    assert_error(api.put(f"{URL}?from=x&to=y", json=[week(0)]), 422, "from", "to")
    assert table_state(app) == before


def test_import_into_unknown_schedule_is_404(api: FlaskClient, people) -> None:
    """The schedule must exist before shifts are imported into it."""
    assert_error(api.put(f"/api/v1/schedules/nope/shifts?{WINDOW}", json=[]), 404, "key")
