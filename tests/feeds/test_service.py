"""feeds.service pieces that need no HTTP: client kinds, windows and option parsing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from oncal_feed.feeds.service import FeedOptions, client_kind, feed_window

AGENTS = [
    ("Google-Calendar-Importer", "google"),
    ("Mozilla/5.0 (compatible; Google-Calendar-Importer)", "google"),
    ("Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)", "microsoft"),
    ("Microsoft Office/16.0 (Macintosh; Mac OS X 14.5; Microsoft Outlook 16.86)", "microsoft"),
    ("Outlook-iOS/709.2226530.prod.iphone (4.2404.0)", "microsoft"),
    ("iCal/5.0 CFNetwork/1404.0.5 Darwin/22.3.0", "apple"),
    ("macOS/14.5 (23F79) CalendarAgent/1000", "apple"),
    ("iOS/17.5.1 (21F90) dataaccessd/1.0", "apple"),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.1.0", "thunderbird"),
    ("curl/8.5.0", "curl"),
    ("python-requests/2.32", "other"),
    ("", "other"),
]


@pytest.mark.parametrize(("agent", "kind"), AGENTS)
def test_client_kind(agent: str, kind: str) -> None:
    """Calendar clients are told apart by their User-Agent."""
    assert client_kind(agent) == kind


@pytest.mark.parametrize(
    "now",
    [datetime(2026, 3, 10, tzinfo=UTC), datetime(2026, 3, 10, 23, 59, 59, 999_999, tzinfo=UTC)],
)
def test_window_is_the_same_all_day(now: datetime) -> None:
    """Whole UTC days: [today - past, today + future + 1 day); tombstones from 30 days back."""
    window = feed_window(now, FeedOptions(past_days=2, future_days=3, schedule_keys=(), busy=False))
    assert window.day == datetime(2026, 3, 10, tzinfo=UTC)
    assert window.start == datetime(2026, 3, 8, tzinfo=UTC)
    assert window.end == datetime(2026, 3, 14, tzinfo=UTC)
    assert window.deleted_since == datetime(2026, 2, 8, tzinfo=UTC)
