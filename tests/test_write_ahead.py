"""A write's first lookup reads the newest key and the department too (``store/write_ahead.py``).

The path lookup of a write transaction runs after the write lock, so what it
reads of the keys is what ``codec.check_current`` would read; a PUT into a
department's calendar then asks neither on its own."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from radicale_storage_servicehop import object_of_text
from sqlalchemy import Connection, insert

from servicehop_caldav.booking.config import LONGEST_BOOKING
from servicehop_caldav.db.engine import Database
from servicehop_caldav.db.schema import key_checks
from servicehop_caldav.desk.department import OCCURRENCE_MARGIN
from servicehop_caldav.desk.desk import department_named
from servicehop_caldav.directory import store as directory
from servicehop_caldav.instance import Instance, init_instance
from servicehop_caldav.store import bookings as store_bookings
from servicehop_caldav.store import codec, write_ahead
from servicehop_caldav.store import collections as store_collections
from servicehop_caldav.store import objects as store_objects
from servicehop_caldav.store.bookings import BookingRow
from tests.conftest import start_instance_server
from tests.helpers.robust import ICS, event, vcalendar, vevent
from tests.helpers.statements import recorded, typed

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


@contextmanager
def _logged_in(tmp_path: Path, database_url: str) -> Iterator[tuple[str, requests.Session, list[str]]]:
    """A server of a new instance, the demo admin's session logged in, and
    the statements sent from then on."""
    created = init_instance(tmp_path / "instance", database_url)
    server = start_instance_server(created.instance.home)
    try:
        session = requests.Session()
        session.auth = (created.user, created.password)
        # The first login verifies the password and provisions: reads of its own.
        assert session.request("PROPFIND", f"{server.url}/{CALENDAR}/").status_code == 207
        yield f"{server.url}/{CALENDAR}", session, recorded(Database.shared(database_url).engine)
    finally:
        server.stop()


def test_a_put_into_a_department_calendar_reads_key_and_department_with_its_path(
    tmp_path: Path, database_url: str,
) -> None:
    with _logged_in(tmp_path, database_url) as (calendar, session, seen):
        r = session.put(f"{calendar}/a.ics", data=event("a"), headers=ICS)
        assert r.status_code == 201
        assert _alone(seen, "key_checks") == [] and _alone(seen, "departments") == []
        lookups = [s for s in seen if "max(key_checks.key_id)" in s]
        assert len(lookups) == 1 and "departments" in lookups[0] and "calendar_objects" in lookups[0]
        assert session.get(f"{calendar}/a.ics").status_code == 200


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


def test_sent_uid_is_the_one_uid_a_body_names() -> None:
    assert write_ahead.sent_uid(event("plain").encode()) == "plain"
    folded = "BEGIN:VEVENT\r\nUID:a-long-\r\n uid-folded\r\nEND:VEVENT\r\n"
    assert write_ahead.sent_uid(folded.encode()) == "a-long-uid-folded"
    assert write_ahead.sent_uid(b"BEGIN:VEVENT\nuid;X-A=b:lower\nEND:VEVENT\n") == "lower"
    # Two (a whole-collection PUT, or an alarm's own UID), none, or not UTF-8: no guess.
    assert write_ahead.sent_uid((event("one") + event("two")).encode()) is None
    assert write_ahead.sent_uid(b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n") is None
    assert write_ahead.sent_uid(b"UID:\xff\xfe\r\n") is None
    # A line that only contains "UID:" is not one.
    assert write_ahead.sent_uid(b"DESCRIPTION:UID:x\r\nUID:y\r\n") == "y"


def _alarmed(uid: str) -> str:
    """An event whose alarm has a UID of its own (RFC 9074): the guess gives up."""
    text = event(uid)
    alarm = ("BEGIN:VALARM\r\nUID:alarm-1\r\nACTION:DISPLAY\r\nDESCRIPTION:x\r\n"
             "TRIGGER:-PT5M\r\nEND:VALARM\r\n")
    return text.replace("END:VEVENT", alarm + "END:VEVENT")


def test_a_new_objects_uid_check_is_read_with_its_path_and_still_refuses_a_taken_uid(
    tmp_path: Path, database_url: str,
) -> None:
    with _logged_in(tmp_path, database_url) as (calendar, session, seen):

        def separate_uid_checks() -> list[str]:
            return [s for s in seen if "calendar_objects.uid =" in s and "max(key_checks" not in s]

        assert session.put(f"{calendar}/a.ics", data=event("a"), headers=ICS).status_code == 201
        assert separate_uid_checks() == []
        assert len([s for s in seen if "max(key_checks.key_id)" in s and "calendar_objects.uid =" in s]) == 1
        # The same UID at another href: Radicale's no-uid-conflict, answered
        # from what the path lookup read, and nothing written.
        del seen[:]
        r = session.put(f"{calendar}/b.ics", data=event("a", "again"), headers=ICS)
        assert r.status_code == 409 and b"no-uid-conflict" in r.content
        assert separate_uid_checks() == []
        assert session.get(f"{calendar}/b.ics").status_code == 404
        # No guess (two UIDs in the body): Radicale's own check reads it, with the same answer.
        del seen[:]
        r = session.put(f"{calendar}/c.ics", data=_alarmed("a"), headers=ICS)
        assert r.status_code == 409 and b"no-uid-conflict" in r.content
        assert len(separate_uid_checks()) == 1
        assert session.put(f"{calendar}/c.ics", data=_alarmed("c"), headers=ICS).status_code == 201


def test_a_uid_read_with_the_path_is_forgotten_once_an_object_is_written(db: Database) -> None:
    href = "fresh.ics"
    with pytest.raises(_Undo), db.transaction("w") as conn, write_ahead.sending(event("u1").encode()):
        path = f"{CALENDAR}/{href}"
        _, parent, member = write_ahead.get_path_and_member(conn, path, CALENDAR, href, "demo")
        assert parent is not None and member is None
        seen = recorded(db.engine)
        assert store_objects.has_uid(conn, parent.calendar_id, "u1") is False  # from the lookup
        assert seen == []
        store_objects.put_object(conn, parent.calendar_id, "other.ics", object_of_text(CALENDAR)(event("u1")))
        del seen[:]
        assert store_objects.has_uid(conn, parent.calendar_id, "u1") is True  # read again
        assert len(seen) == 1
        raise _Undo


def test_the_recipient_read_with_the_path_is_the_one_read_until_the_directory_changes(db: Database) -> None:
    path = f"{CALENDAR}/a.ics"
    with pytest.raises(_Undo), db.transaction("w") as conn:
        write_ahead.get_path_and_member(conn, path, CALENDAR, "a.ics", "demo", recipient="demo")
        keyring = codec.keyring_of(conn)
        assert keyring is not None
        seen = recorded(db.engine)
        person = directory.get_person(conn, keyring, "demo")
        assert seen == [] and person is not None and person.username == "demo"
        assert person.roles == directory.roles_of(conn, person.id) and person.name
        # A new role and a disabled login are seen at once, in the same transaction.
        directory.add_role(conn, person.id, "demo", "recipient", 90)
        again = directory.get_person(conn, keyring, "demo")
        assert again is not None and directory.Role("demo", "recipient", 90) in again.roles
        assert again.roles == directory.roles_of(conn, person.id)
        directory.set_disabled(conn, "demo", True)
        disabled = directory.get_person(conn, keyring, "demo")
        assert disabled is not None and disabled.disabled
        raise _Undo
    with pytest.raises(_Undo), db.transaction("w") as conn:
        write_ahead.get_path_and_member(conn, path, CALENDAR, "a.ics", "demo", recipient="nobody")
        keyring = codec.keyring_of(conn)
        assert keyring is not None
        seen = recorded(db.engine)
        assert directory.get_person(conn, keyring, "nobody") is None and seen == []
        raise _Undo


def _booking_at(db: Database, start: dt.datetime) -> None:
    """A waiting booking row of the demo department starting at ``start``."""
    with db.transaction("w") as conn:
        parent = store_collections.get_instance(conn, CALENDAR)
        user_id = directory.user_id_of(conn, "demo")
        assert parent is not None and user_id is not None
        at = int(start.timestamp())
        store_bookings.insert_booking(conn, BookingRow(
            id=f"b-{at}", department_id="demo", recipient_id=user_id, staff_id=None, start_ts=at,
            end_ts=at + 3600, status="waiting", booking_calendar_id=parent.calendar_id,
            booking_href=f"b-{at}.ics"))


def test_an_opening_change_later_than_every_booking_looks_none_up(tmp_path: Path, database_url: str) -> None:
    """The opening calendar's path lookup reads the department's latest
    booking start: a change after it (the longest booking included) asks
    the bookings nothing more; one before it still looks them up."""
    booked = dt.datetime(2027, 6, 1, 9, tzinfo=dt.UTC)

    def put(uid: str, start: dt.datetime) -> list[str]:
        del seen[:]
        r = session.put(f"{calendar}/{uid}.ics", data=vcalendar(vevent(uid, start)), headers=ICS)
        assert r.status_code == 201, r.text
        return _alone(seen, "bookings")

    with _logged_in(tmp_path, database_url) as (calendar, session, seen):
        assert put("none-booked", booked) == []
        _booking_at(Database.shared(database_url), booked)
        assert len(put("before", booked - dt.timedelta(days=30))) == 1
        assert len(put("overlapping", booked + dt.timedelta(hours=23))) == 1
        # The desk widens a change by a margin of its own (OCCURRENCE_MARGIN).
        assert len(put("near", booked + LONGEST_BOOKING + OCCURRENCE_MARGIN - dt.timedelta(hours=1))) == 1
        assert put("after", booked + LONGEST_BOOKING + OCCURRENCE_MARGIN) == []


def test_the_latest_booking_start_read_with_the_path_is_forgotten_once_a_booking_is_written(
    db: Database,
) -> None:
    at = int(dt.datetime(2027, 6, 1, 9, tzinfo=dt.UTC).timestamp())
    longest = int(LONGEST_BOOKING.total_seconds())
    with pytest.raises(_Undo), db.transaction("w") as conn:
        assert not store_bookings.known_free_from(conn, "demo", 0)  # not read: unknown
        write_ahead.get_path_and_member(conn, f"{CALENDAR}/a.ics", CALENDAR, "a.ics", "demo")
        assert store_bookings.known_free_from(conn, "demo", 0)  # no booking at all
        raise _Undo
    _booking_at(db, dt.datetime.fromtimestamp(at, dt.UTC))
    with pytest.raises(_Undo), db.transaction("w") as conn:
        write_ahead.get_path_and_member(conn, f"{CALENDAR}/a.ics", CALENDAR, "a.ics", "demo")
        assert not store_bookings.known_free_from(conn, "demo", at + longest - 1)
        assert store_bookings.known_free_from(conn, "demo", at + longest)
        _booking_at(db, dt.datetime.fromtimestamp(at + 10 * longest, dt.UTC))  # joins this transaction
        assert not store_bookings.known_free_from(conn, "demo", at + longest)
        raise _Undo


def test_the_staff_read_with_a_bookings_calendars_path_are_read_again_once_the_directory_changes(
    db: Database,
) -> None:
    """On PostgreSQL a bookings calendar's write reads the department's
    staff, with their assignments calendars, in its path lookup: the desk's
    staff read then asks nothing, until a write of users or roles; another
    calendar's write does not read them. On SQLite the desk reads them."""
    with db.transaction("w") as conn:
        user_id = directory.user_id_of(conn, "demo")
        assert user_id is not None
        directory.add_role(conn, user_id, "demo", directory.STAFF_ROLE)

    def staff(conn: Connection) -> list[str]:
        keyring = codec.keyring_of(conn)
        assert keyring is not None
        found = directory.enabled_members(conn, keyring, "demo", directory.STAFF_ROLE,
                                          calendar=directory.STAFF_CALENDAR)
        return [member.username for member in found]

    with pytest.raises(_Undo), db.transaction("w") as conn:
        write_ahead.get_path_and_member(conn, "demo/bookings-demo/a.ics", "demo/bookings-demo", "a.ics",
                                        "demo", recipient="demo")
        seen = recorded(db.engine)
        ahead = db.backend == "postgresql"
        assert staff(conn) == ["demo"] and len(seen) == (0 if ahead else 1)
        del seen[:]
        # Not provisioned yet (that is the first login's): known absent, read with the staff.
        assert store_collections.get_instance(conn, f"demo/{directory.STAFF_CALENDAR}") is None
        assert seen == []
        directory.set_disabled(conn, "demo", True)
        del seen[:]
        assert staff(conn) == [] and len(seen) == 1
        raise _Undo
    with pytest.raises(_Undo), db.transaction("w") as conn:
        write_ahead.get_path_and_member(conn, f"{CALENDAR}/a.ics", CALENDAR, "a.ics", "demo")
        seen = recorded(db.engine)
        assert staff(conn) == ["demo"] and len(seen) == 1
        raise _Undo


def test_the_lookups_statements_on_the_drivers_cursor_give_sqlalchemys_rows(db: Database) -> None:
    """Both statements (with the staff and without) read on the driver's
    cursor (db.direct) what SQLAlchemy reads, value and type: a bookings
    calendar with a booking behind the event, a staff member, a sent UID or none."""
    with db.transaction("w") as conn:
        user_id = directory.user_id_of(conn, "demo")
        assert user_id is not None
        directory.add_role(conn, user_id, "demo", directory.STAFF_ROLE)
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=2)
    _booking_at(db, start)
    href = f"b-{int(start.timestamp())}.ics"
    compared = 0
    with pytest.raises(_Undo), db.transaction("w") as conn:
        for with_staff, direct in write_ahead._STATEMENTS.items():
            for path, parent, name, uid in [(f"{CALENDAR}/{href}", CALENDAR, href, None),
                                            (f"{CALENDAR}/new.ics", CALENDAR, "new.ics", "u-1"),
                                            ("nowhere/x.ics", "nowhere", "x.ics", None)]:
                parameters = {"path": path, "parent": parent, "href": name, "uid": uid,
                              "department_id": "demo", "username": "demo", "role": directory.STAFF_ROLE,
                              "calendar": directory.STAFF_CALENDAR}
                theirs = [tuple(row) for row in conn.execute(direct.statement, parameters)]  # type: ignore[call-overload]
                mine = direct.rows(conn, parameters)
                assert typed(mine) == typed(theirs), (with_staff, path)
                compared += len(theirs)
        raise _Undo
    assert compared >= 8  # rows of the department, its booking and the staff were read
