"""Fake Google as a server: faults, retries, concurrency, stop, the standalone entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
import requests
from googleapiclient.errors import HttpError

from tests.fakes.faults import Faults
from tests.fakes.google import (
    FakeGoogle,
)
from tests.fakes.google.clients import (
    ALICE,
    CLIENT_ID,
    CLIENT_SECRET,
    REPO_ROOT,
    event_body,
)


def test_rate_limit_429_carries_retry_after(
    fake: FakeGoogle, service_factory: Callable[..., Any]
) -> None:
    service = service_factory()
    fake.fail_next(1, 429, retry_after=7)
    with pytest.raises(HttpError) as err:
        service.calendars().get(calendarId="primary").execute()
    assert err.value.resp.status == 429
    assert err.value.resp["retry-after"] == "7"
    assert err.value.error_details[0]["reason"] == "rateLimitExceeded"

    fake.fail_next(1, kind="quota")
    with pytest.raises(HttpError) as quota:
        service.calendars().get(calendarId="primary").execute()
    assert quota.value.resp.status == 403
    assert quota.value.error_details[0]["domain"] == "usageLimits"


def test_googleapiclient_num_retries_rides_over_503(
    fake: FakeGoogle, service_factory: Callable[..., Any]
) -> None:
    service = service_factory()
    request = service.calendars().get(calendarId="primary")
    request._sleep = lambda seconds: None  # skip the library's backoff in tests
    fake.fail_next(2, 503)
    assert request.execute(num_retries=2)["id"] == ALICE
    assert fake.stats["calendars.get"] == 1
    assert fake.faults.injected["error"] == 2


def test_commit_then_drop_is_replayed_by_httplib2_as_409(
    fake: FakeGoogle, service_factory: Callable[..., Any]
) -> None:
    service = service_factory()
    fake.fail_next(1, kind="drop_after_commit")
    # httplib2 treats a connection closed without a response as stale and sends
    # the POST again; the replay finds the committed event.
    with pytest.raises(HttpError) as err:
        service.events().insert(calendarId="primary", body=event_body("lost0001")).execute()
    assert err.value.resp.status == 409
    assert fake.stats["events.insert"] == 2
    assert [e["id"] for e in fake.events(ALICE)] == ["lost0001"]


def test_commit_then_reset_surfaces_as_connection_error(
    fake: FakeGoogle, service_factory: Callable[..., Any]
) -> None:
    service = service_factory()
    fake.faults.drop_mode = "reset"
    fake.fail_next(1, kind="drop_after_commit")
    with pytest.raises(ConnectionError):
        service.events().insert(calendarId="primary", body=event_body()).execute()
    assert fake.stats["events.insert"] == 1
    assert len(fake.events(ALICE)) == 1


def test_drop_before_processing_commits_nothing(
    fake: FakeGoogle, service_factory: Callable[..., Any]
) -> None:
    service = service_factory()
    fake.fail_next(2, kind="drop")  # two, because httplib2 re-sends once
    with pytest.raises(ConnectionError):
        service.events().insert(calendarId="primary", body=event_body()).execute()
    assert fake.events(ALICE) == []


def test_slow_response_times_out_but_still_commits(
    fake: FakeGoogle, service_factory: Callable[..., Any]
) -> None:
    service = service_factory(timeout=0.3)
    fake.fail_next(1, kind="slow", delay=1.5)
    with pytest.raises(TimeoutError):
        service.events().insert(calendarId="primary", body=event_body("slo00001")).execute()
    assert fake.events(ALICE) == []  # the handler is still asleep
    fake.wait_idle(timeout=3)
    assert [e["id"] for e in fake.events(ALICE)] == ["slo00001"]


def test_random_faults_are_seeded_and_scoped(fake: FakeGoogle) -> None:
    def decisions(seed: int) -> list[str | None]:
        faults = Faults(seed=seed, targets={"api"})
        faults.error_rate = faults.rate_limit_rate = faults.drop_rate = 0.2
        return [getattr(faults.decide("api"), "kind", None) for _ in range(50)]

    assert decisions(1) == decisions(1)
    assert decisions(1) != decisions(2)
    assert {"error", "rate_limit", "drop", None} <= set(decisions(1))

    # Token endpoint faults are off by default even with a 100% error rate.
    fake.faults.error_rate = 1.0
    token = fake.issue_token(ALICE)
    refreshed = requests.post(
        fake.token_uri,
        data={
            "grant_type": "refresh_token",
            "refresh_token": token["refresh_token"],
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
        timeout=5,
    )
    assert refreshed.status_code == 200
    api = requests.get(
        f"{fake.api_endpoint}calendars/primary",
        headers={"Authorization": f"Bearer {token['access_token']}"},
        timeout=5,
    )
    assert api.status_code in (500, 503)
    assert api.json()["error"]["errors"][0]["reason"] == "backendError"


def test_concurrent_inserts_are_consistent(
    fake: FakeGoogle, service_factory: Callable[..., Any]
) -> None:
    token = fake.issue_token(ALICE)
    failures: list[BaseException] = []

    def worker(n: int) -> None:
        token_headers = {"Authorization": f"Bearer {token['access_token']}"}
        try:
            for i in range(10):
                response = requests.post(
                    f"{fake.api_endpoint}calendars/primary/events",
                    json=event_body(f"c{n}0{i:04d}"),
                    headers=token_headers,
                    timeout=5,
                )
                assert response.status_code == 200, response.text
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    events = fake.events(ALICE)
    assert len(events) == 40
    assert len({e["etag"] for e in events}) == 40


def test_stop_closes_keep_alive_connections() -> None:
    fake = FakeGoogle().start()
    url = f"{fake.url}/oauth2/v1/certs"
    with requests.Session() as session:
        assert session.get(url, timeout=5).status_code == 200
        fake.stop()
        with pytest.raises(requests.ConnectionError):
            session.get(url, timeout=2)
    assert not fake.running


def test_standalone_entry_point_prints_endpoints() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.google", "--port", "0"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(9)]
        banner = "".join(lines)
        assert "api_endpoint" in banner
        assert "test-client" in banner
        token_uri = next(line.split()[1] for line in lines if "token_uri" in line)
        response = requests.post(token_uri, data={"grant_type": "password"}, timeout=5)
        assert response.status_code == 401
        assert json.loads(response.text)["error"] == "invalid_client"
    finally:
        proc.terminate()
        proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
