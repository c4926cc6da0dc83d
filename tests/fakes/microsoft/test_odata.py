"""Fake Graph's OData query options: $filter, $expand, $select, paging."""

from __future__ import annotations

import requests

from tests.fakes.microsoft import FakeMicrosoft
from tests.fakes.microsoft.clients import UID_PROP, new_event


def test_extended_property_filter_and_expand(fake: FakeMicrosoft, graph: requests.Session) -> None:
    """The documented singleValueExtendedProperties filters and $expand work."""
    url = f"{fake.graph_endpoint}/me/events"
    tagged = graph.post(url, json=new_event(), timeout=5).json()
    graph.post(url, json=new_event("untagged", singleValueExtendedProperties=[]), timeout=5)
    assert "singleValueExtendedProperties" not in tagged

    def ids(filter_: str, **params: str) -> list[str]:
        response = graph.get(url, params={"$filter": filter_, **params}, timeout=5)
        assert response.status_code == 200, response.text
        return [e["id"] for e in response.json()["value"]]

    prefix = f"singleValueExtendedProperties/Any(ep: ep/id eq '{UID_PROP}' and "
    eq = prefix + "ep/value eq 'SHIFT-1@oncal')"  # values compare case-insensitively
    present = f"singleValueExtendedProperties/any(ep: ep/id eq '{UID_PROP}' and ep/value ne null)"
    other = prefix + "ep/value eq 'nope')"
    assert ids(eq) == [tagged["id"]]
    assert ids(present) == [tagged["id"]]
    assert ids(other) == []
    id_only = graph.get(
        url,
        params={"$filter": f"singleValueExtendedProperties/Any(ep: ep/id eq '{UID_PROP}')"},
        timeout=5,
    )
    assert id_only.status_code == 400

    expanded = graph.get(
        url,
        params={
            "$filter": present,
            "$expand": f"singleValueExtendedProperties($filter=id eq '{UID_PROP}')",
        },
        timeout=5,
    ).json()["value"]
    assert expanded[0]["singleValueExtendedProperties"] == [
        {"id": UID_PROP, "value": "shift-1@oncal"}
    ]


def test_paging_select_and_next_link(fake: FakeMicrosoft, graph: requests.Session) -> None:
    """$top pages with an absolute nextLink at the fake; $select trims properties."""
    for n in range(5):
        graph.post(f"{fake.graph_endpoint}/me/events", json=new_event(f"e{n}"), timeout=5)
    url: str | None = f"{fake.graph_endpoint}/me/events?$top=2&$select=subject,start"
    subjects: list[str] = []
    pages = 0
    while url:
        page = graph.get(url, timeout=5).json()
        pages += 1
        for item in page["value"]:
            assert set(item) == {"@odata.etag", "id", "subject", "start"}
            subjects.append(item["subject"])
        url = page.get("@odata.nextLink")
        if url:
            assert url.startswith(f"{fake.graph_endpoint}/me/events?")
    assert pages == 3
    assert subjects == ["e0", "e1", "e2", "e3", "e4"]
    bad = graph.get(f"{fake.graph_endpoint}/me/events", params={"$select": "nope"}, timeout=5)
    assert bad.status_code == 400
