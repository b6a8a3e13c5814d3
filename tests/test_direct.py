"""Statements run on the driver's cursor (servicehop_caldav.db.direct) give
SQLAlchemy's rows, value and type, on both backends; the tests' statement
counters see them; a driver's error comes out as SQLAlchemy's."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import column, select, table
from sqlalchemy.exc import DBAPIError

from servicehop_caldav.db.direct import Direct, run_query
from servicehop_caldav.db.engine import Database
from servicehop_caldav.directory import store as directory
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
