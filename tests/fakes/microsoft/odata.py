"""OData query options of the fake Graph: $select, $top/$skip, $expand, $filter, $orderby.

``ODataMixin`` is mixed into ``FakeMicrosoft``.
"""

from __future__ import annotations

import contextlib
import re
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import UTC
from typing import Any

from tests.fakes.microsoft.model import _EXT_ID_RE, _Event, _graph_error, _GraphRequest
from tests.fakes.microsoft.values import _parse_iso
from tests.fakes.server import (
    HTTPError,
    Response,
)


@contextlib.contextmanager
def _as_value_error() -> Iterator[None]:
    """Turn a Graph error raised by a test helper into a readable ``ValueError``."""
    try:
        yield
    except HTTPError as exc:
        raise ValueError(exc.response.body.decode("utf-8", "replace")) from exc


def _quote_literal(text: str) -> str:
    return text.replace("''", "'")


def _split_top(text: str, separator: str) -> list[str]:
    """Split on `` and ``/`` or `` outside quotes and parentheses (case-insensitive)."""
    parts: list[str] = []
    depth = 0
    in_quote = False
    start = 0
    i = 0
    token = f" {separator} "
    lowered = text.lower()
    while i < len(text):
        char = text[i]
        if char == "'":
            in_quote = not in_quote
        elif not in_quote and char == "(":
            depth += 1
        elif not in_quote and char == ")":
            depth -= 1
        elif not in_quote and depth == 0 and lowered.startswith(token, i):
            parts.append(text[start:i].strip())
            i += len(token)
            start = i
            continue
        i += 1
    parts.append(text[start:].strip())
    return [part for part in parts if part]


def _strip_parens(text: str) -> str:
    text = text.strip()
    while text.startswith("(") and text.endswith(")") and _balanced(text[1:-1]):
        text = text[1:-1].strip()
    return text


def _balanced(text: str) -> bool:
    depth = 0
    in_quote = False
    for char in text:
        if char == "'":
            in_quote = not in_quote
        elif not in_quote and char == "(":
            depth += 1
        elif not in_quote and char == ")":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0 and not in_quote


def _filter_error(text: str) -> HTTPError:
    return HTTPError(
        _graph_error(
            400,
            "ErrorInvalidUrlQueryFilter",
            f"The query filter contains one or more invalid nodes. (fake: unsupported "
            f"$filter {text!r}; see tests/fakes/microsoft/__init__.py for the supported forms)",
        )
    )


_LITERAL = r"'((?:[^']|'')*)'"


_COMPARE = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
}


def _ext_key(prop_id: str) -> tuple[str, ...]:
    """Canonical identity of an extended property id (Name case-sensitive, rest not)."""
    match = _EXT_ID_RE.match(prop_id or "")
    if match is None:
        raise HTTPError(
            _graph_error(
                400,
                "ErrorInvalidExtendedPropertyValue",
                f"The extended property id '{prop_id}' is not in a supported format.",
            )
        )
    if match.group("tag"):
        return (match.group("type").lower(), "tag", str(int(match.group("tag"), 16)))
    kind = match.group("kind").lower()
    name = match.group("name")
    if kind == "id":
        name = str(int(name, 16)) if name.lower().startswith("0x") else name
    return (match.group("type").lower(), match.group("guid").lower(), kind, name)


class ODataMixin:
    """Query options applied to Graph collections and items."""

    def _select(
        self, call: _GraphRequest, allowed: frozenset[str], type_name: str
    ) -> list[str] | None:
        raw = call.param("$select")
        if raw is None:
            return None
        names = [name.strip() for name in raw.split(",") if name.strip()]
        for name in names:
            if name not in allowed:
                raise HTTPError(
                    _graph_error(
                        400,
                        "RequestBroker--ParseUri",
                        f"Could not find a property named '{name}' on type "
                        f"'microsoft.graph.{type_name}'.",
                    )
                )
        return names

    def _apply_select(self, item: dict[str, Any], names: list[str] | None) -> dict[str, Any]:
        if names is None:
            return item
        keep = {"@odata.etag", "id", *names}
        # OData (and Graph's documentation of $expand) return expanded navigation
        # properties whatever $select says; `expanded_under_select = False` makes the
        # fake drop them unless selected too, as a stricter server might.
        if getattr(self, "expanded_under_select", True):
            keep.add("singleValueExtendedProperties")
        return {key: value for key, value in item.items() if key in keep}

    def _paging(self, call: _GraphRequest) -> tuple[int, int]:
        def number(name: str, default: int, low: int, high: int) -> int:
            raw = call.param(name)
            if raw is None:
                return default
            try:
                value = int(raw)
            except ValueError as exc:
                raise HTTPError(
                    _graph_error(400, "BadRequest", f"Invalid value '{raw}' for {name}.")
                ) from exc
            if not low <= value <= high:
                raise HTTPError(
                    _graph_error(
                        400,
                        "ErrorInvalidArgument" if name == "$top" else "BadRequest",
                        f"The value '{raw}' of {name} is out of range.",
                    )
                )
            return value

        return number("$top", self.default_page_size, 1, 1000), number("$skip", 0, 0, 10**9)

    def _expand_ids(self, call: _GraphRequest) -> list[tuple[str, ...]]:
        raw = call.param("$expand")
        if raw is None:
            return []
        match = re.fullmatch(
            r"\s*singleValueExtendedProperties\s*\(\s*\$filter\s*=\s*(.+)\)\s*", raw, re.IGNORECASE
        )
        if match is None:
            raise HTTPError(
                _graph_error(
                    400,
                    "BadRequest",
                    f"Parsing OData Select and Expand failed: the fake supports only "
                    f"singleValueExtendedProperties($filter=id eq '...'), got {raw!r}.",
                )
            )
        keys = []
        for clause in _split_top(_strip_parens(match.group(1)), "or"):
            one = re.fullmatch(r"\s*\(?\s*id\s+eq\s+" + _LITERAL + r"\s*\)?\s*", clause)
            if one is None:
                raise _filter_error(raw)
            keys.append(_ext_key(_quote_literal(one.group(1))))
        return keys

    def _event_filter(self, raw: str | None) -> Callable[[_Event], bool]:
        if raw is None:
            return lambda event: True
        tests = [
            self._event_clause(clause, raw) for clause in _split_top(_strip_parens(raw), "and")
        ]
        return lambda event: all(test(event) for test in tests)

    def _event_clause(self, clause: str, raw: str) -> Callable[[_Event], bool]:
        clause = _strip_parens(clause)
        any_match = re.fullmatch(
            r"singleValueExtendedProperties/any\s*\(\s*(\w+)\s*:\s*(.+)\)", clause, re.IGNORECASE
        )
        if any_match:
            return self._ext_clause(any_match.group(1), any_match.group(2), raw)
        when = re.fullmatch(
            r"(start|end)/dateTime\s+(eq|ne|gt|ge|lt|le)\s+" + _LITERAL, clause, re.IGNORECASE
        )
        if when:
            try:
                moment = _parse_iso(_quote_literal(when.group(3)))
            except ValueError as exc:
                raise _filter_error(raw) from exc
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            which = when.group(1).lower()
            compare = _COMPARE[when.group(2).lower()]
            return lambda event: compare(event.start if which == "start" else event.end, moment)
        simple = re.fullmatch(
            r"(subject|transactionId|iCalUId|showAs)\s+(eq|ne)\s+" + _LITERAL, clause
        )
        if simple:
            name, op, literal = simple.group(1), simple.group(2), _quote_literal(simple.group(3))

            def value_of(event: _Event) -> str | None:
                if name == "transactionId":
                    return event.transaction_id
                if name == "iCalUId":
                    return event.ical_uid
                return event.props.get(name, {"subject": "", "showAs": "busy"}[name])

            return lambda event: _COMPARE[op](value_of(event), literal)
        raise _filter_error(raw)

    def _ext_clause(self, var: str, inner: str, raw: str) -> Callable[[_Event], bool]:
        parts = _split_top(_strip_parens(inner), "and")
        v = re.escape(var)
        key: tuple[str, ...] | None = None
        value_test: Callable[[str], bool] | None = None
        for part in parts:
            part = _strip_parens(part)
            id_match = re.fullmatch(rf"{v}/id\s+eq\s+" + _LITERAL, part)
            if id_match and key is None:
                key = _ext_key(_quote_literal(id_match.group(1)))
                continue
            cmp_match = re.fullmatch(rf"{v}/value\s+(eq|ne)\s+(null|{_LITERAL})", part)
            if cmp_match and value_test is None:
                op = cmp_match.group(1)
                if cmp_match.group(2) == "null":
                    # Every stored property has a value, so "ne null" means "present".
                    value_test = (lambda value: True) if op == "ne" else (lambda value: False)
                else:
                    wanted = _quote_literal(cmp_match.group(3)).lower()
                    value_test = (
                        (lambda value, w=wanted: value.lower() == w)
                        if op == "eq"
                        else (lambda value, w=wanted: value.lower() != w)
                    )
                continue
            fn_match = re.fullmatch(
                rf"(contains|startswith)\s*\(\s*{v}/value\s*,\s*" + _LITERAL + r"\s*\)", part
            )
            if fn_match and value_test is None:
                wanted = _quote_literal(fn_match.group(2)).lower()
                if fn_match.group(1) == "contains":
                    value_test = lambda value, w=wanted: w in value.lower()  # noqa: E731
                else:
                    value_test = lambda value, w=wanted: value.lower().startswith(w)  # noqa: E731
                continue
            raise _filter_error(raw)
        if key is None or value_test is None:
            # Graph documents only "id eq" combined with a value comparison.
            raise _filter_error(raw)
        found_key, test = key, value_test

        def matches(event: _Event) -> bool:
            stored = event.ext.get(found_key)
            return stored is not None and test(stored[1])

        return matches

    def _order(self, call: _GraphRequest, events: list[_Event]) -> list[_Event]:
        raw = call.param("$orderby")
        if raw is None:
            return events
        keys: dict[str, Callable[[_Event], Any]] = {
            "start/datetime": lambda e: e.start,
            "end/datetime": lambda e: e.end,
            "createddatetime": lambda e: e.created,
            "lastmodifieddatetime": lambda e: e.modified,
            "subject": lambda e: str(e.props.get("subject", "")).lower(),
        }
        result = list(events)
        for term in reversed([t.strip() for t in raw.split(",") if t.strip()]):
            name, _, direction = term.partition(" ")
            key = keys.get(name.strip().lower())
            if key is None or direction.strip().lower() not in ("", "asc", "desc"):
                raise HTTPError(
                    _graph_error(400, "BadRequest", f"The fake does not support $orderby={raw!r}.")
                )
            result.sort(key=key, reverse=direction.strip().lower() == "desc")
        return result

    def _page(
        self,
        call: _GraphRequest,
        items: list[dict[str, Any]],
        context: str,
    ) -> Response:
        top, skip = self._paging(call)
        page = items[skip : skip + top]
        body: dict[str, Any] = {"@odata.context": context}
        if (call.param("$count") or "").lower() == "true":
            body["@odata.count"] = len(items)
        body["value"] = page
        if skip + top < len(items):
            query = [(k, v) for k, values in call.query.items() for v in values if k != "$skip"]
            query.append(("$skip", str(skip + top)))
            if "$top" not in call.query:
                query.append(("$top", str(top)))
            body["@odata.nextLink"] = f"{self.graph_endpoint}{call.path}?" + urllib.parse.urlencode(
                query, quote_via=urllib.parse.quote, safe="$,'()/:"
            )
        _zone, _name, _text, _minimal, applied = self._prefer(call)
        return self._ok(body, applied=applied)
