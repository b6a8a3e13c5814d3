"""The SQL statements a piece of work sends, for tests that count round trips."""

from __future__ import annotations

from sqlalchemy import Connection, Engine, event


def recorded(engine: Engine) -> list[str]:
    """A list that fills with every statement ``engine`` sends from now on,
    each on one line (whitespace collapsed)."""
    seen: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _record(_c: Connection, _cur: object, statement: str, *_args: object) -> None:
        seen.append(" ".join(statement.split()))

    return seen
