"""Tests of the JSON API under /api/v1, plus helpers they share.

The helpers check every error answer against the documented `Error` shape and compare
whole tables before and after a failing call, so "nothing half-written" is asserted, not
assumed.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

from flask import Flask
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from sqlalchemy import select
from werkzeug.test import TestResponse

from oncal_feed.db import get_database
from oncal_feed.models import Schedule, Shift, User

DOCUMENT_URI = "urn:oncal-feed:openapi"

ALICE = {"email": "alice@example.com", "display_name": "Alice", "time_zone": "Europe/Berlin"}
BOB = {"email": "bob@example.com", "display_name": "Bob"}
PAYMENTS = {"name": "Payments", "time_zone": "Europe/Berlin"}
SHIFT = {
    "user_email": "alice@example.com",
    "starts_at": "2026-03-02T09:00:00+01:00",
    "ends_at": "2026-03-09T09:00:00+01:00",
}


@cache
def openapi_document() -> dict[str, Any]:
    """The shipped OpenAPI document, parsed."""
    return json.loads(files("oncal_feed.api").joinpath("openapi.json").read_text())


@cache
def _registry() -> Registry:
    resource = Resource.from_contents(openapi_document(), default_specification=DRAFT202012)
    return Registry().with_resource(DOCUMENT_URI, resource)


def validator(schema: dict[str, Any]) -> Draft202012Validator:
    """A validator for `schema`, whose `$ref`s point into the OpenAPI document."""
    return Draft202012Validator(schema, registry=_registry())


def component(name: str) -> dict[str, Any]:
    """A schema that refers to `#/components/schemas/<name>` of the document."""
    return {"$ref": f"{DOCUMENT_URI}#/components/schemas/{name}"}


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    """Turn the document's local `#/...` references in `schema` into absolute ones."""
    text = json.dumps(schema).replace('"$ref": "#/', f'"$ref": "{DOCUMENT_URI}#/')
    return json.loads(text)


def assert_valid(instance: Any, schema_name: str) -> None:
    """Fail with every violation when `instance` does not match a component schema."""
    problems = [e.message for e in validator(component(schema_name)).iter_errors(instance)]
    assert not problems, problems


def assert_error(response: TestResponse, status: int, *fields: str) -> dict[str, Any]:
    """Check an error answer: its status, the documented shape, and the fields it names.

    Returns the body. Every field in `fields` must be named; more may be.
    """
    assert response.status_code == status, (response.status_code, response.get_data(True))
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert_valid(body, "Error")
    named = {item["field"] for item in body["errors"]}
    assert set(fields) <= named, (fields, body)
    assert body["errors"], "an error answer must name at least one field"
    return body


def table_state(app: Flask) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the users, schedules and shifts tables, read on a fresh connection."""
    state: dict[str, list[tuple[Any, ...]]] = {}
    with get_database(app).engine.connect() as connection:
        for model in (User, Schedule, Shift):
            rows = connection.execute(select(model.__table__).order_by(model.__table__.c.id))
            state[model.__tablename__] = [tuple(row) for row in rows]
    return state


def user_ids(app: Flask) -> dict[str, int]:
    """Internal ids of users by email (listeners are told internal ids)."""
    with get_database(app).engine.connect() as connection:
        return {email: id_ for email, id_ in connection.execute(select(User.email, User.id))}
