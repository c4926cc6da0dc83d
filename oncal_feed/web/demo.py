"""The demo calendar's pages (demo mode only): its authorization page and the calendar itself.

`/demo/authorize` is the "provider's" consent page the demo's OAuth flow sends the
browser to (see `connections/demo.py`); `/demo/calendar` shows the connected demo
calendar as the provider holds it, week by week or by month, and lets the person delete
an event there, as they could in Google Calendar, to watch push sync put it back.
Outside demo mode every route here is a 404.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, current_app, g, redirect, render_template, request, url_for
from sqlalchemy import update
from werkzeug.wrappers import Response

from oncal_feed.auth import current_user
from oncal_feed.connections import demo as demo_oauth
from oncal_feed.connections.service import get_connection
from oncal_feed.db import get_database, get_session, utcnow
from oncal_feed.models import CalendarConnection, User
from oncal_feed.providers.demo import DemoCalendarProvider, list_live_events
from oncal_feed.sync.tasks import request_sync
from oncal_feed.web.demo_grid import View, fingerprint, grid, grid_range
from oncal_feed.web.oauth import tell
from oncal_feed.web.views import page_login_required

__all__ = ["demo_blueprint"]

demo_blueprint = Blueprint("demo", __name__, template_folder="templates")


@demo_blueprint.before_request
def _demo_mode_only() -> None:
    if not current_app.config.get("DEMO_CALENDAR_CONFIGURED"):
        abort(404)


def _user() -> User:
    user = current_user()
    assert user is not None  # page_login_required ran first
    return user


# ------------------------------------------------------------ authorization page


def _authorize_params() -> dict[str, str]:
    """The authorization request's parameters, checked; a 400 page for a bad request."""
    source = request.args if request.method == "GET" else request.form
    params = {
        name: str(source.get(name) or "")
        for name in ("response_type", "client_id", "redirect_uri", "state", "code_challenge")
    }
    params["code_challenge_method"] = str(source.get("code_challenge_method") or "")
    if (
        params["response_type"] != "code"
        or params["client_id"] != demo_oauth.CLIENT_ID
        or params["redirect_uri"] != demo_oauth.callback_url(current_app)
        or not params["state"]
        or params["code_challenge_method"] != "S256"
        or not 43 <= len(params["code_challenge"]) <= 128
    ):
        # Never redirect to an unchecked redirect_uri (RFC 6749 4.1.2.1).
        abort(400)
    return params


@demo_blueprint.get("/demo/authorize")
@page_login_required
def authorize() -> str:
    """The demo calendar's consent page: allow oncal-feed to write into your calendar?"""
    return render_template(
        "demo_authorize.html", user=_user(), params=_authorize_params(), inline_messages=False
    )


@demo_blueprint.post("/demo/authorize")
@page_login_required
def authorize_answer() -> Response:
    """Send the browser back to oncal-feed's callback with a code, or with access_denied."""
    params = _authorize_params()
    answer: dict[str, str] = {"state": params["state"]}
    if request.form.get("decision") == "allow":
        answer["code"] = demo_oauth.authorization_code(
            current_app, _user().email, params["code_challenge"]
        )
    else:
        answer["error"] = "access_denied"
    return redirect(f"{params['redirect_uri']}?{urlencode(answer)}", code=303)


# ------------------------------------------------------------------ calendar page


def _view_and_anchor(today: date) -> tuple[View, date]:
    view: View = "month" if request.args.get("view") == "month" else "week"
    try:
        anchor = date.fromisoformat(str(request.args.get("date") or ""))
    except ValueError:
        anchor = today
    return view, anchor


@demo_blueprint.get("/demo/calendar")
@page_login_required
def calendar() -> str:
    """The connected demo calendar's events, as a week or a month."""
    user = _user()
    zone = ZoneInfo(user.time_zone)
    today = utcnow().astimezone(zone).date()
    view, anchor = _view_and_anchor(today)
    connection = get_connection(get_session(), user, "demo")
    connected = (
        connection is not None
        and connection.status != "disconnected"
        and connection.calendar_id is not None
    )
    first, last = grid_range(view, anchor)
    weeks = []
    if connected:
        assert connection is not None and connection.calendar_id is not None
        start = grid_range("week", first)[0]
        events = list_live_events(
            get_database(current_app),
            connection.calendar_id,
            _midnight(start, zone),
            _midnight(last, zone),
        )
        weeks = grid(view, anchor, zone, events, today)
    step = timedelta(days=7) if view == "week" else timedelta(days=31)
    previous = (first - timedelta(days=1)) if view == "month" else (anchor - step)
    following = last if view == "month" else anchor + step
    return render_template(
        "demo_calendar.html",
        user=user,
        connected=connected,
        connection=connection,
        view=view,
        anchor=anchor,
        weeks=weeks,
        fingerprint=fingerprint(connected, weeks),
        title=_title(view, first, last),
        previous=previous.isoformat(),
        following=following.isoformat(),
        today=today.isoformat(),
        proxy_signed_in=bool(g.get("proxy_signed_in")),
        inline_messages=False,
    )


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=zone)


def _title(view: View, first: date, last: date) -> str:
    if view == "month":
        middle = first + (last - first) / 2
        return f"{middle:%B %Y}"
    end = last - timedelta(days=1)
    return f"{first.day} {first:%b} - {end.day} {end:%b %Y}"


@demo_blueprint.post("/demo/calendar/events/<remote_id>/delete")
@page_login_required
def delete_event(remote_id: str) -> Response:
    """Delete an event in the demo calendar, as its owner could in a calendar app.

    oncal-feed then looks at the whole calendar again (a full check) soon, finds the
    shift's event gone and puts it back: the calendar is the feed's copy, not the truth.
    """
    user = _user()
    connection = get_connection(get_session(), user, "demo")
    view, day = request.args.get("view", "week"), request.args.get("date", "")
    back = redirect(url_for("demo.calendar", view=view, date=day), code=303)
    if connection is None or connection.calendar_id is None or connection.status == "disconnected":
        tell("Connect the demo calendar first.", "error")
        return back
    provider = DemoCalendarProvider(get_database(current_app), str(connection.account_email))
    provider.delete_event(connection.calendar_id, remote_id)
    _request_full_check(connection.id)
    tell(
        "Deleted from the demo calendar. oncal-feed notices within seconds and puts the "
        "shift back: your schedule, not the calendar, says who is on call.",
        "success",
    )
    return back


def _request_full_check(connection_id: int) -> None:
    """Make the next sync list the remote calendar, and ask for that sync now."""
    with get_database(current_app).session() as session:
        session.execute(
            update(CalendarConnection)
            .where(CalendarConnection.id == connection_id)
            .values(last_full_check_at=None)
            .execution_options(synchronize_session=False)
        )
    request_sync(current_app, [connection_id], delay=timedelta(0))
