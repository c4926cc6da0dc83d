"""Record the SQL a piece of code sends: the one way tests (and benchmarks) count statements."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

WRITE_VERBS = ("INSERT", "UPDATE", "DELETE", "COPY")


class Statements:
    """SQL statements sent while recording is on, whitespace folded to single spaces."""

    def __init__(self) -> None:
        self.sql: list[str] = []
        self.on = False

    def __call__(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        """`before_cursor_execute` listener."""
        if self.on:
            self.sql.append(" ".join(statement.split()))

    def record(self) -> Statements:
        """Forget earlier statements and start recording."""
        self.sql.clear()
        self.on = True
        return self

    @property
    def verbs(self) -> list[str]:
        """The first word of each statement, upper case (SELECT, INSERT, ...)."""
        return [s.split(" ", 1)[0].upper() for s in self.sql]

    @property
    def writes(self) -> list[str]:
        """The statements that change rows."""
        return [s for s, verb in zip(self.sql, self.verbs, strict=True) if verb in WRITE_VERBS]

    def mentioning(self, word: str) -> list[str]:
        """Recorded statements that contain `word` (case-insensitive)."""
        return [s for s in self.sql if word.lower() in s.lower()]


@contextmanager
def recorded(*engines: Engine | type[Engine]) -> Iterator[Statements]:
    """Record what the given engines send inside the block.

    Pass the `Engine` class itself to catch engines built inside the block (a CLI command
    builds its own app).
    """
    statements = Statements().record()
    for engine in engines:
        event.listen(engine, "before_cursor_execute", statements)
    try:
        yield statements
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", statements)
