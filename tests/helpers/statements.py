"""The SQL statements a piece of work sends (for tests that count round trips),
and rows compared by value and type."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, event


def recorded(engine: Engine) -> list[str]:
    """A list that fills with every statement ``engine`` sends from now on,
    each on one line (whitespace collapsed)."""
    seen: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _record(_c: Connection, _cur: object, statement: str, *_args: object) -> None:
        seen.append(" ".join(statement.split()))

    return seen


def typed(rows: Sequence[Sequence[Any]]) -> list[tuple[tuple[type, Any], ...]]:
    """``rows`` with each value's type beside it: rows equal by this are
    equal in value and type (SQLite's 1 is not SQLAlchemy's True)."""
    return [tuple((type(v), v) for v in row) for row in rows]
