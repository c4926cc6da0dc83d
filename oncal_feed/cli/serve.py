"""`oncal-feed serve` and `oncal-feed demo`: the development server, and a first try."""

from __future__ import annotations

import textwrap
from pathlib import Path
from urllib.parse import urlsplit

import click

from oncal_feed import notify
from oncal_feed.cli.helpers import (
    app_context,
    check_port_free,
    describe_database,
    require_schema,
    run_server,
)
from oncal_feed.db import get_database, utcnow
from oncal_feed.feeds.store import first_feed
from oncal_feed.feeds.tokens import feed_links, reachable_only_here
from oncal_feed.migrate import upgrade
from oncal_feed.shifts import WriteResult

__all__ = ["demo", "serve"]


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
def serve(host: str, port: int) -> None:
    """Run the development server (use gunicorn in production: `gunicorn wsgi:app`)."""
    with app_context() as app:
        require_schema(get_database(app))
    run_server(app, host, port)


LOCAL_FEED_WARNING = (
    "This feed address names this machine ({host}), so only calendar apps running here can "
    "subscribe to it (Apple Calendar, Thunderbird, Outlook desktop). Google Calendar and "
    "Outlook on the web fetch feeds from their own servers, which can't reach it: for them, "
    "serve oncal-feed on an https address they can reach and set BASE_URL to it (for the "
    "demo: --base-url https://...)."
)
DEV_SERVER_NOTE = (
    'Flask prints a red "WARNING: This is a development server" next: expected for a '
    "first try. For real use run gunicorn (docs/deployment.md)."
)


@click.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--base-url",
    default=None,
    help="The address people reach this server at (e.g. an https tunnel); "
    "default http://HOST:PORT.",
)
@click.option("--no-serve", is_flag=True, help="Seed the demo data and print, but don't serve.")
def demo(host: str, port: int, base_url: str | None, no_serve: bool) -> None:
    """Try oncal-feed with no configuration: demo data, then a local server.

    Runs in demo mode (secrets are generated and kept in the instance folder), brings the
    database up to date, creates demo users and schedules with shifts from a month ago to
    three months ahead, prints how to sign in and the demo user's feed URL, and serves on
    http://HOST:PORT with a push-sync worker and the built-in demo calendar to connect.
    Running it again keeps the users, password and everything made through the API, and
    puts the demo's own three schedules back as it made them, saying what that changed.
    Stop it with Ctrl+C (or SIGINT/SIGTERM).
    """
    from oncal_feed import demo as demo_data

    shown_host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host  # noqa: S104
    if ":" in shown_host:
        shown_host = f"[{shown_host}]"
    base_url = (base_url or f"http://{shown_host}:{port}").rstrip("/")
    if not no_serve:
        check_port_free(host, port)  # before seeding, so a second demo fails at once
    with app_context(ONCAL_MODE="demo", BASE_URL=base_url) as app:
        database = get_database(app)
        upgrade(database)
        password = demo_data.demo_password(Path(app.instance_path))
        with database.session() as session:
            report = demo_data.seed(session, utcnow(), password)
            links = feed_links(first_feed(session, report.user))
        notify.shifts_changed(report.touched_user_ids)
        total = WriteResult()
        for result in report.shift_results:
            total.merge(result)
        user = report.user
        start, end = report.window
        click.echo(f"Demo data in {describe_database(database.url)}")
        click.echo(
            f"  {len(demo_data.PEOPLE)} users ({report.users_created} new), "
            f"{len(report.schedule_results)} schedules ({report.schedules_created} new), "
            f"shifts from {start:%Y-%m-%d} to {end:%Y-%m-%d}: {total.created} created, "
            f"{total.updated} updated, {total.unchanged} unchanged, {total.deleted} deleted"
        )
        if report.schedules_created == 0 and (total.updated or total.deleted or total.created):
            click.echo(
                f"  Put the demo's own schedules back as the demo made them: {total.updated} "
                f"shift(s) changed since were reset, {total.deleted} added were removed, "
                f"{total.created} deleted or new today were created. Your other data is "
                "untouched."
            )
        click.echo("")
        click.echo(f"Sign in at {base_url}/login")
        click.echo(f"  email:    {user.email}")
        click.echo(f"  password: {password}")
        click.echo("")
        click.echo(f"{user.display_name}'s calendar feed (subscribe to it in a calendar app):")
        click.echo(f"  {links.https}")
        click.echo(f"  {links.webcal}")
        if reachable_only_here(base_url):
            click.echo("")
            host_name = urlsplit(base_url).hostname or shown_host
            for line in textwrap.wrap(LOCAL_FEED_WARNING.format(host=host_name), 90):
                click.echo(f"  {line}")
        click.echo("")
        click.echo("Push sync without a Google or Microsoft account: on the settings page, press")
        click.echo('"Connect Demo calendar", then watch the shifts arrive (and move) at')
        click.echo(f"  {base_url}/demo/calendar")
    if no_serve:
        click.echo("")
        click.echo(
            "To serve it: oncal-feed demo (seeding again keeps your own data and resets the "
            "demo's schedules)."
        )
        return
    from oncal_feed.sync.tasks import start_embedded_worker

    click.echo("")
    click.echo(f"Serving on {base_url}/ with a push-sync worker inside - press Ctrl+C to stop.")
    click.echo(DEV_SERVER_NOTE)
    # One process for a first try: connected calendars sync without `oncal-feed worker`.
    stop_worker = start_embedded_worker(app)
    try:
        run_server(app, host, port)
    finally:
        stop_worker()
        click.echo("Stopped.")
