"""The OpenAPI document: served, complete (routes and methods both ways), and truthful.

Truthful means its request examples validate against their schemas and are accepted by the
running API, and the answers the API really gives validate against the documented
response schemas.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator

from tests.api import (
    ALICE,
    BOB,
    SHIFT,
    assert_error,
    openapi_document,
    resolve,
    validator,
)

PREFIX = "/api/v1"
HTTP_METHODS = {"get", "put", "post", "patch", "delete"}


def _document_operations() -> set[tuple[str, str]]:
    doc = openapi_document()
    return {
        (path, method.upper())
        for path, item in doc["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def _route_operations(app: Flask) -> set[tuple[str, str]]:
    operations = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".")[0] != "api_v1":
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule).removeprefix(PREFIX)
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                operations.add((path, method))
    return operations


def _operation(path: str, method: str) -> dict[str, Any]:
    return openapi_document()["paths"][path][method]


def _parameters(path: str, method: str) -> list[dict[str, Any]]:
    """Parameters of an operation, path-level ones included, with `$ref`s resolved."""
    doc = openapi_document()
    item = doc["paths"][path]
    found = []
    for parameter in item.get("parameters", []) + item[method].get("parameters", []):
        if "$ref" in parameter:
            parameter = doc["components"]["parameters"][parameter["$ref"].rsplit("/", 1)[1]]
        found.append(parameter)
    return found


def test_document_is_served_without_a_key(client: FlaskClient) -> None:
    """Anyone may read the API's description; it is the shipped file."""
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == openapi_document()
    assert response.get_json()["openapi"].startswith("3.1.")


def test_every_route_is_documented_and_every_documented_operation_exists(app: Flask) -> None:
    """Walk the url_map of the api_v1 blueprint and the document's paths: they must agree."""
    routes = _route_operations(app)
    documented = _document_operations()
    assert len(routes) >= 11
    assert routes - documented == set(), "routes missing from openapi.json"
    assert documented - routes == set(), "documented operations with no route"


def test_path_parameters_match_the_routes(app: Flask) -> None:
    """Each `{name}` of a path is declared as a required path parameter, and nothing else is."""
    for path, method in _document_operations():
        in_path = set(re.findall(r"{([^}]+)}", path))
        declared = {p["name"] for p in _parameters(path, method.lower()) if p["in"] == "path"}
        assert declared == in_path, (path, method)
        assert all(p["required"] for p in _parameters(path, method.lower()) if p["in"] == "path")


def test_window_operations_declare_from_and_to() -> None:
    """The two window endpoints take required `from` and `to` query parameters."""
    for path, method in [
        ("/users/{public_id}/shifts", "get"),
        ("/schedules/{key}/shifts", "put"),
    ]:
        query = {p["name"]: p for p in _parameters(path, method) if p["in"] == "query"}
        assert set(query) == {"from", "to"}
        assert all(p["required"] for p in query.values())


def test_security_is_bearer_except_for_the_document() -> None:
    """Every operation needs the bearer key (and documents 401), except openapi.json."""
    doc = openapi_document()
    assert doc["components"]["securitySchemes"]["apiKey"] == {
        **doc["components"]["securitySchemes"]["apiKey"],
        "type": "http",
        "scheme": "bearer",
    }
    assert doc["security"] == [{"apiKey": []}]
    for path, method in _document_operations():
        operation = _operation(path, method.lower())
        if path == "/openapi.json":
            assert operation["security"] == []
        else:
            assert "security" not in operation, (path, method)
            assert "401" in operation["responses"], (path, method)


def _walk(node: Any) -> Any:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def test_request_schemas_refuse_unknown_fields() -> None:
    """Every object schema of a request body says `additionalProperties: false`."""
    doc = openapi_document()
    schemas = doc["components"]["schemas"]
    bodies = [
        _operation(path, method.lower())["requestBody"]["content"]["application/json"]["schema"]
        for path, method in _document_operations()
        if "requestBody" in _operation(path, method.lower())
    ]
    assert len(bodies) == 11
    names = {n["$ref"].rsplit("/", 1)[1] for b in bodies for n in _walk(b) if "$ref" in n}
    assert names == {
        "UserCreate",
        "UserUpdate",
        "ScheduleInput",
        "ShiftInput",
        "ShiftItem",
        "ApiKeyCreate",
        "RoleInput",
        "PasswordLinkInput",
        "SourceInput",
        "SourceUpdate",
        "PollRequest",
    }
    for name in names:
        assert schemas[name]["type"] == "object"
        assert schemas[name]["additionalProperties"] is False, name


def test_errors_are_documented_with_the_error_shape() -> None:
    """Every 4xx answer of every operation refers to the Error schema."""
    doc = openapi_document()
    for path, method in _document_operations():
        for status, answer in _operation(path, method.lower())["responses"].items():
            if not status.startswith("4"):
                continue
            if "$ref" in answer:
                answer = doc["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
            schema = answer["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}, (path, method, status)
        if "requestBody" in _operation(path, method.lower()):
            responses = _operation(path, method.lower())["responses"]
            assert {"413", "415", "422"} <= set(responses), (path, method)


def test_component_schemas_are_valid_json_schema() -> None:
    """Each schema is valid JSON Schema 2020-12 (the dialect of OpenAPI 3.1)."""
    for schema in openapi_document()["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def _request_examples() -> list[tuple[str, str, str, Any]]:
    found = []
    for path, method in sorted(_document_operations()):
        operation = _operation(path, method.lower())
        if "requestBody" not in operation:
            continue
        media = operation["requestBody"]["content"]["application/json"]
        for name, example in media.get("examples", {}).items():
            found.append((path, method, name, example["value"]))
    return found


def test_every_request_body_has_an_example() -> None:
    """Each write operation shows at least one example request."""
    with_examples = {(path, method) for path, method, _, _ in _request_examples()}
    with_bodies = {
        (path, method)
        for path, method in _document_operations()
        if "requestBody" in _operation(path, method.lower())
    }
    assert with_examples == with_bodies


@pytest.mark.parametrize(
    ("path", "method", "name", "value"),
    _request_examples(),
    ids=[f"{m} {p} {n}" for p, m, n, _ in _request_examples()],
)
def test_request_examples_validate_against_their_schema(
    path: str, method: str, name: str, value: Any
) -> None:
    """An example that contradicts its own schema would mislead every reader."""
    media = _operation(path, method.lower())["requestBody"]["content"]["application/json"]
    problems = [e.message for e in validator(resolve(media["schema"])).iter_errors(value)]
    assert problems == []


def test_a_bad_example_would_be_caught() -> None:
    """The validator used above does reject an unknown field and a naive date-time."""
    shift_schema = resolve({"$ref": "#/components/schemas/ShiftInput"})
    assert not validator(shift_schema).is_valid({**SHIFT, "colour": "red"})
    assert not validator(shift_schema).is_valid({**SHIFT, "starts_at": "2026-03-02T09:00:00"})


def _documented_schema(path: str, method: str, status: int) -> dict[str, Any] | None:
    doc = openapi_document()
    answer = _operation(path, method.lower())["responses"][str(status)]
    if "$ref" in answer:
        answer = doc["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
    content = answer.get("content")
    return None if content is None else resolve(content["application/json"]["schema"])


def _send(api: FlaskClient, path: str, method: str, body: Any, **params: str) -> Any:
    """Send a request to a documented operation and check the answer against the document."""
    url = PREFIX + path.format(**params)
    response = api.open(url, method=method, json=body)
    schema = _documented_schema(path.split("?")[0], method, response.status_code)
    if schema is not None:
        problems = [e.message for e in validator(schema).iter_errors(response.get_json())]
        assert problems == [], (method, url, response.status_code)
    else:
        assert response.data == b""
    return response


def test_examples_are_accepted_and_answers_match_the_document(api: FlaskClient) -> None:
    """Play every request example against the API; every answer matches its schema."""
    examples = {(p, m): v for p, m, _, v in _request_examples()}
    created = _send(api, "/users", "POST", examples[("/users", "POST")])
    assert created.status_code == 201
    user_id = created.get_json()["id"]
    assert _send(api, "/users", "POST", BOB).status_code == 201
    assert _send(api, "/users", "POST", {**ALICE, "email": "x@example.com"}).status_code == 201
    assert _send(api, "/users/{public_id}", "PATCH", examples[("/users/{public_id}", "PATCH")],
                 public_id=user_id).status_code == 200  # fmt: skip
    assert _send(api, "/schedules/{key}", "PUT", examples[("/schedules/{key}", "PUT")],
                 key="payments").status_code == 201  # fmt: skip
    shift_path = "/schedules/{key}/shifts/{external_id}"
    assert _send(api, shift_path, "PUT", examples[(shift_path, "PUT")],
                 key="payments", external_id="w1").status_code == 201  # fmt: skip
    window = "?from=2026-03-01T00:00:00Z&to=2026-04-01T00:00:00Z"
    imported = _send(api, "/schedules/{key}/shifts" + window, "PUT",
                     examples[("/schedules/{key}/shifts", "PUT")], key="payments")  # fmt: skip
    assert imported.get_json() == {"created": 2, "updated": 0, "unchanged": 0, "deleted": 1}

    assert _send(api, "/users", "GET", None).status_code == 200
    assert _send(api, "/users/{public_id}", "GET", None, public_id=user_id).status_code == 200
    listing = _send(api, "/users/{public_id}/shifts" + window, "GET", None, public_id=user_id)
    assert [s["external_id"] for s in listing.get_json()["shifts"]] == ["payments-2026-w10"]
    assert _send(api, "/schedules/{key}", "GET", None, key="payments").status_code == 200
    assert _send(api, shift_path, "GET", None, key="payments", external_id="w1").status_code == 200
    assert (
        _send(api, shift_path, "DELETE", None, key="payments", external_id="w1").status_code == 204
    )

    # The admin operations.
    role_path = "/users/{public_id}/role"
    assert _send(api, role_path, "PUT", examples[(role_path, "PUT")],
                 public_id=user_id).get_json()["role"] == "admin"  # fmt: skip
    link_path = "/users/{public_id}/password-links"
    assert _send(api, link_path, "POST", examples[(link_path, "POST")],
                 public_id=user_id).status_code == 201  # fmt: skip
    new_key = _send(api, "/api-keys", "POST", examples[("/api-keys", "POST")])
    assert new_key.status_code == 201
    assert len(_send(api, "/api-keys", "GET", None).get_json()["api_keys"]) == 2
    key_id = str(new_key.get_json()["id"])
    assert _send(api, "/api-keys/{key_id}", "DELETE", None, key_id=key_id).status_code == 204
    assert _send(api, "/connections", "GET", None).status_code == 200

    # Error answers match the documented Error schema of their operation too.
    assert _send(api, "/schedules/{key}", "GET", None, key="nope").status_code == 404
    assert _send(api, "/users", "POST", {}).status_code == 422
    assert _send(api, "/users", "POST", examples[("/users", "POST")]).status_code == 409
    assert_error(api.put(PREFIX + "/schedules/Bad", json={}), 422, "key")
