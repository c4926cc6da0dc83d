"""Polling an ICS source from a real HTTP server: identity, conditional GET, faults, holds."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from oncal_feed.connections.vault import get_vault
from oncal_feed.db import get_database
from oncal_feed.models import Shift, Source
from oncal_feed.sources.service import delete_source, get_source
from tests.connections.flows import database_text
from tests.sources.conftest import NOW, Sources, sample
from tests.sources.feed_server import FeedServer
from tests.statements import recorded

PATH = "/private/Xk2dq9ZRtoken/feed/PI7DH85.ics"


def test_first_poll_imports_and_maps_by_attendee(world: Sources, feeds: FeedServer) -> None:
    """PagerDuty's schedule feed: attendees name the people; an unknown one is reported."""
    feeds.put(PATH, sample("pagerduty-schedule.ics"))
    source_id = world.add(feeds.url(PATH))
    report = world.poll(source_id)
    assert report.outcome == "changed"
    assert report.result is not None
    assert report.result.created == 2
    assert world.owners() == [
        ("2026-03-02T09:00Z", "alice@example.com"),
        ("2026-03-09T08:00Z", "bob@example.com"),
    ]
    source = world.source(source_id)
    assert (source.status, source.events_read, source.shifts_mapped) == ("ok", 3, 2)
    assert source.unmatched_count == 1
    assert source.unmatched_examples == [
        "On Call - Carol Unknown - Payments Primary at 2026-03-16 08:00 UTC, "
        "attendee carol@elsewhere.example"
    ]
    assert source.next_poll_at == NOW + timedelta(seconds=60)


def test_unchanged_feed_is_one_304_and_writes_no_shift(world: Sources, feeds: FeedServer) -> None:
    """The second poll sends the ETag, gets 304, and touches no shift, user or connection."""
    feeds.put(PATH, sample("pagerduty-schedule.ics"))
    source_id = world.add(feeds.url(PATH))
    world.poll(source_id)
    with recorded(get_database(world.app).engine) as sent:
        report = world.poll(source_id, NOW + timedelta(minutes=1))
    assert report.outcome == "not-modified"
    assert feeds.statuses(PATH) == [200, 304]
    # The source's own row, twice: the lease taken (with the poll's moment), then released
    # with the outcome. Nothing else.
    assert [s.split(" WHERE ")[0].split(" SET ")[0] for s in sent.writes] == ["UPDATE sources"] * 2


def test_reread_without_etag_changes_nothing(world: Sources, feeds: FeedServer) -> None:
    """A server without validators: the same body read again writes no shift."""
    feeds.etags = False
    feeds.put(PATH, sample("pagerduty-schedule.ics"))
    source_id = world.add(feeds.url(PATH))
    world.poll(source_id)
    before = [(s.uid, s.revision, s.updated_at) for s in world.shifts()]
    with recorded(get_database(world.app).engine) as sent:
        report = world.poll(source_id, NOW + timedelta(minutes=1))
    assert report.outcome == "unchanged"
    assert [s.split(" SET ")[0] for s in sent.writes] == ["UPDATE sources"] * 2
    assert report.result is not None
    assert report.result.unchanged == 2
    assert [(s.uid, s.revision, s.updated_at) for s in world.shifts()] == before


def test_moved_occurrence_is_an_update_and_a_removed_one_is_cancelled(
    world: Sources, feeds: FeedServer
) -> None:
    """Outlook's series: moving one occurrence keeps its UID; dropping one cancels it."""
    body = sample("outlook-published.ics")
    feeds.put("/cal.ics", body)
    source_id = world.add(feeds.url("/cal.ics"))
    world.poll(source_id)
    first = {s.starts_at: s for s in world.shifts()}
    assert len(first) == 7
    assert {s.user_id for s in first.values()} == {first[min(first)].user_id}
    moved = body.replace(
        b"RECURRENCE-ID;TZID=W. Europe Standard Time:20260330T090000\r\nSUMMARY:Bereitschaft:"
        b" Zo\xc3\xab \xc3\x85ngstr\xc3\xb6m (getauscht)\r\nDTSTART;TZID=W. Europe Standard "
        b"Time:20260330T120000",
        b"RECURRENCE-ID;TZID=W. Europe Standard Time:20260330T090000\r\nSUMMARY:Bereitschaft:"
        b" Zo\xc3\xab \xc3\x85ngstr\xc3\xb6m (getauscht)\r\nDTSTART;TZID=W. Europe Standard "
        b"Time:20260330T150000",
    ).replace(
        b"EXDATE;TZID=W. Europe Standard Time:20260406T090000",
        b"EXDATE;TZID=W. Europe Standard Time:20260406T090000,20260413T090000",
    )
    assert moved != body
    feeds.put("/cal.ics", moved)
    report = world.poll(source_id, NOW + timedelta(minutes=1))
    assert report.result is not None
    assert (report.result.created, report.result.updated, report.result.deleted) == (0, 1, 1)
    after = {s.uid: s for s in world.shifts(live=False)}
    old_override = next(s for t, s in first.items() if t.isoformat().startswith("2026-03-30"))
    assert after[old_override.uid].starts_at.isoformat() == "2026-03-30T13:00:00+00:00"
    assert after[old_override.uid].revision == 2
    dropped = next(s for t, s in first.items() if t.isoformat().startswith("2026-04-13"))
    assert after[dropped.uid].deleted_at is not None


def test_faults_change_nothing_and_are_reported(world: Sources, feeds: FeedServer) -> None:
    """500, 429, timeouts, cut-off bodies, HTML pages, garbage: the last good state stays."""
    feeds.put(PATH, sample("pagerduty-schedule.ics"))
    source_id = world.add(feeds.url(PATH))
    world.poll(source_id)
    good = [(s.uid, s.revision, s.deleted_at) for s in world.shifts(live=False)]
    feeds.etags = False  # every poll reads the body, so every fault is met
    feeds.retry_after = 600
    cases = [
        ("500", "failed on its side (HTTP 500)"),
        ("429", "asked us to slow down (HTTP 429)"),
        ("slow", "did not answer in time"),
        ("truncate", "cut off"),
        ("cut", "cut off before its end"),
        ("html", "web page instead of a calendar"),
    ]
    now = NOW
    for failures, (kind, words) in enumerate(cases, 1):
        now += timedelta(hours=2)
        feeds.fault(PATH, kind)
        report = world.poll(source_id, now)
        assert report.outcome == "failed", kind
        assert words in (report.problem or ""), (kind, report.problem)
        source = world.source(source_id)
        assert source.status == "failing"
        assert source.failure_count == failures
        assert words in (source.last_error or "")
        assert [(s.uid, s.revision, s.deleted_at) for s in world.shifts(live=False)] == good
        assert source.next_poll_at is not None
        assert source.next_poll_at >= now + timedelta(seconds=60)
        if kind == "429":
            assert source.next_poll_at >= now + timedelta(seconds=600), "Retry-After honoured"
    feeds.put(PATH, b"BEGIN:VCALENDAR\r\nthis is not\r\n:::\r\nEND:VCALENDAR\r\n")
    report = world.poll(source_id, now + timedelta(hours=2))
    assert report.outcome in ("failed", "held")
    assert [(s.uid, s.revision, s.deleted_at) for s in world.shifts(live=False)] == good
    feeds.put(PATH, sample("pagerduty-schedule.ics"))
    report = world.poll(source_id, now + timedelta(hours=3))
    assert report.outcome == "unchanged"
    source = world.source(source_id)
    assert (source.status, source.failure_count, source.last_error) == ("ok", 0, None)


def test_back_off_grows_with_failures(world: Sources, feeds: FeedServer) -> None:
    """A source that keeps failing is polled less and less often, never hammered."""
    source_id = world.add(feeds.url("/missing.ics"))
    delays = []
    now = NOW
    for _ in range(8):
        report = world.poll(source_id, now)
        assert report.outcome == "failed"
        assert report.next_poll_at is not None
        delays.append(report.next_poll_at - now)
        now = report.next_poll_at
    assert delays[0] == timedelta(seconds=60)
    assert delays[-1] > timedelta(minutes=5)
    assert (
        world.source(source_id).last_error
        == "The feed answered HTTP 404 (the link or key may have expired or been revoked)."
    )


def test_emptied_or_halved_calendar_is_held_until_accepted(
    world: Sources, feeds: FeedServer
) -> None:
    """A suddenly empty feed deletes nothing; the admin's accept takes the new state."""
    feeds.put("/cal.ics", sample("outlook-published.ics"))
    source_id = world.add(feeds.url("/cal.ics"))
    world.poll(source_id)
    assert len(world.shifts()) == 7
    feeds.fault("/cal.ics", "empty")
    report = world.poll(source_id, NOW + timedelta(minutes=1))
    assert report.outcome == "held"
    assert "suddenly empty (it had 7 events)" in (report.problem or "")
    assert len(world.shifts()) == 7
    assert world.source(source_id).status == "held"

    two = sample("outlook-published.ics").replace(b"UNTIL=20260420T070000Z", b"COUNT=2")
    feeds.put("/cal.ics", two)
    report = world.poll(source_id, NOW + timedelta(minutes=2))
    assert report.outcome == "held"
    assert "suddenly has 3 events where it had 7" in (report.problem or "")
    assert len(world.shifts()) == 7

    report = world.poll(source_id, NOW + timedelta(minutes=3), accept=True)
    assert report.outcome == "changed"
    assert len(world.shifts()) == 3
    assert world.source(source_id).status == "ok"


def test_per_user_feed_uses_the_fixed_user(world: Sources, feeds: FeedServer) -> None:
    """PagerDuty's "My On-Call Shifts" names nobody: every event is the source's user's."""
    feeds.put("/me.ics", sample("pagerduty-user.ics"))
    source_id = world.add(feeds.url("/me.ics"), user_email="bob@example.com")
    world.poll(source_id)
    assert world.owners() == [
        ("2026-03-03T17:00Z", "bob@example.com"),
        ("2026-03-10T17:00Z", "bob@example.com"),
    ]


def test_two_sources_feed_one_schedule_without_cancelling_each_other(
    world: Sources, feeds: FeedServer
) -> None:
    """Each poll imports this source's new state plus the other's last good state."""
    feeds.put("/team.ics", sample("opsgenie.ics"))
    feeds.put("/me.ics", sample("goalert-user.ics"))
    team = world.add(feeds.url("/team.ics"))
    mine = world.add(feeds.url("/me.ics"), user_email="zoe@example.com")
    world.poll(team)
    world.poll(mine)
    world.poll(team, NOW + timedelta(minutes=1))
    assert world.owners() == [
        ("2026-03-02T08:00Z", "alice@example.com"),
        ("2026-03-02T20:00Z", "bob@example.com"),
        ("2026-03-07T15:00Z", "zoe@example.com"),
    ]
    with world.database.session() as session:
        result = delete_source(session, get_source(session, None, mine), NOW)
    assert result.deleted == 1
    assert len(world.owners()) == 2


def test_url_is_stored_encrypted_and_shown_redacted(world: Sources, feeds: FeedServer) -> None:
    """The feed URL (a credential) is nowhere in the database in clear text."""
    feeds.put(PATH, sample("pagerduty-schedule.ics"))
    source_id = world.add(feeds.url(PATH))
    world.poll(source_id)
    with world.database.sessionmaker() as session:
        text = database_text(session)
        source = session.scalar(select(Source).where(Source.id == source_id))
        assert source is not None
        assert get_vault(world.app).decrypt(source.secret_ciphertext)["url"] == feeds.url(PATH)
    assert "Xk2dq9ZRtoken" not in text
    assert source.redacted == "http://127.0.0.1/…"


def test_a_poll_in_progress_is_not_repeated(world: Sources, feeds: FeedServer) -> None:
    """The lease: a second poll while one runs answers busy and fetches nothing."""
    feeds.put(PATH, sample("pagerduty-schedule.ics"))
    source_id = world.add(feeds.url(PATH))
    with world.database.session() as session:
        row = session.get(Source, source_id)
        assert row is not None
        row.lease_owner, row.lease_expires_at = "other-worker", NOW + timedelta(minutes=1)
    assert world.poll(source_id).outcome == "busy"
    assert world.poll(source_id + 1000).outcome == "missing"
    assert feeds.statuses(PATH) == []
    assert world.poll(source_id, NOW + timedelta(minutes=2)).outcome == "changed"


def test_source_shifts_have_stable_external_ids(world: Sources, feeds: FeedServer) -> None:
    """external_id = source id + UID (+ RECURRENCE-ID for a series), the same on every poll."""
    feeds.put("/g.ics", sample("google-secret.ics"))
    source_id = world.add(feeds.url("/g.ics"))
    world.poll(source_id)
    ids = [s.external_id for s in world.shifts()]
    assert all(i.startswith(f"src{source_id}-") for i in ids)
    assert len(set(ids)) == 4
    with world.database.session() as session:
        session.execute(update(Shift).values(notes="edited"))
    world.poll(source_id, NOW + timedelta(days=1))
    assert [s.external_id for s in world.shifts()] == ids
