"""Statements run on the driver's cursor (servicehop_caldav.db.direct) give
SQLAlchemy's rows, value and type, on both backends, all at once or a batch
at a time; the tests' statement counters see them; a driver's error comes
out as SQLAlchemy's."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, column, event, select, table
from sqlalchemy.exc import DBAPIError

from servicehop_caldav.db.direct import Direct, run_query
from servicehop_caldav.db.engine import Database
from servicehop_caldav.directory import store as directory
from servicehop_caldav.store import collections as store_collections
from servicehop_caldav.store import objects as store_objects
from servicehop_caldav.store.read_ahead import wanted_for
from tests.helpers.served import CALENDAR, serving_one_event
from tests.helpers.statements import recorded, typed


def test_the_logins_statements_give_sqlalchemys_rows(tmp_path: Path, database_url: str) -> None:
    with serving_one_event(tmp_path, database_url) as served:
        created = served.created
        db = Database.shared(database_url)
        cases = [
            (created.user, wanted_for(f"/{CALENDAR}/a.ics")),  # the user, the calendar and the item
            (created.user, wanted_for(f"/{CALENDAR}/missing.ics")),
            (created.user, wanted_for(f"/{CALENDAR}/")),
            (created.user, None),
            ("nobody", wanted_for(f"/{CALENDAR}/a.ics")),
        ]
        compared = 0
        with db.transaction("r") as conn:
            for (ahead, with_grants), direct in directory._STATEMENTS.items():
                for username, wanted in cases:
                    if (wanted is not None) != ahead:
                        continue
                    parameters = {"username": username, **(wanted._asdict() if wanted else {})}
                    theirs = [tuple(row) for row in conn.execute(direct.statement, parameters)]  # type: ignore[call-overload]
                    mine = direct.rows(conn, parameters)
                    assert typed(mine) == typed(theirs), (ahead, with_grants, username)
                    compared += bool(theirs)
        assert compared == 8  # every case of the known user found its rows


def test_counters_see_a_direct_statement_and_errors_are_sqlalchemys(db: Database) -> None:
    direct = Direct(select(column("id")).select_from(table("users")))
    seen = recorded(db.engine)
    with db.transaction("r") as conn:
        assert direct.rows(conn, {}) == []
    assert seen and "users" in seen[-1]
    missing = Direct(select(column("x")).select_from(table("no_such_table")))
    with pytest.raises(DBAPIError), db.transaction("r") as conn:
        missing.rows(conn, {})
    with db.transaction("r") as conn:  # the pool's connection is sound again
        assert direct.rows(conn, {}) == []
    # A query without parameters (a write's BEGIN and lock) goes the same way.
    with pytest.raises(DBAPIError), db.transaction("r") as conn:
        run_query(conn, "SELECT x FROM no_such_table")
    assert "no_such_table" in seen[-1]
    with db.transaction("r") as conn:
        assert direct.rows(conn, {}) == []


EVENT = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:e{n}\r\n"
         "DTSTAMP:20260101T000000Z\r\nDTSTART:2026060{day}T100000Z\r\nDTEND:2026060{day}T110000Z\r\n"
         "END:VEVENT\r\nEND:VCALENDAR\r\n")


def test_each_gives_sqlalchemys_rows_a_batch_at_a_time(db: Database) -> None:
    """The statements read a batch at a time (a calendar's index listing,
    the week query's objects): SQLAlchemy's rows, value and type, in its
    order, whatever the batch; one statement each; closed before the end,
    the connection goes on."""
    from radicale_storage_servicehop import object_of_text

    make = object_of_text("u/cal")
    with db.transaction("w") as conn:
        calendar_id = store_collections.create_instance(conn, "u/cal", {"tag": "VCALENDAR"}).calendar_id
        for n in (4, 0, 6, 2, 5, 1, 3):  # stored out of order; read by href
            store_objects.put_object(conn, calendar_id, f"e{n}.ics", make(EVENT.format(n=n, day=n + 1)))
    week = int(datetime(2026, 6, 1, tzinfo=UTC).timestamp())
    cases = [
        (store_objects._INDEX_LISTING, {"calendar_id": calendar_id}),
        (store_objects._MATCHING_DIRECT,
         {"calendar_id": calendar_id, "component": "VEVENT", "start": week, "end": week + 7 * 86400}),
    ]
    seen = recorded(db.engine)
    with db.transaction("r") as conn:
        for direct, parameters in cases:
            theirs = [tuple(row) for row in conn.execute(direct.statement, parameters)]  # type: ignore[call-overload]
            assert [row[0] for row in theirs] == [f"e{n}.ics" for n in range(7)]
            for batch in (1, 3, 7, 1000):
                before = len(seen)
                assert typed(list(direct.each(conn, parameters, batch=batch))) == typed(theirs), batch
                assert len(seen) == before + 1
        cursors = _cursors_of(db)
        rows = store_objects.index_listing(conn, calendar_id)
        assert next(rows)[0] == "e0.ics"
        assert not _closed(cursors[-1])
        rows.close()  # the driver's cursor with it
        assert _closed(cursors[-1])
        assert [row[0] for row in store_objects.index_listing(conn, calendar_id)] == [
            f"e{n}.ics" for n in range(7)]
        assert _closed(cursors[-1])  # read to the end
    with db.transaction("r") as conn:
        assert len(list(store_objects.index_listing(conn, calendar_id))) == 7


def _cursors_of(db: Database) -> list[Any]:
    """The driver's cursors of the statements ``db`` runs from now on."""
    cursors: list[Any] = []

    @event.listens_for(db.engine, "before_cursor_execute")
    def _record(_c: Connection, cursor: Any, *_args: object) -> None:
        cursors.append(cursor)

    return cursors


def _closed(cursor: Any) -> bool:
    """Whether a driver's cursor is closed (psycopg says so; sqlite3 refuses to be read)."""
    if hasattr(cursor, "closed"):
        return bool(cursor.closed)
    try:
        cursor.fetchone()
    except sqlite3.ProgrammingError:
        return True
    return False
