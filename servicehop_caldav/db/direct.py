"""Statements of every request and every write, and the longest results, run on the driver's cursor.

Every request reads its login first (``directory.credentials_of``); a GET
of an event reads nothing else. Every write then looks its path up with
what it will need (``store.write_ahead``). Through ``Connection.execute``
each call generates the statement's cache key, sets up an execution
context and a result with its column descriptions (psycopg builds an
object for each column: 28 for the login, about a hundred for the
write's lookup), and psycopg converts the query from SQLAlchemy's
``%(name)s`` placeholders anew whenever it is longer than 4,096
characters, the longest it keeps converted: the login's statement with
the request path and the grants is 4,930, the write's lookup with the
staff 4,868. Measured in-process (the WSGI application called directly,
runs alternating): a GET of an event on PostgreSQL took 874 µs that way
and 703 µs with the login's statement here; a PUT 5.34 against 4.82 ms
on PostgreSQL and 2.07 against 1.88 ms on SQLite with both statements.

On PostgreSQL a write's own statement (``store.one_trip``: the object,
its occurrences, the revision and the change row) runs here too, and so
does its BEGIN with the write lock (:func:`run_query`,
``db.engine.BEGIN_WRITE``). Measured on a 1,000-event calendar, a PUT of
a new event after 150 ms of other work: in-process, four runs each
alternating, 5.32 to 5.57 ms through ``Connection.execute`` against 4.84
to 5.06 here (warm, the second of two: 3.59 to 3.89 against 3.27 to
3.36); over HTTP, two servers interleaved, 5.96 and 6.16 against 5.53
and 5.65 ms.

Two long results are read here too, a batch of rows at a time
(:meth:`Direct.each`): every member of a calendar for a PROPFIND of their
etags (``store.objects.index_listing``) and the objects of a time-range
REPORT (``store.objects.matches_in_range``). Through SQLAlchemy's result
each row was fetched and wrapped one by one: measured in-process on
10,000 events, runs alternating, a PROPFIND depth 1 took 42.7 ms that
way and 35.9 here on PostgreSQL (37.6 against 34.5 on SQLite), the week
query's REPORT (545 events) 12.0 against 11.3 ms (12.7 against 11.6).
On PostgreSQL their rows come in its binary format: the same values,
the objects' data as bytes rather than hex text, which took the week
query from 11.4 to 10.7 ms and the PROPFIND from 35.6 to 34.1.

So SQLAlchemy compiles the statement once per backend (the SQL is its,
from the same Core statement): for PostgreSQL with PostgreSQL's own
placeholders (``$1``), run on psycopg's ``RawCursor``, which sends the
query as it is and prepares it like any other; for SQLite with ``?`` on
sqlite3's cursor. Rows come back as tuples, for the stores that read them
by position: psycopg's values are already of the columns' types, and on
SQLite each is converted as SQLAlchemy's type of its column converts it (a
Boolean's 0 and 1). Parameters are plain values (text, numbers), which
neither backend's types convert, or bytes and lists (the write's data
and its occurrences' arrays), which psycopg sends as bytea and arrays,
cast by the statement as SQLAlchemy wrote it. ``tests/test_direct.py``
(the login's) and ``tests/test_write_ahead.py`` (the write's lookup) hold
the rows to SQLAlchemy's, value and type, for every statement run this
way, and those read a batch at a time for any batch;
``tests/test_one_trip.py`` holds what the write stores to what was
given, column by column.

What SQLAlchemy does around a statement still happens: listeners of
``before_cursor_execute`` (the tests' counters of statements) are told,
and a driver's error is handled by SQLAlchemy's own handler (wrapped as
its ``DBAPIError``, a lost connection invalidated). Both are SQLAlchemy
2.0's ``Connection`` internals (``_has_events``, ``dispatch``,
``_handle_dbapi_exception``), on the pinned release:
``tests/test_direct.py`` goes through each of them.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Executable

# Rows a long result is read in (Direct.each): 100 rows of a calendar's
# index columns are about 40 kB of Python objects, of a time range's
# objects with their data about 150 kB, small beside the answer they make
# (tests/test_answer_memory.py); 1,000 rows at a time took a 10,000-member
# PROPFIND no less time (37.5 against 37.0 ms on PostgreSQL).
EACH_BATCH = 100


def run_query(conn: Connection, sql: str) -> None:
    """Run ``sql``, a query without parameters (several statements are
    sent as one, a single round trip), on the driver's cursor, as
    :meth:`Direct.rows` runs a statement: a write's BEGIN and lock
    (``db.engine.BEGIN_WRITE``), whose result nobody reads, through
    ``exec_driver_sql`` built an execution context and a result for it."""
    _run(conn, sql, None)


def _run(conn: Connection, sql: str, values: list[Any] | None) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` run with ``values`` (None: no parameters, and
    no rows read) on the driver's cursor of ``conn``, with SQLAlchemy's
    listeners told and a driver's error handled by SQLAlchemy."""
    with _executed(conn, sql, values) as cursor:
        if values is None:
            return []
        rows: list[tuple[Any, ...]] = cursor.fetchall()
        return rows


def _batches(
    conn: Connection, sql: str, values: list[Any], size: int
) -> Generator[list[tuple[Any, ...]], None, None]:
    """The rows of ``sql`` run with ``values``, ``size`` at a time: the
    driver's cursor stays open until they are all read or the iterator is
    closed."""
    with _executed(conn, sql, values, binary=True) as cursor:
        while batch := cursor.fetchmany(size):
            yield batch


@contextmanager
def _executed(conn: Connection, sql: str, values: list[Any] | None, binary: bool = False) -> Iterator[Any]:
    """The driver's cursor of ``conn`` that ran ``sql``, closed when the
    block ends; a driver's error, in the statement or in reading its rows,
    handled by SQLAlchemy's handler (wrapped, a lost connection invalidated)."""
    cursor = _cursor(conn)
    try:
        _execute(conn, cursor, sql, values, binary)
        yield cursor
    except conn.dialect.loaded_dbapi.Error as e:
        conn._handle_dbapi_exception(e, sql, values, cursor, None)  # raises
        raise
    finally:
        cursor.close()


def _cursor(conn: Connection) -> Any:
    driver_connection: Any = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        import psycopg  # only with PostgreSQL

        return psycopg.RawCursor(driver_connection)
    return driver_connection.cursor()


def _execute(conn: Connection, cursor: Any, sql: str, values: list[Any] | None, binary: bool = False) -> None:
    """Run ``sql`` on ``cursor``, the listeners told first. ``binary``: on
    PostgreSQL, the rows come in PostgreSQL's binary format, as the same
    Python values (an object's data as its bytes, not twice as many hex
    digits to decode)."""
    if conn._has_events or conn.engine._has_events:
        conn.dispatch.before_cursor_execute(conn, cursor, sql, values, None, False)
    if values is None:
        cursor.execute(sql)
    elif binary and conn.dialect.name == "postgresql":
        cursor.execute(sql, values, binary=True)
    else:
        cursor.execute(sql, values)


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # the parameter of each placeholder, in order
    fixed: Mapping[str, Any]  # the statement's own values (not passed)
    # SQLAlchemy's conversions of the result's columns (by position) where
    # the driver's value is not the type's (SQLite's 0 and 1 for a Boolean).
    conversions: tuple[tuple[int, Callable[[Any], Any]], ...]


def _converted(compiled: _Compiled, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """``rows`` with SQLAlchemy's conversions of ``compiled``'s columns applied."""
    if not compiled.conversions:
        return rows
    converted = []
    for row in rows:
        columns = list(row)
        for at, convert in compiled.conversions:
            columns[at] = convert(columns[at])
        converted.append(tuple(columns))
    return converted


@dataclass
class Direct:
    """``statement``, run on the driver's cursor of a connection of either backend."""

    statement: Executable
    _compiled: dict[str, _Compiled] = field(default_factory=dict, repr=False)

    def rows(self, conn: Connection, parameters: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        compiled, values = self._bound(conn, parameters)
        return _converted(compiled, _run(conn, compiled.sql, values))

    def each(self, conn: Connection, parameters: Mapping[str, Any],
             batch: int = EACH_BATCH) -> Generator[tuple[Any, ...], None, None]:
        """The rows one by one, read from the driver ``batch`` at a time:
        for a result too long to hold as a list (every member of a
        calendar), where SQLAlchemy's result fetched them one by one.
        Consume or close it before ``conn``'s transaction ends."""
        compiled, values = self._bound(conn, parameters)
        # Closed with this generator, not when the collector gets to it.
        with closing(_batches(conn, compiled.sql, values, batch)) as batches:
            for rows in batches:
                yield from _converted(compiled, rows)

    def _bound(self, conn: Connection, parameters: Mapping[str, Any]) -> tuple[_Compiled, list[Any]]:
        compiled = self._compiled.get(conn.dialect.name) or self._compile(conn.dialect)
        values = [parameters[n] if n in parameters else compiled.fixed[n] for n in compiled.names]
        return compiled, values

    def _compile(self, dialect: Dialect) -> _Compiled:
        if dialect.name == "postgresql":
            # The engine's dialect writes psycopg's %(name)s; the same class
            # of dialect, set to PostgreSQL's own placeholders, writes $1.
            numbered = type(dialect)(paramstyle="numeric_dollar")  # type: ignore[call-arg]
            numbered.server_version_info = dialect.server_version_info
            dialect = numbered
        compiled = self.statement.compile(dialect=dialect)  # type: ignore[attr-defined]
        names = tuple(compiled.positiontup or ())
        fixed = {name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required}
        conversions = []
        if dialect.name == "sqlite":  # psycopg gives PostgreSQL's values as the types' own
            for at, column in enumerate(self.statement.selected_columns):  # type: ignore[attr-defined]
                convert = column.type.dialect_impl(dialect).result_processor(dialect, None)
                if convert is not None:
                    conversions.append((at, convert))
        result = _Compiled(str(compiled), names, fixed, tuple(conversions))
        self._compiled[dialect.name] = result
        return result
