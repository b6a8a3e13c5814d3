"""The request path read in the login's statement (``store/read_ahead.py``).

A GET of an item is then one statement on both backends; what that
statement read of the item stays encrypted until the storage asks for it,
and a write in the same transaction is not answered from it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from radicale_storage_servicehop import object_of_text

from servicehop_caldav.db import memo
from servicehop_caldav.db.engine import Database
from servicehop_caldav.directory import store as directory
from servicehop_caldav.instance import Instance
from servicehop_caldav.store import collections as store_collections
from servicehop_caldav.store import objects as store_objects
from servicehop_caldav.store.read_ahead import Wanted, wanted_for
from tests.helpers.robust import ICS, event
from tests.helpers.served import serving_one_event
from tests.helpers.statements import recorded

CALENDAR = "demo/opening-demo"
A = Wanted(f"{CALENDAR}/a.ics", CALENDAR, "a.ics")


def test_wanted_for_names_what_discover_looks_up() -> None:
    assert wanted_for("/demo/opening-demo/a.ics") == A
    assert wanted_for("/demo/opening-demo/") == Wanted("demo/opening-demo", "demo", "opening-demo")
    # Sanitized as Radicale does: the dots and doubled slashes are gone.
    assert wanted_for("//demo/x/../opening-demo//a.ics") == wanted_for("/demo/opening-demo/a.ics")
    assert wanted_for("/demo/") is None  # the home: the login reads it anyway
    assert wanted_for("/") is None


def test_a_get_of_an_item_is_one_statement_and_answers_right(tmp_path: Path, database_url: str) -> None:
    with serving_one_event(tmp_path, database_url) as served:
        created, server, session, url = served.created, served.server, served.session, served.url
        seen = recorded(Database.shared(database_url).engine)
        got = session.get(url)
        assert got.status_code == 200 and "SUMMARY:first" in got.text
        assert len(seen) == 1, seen  # the login, the calendar and the item together
        del seen[:]
        assert session.get(f"{server.url}/{CALENDAR}/missing.ics").status_code == 404
        assert len(seen) == 1, seen
        # A wrong password reads the same statement and gets nothing of it.
        wrong = session.get(url, auth=(created.user, "wrong"))
        assert wrong.status_code == 401 and "SUMMARY" not in wrong.text
        # A changed item is read fresh by the next request.
        assert session.put(url, data=event("a", "second"), headers=ICS).status_code == 204
        assert "SUMMARY:second" in session.get(url).text
        # A collection read with the login: PROPFIND and REPORT still answer.
        found = session.request("PROPFIND", f"{server.url}/{CALENDAR}/", headers={"Depth": "1"})
        assert found.status_code == 207 and "a.ics" in found.text


@pytest.fixture
def db_and_calendar(instance_home: Path) -> Iterator[tuple[Database, int]]:
    """The instance's database (user demo, made by init) and demo's opening
    calendar, holding a.ics."""
    with Instance(instance_home).open() as (db, _keyring):
        with db.transaction("w") as conn:
            instance = store_collections.get_instance(conn, CALENDAR)
            assert instance is not None
            store_objects.put_object(conn, instance.calendar_id, "a.ics",
                                     object_of_text(CALENDAR)(event("a", "first")))
        yield db, instance.calendar_id


def test_the_member_read_with_the_login_stays_encrypted_until_asked_for(
    db_and_calendar: tuple[Database, int],
) -> None:
    db, calendar = db_and_calendar
    with db.request(snapshot=False), db.transaction("r") as conn:
        assert directory.credentials_of(conn, "demo", A) is not None
        assert (calendar, "a.ics") not in memo.memo(conn, store_objects._MEMO)
        unread = memo.memo(conn, store_objects._UNREAD)[(calendar, "a.ics")]
        assert isinstance(unread[-1], bytes)  # the stored data, not a text
        seen = recorded(db.engine)
        at_path, parent, member = store_objects.get_path_and_member(conn, *A)
        assert seen == []  # all of it was read with the login
        assert at_path is None and parent is not None and parent.calendar_id == calendar
        assert member is not None and "SUMMARY:first" in member.text
        assert (calendar, "a.ics") not in memo.memo(conn, store_objects._UNREAD)


def test_a_write_is_not_answered_from_what_the_login_read(db_and_calendar: tuple[Database, int]) -> None:
    db, calendar = db_and_calendar
    with db.transaction("w") as conn:
        directory.credentials_of(conn, "demo", A)
        store_objects.put_object(conn, calendar, "a.ics", object_of_text(CALENDAR)(event("a", "second")))
        member = store_objects.get_object(conn, calendar, "a.ics")
        assert member is not None and "SUMMARY:second" in member.text
        directory.credentials_of(conn, "demo", Wanted(f"{CALENDAR}/b.ics", CALENDAR, "b.ics"))
        store_objects.put_object(conn, calendar, "b.ics", object_of_text(CALENDAR)(event("b")))
        assert store_objects.get_object(conn, calendar, "b.ics") is not None  # read-ahead said: none


def test_an_unknown_user_reads_nothing_ahead(db_and_calendar: tuple[Database, int]) -> None:
    db, _calendar = db_and_calendar
    with db.transaction("r") as conn:
        assert directory.credentials_of(conn, "nobody", A) is None
        assert memo.memo(conn, store_objects._UNREAD) == {}
        assert store_collections.known(conn, CALENDAR) == (False, None)
