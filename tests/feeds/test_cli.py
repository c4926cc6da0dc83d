"""`oncal-feed feed-url` and `oncal-feed rotate-feed`."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.feeds.conftest import World

ALICE = "alice@example.com"


def test_feed_url_prints_working_https_and_webcal_urls(
    world: World, run: Any, client: FlaskClient
) -> None:
    """Two URLs on stdout, the secret warning on stderr; the https one serves the feed."""
    world.user(ALICE, "Alice")
    result = run("feed-url", "Alice@Example.com")
    assert result.exit_code == 0, result.output
    https, webcal = result.stdout.splitlines()
    assert https == "https://oncal.example.test" + world.path(ALICE)
    assert webcal == "webcal://oncal.example.test" + world.path(ALICE)
    assert "Anyone with this link" in result.stderr
    assert client.get(https.removeprefix("https://oncal.example.test")).status_code == 200


def test_rotate_feed_replaces_the_url(world: World, run: Any, client: FlaskClient) -> None:
    """rotate-feed prints a new URL and says the old one stopped working; it has."""
    world.user(ALICE, "Alice")
    old = world.path(ALICE)
    result = run("rotate-feed", ALICE)
    assert result.exit_code == 0, result.output
    new_https = result.stdout.splitlines()[0]
    assert new_https == "https://oncal.example.test" + world.path(ALICE)
    assert world.path(ALICE) != old
    assert "stopped working" in result.stderr
    assert client.get(old).status_code == 404
    assert client.get(world.path(ALICE)).status_code == 200
    assert run("feed-url", ALICE).stdout.splitlines()[0] == new_https


@pytest.mark.parametrize("command", ["feed-url", "rotate-feed"])
def test_unknown_email_fails_cleanly(world: World, run: Any, command: str) -> None:
    """An unknown user is exit code 1 with a message, not a traceback."""
    result = run(command, "nobody@example.com")
    assert result.exit_code == 1
    assert "nobody@example.com" in result.stderr
    assert "Traceback" not in result.output
