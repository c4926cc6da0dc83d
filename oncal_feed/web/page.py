"""What the settings page shows, as plain values: no Flask, no HTML.

The view gathers rows and calls these functions; the template only lays the result out.
Times are shown in the user's zone; every function that depends on "now" is given it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any, overload
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo, available_timezones

from oncal_feed.calendar_creation import OrphanNotice
from oncal_feed.feeds.tokens import FeedLinks
from oncal_feed.models import CalendarConnection, Feed, Schedule, Shift, Source
from oncal_feed.providers.registry import PROVIDERS, provider_info
from oncal_feed.validation import is_known_zone

__all__ = [
    "FUTURE_DAY_CHOICES",
    "HANDOFF_REMINDER_CHOICES",
    "PAST_DAY_CHOICES",
    "PROVIDER_LABELS",
    "REMINDER_CHOICES",
    "REMINDER_RANGE",
    "SOURCE_TOOLS",
    "ConnectionCard",
    "Day",
    "FeedCard",
    "Moment",
    "Month",
    "MonthDay",
    "OnCallStatus",
    "PushLine",
    "ShiftLine",
    "SourceCard",
    "SubscribeLinks",
    "client_label",
    "connection_cards",
    "feed_card",
    "find_time_zone",
    "leftover_cards",
    "moment",
    "month_bounds",
    "month_view",
    "on_call_status",
    "push_lines",
    "reminder_choices",
    "source_cards",
    "subscribe_links",
    "sync_summary",
    "time_zone_names",
    "upcoming_days",
]

UPCOMING_DAYS = 14
EN_DASH = "\u2013"
PAST_DAY_CHOICES = (0, 7, 14, 30, 90, 180, 365)
# Minutes before a shift starts; in words for the settings page's reminder choice.
REMINDER_CHOICES = {
    0: "When it starts",
    5: "5 minutes before",
    10: "10 minutes before",
    15: "15 minutes before",
    30: "30 minutes before",
    60: "1 hour before",
    120: "2 hours before",
    720: "12 hours before",
    1440: "1 day before",
}
# Minutes before a shift ends (the hand-off), for a feed's second reminder.
HANDOFF_REMINDER_CHOICES = {
    0: "When it ends",
    5: "5 minutes before it ends",
    10: "10 minutes before it ends",
    15: "15 minutes before it ends",
    30: "30 minutes before it ends",
    60: "1 hour before it ends",
    120: "2 hours before it ends",
}
# Up to two days ahead (Google keeps at most four weeks, Outlook any).
REMINDER_RANGE = (0, 2 * 24 * 60)
FUTURE_DAY_CHOICES = (30, 60, 90, 180, 365, 730, 1095)
PROVIDER_LABELS = {info.name: info.label for info in PROVIDERS}
ROLE_LABELS = {
    "primary": "Primary",
    "secondary": "Secondary",
    "override": "Override",
    "shadow": "Shadow",
}
# `feeds.last_client` values (feeds.service.client_kind) in words.
CLIENT_LABELS = {
    "google": "Google Calendar",
    "microsoft": "Outlook",
    "apple": "Apple Calendar",
    "thunderbird": "Thunderbird",
    "curl": "curl",
    "other": "another app",
}
# Google Calendar's "add by URL" page takes the webcal form in `cid`; Outlook's
# `addfromweb` pages take the https form (outlook.live.com for personal Microsoft
# accounts, outlook.office.com for work and school ones). These are the forms the
# providers' own "subscribe" buttons use; neither is a formal API.
GOOGLE_ADD_URL = "https://calendar.google.com/calendar/r"
OUTLOOK_PERSONAL_ADD_URL = "https://outlook.live.com/calendar/0/addfromweb"
OUTLOOK_WORK_ADD_URL = "https://outlook.office.com/calendar/0/addfromweb"


@dataclass(frozen=True)
class Moment:
    """An instant for people: local text, a relative phrase, and ISO 8601 for `<time>`."""

    text: str
    relative: str
    iso: str


def _day_text(day: date, today: date) -> str:
    text = f"{day:%a} {day.day} {day:%b}"
    return text if day.year == today.year else f"{text} {day.year}"


def _local(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone)


def _relative(instant: datetime, now: datetime) -> str:
    seconds = (now - instant).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 60:
        return "just now" if not future else "in under a minute"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            phrase = f"{count} {unit}{'s' if count != 1 else ''}"
            return f"in {phrase}" if future else f"{phrase} ago"
    return "just now"  # pragma: no cover (the loop always answers)


@overload
def moment(instant: datetime, zone: ZoneInfo, now: datetime) -> Moment: ...
@overload
def moment(instant: None, zone: ZoneInfo, now: datetime) -> None: ...
@overload
def moment(instant: datetime | None, zone: ZoneInfo, now: datetime) -> Moment | None: ...
def moment(instant: datetime | None, zone: ZoneInfo, now: datetime) -> Moment | None:
    """Describe `instant` in `zone`, e.g. "Tue 4 Mar, 14:05" and "3 minutes ago"."""
    if instant is None:
        return None
    local = _local(instant, zone)
    text = f"{_day_text(local.date(), _local(now, zone).date())}, {local:%H:%M}"
    return Moment(text=text, relative=_relative(instant, now), iso=instant.isoformat())


# ------------------------------------------------------------------- shifts


@dataclass(frozen=True)
class ShiftLine:
    """One shift in the list: when (local), what, and the hand-overs."""

    when: str
    schedule: str
    role: str
    starts_iso: str
    handover_from: str | None
    handover_to: str | None
    notes: str
    ongoing: bool
    # Who else is on call beside it: (name, role label, email address).
    colleagues: tuple[tuple[str, str, str], ...] = ()
    # For the first of a run of daily repeats, e.g. "daily · 12 more, until Sun 22 Mar".
    repeats: str | None = None


@dataclass
class Day:
    """The shifts that start on one local day (ongoing ones are listed under today)."""

    label: str
    iso: str
    shifts: list[ShiftLine] = field(default_factory=list)


def _when(start: datetime, end: datetime, today: date, day: date) -> str:
    """Say when, relative to the `day` it is listed under (en dashes, hence `EN_DASH`).

    "09:00-17:00" within the day, "22:00 - Wed 11 Mar, 06:00" past it, and
    "since Mon 9 Mar, 22:00 - 10:00" for a shift under way since an earlier day.
    """
    start_text = f"{start:%H:%M}"
    if start.date() != day:
        start_text = f"since {_day_text(start.date(), today)}, {start:%H:%M}"
    end_text = f"{end:%H:%M}"
    if end.date() != day:
        end_text = f"{_day_text(end.date(), today)}, {end:%H:%M}"
    if start.date() == end.date() == day:
        return f"{start_text}{EN_DASH}{end_text}"
    return f"{start_text} {EN_DASH} {end_text}"


def _colleagues(shift: Shift) -> tuple[tuple[str, str, str], ...]:
    """Who else is on call beside `shift`, as (name, role label, email address)."""
    return tuple(
        (entry["name"], ROLE_LABELS.get(entry["role"], entry["role"].title()), entry["email"])
        for entry in shift.also_on_call or ()
    )


def upcoming_days(
    shifts: Iterable[Shift], zone: ZoneInfo, now: datetime, days: int = UPCOMING_DAYS
) -> list[Day]:
    """Group shifts overlapping the next `days` days by their local start day.

    `shifts` come ordered by start (`shifts.shifts_for_user`) with their schedules
    loaded. A shift already under way is listed under today, "since" its start.
    """
    today = _local(now, zone).date()
    groups: dict[date, Day] = {}
    for shift, more, last in _daily_runs(list(shifts), zone):
        start = _local(shift.starts_at, zone)
        end = _local(shift.ends_at, zone)
        day = max(start.date(), today)
        if day not in groups:
            if day == today:
                label = "Today"
            elif day == today + timedelta(days=1):
                label = "Tomorrow"
            else:
                label = _day_text(day, today)
            groups[day] = Day(label=label, iso=day.isoformat())
        groups[day].shifts.append(
            ShiftLine(
                when=_when(start, end, today, day),
                schedule=shift.schedule.name,
                role=ROLE_LABELS.get(shift.role, shift.role.title()),
                starts_iso=shift.starts_at.isoformat(),
                handover_from=shift.handover_from,
                handover_to=shift.handover_to,
                notes=shift.notes,
                ongoing=shift.starts_at <= now,
                colleagues=_colleagues(shift),
                repeats=(f"daily · {more} more, until {_day_text(last, today)}" if more else None),
            )
        )
    return [groups[key] for key in sorted(groups)]


@dataclass(frozen=True)
class MonthDay:
    """One day of the month view: its number, and the schedules you are on call for."""

    day: int
    iso: str
    schedules: tuple[str, ...]
    today: bool
    past: bool


@dataclass(frozen=True)
class Month:
    """This month as weeks of seven days, Monday first (None pads the first and last)."""

    title: str  # "December 2026"
    weekdays: tuple[str, ...]
    weeks: list[list[MonthDay | None]]


def month_bounds(zone: ZoneInfo, now: datetime) -> tuple[datetime, datetime]:
    """The current local month, as instants: [first day 00:00, next month's first 00:00)."""
    local = _local(now, zone)
    first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (first + timedelta(days=32)).replace(day=1)
    return first.astimezone(UTC), following.astimezone(UTC)


def month_view(shifts: Iterable[Shift], zone: ZoneInfo, now: datetime) -> Month:
    """Mark each local day of this month on which one of `shifts` (schedules loaded) is on.

    A shift counts on every local day it overlaps; one ending at midnight does not spill
    into the next day.
    """
    start, end = month_bounds(zone, now)
    first = _local(start, zone).date()
    days_in_month = (_local(end, zone).date() - first).days
    today = _local(now, zone).date()
    names: dict[date, list[str]] = {}
    for shift in shifts:
        day = max(_local(shift.starts_at, zone).date(), first)
        last = _local(shift.ends_at - timedelta(microseconds=1), zone).date()
        while day <= last and day.month == first.month:
            on = names.setdefault(day, [])
            if shift.schedule.name not in on:
                on.append(shift.schedule.name)
            day += timedelta(days=1)
    cells: list[MonthDay | None] = [None] * first.weekday()
    for n in range(days_in_month):
        day = first + timedelta(days=n)
        cells.append(
            MonthDay(day.day, day.isoformat(), tuple(names.get(day, ())), day == today, day < today)
        )
    cells += [None] * (-len(cells) % 7)
    return Month(
        title=f"{first:%B %Y}",
        weekdays=("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
        weeks=[cells[i : i + 7] for i in range(0, len(cells), 7)],
    )


# From this many shifts on, a daily run is one line: eleven near-identical cards of a
# follow-the-sun rotation pushed everything else off a phone's screen.
DAILY_RUN = 3


def _daily_runs(shifts: list[Shift], zone: ZoneInfo) -> list[tuple[Shift, int, date]]:
    """(first shift, how many more, local day of the last) for each run of shifts alike
    but for their day, one a day; a shift not in such a run is its own, with 0 more."""

    def alike(a: Shift, b: Shift) -> bool:
        a_start, b_start = _local(a.starts_at, zone), _local(b.starts_at, zone)
        return (
            b_start.date() == a_start.date() + timedelta(days=1)
            and b_start.time() == a_start.time()
            and _local(b.ends_at, zone).time() == _local(a.ends_at, zone).time()
            and b.ends_at - b.starts_at == a.ends_at - a.starts_at
            and (b.schedule.name, b.role, b.handover_from, b.handover_to, b.also_on_call, b.notes)
            == (a.schedule.name, a.role, a.handover_from, a.handover_to, a.also_on_call, a.notes)
        )

    runs: list[list[Shift]] = []
    for shift in shifts:
        # The run this shift continues: its last shift is the day before, alike.
        for run in reversed(runs):
            if alike(run[-1], shift):
                run.append(shift)
                break
        else:
            runs.append([shift])
    found: list[tuple[Shift, int, date]] = []
    for run in runs:
        if len(run) >= DAILY_RUN:
            found.append((run[0], len(run) - 1, _local(run[-1].starts_at, zone).date()))
        else:
            found.extend((shift, 0, _local(shift.starts_at, zone).date()) for shift in run)
    found.sort(key=lambda item: item[0].starts_at)
    return found


@dataclass(frozen=True)
class OnCallStatus:
    """The first line of the page: on call now (until when), or the next shift.

    `until` is the end of the run of back-to-back shifts under way (so a week split into
    daily shifts says "until Monday", not "until tonight"); `more` counts the other
    shifts under way at the same time (another schedule, say).
    """

    now: bool
    schedule: str
    role: str
    starts: Moment
    until: Moment
    more: int


def on_call_status(shifts: Sequence[Shift], zone: ZoneInfo, now: datetime) -> OnCallStatus | None:
    """Say whether the user is on call at `now`, and until when; else when next.

    `shifts` are the user's live shifts ordered by start (`shifts.shifts_for_user`), with
    their schedules loaded; None when none is under way or ahead.
    """
    current = [shift for shift in shifts if shift.starts_at <= now < shift.ends_at]
    if current:
        # The one that ends last, then the shifts that continue it without a gap.
        first = max(current, key=lambda shift: shift.ends_at)
        until = first.ends_at
        for shift in shifts:
            if shift.starts_at <= until < shift.ends_at:
                until = shift.ends_at
        return OnCallStatus(
            now=True,
            schedule=first.schedule.name,
            role=ROLE_LABELS.get(first.role, first.role.title()),
            starts=moment(first.starts_at, zone, now),
            until=moment(until, zone, now),
            more=len(current) - 1,
        )
    ahead = [shift for shift in shifts if shift.starts_at > now]
    if not ahead:
        return None
    upcoming = ahead[0]
    return OnCallStatus(
        now=False,
        schedule=upcoming.schedule.name,
        role=ROLE_LABELS.get(upcoming.role, upcoming.role.title()),
        starts=moment(upcoming.starts_at, zone, now),
        until=moment(upcoming.ends_at, zone, now),
        more=0,
    )


# --------------------------------------------------------------------- feed


@dataclass(frozen=True)
class SubscribeLinks:
    """Links that open the feed in calendar apps."""

    https: str
    webcal: str
    google: str
    outlook_personal: str
    outlook_work: str


def subscribe_links(links: FeedLinks, calendar_name: str) -> SubscribeLinks:
    """Build "add to Google Calendar" and "add to Outlook" links for a feed."""
    outlook_query = urlencode({"url": links.https, "name": calendar_name}, quote_via=quote)
    return SubscribeLinks(
        https=links.https,
        webcal=links.webcal,
        google=f"{GOOGLE_ADD_URL}?{urlencode({'cid': links.webcal}, quote_via=quote)}",
        outlook_personal=f"{OUTLOOK_PERSONAL_ADD_URL}?{outlook_query}",
        outlook_work=f"{OUTLOOK_WORK_ADD_URL}?{outlook_query}",
    )


@dataclass(frozen=True)
class FeedCard:
    """One of a person's feeds on the page: what it shows, its links, when last fetched,
    and its options (to fill its form)."""

    public_id: str
    name: str
    shows: str  # "Your shifts", "Your Payments API shifts", "Everyone on Payments API"
    schedule_feed: bool
    links: SubscribeLinks
    last_fetch: Moment | None
    last_client: str | None
    busy: bool
    reminder_minutes: int | None
    handoff_reminder_minutes: int | None
    past_days: int
    future_days: int
    schedule_keys: tuple[str, ...]


def feed_card(
    feed: Feed,
    links: FeedLinks,
    calendar_name: str,
    schedule_names: Mapping[str, str],
    zone: ZoneInfo,
    now: datetime,
) -> FeedCard:
    """Describe `feed` (its schedule loaded) for the settings page.

    `schedule_names` maps keys to names, for the schedules a personal feed is limited to.
    """
    keys = tuple(sorted(feed.schedule_keys or ()))
    if feed.schedule is not None:
        shows = f"Everyone on {feed.schedule.name}"
    elif keys:
        shows = "Your " + ", ".join(schedule_names.get(key, key) for key in keys) + " shifts"
    else:
        shows = "All your shifts"
    return FeedCard(
        public_id=feed.public_id,
        name=feed.name,
        shows=shows,
        schedule_feed=feed.schedule is not None,
        links=subscribe_links(links, calendar_name),
        last_fetch=moment(feed.last_fetched_at, zone, now),
        last_client=client_label(feed.last_client),
        busy=feed.busy,
        reminder_minutes=feed.reminder_minutes,
        handoff_reminder_minutes=feed.handoff_reminder_minutes,
        past_days=feed.past_days,
        future_days=feed.future_days,
        schedule_keys=keys,
    )


def client_label(kind: str | None) -> str | None:
    """Name the kind of calendar app that last fetched the feed."""
    if kind is None:
        return None
    return CLIENT_LABELS.get(kind, "another app")


@cache
def reminder_choices(current: int | None) -> list[tuple[int, str]]:
    """(minutes, words) to choose a reminder from, with `current` kept if set elsewhere."""
    choices = dict(REMINDER_CHOICES)
    if current is not None and current not in choices:
        choices[current] = f"{current} minutes before"
    return sorted(choices.items())


def time_zone_names() -> tuple[str, ...]:
    """The IANA zones a user may choose, sorted (the ones the API accepts too)."""
    return tuple(sorted(name for name in available_timezones() if is_known_zone(name)))


@cache
def _zones_by_spelling() -> dict[str, str]:
    """Each zone under its folded name, and under each shorter tail of it ("Salta",
    "Argentina/Salta") that no other zone ends with."""
    by_tail: dict[str, set[str]] = {}
    for name in time_zone_names():
        parts = name.split("/")
        for start in range(1, len(parts)):
            by_tail.setdefault(_fold_zone("/".join(parts[start:])), set()).add(name)
    found = {tail: next(iter(names)) for tail, names in by_tail.items() if len(names) == 1}
    found.update((_fold_zone(name), name) for name in time_zone_names())
    return found


def _fold_zone(text: str) -> str:
    return " ".join(text.replace("_", " ").split()).casefold()


def find_time_zone(text: str) -> str | None:
    """The zone someone typed in the searchable field: its IANA name in any case, with
    spaces for underscores, or just its city when one zone has it ("new york")."""
    return _zones_by_spelling().get(_fold_zone(text))


# -------------------------------------------------------------- connections


@dataclass(frozen=True)
class PushLine:
    """A schedule pushed into a calendar of its own, under its connection's card.

    `state` is "active", "error" or "needs_reauth", as for the connection.
    """

    schedule_key: str
    schedule_name: str
    calendar_name: str
    state: str
    last_sync: Moment | None  # the last good one
    last_attempt: Moment | None  # good or bad (the page watches it change)
    pending: bool
    last_error: str | None

    @property
    def watched(self) -> bool:
        """Whether the page watches it: changes waiting, or a first sync not yet done."""
        return self.pending or (self.state == "active" and self.last_sync is None)


def push_lines(
    pushes: Sequence[tuple[CalendarConnection, Schedule]], zone: ZoneInfo, now: datetime
) -> tuple[PushLine, ...]:
    """The lines of a connection's schedule pushes."""
    return tuple(
        PushLine(
            schedule_key=schedule.key,
            schedule_name=schedule.name,
            calendar_name=push.calendar_name or schedule.name,
            state=push.status if push.status in ("active", "error", "needs_reauth") else "error",
            last_sync=moment(push.last_success_at, zone, now),
            last_attempt=moment(push.last_sync_at, zone, now),
            pending=push.dirty_since is not None and push.status != "needs_reauth",
            last_error=push.last_error if push.status != "active" else None,
        )
        for push, schedule in pushes
    )


@dataclass(frozen=True)
class ConnectionCard:
    """One provider's box on the page: whether it can connect, and its state if it is.

    `state` is one of "unavailable" (not configured on this server), "none" (not
    connected), "active", "error" (last sync failed; retried) or "needs_reauth".
    """

    provider: str
    label: str
    state: str
    account_email: str | None = None
    calendar_name: str | None = None
    last_sync: Moment | None = None
    last_success: Moment | None = None
    next_retry: Moment | None = None
    created: int = 0
    updated: int = 0
    deleted: int = 0
    last_error: str | None = None
    pending: bool = False
    never_synced: bool = False
    busy: bool = False
    reminder_minutes: int | None = None
    schedule_keys: tuple[str, ...] = ()
    pushes: tuple[PushLine, ...] = ()
    push_choices: tuple[tuple[str, str], ...] = ()  # (key, name) of schedules to add

    @property
    def connected(self) -> bool:
        """Whether there is a connection to show (in any live state)."""
        return self.state in ("active", "error", "needs_reauth")


def connection_cards(
    configured: Mapping[str, bool],
    connections: Sequence[CalendarConnection],
    zone: ZoneInfo,
    now: datetime,
    pushes: Mapping[int, Sequence[tuple[CalendarConnection, Schedule]]] | None = None,
    followable: Sequence[tuple[str, str]] = (),
) -> list[ConnectionCard]:
    """One card per provider, Google first, from the user's live connections.

    A provider listed only where it is configured (the demo calendar) has no card
    elsewhere, unless a connection to it is left over. `pushes` are each connection's
    schedule pushes (by connection id); `followable` the (key, name) of the schedules
    the user may push, of which each card offers those it does not push yet.
    """
    pushes = pushes or {}
    by_provider = {row.provider: row for row in connections if row.status != "disconnected"}
    cards = []
    for info in PROVIDERS:
        provider, label = info.name, info.label
        row = by_provider.get(provider)
        if row is None and info.listed_only_when_configured and not configured.get(provider):
            continue
        if row is None:
            state = "none" if configured.get(provider) else "unavailable"
            cards.append(ConnectionCard(provider=provider, label=label, state=state))
            continue
        cards.append(
            ConnectionCard(
                provider=provider,
                label=label,
                state=row.status if row.status in ("active", "error", "needs_reauth") else "error",
                account_email=row.account_email,
                calendar_name=row.calendar_name,
                last_sync=moment(row.last_sync_at, zone, now),
                last_success=moment(row.last_success_at, zone, now),
                next_retry=moment(row.next_retry_at, zone, now) if row.status == "error" else None,
                created=row.last_created,
                updated=row.last_updated,
                deleted=row.last_deleted,
                last_error=row.last_error if row.status != "active" else None,
                pending=row.dirty_since is not None and row.status != "needs_reauth",
                never_synced=row.last_sync_at is None,
                busy=row.busy,
                reminder_minutes=row.reminder_minutes,
                schedule_keys=tuple(sorted(row.schedule_keys or ())),
                pushes=push_lines(pushes.get(row.id, ()), zone, now),
                push_choices=tuple(
                    (key, name)
                    for key, name in followable
                    if key not in {s.key for _, s in pushes.get(row.id, ())}
                ),
            )
        )
    return cards


@dataclass(frozen=True)
class LeftoverCard:
    """A notice that an interrupted setup may have left an empty calendar behind."""

    id: int
    label: str
    calendar_name: str
    since: Moment | None
    where: str
    url: str | None


def leftover_cards(
    notices: Sequence[OrphanNotice], zone: ZoneInfo, now: datetime
) -> list[LeftoverCard]:
    """One notice per possibly left-over calendar, in the user's zone."""
    cards = []
    for notice in notices:
        label = PROVIDER_LABELS.get(notice.provider, notice.provider)
        info = provider_info(notice.provider)
        settings = info.calendar_settings if info else None
        where, url = settings or (f"{label}'s settings", None)
        cards.append(
            LeftoverCard(
                id=notice.id,
                label=label,
                calendar_name=notice.calendar_name,
                since=moment(notice.since, zone, now),
                where=where,
                url=url,
            )
        )
    return cards


def sync_summary(result: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Turn `sync_user_now`'s answer into messages (text, kind), one per calendar."""
    connections = result.get("connections") or []
    if not connections:
        return [("There is no connected calendar to sync.", "info")]
    messages = []
    for item in connections:
        label = PROVIDER_LABELS.get(str(item.get("provider")), str(item.get("provider")))
        if item.get("schedule_calendar"):
            label = f"{label} “{item['schedule_calendar']}”"
        outcome = item.get("outcome")
        if outcome == "needs_reauth":
            messages.append((f"{label} needs you to reconnect it.", "error"))
        elif outcome == "failed":
            error = item.get("error") or "the calendar service did not answer."
            messages.append((f"{label} could not be synced. {error}", "error"))
        elif outcome == "partial":
            messages.append(
                (
                    f"{label} is partly synced ({item.get('created', 0)} added, "
                    f"{item.get('updated', 0)} changed, {item.get('deleted', 0)} removed); "
                    "the rest follows in a few seconds.",
                    "info",
                )
            )
        elif outcome == "busy":
            messages.append(
                (f"{label} is being synced right now; it will run again right after.", "info")
            )
        else:
            messages.append(
                (
                    f"{label} is up to date ({item.get('created', 0)} added, "
                    f"{item.get('updated', 0)} changed, {item.get('deleted', 0)} removed).",
                    "success",
                )
            )
    return messages


# ------------------------------------------------------------------- sources

# The tools a person can bring a feed from, and where that tool puts the feed's address
# (the README says more, per tool).
SOURCE_TOOLS = {
    "pagerduty": ("PagerDuty", "My On-Call Shifts, or a schedule's Schedule Info: WebCal feed."),
    "opsgenie": ("Opsgenie", "Your schedule's export (subscribe) link, webcal:// or https://."),
    "grafana": ("Grafana OnCall", "Your user profile: iCal link. Create it, then copy it."),
    "goalert": ("GoAlert", "Your profile: Calendar Subscriptions. Create one and copy its URL."),
    "google": (
        "Google Calendar",
        "Settings for my calendars → Integrate calendar → Secret address in iCal format.",
    ),
    "outlook": (
        "Outlook",
        "Settings → Calendar → Shared calendars → Publish a calendar → ICS link.",
    ),
    "other": ("Other tool", "Any iCalendar (ICS or webcal) address."),
}
SOURCE_STATES = {
    "new": ("info", "Waiting for the first check"),
    "ok": ("ok", "Working"),
    "failing": ("warn", "Check failing"),
    "held": ("bad", "Paused: the feed looks wrong"),
}


@dataclass(frozen=True)
class SourceCard:
    """One of the person's own feeds from another tool, and how it is doing."""

    id: int
    name: str
    address: str
    state: str
    badge: str
    state_text: str
    last_poll: Moment | None
    last_change: Moment | None
    next_poll: Moment | None
    events_read: int
    shifts_mapped: int
    problem: str | None


def source_cards(sources: Iterable[Source], zone: ZoneInfo, now: datetime) -> list[SourceCard]:
    """Cards for the settings page's "Bring your shifts" section, oldest source first."""
    cards = []
    for source in sources:
        badge, text = SOURCE_STATES.get(source.status, ("info", source.status))
        cards.append(
            SourceCard(
                id=source.id,
                name=source.name,
                address=source.redacted,
                state=source.status,
                badge=badge,
                state_text=text,
                last_poll=moment(source.last_poll_at, zone, now),
                last_change=moment(source.last_change_at, zone, now),
                next_poll=moment(source.next_poll_at, zone, now),
                events_read=source.events_read,
                shifts_mapped=source.shifts_mapped,
                problem=source.last_error,
            )
        )
    return cards
