"""One contract for every `CalendarProvider`: memory, demo (the database), Google (fake server),
Graph (fake server).

Like vdirsyncer's `StorageTests`, the same test class runs against each provider. Where
the remote APIs legitimately differ, the difference is a named attribute of `Remote`:

- `duplicate_key_conflicts`: Google and the memory and demo providers refuse a second insert with
  the same client-chosen id (409, `RemoteConflict`); Graph has no client-chosen ids, and
  a create repeating a `transactionId` returns the first event instead.
- `delete_keeps_id`: Google (and memory, demo) keep a deleted event as `cancelled` under its id,
  and an update restores it; Graph deletes for good, so the update is `RemoteNotFound`.

Fault tests (rate limits, 5xx, dropped connections, revoked grants) need a server: they
take the `served` fixture, which runs them against the Google and Graph adapters only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from oncal_feed.connections.google import GoogleSettings, GoogleTokens, build_credentials
from oncal_feed.db import get_database
from oncal_feed.providers.base import (
    AuthorizationLost,
    Operation,
    PreconditionFailed,
    RateLimited,
    RemoteConflict,
    RemoteNotFound,
    TransientError,
)
from oncal_feed.providers.demo import DemoCalendarProvider
from oncal_feed.providers.google import GoogleCalendarProvider, InsufficientPermissions
from oncal_feed.providers.graph import GraphCalendarProvider
from oncal_feed.providers.memory import MemoryProvider
from oncal_feed.rendering.event import EventSpec
from oncal_feed.rendering.google import UID_PROPERTY
from tests.fakes.fixtures import CLIENT_ID, CLIENT_SECRET
from tests.fakes.google import SCOPE_APP_CREATED, FakeGoogle
from tests.fakes.microsoft import FakeMicrosoft
from tests.sync.remote import google_events, graph_events

ALICE = "alice@example.com"
PAGE_SIZE = 3
TIMEOUT = 2.0  # seconds the adapters wait for the fakes
T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


def spec(n: int, *, hours: int = 8, summary: str = "On-call: Payments (primary)") -> EventSpec:
    """The n-th shift's event."""
    start = T0 + timedelta(days=n)
    return EventSpec(
        uid=f"shift-{n}@oncal-feed",
        summary=summary,
        description=f"Shift {n}",
        starts_at=start,
        ends_at=start + timedelta(hours=hours),
        cancelled=False,
        sequence=1,
        created=T0,
        last_modified=T0,
        transparent=True,
        url="https://oncal.example.test/settings",
    )


def key(n: int) -> str:
    """A Google-valid (base32hex) event id / transactionId for the n-th shift."""
    return f"oncal{n:08d}"


@dataclass
class Remote:
    """A provider under test, its calendar, and what differs about it."""

    name: str
    provider: Any
    calendar_id: str
    missing_id: str
    duplicate_key_conflicts: bool
    delete_keeps_id: bool
    # Writing into a deleted calendar: 404, except that Google answers 403
    # insufficientPermissions under `calendar.app.created` (scope checks come first).
    deleted_calendar_error: type[Exception] = RemoteNotFound
    server: Any = None
    add_foreign_event: Callable[[], None] | None = None
    token: str | None = None

    def fail_next(self, status: int, count: int = 1, **kwargs: Any) -> None:
        """Make the server's next `count` API calls fail."""
        assert self.server is not None, "fault tests take the `served` fixture"
        self.server.fail_next(count, status, **kwargs)


def google_remote(fake: FakeGoogle) -> Remote:
    """The Google adapter on the fake, with `calendar.app.created` and its own calendar."""
    token = fake.issue_token(ALICE, (SCOPE_APP_CREATED,), CLIENT_ID)
    settings = GoogleSettings(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        auth_uri=fake.auth_uri,
        token_uri=fake.token_uri,
        revoke_uri=fake.revoke_uri,
        api_endpoint=fake.api_endpoint,
        batch_uri=fake.batch_uri,
        redirect_uri="https://oncal.example.test/api/calendar/google/callback",
        timeout=5,
    )
    tokens = GoogleTokens(
        token["access_token"],
        token["refresh_token"],
        datetime.now(UTC) + timedelta(hours=1),
        (SCOPE_APP_CREATED,),
    )
    provider = GoogleCalendarProvider(
        build_credentials(settings, tokens),
        api_endpoint=fake.api_endpoint,
        batch_uri=fake.batch_uri,
        timeout=TIMEOUT,
        page_size=PAGE_SIZE,
    )
    calendar_id = provider.create_calendar("On-call shifts", "Europe/Berlin")

    def foreign() -> None:
        requests.post(
            f"{fake.api_endpoint}calendars/{calendar_id}/events",
            json={
                "summary": "Lunch",
                "start": {"dateTime": "2026-03-03T12:00:00Z"},
                "end": {"dateTime": "2026-03-03T13:00:00Z"},
            },
            headers={"Authorization": f"Bearer {token['access_token']}"},
            timeout=5,
        ).raise_for_status()

    return Remote(
        "google",
        provider,
        calendar_id,
        missing_id="missing00001",
        duplicate_key_conflicts=True,
        delete_keeps_id=True,
        deleted_calendar_error=InsufficientPermissions,
        server=fake,
        add_foreign_event=foreign,
        token=token["access_token"],
    )


def graph_remote(fake: FakeMicrosoft) -> Remote:
    """The Graph adapter on the fake, with a static token and a calendar of its own."""
    token = fake.access_token(ALICE)
    provider = GraphCalendarProvider(
        lambda force_refresh=False: token,
        graph_endpoint=fake.graph_endpoint,
        timeout=TIMEOUT,
        page_size=PAGE_SIZE,
    )
    calendar_id = provider.create_calendar("On-call shifts", "Europe/Berlin")
    missing = "AAMkAGE" + "A" * 60

    def foreign() -> None:
        fake.put_event(
            ALICE,
            {
                "subject": "Lunch",
                "start": {"dateTime": "2026-03-03T12:00:00", "timeZone": "UTC"},
                "end": {"dateTime": "2026-03-03T13:00:00", "timeZone": "UTC"},
            },
            calendar_id,
        )

    return Remote(
        "graph",
        provider,
        calendar_id,
        missing_id=missing,
        duplicate_key_conflicts=False,
        delete_keeps_id=False,
        server=fake,
        add_foreign_event=foreign,
        token=token,
    )


def memory_remote() -> Remote:
    """The in-memory provider."""
    provider = MemoryProvider()
    calendar_id = provider.create_calendar("On-call shifts", "Europe/Berlin")
    return Remote(
        "memory",
        provider,
        calendar_id,
        missing_id="missing00001",
        duplicate_key_conflicts=True,
        delete_keeps_id=True,
    )


def demo_remote(request: pytest.FixtureRequest) -> Remote:
    """The demo calendar provider, on the test database."""
    app = request.getfixturevalue("app")
    provider = DemoCalendarProvider(get_database(app), ALICE)
    calendar_id = provider.create_calendar("On-call shifts", "Europe/Berlin")
    return Remote(
        "demo",
        provider,
        calendar_id,
        missing_id="missing00001",
        duplicate_key_conflicts=True,
        delete_keeps_id=True,
    )


def _served_remote(request: pytest.FixtureRequest, name: str) -> Remote:
    if name == "google":
        return google_remote(request.getfixturevalue("fake_google"))
    return graph_remote(request.getfixturevalue("fake_microsoft"))


@pytest.fixture(params=["memory", "demo", "google", "graph"])
def remote(request: pytest.FixtureRequest) -> Iterator[Remote]:
    """Each contract test runs against every provider."""
    if request.param == "memory":
        yield memory_remote()
        return
    if request.param == "demo":
        yield demo_remote(request)
        return
    made = _served_remote(request, request.param)
    yield made
    made.provider.close()


@pytest.fixture(params=["google", "graph"])
def served(request: pytest.FixtureRequest) -> Iterator[Remote]:
    """The providers behind a real server, for tests of network faults and grants."""
    made = _served_remote(request, request.param)
    yield made
    made.provider.close()


def uids(remote: Remote) -> list[str | None]:
    """The UIDs of the live events we tagged, sorted."""
    return sorted(e.uid for e in remote.provider.list_events(remote.calendar_id))


class TestProviderContract:
    """Behaviour every provider must show to the sync engine."""

    def test_insert_then_find(self, remote: Remote) -> None:
        created = remote.provider.insert_event(remote.calendar_id, spec(1), key(1))
        assert created.remote_id
        assert created.uid == "shift-1@oncal-feed"
        found = remote.provider.find_event(remote.calendar_id, "shift-1@oncal-feed")
        assert found is not None
        assert (found.remote_id, found.uid, found.cancelled) == (
            created.remote_id,
            "shift-1@oncal-feed",
            False,
        )
        assert remote.provider.find_event(remote.calendar_id, "shift-2@oncal-feed") is None

    def test_events_read_back_as_what_was_written(self, remote: Remote) -> None:
        """Listing, lookup by id and by tag name the content of the write that made the
        event, and show its title and times: `shows` holds for that spec, no other."""
        created = remote.provider.insert_event(remote.calendar_id, spec(1), key(1))
        updated = remote.provider.update_event(
            remote.calendar_id, created.remote_id, spec(1, hours=12)
        )
        reads = {
            "list": next(iter(remote.provider.list_events(remote.calendar_id))),
            "get": remote.provider.get_event(remote.calendar_id, created.remote_id),
            "find": remote.provider.find_event(remote.calendar_id, "shift-1@oncal-feed"),
        }
        for how, event in reads.items():
            assert event is not None, how
            assert event.shows(spec(1, hours=12)), (how, event)
            assert not event.shows(spec(1)), how
            assert event.etag == updated.etag, how

    def test_an_event_the_user_retitled_no_longer_reads_back(self, served: Remote) -> None:
        """The user's edit keeps our tags but changes what `shows` checks."""
        created = served.provider.insert_event(served.calendar_id, spec(1), key(1))
        if isinstance(served.server, FakeGoogle):
            served.server.edit_event(
                ALICE, served.calendar_id, created.remote_id, {"summary": "Dentist"}
            )
        else:
            served.server.edit_event(ALICE, created.remote_id, {"subject": "Dentist"})
        [listed] = served.provider.list_events(served.calendar_id)
        assert (listed.uid, listed.written) == (spec(1).uid, spec(1).content_hash)
        assert not listed.shows(spec(1))

    def test_second_insert_with_the_same_key_never_duplicates(self, remote: Remote) -> None:
        first = remote.provider.insert_event(remote.calendar_id, spec(1), key(1))
        if remote.duplicate_key_conflicts:
            with pytest.raises(RemoteConflict) as conflict:
                remote.provider.insert_event(remote.calendar_id, spec(1), key(1))
            assert conflict.value.status == 409
        else:
            again = remote.provider.insert_event(remote.calendar_id, spec(1), key(1))
            assert again.remote_id == first.remote_id
        assert uids(remote) == ["shift-1@oncal-feed"]

    def test_update_changes_the_event(self, remote: Remote) -> None:
        created = remote.provider.insert_event(remote.calendar_id, spec(1), key(1))
        updated = remote.provider.update_event(
            remote.calendar_id, created.remote_id, spec(1, hours=12)
        )
        assert updated.remote_id == created.remote_id
        assert updated.uid == "shift-1@oncal-feed"
        assert updated.etag != created.etag
        if isinstance(remote.provider, MemoryProvider):
            assert (
                remote.provider.live_specs(remote.calendar_id)[0].ends_at
                == spec(1, hours=12).ends_at
            )
        elif remote.server is not None:
            read = google_events if remote.name == "google" else graph_events
            (seen,) = read(remote.server, remote.calendar_id)
            assert seen.end == spec(1, hours=12).ends_at
        assert uids(remote) == ["shift-1@oncal-feed"]

    def test_writes_on_a_stale_etag_are_refused(self, remote: Remote) -> None:
        """If-Match: an update or delete naming an etag the event no longer has is a 412."""
        created = remote.provider.insert_event(remote.calendar_id, spec(1), key(1))
        newer = remote.provider.update_event(
            remote.calendar_id, created.remote_id, spec(1, hours=10), etag=created.etag
        )
        assert created.etag is not None
        assert newer.etag not in (None, created.etag)
        with pytest.raises(PreconditionFailed) as stale:
            remote.provider.update_event(
                remote.calendar_id, created.remote_id, spec(1, hours=12), etag=created.etag
            )
        assert stale.value.status == 412
        with pytest.raises(PreconditionFailed):
            remote.provider.delete_event(remote.calendar_id, created.remote_id, etag=created.etag)
        results = remote.provider.apply(
            remote.calendar_id,
            [
                Operation("update", spec(1, hours=12), remote_id=created.remote_id,
                          etag=created.etag),
                Operation("delete", remote_id=created.remote_id, etag=created.etag),
            ],
        )  # fmt: skip
        assert [type(r.error) for r in results] == [PreconditionFailed, PreconditionFailed]
        # Nothing stale landed; the event still holds the newer write, under its etag.
        fresh = remote.provider.get_event(remote.calendar_id, created.remote_id)
        assert fresh is not None
        assert fresh.etag == newer.etag
        assert fresh.uid == "shift-1@oncal-feed"
        remote.provider.delete_event(remote.calendar_id, created.remote_id, etag=fresh.etag)
        assert uids(remote) == []

    def test_get_event_of_a_missing_event_is_none(self, remote: Remote) -> None:
        assert remote.provider.get_event(remote.calendar_id, remote.missing_id) is None

    def test_update_of_a_missing_event_is_not_found(self, remote: Remote) -> None:
        with pytest.raises(RemoteNotFound):
            remote.provider.update_event(remote.calendar_id, remote.missing_id, spec(1))

    def test_update_after_delete_restores_or_is_gone(self, remote: Remote) -> None:
        created = remote.provider.insert_event(remote.calendar_id, spec(1), key(1))
        remote.provider.delete_event(remote.calendar_id, created.remote_id)
        assert uids(remote) == []
        assert remote.provider.find_event(remote.calendar_id, "shift-1@oncal-feed") is None
        if remote.delete_keeps_id:
            restored = remote.provider.update_event(remote.calendar_id, created.remote_id, spec(1))
            assert (restored.remote_id, restored.cancelled) == (created.remote_id, False)
            assert uids(remote) == ["shift-1@oncal-feed"]
            # The id stays taken while the event lives again.
            with pytest.raises(RemoteConflict):
                remote.provider.insert_event(remote.calendar_id, spec(1), key(1))
        else:
            with pytest.raises(RemoteNotFound):
                remote.provider.update_event(remote.calendar_id, created.remote_id, spec(1))

    def test_delete_twice_and_delete_missing_are_done(self, remote: Remote) -> None:
        created = remote.provider.insert_event(remote.calendar_id, spec(1), key(1))
        remote.provider.delete_event(remote.calendar_id, created.remote_id)
        remote.provider.delete_event(remote.calendar_id, created.remote_id)
        remote.provider.delete_event(remote.calendar_id, remote.missing_id)
        assert uids(remote) == []

    def test_list_pages_through_our_events_only(self, remote: Remote) -> None:
        count = PAGE_SIZE * 2 + 1
        for n in range(count):
            remote.provider.insert_event(remote.calendar_id, spec(n), key(n))
        if remote.add_foreign_event is not None:
            remote.add_foreign_event()
        removed = remote.provider.find_event(remote.calendar_id, "shift-0@oncal-feed")
        assert removed is not None
        remote.provider.delete_event(remote.calendar_id, removed.remote_id)
        if remote.server is not None:
            remote.server.reset_stats()

        listed = list(remote.provider.list_events(remote.calendar_id))

        assert sorted(e.uid or "" for e in listed) == sorted(
            f"shift-{n}@oncal-feed" for n in range(1, count)
        )
        assert len({e.remote_id for e in listed}) == count - 1
        assert not any(e.cancelled for e in listed)
        if remote.server is not None:
            assert remote.server.stats["events.list"] >= 2  # it really paged

    def test_apply_reports_each_member(self, remote: Remote) -> None:
        existing = remote.provider.insert_event(remote.calendar_id, spec(9), key(9))
        operations = [
            Operation("insert", spec(1), event_key=key(1)),
            Operation("update", spec(2), remote_id=remote.missing_id),
            Operation("insert", spec(3), event_key=key(3)),
            Operation("update", spec(9, hours=4), remote_id=existing.remote_id),
            Operation("delete", remote_id=remote.missing_id),
        ]

        results = remote.provider.apply(remote.calendar_id, operations)

        assert len(results) == 5
        assert results[0].error is None
        assert results[0].event is not None
        assert results[0].event.uid == "shift-1@oncal-feed"
        assert isinstance(results[1].error, RemoteNotFound)
        assert results[2].error is None
        assert results[2].event is not None
        assert results[3].error is None
        assert results[3].event is not None
        assert results[3].event.remote_id == existing.remote_id
        assert results[4].error is None  # deleting what's gone is done
        assert uids(remote) == ["shift-1@oncal-feed", "shift-3@oncal-feed", "shift-9@oncal-feed"]

    def test_apply_splits_beyond_max_batch(self, remote: Remote) -> None:
        count = remote.provider.max_batch + 2
        operations = [Operation("insert", spec(n), event_key=key(n)) for n in range(count)]
        if remote.server is not None:
            remote.server.reset_stats()
        results = remote.provider.apply(remote.calendar_id, operations)
        assert [r.error for r in results] == [None] * count
        assert len(uids(remote)) == count
        if remote.server is not None:
            assert remote.server.stats["batch"] == 2

    def test_apply_reads_a_throttled_member_behind_an_ok_envelope(self, served: Remote) -> None:
        served.fail_next(429, retry_after=7)
        results = served.provider.apply(
            served.calendar_id,
            [
                Operation("insert", spec(1), event_key=key(1)),
                Operation("insert", spec(2), event_key=key(2)),
            ],
        )
        assert isinstance(results[0].error, RateLimited)
        assert results[0].error.retry_after == 7
        assert results[1].error is None
        assert uids(served) == ["shift-2@oncal-feed"]

    def test_rate_limit_is_rate_limited_with_retry_after(self, served: Remote) -> None:
        served.fail_next(429, retry_after=7)
        with pytest.raises(RateLimited) as limited:
            served.provider.find_event(served.calendar_id, "shift-1@oncal-feed")
        assert (limited.value.status, limited.value.retry_after) == (429, 7)

    def test_quota_403_is_rate_limited(self, served: Remote) -> None:
        served.fail_next(403, kind="quota")
        with pytest.raises(RateLimited) as limited:
            served.provider.insert_event(served.calendar_id, spec(1), key(1))
        assert limited.value.status == 403

    def test_server_error_is_transient(self, served: Remote) -> None:
        served.fail_next(503)
        with pytest.raises(TransientError) as failed:
            served.provider.insert_event(served.calendar_id, spec(1), key(1))
        assert failed.value.status == 503
        # Nothing was written; the retry with the same key succeeds once.
        served.provider.insert_event(served.calendar_id, spec(1), key(1))
        assert uids(served) == ["shift-1@oncal-feed"]

    def test_timeout_is_transient(self, served: Remote) -> None:
        # Twice: a read is sent once more after a passing failure.
        served.fail_next(200, count=2, kind="slow", delay=TIMEOUT + 0.5)
        with pytest.raises(TransientError):
            served.provider.find_event(served.calendar_id, "shift-1@oncal-feed")

    @pytest.mark.parametrize(
        "fault",
        [{"status": 503}, {"status": 429, "retry_after": 1}, {"status": 200, "kind": "drop"}],
        ids=["503", "429", "drop"],
    )
    def test_a_read_that_fails_once_is_sent_again(
        self, served: Remote, fault: dict[str, Any]
    ) -> None:
        served.provider.insert_event(served.calendar_id, spec(1), key(1))
        served.fail_next(**fault)
        found = served.provider.find_event(served.calendar_id, "shift-1@oncal-feed")
        assert found is not None
        assert found.uid == "shift-1@oncal-feed"

    def test_a_read_throttled_for_long_is_the_callers_to_wait_out(self, served: Remote) -> None:
        served.fail_next(429, retry_after=30)
        started = time.monotonic()
        with pytest.raises(RateLimited):
            served.provider.find_event(served.calendar_id, "shift-1@oncal-feed")
        assert time.monotonic() - started < 5

    def test_a_listing_survives_one_failed_page(self, served: Remote) -> None:
        count = PAGE_SIZE * 2 + 1
        for n in range(count):
            served.provider.insert_event(served.calendar_id, spec(n), key(n))
        pages = iter(served.provider.list_events(served.calendar_id))
        first = next(pages)  # the first page is in; the next one fails once
        served.fail_next(503)
        listed = [first, *pages]
        assert sorted(e.uid or "" for e in listed) == sorted(
            f"shift-{n}@oncal-feed" for n in range(count)
        )

    def test_dropped_insert_is_safe_to_retry(self, served: Remote) -> None:
        """Committed, then the connection dropped: no duplicate, whatever the library does.

        httplib2 (Google) silently re-sends and gets 409 from the replay; requests
        (Graph) reports the drop, and the retry's transactionId finds the first event.
        """
        served.fail_next(200, kind="drop_after_commit")
        if served.duplicate_key_conflicts:
            with pytest.raises(RemoteConflict):
                served.provider.insert_event(served.calendar_id, spec(1), key(1))
        else:
            with pytest.raises(TransientError):
                served.provider.insert_event(served.calendar_id, spec(1), key(1))
            served.provider.insert_event(served.calendar_id, spec(1), key(1))
        assert uids(served) == ["shift-1@oncal-feed"]

    def test_revoked_grant_is_authorization_lost(self, served: Remote) -> None:
        served.server.revoke_grants(ALICE)
        with pytest.raises(AuthorizationLost) as lost:
            served.provider.find_event(served.calendar_id, "shift-1@oncal-feed")
        assert served.token
        assert served.token not in str(lost.value)

    def test_calendar_lifecycle(self, remote: Remote) -> None:
        calendar_id = remote.provider.create_calendar("Second", "UTC")
        assert calendar_id != remote.calendar_id
        assert remote.provider.calendar_exists(calendar_id)
        remote.provider.insert_event(calendar_id, spec(1), key(1))
        remote.provider.delete_calendar(calendar_id)
        assert not remote.provider.calendar_exists(calendar_id)
        remote.provider.delete_calendar(calendar_id)  # gone already: fine
        assert remote.provider.calendar_exists(remote.calendar_id)
        with pytest.raises(remote.deleted_calendar_error):
            remote.provider.insert_event(calendar_id, spec(2), key(2))

    def test_events_carry_our_tag(self, remote: Remote) -> None:
        created = remote.provider.insert_event(remote.calendar_id, spec(1), key(1))
        if isinstance(remote.server, FakeGoogle):
            stored = remote.server.events(ALICE, remote.calendar_id)
            assert stored[0]["extendedProperties"]["private"][UID_PROPERTY] == spec(1).uid
            assert stored[0]["id"] == key(1)
        elif isinstance(remote.server, FakeMicrosoft):
            stored = remote.server.events(ALICE, remote.calendar_id)
            assert stored[0]["transactionId"] == key(1)
            assert stored[0]["singleValueExtendedProperties"][0]["value"] == spec(1).uid
        assert created.uid == spec(1).uid
