"""Reading import files piece by piece: the same rows, lines and errors as a whole-file parse.

The CLI tests (tests/test_cli.py) cover the command's messages; these drive the reader with
a read size of a few characters, so every item, number and string is cut somewhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from oncal_feed import importing
from oncal_feed.errors import ValidationError


@pytest.fixture(params=[1, 5, 64], ids=["read-1", "read-5", "read-64"])
def small_reads(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Read files a few characters at a time."""
    monkeypatch.setattr(importing, "_READ_SIZE", request.param)
    return int(request.param)


def write(tmp_path: Path, text: str, name: str = "shifts.json") -> Path:
    """Write `text` as UTF-8 and return the path."""
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


def item_lines(text: str) -> list[int]:
    """The line each item of a JSON array starts on, from the whole text at once."""
    decoder = json.JSONDecoder()
    position, lines = text.index("[") + 1, []
    while True:
        while text[position] in " \t\r\n,":
            position += 1
        if text[position] == "]":
            return lines
        lines.append(text.count("\n", 0, position) + 1)
        _, position = decoder.raw_decode(text, position)


def test_json_items_and_their_lines(tmp_path: Path, small_reads: int) -> None:
    """Items come out as json.loads reads them, each with the line it starts on."""
    document = [
        {"schedule": "payments", "external_id": "w1", "notes": 'say "hi"\\n\u00e9\U0001f600'},
        12345678,
        {"schedule": "search", "nested": [1, [2, {"x": None}]], "n": -1.5e3},
        "text with ] and , inside",
        True,
    ]
    text = "\n" + json.dumps(document, indent=2) + "\n"
    rows = list(importing.read_rows(write(tmp_path, "\ufeff" + text), None))
    assert [row.line for row in rows] == item_lines(text)
    assert [row.line for row in rows][:3] == [3, 8, 9]
    assert [row.schedule for row in rows] == ["payments", None, "search", None, None]
    assert rows[0].fields == {"external_id": "w1", "notes": 'say "hi"\\n\u00e9\U0001f600'}
    assert rows[2].fields == {"nested": [1, [2, {"x": None}]], "n": -1500.0}
    assert [(r.problem.field, r.problem.problem) for r in rows if r.problem] == [
        ("[1]", "must be an object"),
        ("[3]", "must be an object"),
        ("[4]", "must be an object"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "[1,]",
        "[1 2]",
        "[1] x",
        "[",
        "[1,",
        '[\n  {"schedule": "payments",}\n]',
        '[\n {"a": 1},\n {"b": 2}\n {"c": 3}\n]',
        '[{"a": "unterminated]',
        "[tru]",
        '{"a": [1, 2]',
        "nope",
    ],
)
def test_json_errors_name_the_place_as_json_loads_does(
    tmp_path: Path, small_reads: int, text: str
) -> None:
    """Broken JSON is reported with json.loads' own message, line and column."""
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text)
    with pytest.raises(ValidationError) as caught:
        list(importing.read_rows(write(tmp_path, text), "json"))
    (error,) = caught.value.errors
    wanted = f"not valid JSON: {expected.value.msg} (column {expected.value.colno})"
    assert (error.line, error.problem) == (expected.value.lineno, wanted)


def test_json_that_is_not_an_array(tmp_path: Path, small_reads: int) -> None:
    """Valid JSON other than an array is refused as a whole, on line 1."""
    with pytest.raises(ValidationError) as caught:
        list(importing.read_rows(write(tmp_path, '\n{"schedule": "payments"}'), None))
    assert [(e.line, e.problem) for e in caught.value.errors] == [
        (1, "the file must hold a JSON array of shifts")
    ]


def test_rows_are_read_as_they_are_consumed(tmp_path: Path, small_reads: int) -> None:
    """The first rows come out before the reader reaches a broken end: the file is streamed."""
    path = write(tmp_path, '[{"a": 1},\n {"b": 2},\n {"c": ')
    rows = importing.read_rows(path, None)
    assert next(rows).fields == {"a": 1}
    assert next(rows).fields == {"b": 2}
    with pytest.raises(ValidationError) as caught:
        next(rows)
    assert caught.value.errors[0].line == 3


def test_an_undecodable_byte_late_in_the_file_is_named(tmp_path: Path, small_reads: int) -> None:
    """Bytes that are not UTF-8 are reported with the offset a whole-file decode gives."""
    path = tmp_path / "shifts.csv"
    good = "schedule,external_id,user_email,starts_at,ends_at\n" + "payments,w1,a@b.c,x,y\n" * 5
    path.write_bytes(good.encode() + b"payments,\xff\n")
    with pytest.raises(ValidationError) as caught:
        list(importing.read_rows(path, None))
    assert caught.value.errors[0].problem == f"{path} is not UTF-8 text (byte {len(good) + 9})"


def test_csv_rows_keep_their_lines(tmp_path: Path, small_reads: int) -> None:
    """CSV rows (a quoted line break included) carry the line they start on; blank lines skip."""
    text = (
        "schedule,external_id,user_email,starts_at,ends_at,notes\n"
        'payments,w1,a@example.com,s,e,"two\nlines"\n'
        "\n"
        "search,w2,b@example.com,s,e,\n"
    )
    rows = list(importing.read_rows(write(tmp_path, text, "shifts.csv"), None))
    assert [(row.line, row.schedule, row.fields.get("notes")) for row in rows] == [
        (2, "payments", "two\nlines"),
        (5, "search", None),
    ]


def test_whitespace_only_file_is_empty(tmp_path: Path, small_reads: int) -> None:
    """A file of blanks and line breaks is empty, whatever its format."""
    path = write(tmp_path, "  \n\t\n", "shifts.txt")
    with pytest.raises(ValidationError) as caught:
        list(importing.read_rows(path, None))
    assert caught.value.errors[0].problem == f"{path} is empty"
