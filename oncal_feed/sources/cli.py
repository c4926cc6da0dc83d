"""`oncal-feed source add|list|poll|remove`: a schedule's sources from the shell.

Listed in `oncal_feed.cli.COMMANDS`. Feed URLs and API tokens are secrets: they are read
from a hidden prompt (or standard input), never from the command line, where shell
history and process lists would keep them.
"""

from __future__ import annotations

import click
from flask import Flask
from sqlalchemy import select

from oncal_feed import shifts
from oncal_feed.cli.helpers import fail, require_schema, with_app
from oncal_feed.connections.vault import get_vault
from oncal_feed.db import get_database, instant_json, utcnow
from oncal_feed.models import User
from oncal_feed.notify import shifts_changed
from oncal_feed.sources import service
from oncal_feed.validation import parse_schedule_key, parse_source, parse_source_id

__all__ = ["source"]


@click.group("source")
def source() -> None:
    """Bring shifts in from another tool's calendar feed or PagerDuty's API."""


@source.command("add")
@click.argument("schedule")
@click.option("--name", required=True, help="What the source is, for people.")
@click.option(
    "--kind",
    type=click.Choice(["ics", "pagerduty"]),
    default="ics",
    show_default=True,
    help="ics: an ICS/webcal feed URL (asked for, hidden). pagerduty: PagerDuty's API.",
)
@click.option(
    "--pagerduty-schedule",
    "schedule_ids",
    multiple=True,
    help="A PagerDuty schedule id (repeat for several); the API key is asked for, hidden.",
)
@click.option("--user", "user_email", help="A per-user feed: events naming nobody are theirs.")
@click.option("--role", help="primary (default), secondary, override or shadow.")
@click.option("--interval", type=int, help="Seconds between polls (default 60).")
@with_app
def add(
    app: Flask,
    schedule: str,
    name: str,
    kind: str,
    schedule_ids: tuple[str, ...],
    user_email: str | None,
    role: str | None,
    interval: int | None,
) -> None:
    """Add a source to SCHEDULE and poll it once."""
    data: dict[str, object] = {"kind": kind, "name": name}
    if kind == "ics":
        data["url"] = click.prompt("Feed URL", hide_input=True, err=True).strip()
    else:
        data["api_token"] = click.prompt("PagerDuty API key", hide_input=True, err=True).strip()
        data["pagerduty_schedule_ids"] = list(schedule_ids)
    for field, value in (("user_email", user_email), ("role", role), ("poll_interval", interval)):
        if value is not None:
            data[field] = value
    parsed = parse_source(data)
    database = get_database(app)
    require_schema(database)
    with database.session() as session:
        row = shifts.get_schedule(session, parse_schedule_key(schedule))
        created = service.create_source(
            session, row, parsed, get_vault(app), utcnow(), app.config["SOURCE_POLL_INTERVAL"]
        )
        source_id = created.id
    click.echo(f"Added source {source_id} ({created.redacted}) to {schedule}.")
    _poll(app, source_id, accept=False)


@source.command("list")
@click.argument("schedule")
@with_app
def list_sources(app: Flask, schedule: str) -> None:
    """List SCHEDULE's sources and their status."""
    with get_database(app).sessionmaker() as session:
        row = shifts.get_schedule(session, parse_schedule_key(schedule))
        found = service.list_sources(session, row)
        emails = dict(
            session.execute(
                select(User.id, User.email).where(User.id.in_({s.user_id for s in found}))
            ).all()
        )
    if not found:
        click.echo(f"{schedule} has no sources.")
    for item in found:
        person = f", user {emails[item.user_id]}" if item.user_id in emails else ""
        click.echo(f"{item.id}  {item.kind}  {item.name}  {item.redacted}{person}")
        click.echo(
            f"    {item.status}; last poll {instant_json(item.last_poll_at) or 'never'}; "
            f"{item.events_read} events, {item.shifts_mapped} mapped, "
            f"{item.unmatched_count} unmatched"
        )
        for example in item.unmatched_examples or []:
            click.echo(f"    unmatched: {example}")
        if item.last_error:
            click.echo(f"    problem: {item.last_error}")


@source.command("poll")
@click.argument("schedule")
@click.argument("source_id")
@click.option("--accept", is_flag=True, help="Take a held (suddenly shrunk) feed's new state.")
@with_app
def poll(app: Flask, schedule: str, source_id: str, accept: bool) -> None:
    """Poll SOURCE_ID of SCHEDULE now; exit 1 when the poll failed or was held."""
    identifier = _identify(app, schedule, source_id)
    _poll(app, identifier, accept=accept)


@source.command("remove")
@click.argument("schedule")
@click.argument("source_id")
@with_app
def remove(app: Flask, schedule: str, source_id: str) -> None:
    """Remove SOURCE_ID from SCHEDULE; the shifts it brought are cancelled."""
    identifier = _identify(app, schedule, source_id)
    with get_database(app).session() as session:
        result = service.delete_source(
            session, service.get_source(session, None, identifier), utcnow()
        )
    shifts_changed(result.touched_user_ids)
    click.echo(f"Removed source {identifier}; cancelled {result.deleted} shift(s).")


def _identify(app: Flask, schedule: str, source_id: str) -> int:
    """Check that SOURCE_ID belongs to SCHEDULE; return it as a number."""
    identifier = parse_source_id(source_id)
    with get_database(app).sessionmaker() as session:
        row = shifts.get_schedule(session, parse_schedule_key(schedule))
        service.get_source(session, row, identifier)
    return identifier


def _poll(app: Flask, source_id: int, *, accept: bool) -> None:
    report = service.poll_source(app, source_id, utcnow(), accept=accept)
    counts = ""
    if report.result is not None:
        result = report.result
        counts = (
            f": {result.created} created, {result.updated} updated, "
            f"{result.deleted} cancelled, {result.unchanged} unchanged"
        )
    click.echo(f"Polled source {source_id}: {report.outcome}{counts}.")
    if report.outcome in ("failed", "held", "busy"):
        fail(report.problem or "another worker is polling this source right now")
