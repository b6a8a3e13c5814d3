"""Statements run on the driver's cursor (servicehop_caldav.db.direct) give
SQLAlchemy's rows, value and type, on both backends; the tests' statement
counters see them; a driver's error comes out as SQLAlchemy's."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from sqlalchemy import column, select, table
from sqlalchemy.exc import DBAPIError

from servicehop_caldav.db.direct import Direct
from servicehop_caldav.db.engine import Database
from servicehop_caldav.directory import store as directory
from servicehop_caldav.instance import init_instance
from servicehop_caldav.store.read_ahead import wanted_for
from tests.conftest import start_instance_server
from tests.helpers.robust import ICS, event
from tests.helpers.statements import recorded

CALENDAR = "demo/opening-demo"


def _typed(rows: list[tuple[object, ...]]) -> list[tuple[tuple[type, object], ...]]:
    return [tuple((type(v), v) for v in row) for row in rows]


def test_the_logins_statements_give_sqlalchemys_rows(tmp_path: Path, database_url: str) -> None:
    created = init_instance(tmp_path / "instance", database_url)
    server = start_instance_server(created.instance.home)
    try:
        session = requests.Session()
        session.auth = (created.user, created.password)
        put = session.put(f"{server.url}/{CALENDAR}/a.ics", data=event("a", "x"), headers=ICS)
        assert put.status_code == 201
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
                    assert _typed(mine) == _typed(theirs), (ahead, with_grants, username)
                    compared += bool(theirs)
        assert compared == 8  # every case of the known user found its rows
    finally:
        server.stop()


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
