"""The settings page's "Bring your shifts" card, without a browser: add, refuse, remove."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from oncal_feed import accounts
from oncal_feed.db import get_database, utcnow
from oncal_feed.models import Schedule, Source
from oncal_feed.validation import UserInput
from tests.web.conftest import csrf_token


def _post(client: FlaskClient, path: str, **data: str):
    return client.post(path, data={"csrf_token": csrf_token(client, "/settings"), **data})


def test_add_shows_the_card_and_keeps_the_url_secret(
    app: Flask, member_client: FlaskClient
) -> None:
    """A personal source lands in a schedule of its own, shown redacted on the page."""
    url = "https://acme.pagerduty.com/private/9b1deb4d3b7d/feed"
    response = _post(member_client, "/settings/sources", tool="pagerduty", url=url)
    assert response.status_code == 303
    page = member_client.get("/settings").text
    assert "Added the PagerDuty feed" in page
    assert "https://acme.pagerduty.com/…" in page
    assert "9b1deb4d3b7d" not in page
    assert "Waiting for the first check" in page
    with get_database(app).sessionmaker() as session:
        source = session.scalar(select(Source))
        assert source is not None
        schedule = session.get(Schedule, source.schedule_id)
    assert source.options == {"personal": True}
    assert schedule is not None
    assert schedule.name == "PagerDuty (Kim Lee)"
    assert schedule.time_zone == "Europe/Berlin"


def test_bad_address_is_refused_in_words(app: Flask, member_client: FlaskClient) -> None:
    """Nothing is stored; the card says what is wrong."""
    _post(member_client, "/settings/sources", tool="other", url="ftp://example.com/x.ics")
    page = member_client.get("/settings").text
    assert (
        "That address can&#39;t be used: must be an https://, http:// or webcal:// address." in page
    )
    with get_database(app).sessionmaker() as session:
        assert session.scalar(select(Source)) is None
        assert session.scalar(select(Schedule)) is None


def test_only_the_owner_can_remove_or_accept(app: Flask, member_client: FlaskClient) -> None:
    """Another person's source id is ignored; the owner's removal works."""
    _post(member_client, "/settings/sources", tool="other", url="https://cal.example/me.ics")
    with get_database(app).session() as session:
        source_id = session.scalars(select(Source.id)).one()
        other = accounts.create_user(session, UserInput("lee@example.com", "Lee", "UTC"), utcnow())
        accounts.set_password(other, "another good password")
    other_client = app.test_client()
    from tests.web.conftest import log_in

    assert log_in(other_client, "lee@example.com", "another good password").status_code == 303
    _post(other_client, f"/settings/sources/{source_id}/remove")
    _post(other_client, f"/settings/sources/{source_id}/accept")
    with get_database(app).sessionmaker() as session:
        assert session.get(Source, source_id) is not None
    _post(member_client, f"/settings/sources/{source_id}/remove")
    assert "Removed the Other tool feed" in member_client.get("/settings").text
    with get_database(app).sessionmaker() as session:
        assert session.get(Source, source_id) is None
