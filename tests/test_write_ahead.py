"""A write's first lookup reads the newest key and the department too (``store/write_ahead.py``).

The path lookup of a write transaction runs after the write lock, so what it
reads of the keys is what ``codec.check_current`` would read; a PUT into a
department's calendar then asks neither on its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import insert

from servicehop_caldav.db.engine import Database
from servicehop_caldav.db.schema import key_checks
from servicehop_caldav.desk.desk import department_named
from servicehop_caldav.directory import store as directory
from servicehop_caldav.instance import Instance, init_instance
from servicehop_caldav.store import codec, write_ahead
from tests.conftest import start_instance_server
from tests.helpers.robust import ICS, event
from tests.helpers.statements import recorded

CALENDAR = "demo/opening-demo"


class _Undo(Exception):
    """Rolls a test's transaction back."""


def _alone(seen: list[str], table: str) -> list[str]:
    """The statements that read only ``table``."""
    return [s for s in seen if s.startswith("SELECT") and s.count(" FROM ") == 1 and f"FROM {table}" in s]


def test_department_named_reads_department_calendars_only() -> None:
    assert department_named("demo/opening-demo") == "demo"
    assert department_named("rita/bookings-hjem") == "hjem"
    assert department_named("rita/bookings-") is None
    assert department_named("rita/visits") is None
    assert department_named("rita/opening-x/y") is None


def test_a_put_into_a_department_calendar_reads_key_and_department_with_its_path(
    tmp_path: Path, database_url: str,
) -> None:
    created = init_instance(tmp_path / "instance", database_url)
    server = start_instance_server(created.instance.home)
    try:
        session = requests.Session()
        session.auth = (created.user, created.password)
        # The first login verifies the password and provisions: reads of its own.
        assert session.request("PROPFIND", f"{server.url}/{CALENDAR}/").status_code == 207
        seen = recorded(Database.shared(database_url).engine)
        r = session.put(f"{server.url}/{CALENDAR}/a.ics", data=event("a"), headers=ICS)
        assert r.status_code == 201
        assert _alone(seen, "key_checks") == [] and _alone(seen, "departments") == []
        lookups = [s for s in seen if "max(key_checks.key_id)" in s]
        assert len(lookups) == 1 and "departments" in lookups[0] and "calendar_objects" in lookups[0]
        assert session.get(f"{server.url}/{CALENDAR}/a.ics").status_code == 200
    finally:
        server.stop()


@pytest.fixture
def db(instance_home: Path) -> Iterator[Database]:
    with Instance(instance_home).open() as (database, _keyring):
        yield database


def test_the_newest_key_read_with_the_path_is_the_one_checked(db: Database) -> None:
    with db.transaction("w") as conn:
        seen = recorded(db.engine)
        write_ahead.get_path_and_member(conn, f"{CALENDAR}/a.ics", CALENDAR, "a.ics", "demo")
        keyring = codec.keyring_of(conn)
        assert keyring is not None
        del seen[:]
        codec.check_current(conn, keyring)  # answered from what the lookup read
        assert seen == []
        department = directory.get_department(conn, "demo")
        assert seen == [] and department is not None and department.opening_calendar_id is not None
    with pytest.raises(_Undo), db.transaction("w") as conn:
        # A rotation registers a newer key under the lock before the lookup.
        conn.execute(insert(key_checks).values(key_id=99, check_value=b"x"))
        write_ahead.get_path_and_member(conn, f"{CALENDAR}/a.ics", CALENDAR, "a.ics", "nowhere")
        assert directory.get_department(conn, "nowhere") is None
        keyring = codec.keyring_of(conn)
        assert keyring is not None
        with pytest.raises(codec.StaleKeyError):
            codec.check_current(conn, keyring)
        raise _Undo  # the made-up key goes with the transaction
