"""The pages people use: sign-in, sign-out and the settings page with its forms.

Every form posts to a handler here that does one thing, flashes what happened and
redirects back to the settings page (post/redirect/get), so the page works without
JavaScript; `static/app.js` only adds the copy button, confirmation dialogs and a
status refresh while a sync is pending.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_limiter.errors import RateLimitExceeded
from sqlalchemy import select
from werkzeug.wrappers import Response

from oncal_feed import accounts
from oncal_feed.auth import current_user, sign_in, sign_out
from oncal_feed.calendar_creation import dismiss_notice, orphan_notices
from oncal_feed.connections import schedule_push
from oncal_feed.connections import service as connections
from oncal_feed.connections.disconnect import disconnect as disconnect_calendar
from oncal_feed.connections.errors import OAuthError
from oncal_feed.connections.flow import start_connect
from oncal_feed.connections.vault import get_vault
from oncal_feed.db import get_session, utcnow
from oncal_feed.errors import Conflict, NotFound, ValidationError
from oncal_feed.feeds import store as feed_store
from oncal_feed.feeds.service import (
    FUTURE_DAYS_RANGE,
    PAST_DAYS_RANGE,
    calendar_title,
    day_count,
)
from oncal_feed.feeds.tokens import feed_links, reachable_only_here
from oncal_feed.models import (
    DEFAULT_FEED_FUTURE_DAYS,
    DEFAULT_FEED_PAST_DAYS,
    CalendarConnection,
    Feed,
    Schedule,
    Shift,
    Source,
    User,
)
from oncal_feed.notify import shifts_changed
from oncal_feed.providers.base import ProviderError
from oncal_feed.shifts import next_shift_for_user, shifts_for_user
from oncal_feed.sources import service as sources
from oncal_feed.sources.tasks import get_poller
from oncal_feed.sync import request_sync, sync_user_now
from oncal_feed.validation import parse_user
from oncal_feed.web import page
from oncal_feed.web.oauth import remember_page_flow, tell
from oncal_feed.web.page import time_zone_names
from oncal_feed.web.security import (
    email_key,
    limiter,
    note_failure,
    recent_failures,
    remote_email_key,
    safe_next,
    sign_in_delay,
)

__all__ = ["page_login_required", "web_blueprint"]

log = logging.getLogger(__name__)

web_blueprint = Blueprint(
    "web",
    __name__,
    template_folder="templates",
    static_folder="static",
    # Not /static: the app's own (empty) static route would answer that path first.
    static_url_path="/assets",
)

_View = TypeVar("_View", bound=Callable[..., Any])


LOGIN_FAILED = "That email and password don't match an account. Check both and try again."
TOO_MANY_ATTEMPTS = "Too many sign-in attempts. Wait a minute, then try again."


def _login_rate_limit() -> str:
    return str(current_app.config["LOGIN_RATE_LIMIT"])


def page_login_required(view: _View) -> _View:
    """Send visitors who aren't signed in to the sign-in page (and back afterwards)."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_user() is None:
            target = request.full_path.rstrip("?") if request.method == "GET" else None
            return redirect(url_for("web.login", next=target))
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _user() -> User:
    user = current_user()
    assert user is not None, "page_login_required runs first"
    return user


def _zone(user: User) -> ZoneInfo:
    try:
        return ZoneInfo(user.time_zone)
    except (ValueError, KeyError):  # a zone this machine lost after an upgrade
        return ZoneInfo("UTC")


def _back(anchor: str = "") -> Response:
    return redirect(url_for("web.settings") + (f"#{anchor}" if anchor else ""), code=303)


@web_blueprint.errorhandler(RateLimitExceeded)
def _too_many(exc: RateLimitExceeded) -> tuple[str, int, dict[str, str]]:
    # The limit's window, e.g. 60 for "10 per minute": when trying again surely works.
    retry = int(exc.limit.limit.get_expiry())
    target = safe_next(request.form.get("next"))
    body = render_template("login.html", error=TOO_MANY_ATTEMPTS, email="", next=target)
    return body, 429, {"Retry-After": str(retry)}


# ------------------------------------------------------------------ sign-in


@web_blueprint.get("/")
def index() -> Response:
    """The settings page is the home page."""
    return redirect(url_for("web.settings"))


@web_blueprint.get("/login")
def login_form() -> Response | str:
    """The sign-in form; someone already signed in goes straight on."""
    target = safe_next(request.args.get("next"))
    if current_user() is not None:
        return redirect(target)
    return render_template("login.html", email="", next=target, error=None)


@web_blueprint.post("/login")
@limiter.limit(_login_rate_limit, key_func=remote_email_key, scope="login-ip-email")
@limiter.limit(_login_rate_limit, scope="login-ip")
def login() -> Response | tuple[str, int]:
    """Check the email and password; sign in and go to `next` (a local path only).

    Recent failures on the email slow the check down (see `web.security`); every
    failure costs one password hash check, whatever made it fail.
    """
    email = str(request.form.get("email", "")).strip()
    password = str(request.form.get("password", ""))
    target = safe_next(request.form.get("next"))
    counter = email_key()
    delay = sign_in_delay(recent_failures(counter), current_app.config["LOGIN_SLOWDOWN_SECONDS"])
    if delay:
        time.sleep(delay)  # a greenlet under gunicorn: waiting costs no thread
    user = None
    if email and len(email) <= 320:
        with suppress(NotFound):
            user = accounts.get_user_by_email(get_session(), email)
    acceptable = bool(password) and len(password) <= 1024
    if not accounts.check_password(user if acceptable else None, password[:1024]):
        note_failure(counter)
        log.info("sign-in refused")  # never the email or password
        return render_template("login.html", email=email, next=target, error=LOGIN_FAILED), 401
    assert user is not None, "check_password is False without a user"
    sign_in(user)
    return redirect(target, code=303)


@web_blueprint.post("/logout")
def logout() -> Response:
    """End the user's sessions everywhere (a form with the CSRF token, so no page can sign
    you out)."""
    sign_out()
    flash("You are signed out, on every device.", "info")
    return redirect(url_for("web.login"), code=303)


# ------------------------------------------------------------------ settings


@web_blueprint.get("/settings")
@page_login_required
def settings() -> str:
    """The settings page: shifts, the feeds, connections with their options, time zone."""
    user = _user()
    database = get_session()
    now = utcnow()
    zone = _zone(user)
    shifts = shifts_for_user(database, user.id, now, now + timedelta(days=page.UPCOMING_DAYS))
    ahead = shifts
    if not ahead:  # none in the two weeks listed: the first line still says when next
        found = next_shift_for_user(database, user.id, now)
        ahead = [found] if found is not None else []
    month_start, month_end = page.month_bounds(zone, now)
    month = page.month_view(shifts_for_user(database, user.id, month_start, month_end), zone, now)
    config = current_app.config
    user_connections = connections.list_connections(database, user)
    followable = _followable_schedules(user)
    cards = page.connection_cards(
        connections.configured_providers(config),
        user_connections,
        zone,
        now,
        pushes={row.id: schedule_push.list_pushes(database, row) for row in user_connections},
        followable=followable,
    )
    feeds = feed_store.list_feeds(database, user)
    chosen = {key for feed in feeds for key in feed.schedule_keys or ()}
    chosen |= {key for row in user_connections for key in row.schedule_keys or ()}
    schedules = _schedule_choices(user, chosen)
    names = {key: name for key, name, _ in schedules}
    feed_cards = [
        page.feed_card(
            feed,
            feed_links(feed),
            calendar_title(feed.schedule.name if feed.schedule else user.display_name),
            names,
            zone,
            now,
        )
        for feed in feeds
    ]
    return render_template(
        "settings.html",
        user=user,
        days=page.upcoming_days(shifts, zone, now),
        month=month,
        status=page.on_call_status(ahead, zone, now),
        feeds=feed_cards,
        followable=followable,
        feed_local_only=reachable_only_here(config["BASE_URL"]),
        schedules=schedules,
        past_choices=page.PAST_DAY_CHOICES,
        future_choices=page.FUTURE_DAY_CHOICES,
        default_window=(DEFAULT_FEED_PAST_DAYS, DEFAULT_FEED_FUTURE_DAYS),
        reminder_choices=page.reminder_choices(None),
        handoff_choices=sorted(page.HANDOFF_REMINDER_CHOICES.items()),
        cards=cards,
        leftovers=page.leftover_cards(orphan_notices(database, user.id, now), zone, now),
        polling=any(
            card.pending or card.never_synced or any(push.watched for push in card.pushes)
            for card in cards
            if card.connected
        ),
        sources=page.source_cards(sources.personal_sources(database, user), zone, now),
        source_tools=page.SOURCE_TOOLS,
        zones=time_zone_names(),
        proxy_signed_in=bool(g.get("proxy_signed_in")),
        inline_messages=True,
    )


def _schedule_choices(user: User, chosen: set[str]) -> list[tuple[str, str, bool]]:
    """(key, name, in use) for the schedules this user has shifts in, plus ones a feed or
    connection of theirs is limited to (so a filter never hides a choice it made)."""
    database = get_session()
    rows = database.execute(
        select(Schedule.key, Schedule.name)
        .where(
            Schedule.id.in_(select(Shift.schedule_id).where(Shift.user_id == user.id).distinct())
            | Schedule.key.in_(chosen)
        )
        .order_by(Schedule.name, Schedule.key)
    ).all()
    return [(key, name, key in chosen) for key, name in rows]


def _followable_schedules(user: User) -> list[tuple[str, str]]:
    """(key, name) of the schedules `user` may subscribe to whole: all for an admin, else
    those they have shifts in."""
    query = select(Schedule.key, Schedule.name).order_by(Schedule.name, Schedule.key)
    if user.role != "admin":
        query = query.where(
            Schedule.id.in_(select(Shift.schedule_id).where(Shift.user_id == user.id).distinct())
        )
    return [(key, name) for key, name in get_session().execute(query)]


def _confirmed() -> bool:
    return request.form.get("confirm") == "yes"


def _ask(title: str, message: str, action: str, button: str, **fields: str) -> str:
    """The page that asks before a form's action, for browsers without JavaScript."""
    return render_template(
        "confirm.html", title=title, message=message, action=action, button=button, fields=fields
    )


def _own_feed(public_id: str) -> Feed | None:
    try:
        return feed_store.get_feed(get_session(), _user(), public_id)
    except NotFound:
        tell("That feed no longer exists.", "error", "feed")
        return None


@web_blueprint.post("/settings/feeds")
@page_login_required
def create_feed() -> Response:
    """Add a named feed: the user's own shifts, or a whole schedule's."""
    user = _user()
    database = get_session()
    schedule = None
    key = request.form.get("shows", "")
    try:
        settings = _feed_settings(default_name="")
        if key:
            schedule = database.scalar(select(Schedule).where(Schedule.key == key))
            if schedule is None:
                raise ValidationError.single("shows", "Choose one of the schedules listed.")
        feed = feed_store.create_feed(database, user, settings, utcnow(), schedule)
    except ValidationError as exc:
        database.rollback()
        tell(exc.errors[0].problem, "error", "feed")
        return _back("feed")
    database.commit()
    tell(f"Feed “{feed.name}” created: subscribe to its address below.", "success", "feed")
    return _back(f"feed-{feed.public_id}")


@web_blueprint.post("/settings/feeds/<public_id>/options")
@page_login_required
def feed_options(public_id: str) -> Response:
    """Save a feed's name, window, schedules, busy/free and reminder."""
    feed = _own_feed(public_id)
    if feed is None:
        return _back("feed")
    database = get_session()
    try:
        settings = _feed_settings(default_name=feed.name)
    except ValidationError as exc:
        tell(exc.errors[0].problem, "error", "feed")
        return _back(f"feed-{public_id}")
    feed_store.update_feed(database, feed, settings, utcnow())
    database.commit()
    tell(f"Options of “{feed.name}” saved.", "success", "feed")
    return _back(f"feed-{public_id}")


@web_blueprint.post("/settings/feeds/<public_id>/rotate")
@page_login_required
def rotate(public_id: str) -> Response | str:
    """Replace a feed's URL (after a confirmation: on a page without JavaScript)."""
    feed = _own_feed(public_id)
    if feed is None:
        return _back("feed")
    if not _confirmed():
        return _ask(
            f"Replace the address of “{feed.name}”?",
            "Every calendar app subscribed to its current address stops receiving this feed. "
            "You will need to subscribe again with the new address.",
            url_for("web.rotate", public_id=public_id),
            "Replace the address",
        )
    database = get_session()
    feed_store.rotate_feed(database, feed, utcnow())
    database.commit()
    tell(
        f"“{feed.name}” has a new address. The old one has stopped working: subscribe "
        "again with the new one in each calendar app that used it.",
        "success",
        "feed",
    )
    return _back(f"feed-{public_id}")


@web_blueprint.post("/settings/feeds/<public_id>/revoke")
@page_login_required
def revoke_feed(public_id: str) -> Response | str:
    """Delete a feed; its address stops working (after a confirmation)."""
    feed = _own_feed(public_id)
    if feed is None:
        return _back("feed")
    if not _confirmed():
        return _ask(
            f"Revoke “{feed.name}”?",
            "Its address stops working at once, and calendar apps subscribed to it get no "
            "more updates. Your other feeds keep working.",
            url_for("web.revoke_feed", public_id=public_id),
            "Revoke the feed",
        )
    database = get_session()
    try:
        feed_store.delete_feed(database, feed)
    except ValidationError as exc:
        database.rollback()
        tell(exc.errors[0].problem, "error", "feed")
        return _back(f"feed-{public_id}")
    database.commit()
    tell(f"“{feed.name}” is revoked; its address no longer works.", "success", "feed")
    return _back("feed")


def _feed_settings(default_name: str) -> feed_store.FeedSettings:
    """Read a feed form; `ValidationError` names the first field that is wrong."""
    form = request.form
    name = " ".join(form.get("name", "").split()) or default_name
    if not name:
        raise ValidationError.single("name", "Give the feed a name, e.g. “Phone”.")
    if len(name) > feed_store.MAX_NAME_LENGTH:
        raise ValidationError.single(
            "name", f"A feed's name has at most {feed_store.MAX_NAME_LENGTH} characters."
        )
    options = _push_options()
    return feed_store.FeedSettings(
        name=name,
        past_days=_whole(form.get("past_days"), PAST_DAYS_RANGE, "days back"),
        future_days=_whole(form.get("future_days"), FUTURE_DAYS_RANGE, "days ahead"),
        busy=options.busy,
        reminder_minutes=options.reminder_minutes,
        handoff_reminder_minutes=_optional_reminder("handoff_reminder"),
        schedule_keys=options.schedule_keys,
    )


def _push_options() -> connections.ConnectionOptions:
    """Read the schedules, busy/free and reminder fields every options form has."""
    reminder = _optional_reminder("reminder")
    keys = sorted(set(request.form.getlist("schedule")))
    known = get_session().scalars(select(Schedule.key).where(Schedule.key.in_(keys)))
    return connections.ConnectionOptions(
        busy=request.form.get("busy") == "1",
        reminder_minutes=reminder,
        schedule_keys=tuple(sorted(known)),
    )


@web_blueprint.post("/settings/connections/<provider>/options")
@page_login_required
def connection_options(provider: str) -> Response:
    """Save what one connected calendar shows: schedules, busy/free and the reminder."""
    user = _user()
    database = get_session()
    connection = _account(provider)
    if connection is None:
        return _back("connections")
    try:
        options = _push_options()
    except ValidationError as exc:
        tell(exc.errors[0].problem, "error", "connections")
        return _back(f"connection-{provider}")
    if connections.set_options(connection, options, utcnow()):
        database.commit()
        shifts_changed({user.id})  # the calendar's events change: push them
    tell(f"Options of {page.PROVIDER_LABELS[provider]} saved.", "success", "connections")
    return _back(f"connection-{provider}")


def _optional_reminder(field: str) -> int | None:
    """Read a reminder's minutes from the form's `field`; None when it is left empty."""
    raw = request.form.get(field, "")
    if raw == "":
        return None
    low, high = page.REMINDER_RANGE
    number = day_count(raw, page.REMINDER_RANGE)
    if number is None:
        raise ValidationError.single(
            field, f"Choose a reminder from {low} to {high} minutes before, or none."
        )
    return number


def _whole(raw: str | None, bounds: tuple[int, int], name: str) -> int:
    number = day_count(raw, bounds)
    if number is None:
        raise ValidationError.single(name, f"Choose from {bounds[0]} to {bounds[1]} {name}.")
    return number


@web_blueprint.post("/settings/time-zone")
@page_login_required
def time_zone() -> Response:
    """Save the zone the page shows times in."""
    database = get_session()
    zone = page.find_time_zone(request.form.get("time_zone", ""))
    if zone is None:
        tell("Choose a time zone from the list (type a city, e.g. Berlin).", "error", "time-zone")
        return _back("time-zone")
    data = parse_user({"time_zone": zone}, partial=True)
    accounts.update_user(database, _user(), data, utcnow())
    database.commit()
    tell(f"Times are now shown in {data.time_zone}.", "success", "time-zone")
    return _back("time-zone")


# --------------------------------------------------------------- connections


@web_blueprint.post("/settings/connect/<provider>")
@page_login_required
def connect(provider: str) -> Response | str:
    """Start connecting a calendar: straight on to Google's or Microsoft's consent page.

    A form with the CSRF token (a POST): starting replaces any flow under way, which no
    other site's link may do. The answer is a page that moves on to the consent page by
    itself (a meta refresh, plus a link): browsers apply CSP `form-action 'self'` to
    redirects after a form too, and the consent page is on another origin, which for
    Microsoft is only known from its discovery document. The JSON route
    (`/api/calendar/<provider>/connect`) answers the authorization URL. The callback
    sees the mark left here and brings the browser back to this page with a message.
    """
    if provider not in page.PROVIDER_LABELS:
        return _back("connections")
    primary = request.form.get("primary")
    try:
        url = start_connect(
            get_session(), _user(), provider, use_primary=True if primary == "1" else None
        )
    except OAuthError as exc:
        tell(exc.message, "error", "connections")
        return _back("connections")
    remember_page_flow(provider)
    return render_template("continue.html", label=page.PROVIDER_LABELS[provider], url=url)


@web_blueprint.post("/settings/sync")
@page_login_required
def sync_now() -> Response:
    """Push shifts to the connected calendars now, and say what happened."""
    for message, kind in page.sync_summary(sync_user_now(_user())):
        tell(message, kind, "connections")
    return _back("connections")


@web_blueprint.post("/settings/leftovers/<int:notice_id>/dismiss")
@page_login_required
def dismiss_leftover(notice_id: int) -> Response:
    """Hide the notice about a calendar an interrupted setup may have left behind."""
    database = get_session()
    if dismiss_notice(database, _user().id, notice_id):
        database.commit()
        tell("The notice is dismissed.", "info", "connections")
    else:
        tell("That notice was already dismissed.", "info", "connections")
    return _back("connections")


@web_blueprint.post("/settings/connections/<provider>/disconnect")
@page_login_required
def disconnect(provider: str) -> Response | str:
    """Disconnect a calendar, keeping or removing the events written into it."""
    if provider not in page.PROVIDER_LABELS:
        return _back("connections")
    label = page.PROVIDER_LABELS[provider]
    remove = request.form.get("events") == "remove"
    if not _confirmed():
        return _ask(
            f"Disconnect {label}?",
            (
                f"Shifts will no longer be written into {label}. "
                + (
                    "The events already there will be removed."
                    if remove
                    else "The events already there stay until you delete them."
                )
            ),
            url_for("web.disconnect", provider=provider),
            "Disconnect",
            events="remove" if remove else "keep",
        )
    try:
        result = disconnect_calendar(get_session(), _user(), provider, remove_events=remove)
    except OAuthError as exc:
        tell(exc.message, "error", "connections")
        return _back("connections")
    if result.events_removed:
        message = f"{label} is disconnected and its on-call events were removed."
    else:
        message = f"{label} is disconnected. The events already there stay."
    tell(message, "success", "connections")
    return _back("connections")


def _account(provider: str) -> CalendarConnection | None:
    """The signed-in user's live account connection to `provider`, else None (said)."""
    connection = (
        connections.get_connection(get_session(), _user(), provider)
        if provider in page.PROVIDER_LABELS
        else None
    )
    if connection is None or connection.status == "disconnected":
        tell("That calendar is not connected.", "error", "connections")
        return None
    return connection


@web_blueprint.post("/settings/connections/<provider>/schedules")
@page_login_required
def add_schedule_push(provider: str) -> Response:
    """Push a whole schedule into a calendar of its own, through this connection."""
    account = _account(provider)
    if account is None:
        return _back("connections")
    database = get_session()
    key = request.form.get("schedule", "")
    schedule = database.scalar(select(Schedule).where(Schedule.key == key)) if key else None
    try:
        if schedule is None:
            raise ValidationError.single("schedule", "Choose one of the schedules listed.")
        push = schedule_push.add_push(database, _user(), account, schedule, utcnow())
    except (ValidationError, Conflict) as exc:
        database.rollback()
        problem = exc.problem if isinstance(exc, Conflict) else exc.errors[0].problem
        tell(problem, "error", "connections")
        return _back(f"connection-{provider}")
    database.commit()
    request_sync(current_app._get_current_object(), [push.id], delay=timedelta(0))  # type: ignore[attr-defined]
    tell(
        f"{schedule.name} is being pushed into its own calendar, “{push.calendar_name}”, "
        f"in {page.PROVIDER_LABELS[provider]}: its events appear within seconds.",
        "success",
        "connections",
    )
    return _back(f"connection-{provider}")


@web_blueprint.post("/settings/connections/<provider>/schedules/<key>/stop")
@page_login_required
def stop_schedule_push(provider: str, key: str) -> Response | str:
    """Stop pushing a schedule: its calendar is deleted (after asking, without JavaScript)."""
    account = _account(provider)
    if account is None:
        return _back("connections")
    label = page.PROVIDER_LABELS[provider]
    if not _confirmed():
        return _ask(
            "Stop pushing this schedule?",
            f"Its calendar is deleted from {label}, for everyone you shared it with.",
            url_for("web.stop_schedule_push", provider=provider, key=key),
            "Stop and delete the calendar",
        )
    database = get_session()
    try:
        removal = schedule_push.remove_push(database, account, key, now=utcnow())
    except NotFound:
        tell("That schedule is not pushed to its own calendar.", "error", "connections")
        return _back(f"connection-{provider}")
    except Conflict as exc:
        tell(exc.problem, "error", "connections")
        return _back(f"connection-{provider}")
    except ProviderError as exc:
        tell(f"The calendar could not be deleted ({exc}). Nothing was changed; try again.",
             "error", "connections")  # fmt: skip
        return _back(f"connection-{provider}")
    if removal.left_behind:
        message = (
            f"oncal-feed no longer pushes it. Access to {label} was lost, so the calendar "
            f"“{removal.left_behind}” stays there: delete it in {label} if you no longer want it."
        )
    else:
        message = f"Stopped: the schedule's calendar was deleted from {label}."
    tell(message, "success", "connections")
    return _back(f"connection-{provider}")


@web_blueprint.post("/settings/sources")
@page_login_required
def add_source() -> Response:
    """Add the person's own feed from another tool; the worker checks it at once."""
    tool = request.form.get("tool", "other")
    label = page.SOURCE_TOOLS.get(tool, page.SOURCE_TOOLS["other"])[0]
    user = _user()
    try:
        source = sources.create_personal_source(
            get_session(),
            user,
            label,
            request.form.get("url", ""),
            get_vault(),
            utcnow(),
            current_app.config["SOURCE_POLL_INTERVAL"],
        )
    except ValidationError as exc:
        tell(f"That address can't be used: {exc.errors[0].problem}.", "error", "sources")
        return _back("sources")
    get_session().commit()
    try:
        get_poller().nudge(source.id)
    except Exception:
        log.exception("could not queue a poll of source %s; the sweep will", source.id)
    tell(f"Added the {label} feed. Its shifts appear here within a minute.", "success", "sources")
    return _back("sources")


def _own_source(source_id: int) -> Source | None:
    found = get_session().get(Source, source_id)
    user = _user()
    if found is None or found.user_id != user.id or not (found.options or {}).get("personal"):
        return None
    return found


@web_blueprint.post("/settings/sources/<int:source_id>/remove")
@page_login_required
def remove_source(source_id: int) -> Response:
    """Remove one of the person's own feeds; the shifts it brought are cancelled."""
    found = _own_source(source_id)
    if found is None:
        return _back("sources")
    name = found.name
    result = sources.delete_source(get_session(), found, utcnow())
    get_session().commit()
    shifts_changed(result.touched_user_ids)
    tell(
        f"Removed the {name} feed; its shifts were taken off your calendars.", "success", "sources"
    )
    return _back("sources")


@web_blueprint.post("/settings/sources/<int:source_id>/accept")
@page_login_required
def accept_source(source_id: int) -> Response:
    """Take a paused feed's new state (it suddenly lost events) as right."""
    found = _own_source(source_id)
    if found is None:
        return _back("sources")
    get_session().rollback()  # the poll uses sessions of its own
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    report = sources.poll_source(app, source_id, utcnow(), accept=True)
    if report.problem:
        tell(f"The feed could not be read: {report.problem}", "error", "sources")
    else:
        tell("Done: your calendars now follow the feed as it is.", "success", "sources")
    return _back("sources")
