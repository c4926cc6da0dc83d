"""Reading PagerDuty's REST API v2 `GET /oncalls` into occurrences.

Final on-call entries (what schedules, overrides and escalation rules compute to) for the
given schedules, with each user's email (`include[]=users`), paged with `offset`/`limit`
while `more` is true. `since`/`until` spans are cut into pieces of at most 90 days, the
longest the endpoint accepts. Escalation level 1 is the primary, 2 the secondary, and
deeper levels are named `level-N`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from oncal_feed.sources.errors import FeedRejected, FetchFailed
from oncal_feed.sources.fetch import FetchLimits, Resolver, fetch
from oncal_feed.sources.ics import Occurrence, Reading
from oncal_feed.validation import MAX_SHIFT_LENGTH

__all__ = ["MAX_SPAN", "PAGE_SIZE", "read_oncalls", "role_for_level"]

MAX_SPAN = timedelta(days=90)
PAGE_SIZE = 100
MAX_PAGES = 200  # 20,000 entries per span: far beyond any real schedule


def role_for_level(level: int) -> str:
    """The shift role of an escalation level."""
    if level <= 1:
        return "primary"
    if level == 2:
        return "secondary"
    return f"level-{level}"


def read_oncalls(
    api_base: str,
    token: str,
    schedule_ids: Sequence[str],
    window_start: datetime,
    window_end: datetime,
    *,
    limits: FetchLimits,
    resolve: Resolver | None = None,
) -> Reading:
    """Return the schedules' on-call entries overlapping the window, one occurrence each."""
    headers = {
        "Accept": "application/vnd.pagerduty+json;version=2",
        "Authorization": f"Token token={token}",
    }
    found: dict[str, Occurrence] = {}
    links: dict[str, str] = {}  # schedule id -> its page on PagerDuty
    skipped = 0
    since = window_start
    while since < window_end:
        until = min(window_end, since + MAX_SPAN)
        for offset in range(0, MAX_PAGES * PAGE_SIZE, PAGE_SIZE):
            query = [
                ("since", _stamp(since)),
                ("until", _stamp(until)),
                ("limit", str(PAGE_SIZE)),
                ("offset", str(offset)),
                ("include[]", "users"),
                ("time_zone", "UTC"),
            ] + [("schedule_ids[]", schedule_id) for schedule_id in schedule_ids]
            url = f"{api_base}/oncalls?{urlencode(query)}"
            kwargs: dict[str, Any] = {"limits": limits, "headers": headers}
            if resolve is not None:
                kwargs["resolve"] = resolve
            try:
                page = _page(fetch(url, **kwargs).body)
            except FetchFailed as exc:
                problem = exc.problem.replace("The feed", "PagerDuty's API", 1)
                raise FetchFailed(problem, retry_after=exc.retry_after) from None
            for entry in page["oncalls"]:
                links.update(_schedule_link(entry))
                occurrence = _occurrence(entry, since, until)
                if occurrence is None:
                    skipped += 1
                elif occurrence.starts_at < window_end and occurrence.ends_at > window_start:
                    found.setdefault(occurrence.key, occurrence)
            if not page.get("more"):
                break
        since = until
    occurrences = sorted(found.values(), key=lambda o: (o.starts_at, o.key))
    # The first schedule's page: the one a source of several is named after.
    link = next((links[i] for i in schedule_ids if i in links), None)
    return Reading(occurrences, skipped, link)


def _schedule_link(entry: Any) -> dict[str, str]:
    """The entry's schedule id and its `html_url`, when it is a web address."""
    schedule = entry.get("schedule") if isinstance(entry, dict) else None
    if not isinstance(schedule, dict):
        return {}
    url = schedule.get("html_url")
    if not isinstance(url, str) or not url.startswith("https://") or len(url) > 2000:
        return {}
    return {str(schedule.get("id") or ""): url}


def _stamp(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _page(body: bytes) -> dict[str, Any]:
    """Decode one page of `/oncalls`; raise `FeedRejected` if it isn't one."""
    try:
        page = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise FeedRejected("PagerDuty's answer was not JSON. Nothing was changed.") from None
    if not isinstance(page, dict) or not isinstance(page.get("oncalls"), list):
        raise FeedRejected("PagerDuty's answer had no list of on-calls. Nothing was changed.")
    return page


def _occurrence(entry: Any, since: datetime, until: datetime) -> Occurrence | None:
    """One on-call entry as an occurrence; open ends (always on call) are the span's."""
    try:
        user = entry["user"]
        level = int(entry["escalation_level"])
        schedule = entry.get("schedule") or {}
        start = datetime.fromisoformat(entry["start"]) if entry.get("start") else since
        end = datetime.fromisoformat(entry["end"]) if entry.get("end") else until
    except (KeyError, TypeError, ValueError):
        return None
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start or end - start > MAX_SHIFT_LENGTH:
        return None
    email = str(user.get("email") or "").lower()
    name = str(user.get("name") or user.get("summary") or "")
    schedule_name = str(schedule.get("summary") or "")
    key = "\n".join(
        ["pagerduty", str(schedule.get("id") or ""), str(level), str(user.get("id")), _stamp(start)]
    )
    return Occurrence(
        key=key,
        starts_at=start,
        ends_at=end,
        summary=f"{name} on call" + (f" ({schedule_name})" if schedule_name else ""),
        emails=(email,) if email else (),
        role=role_for_level(level),
    )
