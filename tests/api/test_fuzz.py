"""Random input at every write endpoint: never a 500, and every error has the documented shape.

Hypothesis reuses the function-scoped fixtures (app, API client, people, schedule) across
the examples of one test. That is safe here, so the health check that warns about it is
suppressed for these tests only: the examples assert nothing about the database state a
previous example left, only that each answer is below 500 and, if an error, well-formed.
"""

from __future__ import annotations

from datetime import date
from typing import Any
from urllib.parse import quote, urlencode

from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import TestResponse

from tests.api import assert_valid

FUZZ = settings(
    max_examples=50,
    deadline=None,  # the first request of a test pays for app start-up and SQL compilation
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    database=None,  # each run starts afresh; failures print their example to reproduce
)

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=10,
)
# Strings that are nearly right are where validators crack.
# The first and last month a datetime can hold: arithmetic on them overflows.
EDGES = st.dates(max_value=date(1, 2, 1)) | st.dates(min_value=date(9999, 12, 1))
INSTANTS = (
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat())
    | st.builds(
        "{}T{}{}".format, EDGES, st.times().map(str), st.sampled_from(["Z", "+01:00", "-14:00"])
    )
    | st.datetimes().map(lambda d: d.isoformat())
    | st.sampled_from(
        [
            "2026-03-02T09:00:00Z",
            "2026-03-09T09:00:00+01:00",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-14:00",
            "2026-03-02T09:00:00.1234567891Z",
            "2026-13-01T00:00:00Z",
            "2026-03-02",
        ]
    )
    | st.text(max_size=30)
)
EMAILS = (
    st.sampled_from(["alice@example.com", "bob@example.com", "x@y.z"]) | st.emails() | st.text()
)
ZONES = st.sampled_from(["UTC", "Europe/Berlin", "localtime", "Mars/Base"]) | st.text(max_size=70)
TEXT = st.text(max_size=60) | st.text(max_size=5000)
VALUE = JSON | INSTANTS | EMAILS | ZONES | TEXT

SHIFT_FIELDS = {
    "external_id": st.text(max_size=20) | st.from_regex(r"[A-Za-z0-9._:~@-]{1,20}", fullmatch=True),
    "user_email": EMAILS,
    "starts_at": INSTANTS,
    "ends_at": INSTANTS,
    "role": st.sampled_from(["primary", "secondary", "boss", ""]) | st.text(max_size=40),
    "notes": TEXT,
}


def _objects(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Objects with some of the known fields (plausible or random values), perhaps more."""
    known = st.fixed_dictionaries({}, optional={k: v | VALUE for k, v in fields.items()})
    extra = st.dictionaries(st.text(max_size=10), VALUE, max_size=2)
    return st.builds(lambda a, b: {**b, **a}, known, extra) | JSON


SHIFTS = _objects(SHIFT_FIELDS)
USERS = _objects({"email": EMAILS, "display_name": TEXT, "time_zone": ZONES})
SCHEDULES = _objects({"name": TEXT, "time_zone": ZONES, "url": st.none() | st.text() | VALUE})
# Digits of other scripts pass str.isdigit() but not always int().
DIGITS = st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=4)
SEGMENTS = st.text(min_size=1, max_size=70) | st.from_regex(r"[a-z0-9_-]{1,64}", fullmatch=True)


def check(response: TestResponse) -> None:
    """Below 500; an error answer has the documented shape and names a field."""
    assert response.status_code < 500, response.get_data(as_text=True)
    if response.status_code >= 400:
        body = response.get_json()
        assert_valid(body, "Error")
        assert body["errors"], body


def _segment(text: str) -> str:
    return quote(text, safe="")


@FUZZ
@given(body=USERS)
def test_fuzz_create_user(api: FlaskClient, body: Any) -> None:
    """POST /users with random JSON."""
    check(api.post("/api/v1/users", json=body))


@FUZZ
@given(raw=st.binary(max_size=200))
def test_fuzz_raw_bytes(api: FlaskClient, raw: bytes) -> None:
    """POST /users with random bytes labelled as JSON."""
    check(api.post("/api/v1/users", data=raw, content_type="application/json"))


@FUZZ
@given(body=USERS, user_id=SEGMENTS)
def test_fuzz_update_user(
    api: FlaskClient, people: dict[str, Any], body: Any, user_id: str
) -> None:
    """PATCH a real user (and a random id) with random JSON."""
    alice = people["alice@example.com"]["id"]
    check(api.patch(f"/api/v1/users/{alice}", json=body))
    check(api.patch(f"/api/v1/users/{_segment(user_id)}", json=body))


@FUZZ
@given(body=SCHEDULES, key=SEGMENTS)
def test_fuzz_put_schedule(api: FlaskClient, body: Any, key: str) -> None:
    """PUT /schedules/{key} with random keys and JSON."""
    check(api.put(f"/api/v1/schedules/{_segment(key)}", json=body))


@FUZZ
@given(body=SHIFTS, external_id=SEGMENTS)
def test_fuzz_put_shift(
    api: FlaskClient, schedule: dict[str, Any], body: Any, external_id: str
) -> None:
    """PUT one shift with random external ids and JSON."""
    check(api.put(f"/api/v1/schedules/payments/shifts/{_segment(external_id)}", json=body))


@FUZZ
@given(
    items=st.lists(SHIFTS, max_size=5) | JSON,
    start=INSTANTS | st.none(),
    end=INSTANTS | st.none(),
)
def test_fuzz_import_window(
    api: FlaskClient, schedule: dict[str, Any], items: Any, start: Any, end: Any
) -> None:
    """PUT a window import with random windows and lists."""
    query = urlencode({k: v for k, v in (("from", start), ("to", end)) if v is not None})
    check(api.put(f"/api/v1/schedules/payments/shifts?{query}", json=items))


@FUZZ
@given(key=SEGMENTS, external_id=SEGMENTS)
def test_fuzz_delete_shift(
    api: FlaskClient, schedule: dict[str, Any], key: str, external_id: str
) -> None:
    """DELETE random paths."""
    check(api.delete(f"/api/v1/schedules/{_segment(key)}/shifts/{_segment(external_id)}"))


@FUZZ
@given(start=INSTANTS, end=INSTANTS, limit=DIGITS | st.text(max_size=8), after=st.text(max_size=20))
def test_fuzz_query_parameters(
    api: FlaskClient, people: dict[str, Any], start: str, end: str, limit: str, after: str
) -> None:
    """Random windows and paging parameters on the read endpoints."""
    alice = people["alice@example.com"]["id"]
    check(api.get(f"/api/v1/users/{alice}/shifts?" + urlencode({"from": start, "to": end})))
    check(api.get("/api/v1/users?" + urlencode({"limit": limit, "after": after})))
