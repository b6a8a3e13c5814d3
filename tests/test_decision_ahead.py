"""A decision's first reads in one statement (``store/decision_ahead.py``).

The opening objects around a request and the bookings around it are read
together; the two functions that read them separately then answer from
that, the same as they would have read, until the transaction writes an
object or a booking row."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from radicale_storage_servicehop import object_of_text

from servicehop_caldav.db.engine import Database
from servicehop_caldav.directory import store as directory
from servicehop_caldav.instance import Instance
from servicehop_caldav.store import bookings as store_bookings
from servicehop_caldav.store import collections as store_collections
from servicehop_caldav.store import decision_ahead
from servicehop_caldav.store import objects as store_objects
from servicehop_caldav.store.bookings import BookingRow
from tests.helpers.robust import vcalendar, vevent
from tests.helpers.statements import recorded

CALENDAR = "demo/opening-demo"
DAY = dt.datetime(2027, 3, 1, tzinfo=dt.UTC)
HOUR = 3600


class _Undo(Exception):
    """Rolls a test's transaction back."""


@pytest.fixture
def db(instance_home: Path) -> Iterator[Database]:
    with Instance(instance_home).open() as (database, _keyring):
        yield database


def _seed(db: Database) -> tuple[int, int]:
    """Opening events and bookings in and out of the day; (calendar id, user id)."""
    make = object_of_text(CALENDAR)
    with db.transaction("w") as conn:
        opening = store_collections.get_instance(conn, CALENDAR)
        user_id = directory.user_id_of(conn, "demo")
        assert opening is not None and user_id is not None
        for n, days in enumerate((0, 0, 5)):
            uid = f"open-{n}"
            store_objects.put_object(conn, opening.calendar_id, f"{uid}.ics",
                                     make(vcalendar(vevent(uid, DAY + dt.timedelta(days=days, hours=8 + n)))))
        booked = ((0, 9, user_id), (0, 11, user_id), (0, 13, None), (7, 9, user_id))  # None: waiting
        for n, (days, hour, staff) in enumerate(booked):
            at = int((DAY + dt.timedelta(days=days, hours=hour)).timestamp())
            store_bookings.insert_booking(conn, BookingRow(
                id=f"b{n}", department_id="demo", recipient_id=user_id, staff_id=staff, start_ts=at,
                end_ts=at + HOUR, status="confirmed" if staff else "waiting",
                booking_calendar_id=opening.calendar_id, booking_href=f"b{n}.ics"))
    return opening.calendar_id, user_id


def test_one_statement_reads_what_the_two_would_have(db: Database) -> None:
    calendar_id, user_id = _seed(db)
    start, end = int(DAY.timestamp()), int((DAY + dt.timedelta(days=1)).timestamp())
    spans, own = [(start, end)], (start - 30 * 86400, end + 30 * 86400)
    with db.transaction("r") as conn:
        etags = store_objects.etags_in_range(conn, calendar_id, "VEVENT", start, end)
        booked = store_bookings.confirmed_spans(conn, "demo", spans, user_id, own)
    assert len(etags) == 2 and [b.id for b in booked] == ["b0", "b1", "b3"]
    with pytest.raises(_Undo), db.transaction("w") as conn:
        seen = recorded(db.engine)
        decision_ahead.read(conn, calendar_id, "VEVENT", start, end, "demo", spans, user_id, own)
        assert len(seen) == 1 and "UNION ALL" in seen[0]
        assert store_objects.etags_in_range(conn, calendar_id, "VEVENT", start, end) == etags
        assert store_bookings.confirmed_spans(conn, "demo", spans, user_id, own) == booked
        assert len(seen) == 1
        # Asked for anything else, they read it.
        store_objects.etags_in_range(conn, calendar_id, "VEVENT", start, end + 1)
        store_bookings.confirmed_spans(conn, "demo", spans, user_id, None)
        assert len(seen) == 3
        raise _Undo


def test_what_was_read_ahead_is_read_again_once_an_object_or_a_booking_is_written(db: Database) -> None:
    calendar_id, user_id = _seed(db)
    start, end = int(DAY.timestamp()), int((DAY + dt.timedelta(days=1)).timestamp())
    spans, own = [(start, end)], (start, end)
    with pytest.raises(_Undo), db.transaction("w") as conn:
        decision_ahead.read(conn, calendar_id, "VEVENT", start, end, "demo", spans, user_id, own)
        store_objects.put_object(conn, calendar_id, "late.ics", object_of_text(CALENDAR)(
            vcalendar(vevent("late", DAY + dt.timedelta(hours=20)))))
        assert len(store_objects.etags_in_range(conn, calendar_id, "VEVENT", start, end)) == 3
        store_bookings.insert_booking(conn, BookingRow(
            id="new", department_id="demo", recipient_id=user_id, staff_id=user_id,
            start_ts=start + 15 * HOUR, end_ts=start + 16 * HOUR, status="confirmed",
            booking_calendar_id=calendar_id, booking_href="new.ics"))
        assert [b.id for b in store_bookings.confirmed_spans(conn, "demo", spans, user_id, own)] == [
            "b0", "b1", "new"]
        raise _Undo
    with pytest.raises(_Undo), db.transaction("w") as conn:
        decision_ahead.read(conn, calendar_id, "VEVENT", start, end, "demo", spans, user_id, own)
        store_objects.delete_object(conn, calendar_id, "open-0.ics")
        assert len(store_objects.etags_in_range(conn, calendar_id, "VEVENT", start, end)) == 1
        raise _Undo
