"""`oncal-feed source add|list|poll|remove` against a real feed server."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from oncal_feed.db import utcnow
from tests.sources.conftest import Sources, relative_feed
from tests.sources.feed_server import FeedServer

SECRET = "/private/Qw3rtyUIsecret/feed.ics"


@pytest.fixture
def cli_run(run: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """`run`, with the feed server's loopback address allowed."""
    monkeypatch.setenv("SOURCE_ALLOWED_NETWORKS", "127.0.0.1/32")
    return run


def test_add_list_poll_remove(world: Sources, feeds: FeedServer, cli_run: Any) -> None:
    """The URL is asked for hidden and never printed; each command says what it did."""
    start = (utcnow() + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    feeds.put(SECRET, relative_feed(start, ["alice@example.com", "nobody@example.com"]))
    added = cli_run(
        "source", "add", "payments", "--name", "Grafana", input=feeds.url(SECRET) + "\n"
    )
    assert added.exit_code == 0, added.output
    assert "Added source" in added.output
    assert "Polled source" in added.output
    assert ": changed: 1 created" in added.output
    assert "Qw3rtyUIsecret" not in added.output
    source_id = added.output.split("Added source ", 1)[1].split(" ", 1)[0]

    listed = cli_run("source", "list", "payments")
    assert listed.exit_code == 0, listed.output
    assert f"{source_id}  ics  Grafana  http://127.0.0.1/…" in listed.output
    assert "ok; last poll" in listed.output
    assert "2 events, 1 mapped, 1 unmatched" in listed.output
    assert "unmatched: [L1] nobody" in listed.output
    assert "Qw3rtyUIsecret" not in listed.output

    again = cli_run("source", "poll", "payments", source_id)
    assert again.exit_code == 0, again.output
    assert "not-modified" in again.output

    feeds.fault(SECRET, "html")
    feeds.etags = False
    failed = cli_run("source", "poll", "payments", source_id)
    assert failed.exit_code == 1
    assert "web page instead of a calendar" in failed.output

    removed = cli_run("source", "remove", "payments", source_id)
    assert removed.exit_code == 0, removed.output
    assert "cancelled 1 shift(s)" in removed.output
    assert "has no sources" in cli_run("source", "list", "payments").output


def test_bad_input_exits_non_zero(world: Sources, cli_run: Any) -> None:
    """Unknown schedule, bad URL, bad id, wrong schedule: a message and exit 1."""
    bad_url = cli_run("source", "add", "payments", "--name", "x", input="ftp://x/y\n")
    assert bad_url.exit_code == 1
    assert "url: must be an https://, http:// or webcal:// address" in bad_url.output
    missing = cli_run("source", "add", "nope", "--name", "x", input="https://a.example/x.ics\n")
    assert missing.exit_code == 1
    assert "schedule 'nope' not found" in missing.output
    assert cli_run("source", "poll", "payments", "abc").exit_code == 1
    assert "source '999' not found" in cli_run("source", "remove", "payments", "999").output
