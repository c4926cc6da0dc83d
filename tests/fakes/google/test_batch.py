"""Fake Google's batch endpoint, driven by googleapiclient's BatchHttpRequest."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest

from tests.fakes.google import (
    FakeGoogle,
)
from tests.fakes.google.clients import ALICE, event_body


def test_batch_inserts_with_one_failing_member(
    fake: FakeGoogle, service_factory: Callable[..., Any]
) -> None:
    service = service_factory()
    service.events().insert(calendarId="primary", body=event_body("taken001")).execute()
    results: dict[str, tuple[Any, HttpError | None]] = {}

    def callback(request_id: str, response: Any, exception: HttpError | None) -> None:
        results[request_id] = (response, exception)

    batch = BatchHttpRequest(callback=callback, batch_uri=fake.batch_uri)
    for event_id in ("batch0001", "batch0002", "taken001", "batch0003"):
        batch.add(service.events().insert(calendarId="primary", body=event_body(event_id)))
    batch.add(service.events().delete(calendarId="primary", eventId="taken001"))
    fake.reset_stats()
    batch.execute()

    assert results["1"][0]["id"] == "batch0001"
    assert results["3"][0] is None
    error = results["3"][1]
    assert error is not None
    assert error.resp.status == 409
    assert results["4"][0]["id"] == "batch0003"
    assert results["5"][1] is None
    assert fake.stats["batch"] == 1
    assert fake.stats["api_round_trips"] == 1
    assert fake.stats["batch_members"] == 5
    assert fake.stats["events.insert"] == 4
    assert sorted(e["id"] for e in fake.events(ALICE)) == ["batch0001", "batch0002", "batch0003"]


def test_batch_faults_apply_per_member(
    fake: FakeGoogle, service_factory: Callable[..., Any]
) -> None:
    service = service_factory()
    statuses: list[int] = []

    def callback(request_id: str, response: Any, exception: HttpError | None) -> None:
        statuses.append(exception.resp.status if exception else 200)

    batch = BatchHttpRequest(callback=callback, batch_uri=fake.batch_uri)
    for i in range(3):
        batch.add(service.events().insert(calendarId="primary", body=event_body(f"pm{i:04d}")))
    fake.fail_next(1, 503)
    batch.execute()
    assert statuses == [503, 200, 200]
    assert len(fake.events(ALICE)) == 2


def test_batch_over_limit_is_rejected(
    fake: FakeGoogle, service_factory: Callable[..., Any]
) -> None:
    service = service_factory()
    batch = BatchHttpRequest(batch_uri=fake.batch_uri)
    for i in range(51):
        batch.add(service.events().insert(calendarId="primary", body=event_body(f"big{i:05d}")))
    with pytest.raises(HttpError) as err:
        batch.execute()
    assert err.value.resp.status == 400
    assert fake.events(ALICE) == []
