"""The upkeep pass as time goes by: the availability follows the calendar,
waiting requests close when their notice runs out, a staff member removed
from the directory hands their visits on.

The pass runs in-process (``Desk.upkeep``) on the test server's database
with a clock set days ahead; the server then shows the result over HTTP.
A module of its own: the pass covers every department of the database.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import icalendar
import pytest
from radicale_storage_servicehop import object_of_text

from servicehop_caldav.desk.desk import Desk
from servicehop_caldav.desk.settings import SettingsFile
from servicehop_caldav.directory import store as directory
from tests.helpers.booking_world import OSLO, BookingWorld, booking_world, days_ahead, local


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BookingWorld]:
    yield from booking_world(request.param, tmp_path_factory.mktemp(f"upkeep-{request.param}"))


def upkeep(world: BookingWorld, at: float) -> int:
    settings = SettingsFile(Path(world.home / "servicehop.toml"))
    desk = Desk(settings, object_of_text("servicehop"), clock=lambda: at)
    with world.db.transaction("w") as conn:
        return desk.upkeep(conn)


def view_days(world: BookingWorld, user: str, dept_id: str) -> list:
    r = world.get(user, f"/{user}/availability-{dept_id}/")
    assert r.status_code == 200
    return sorted({ev.decoded("DTSTART").astimezone(OSLO).date()
                   for ev in icalendar.Calendar.from_ical(r.text).walk("VEVENT")})


def test_days_ahead_waiting_expiry_and_staff_removal(world: BookingWorld) -> None:
    dept = world.department("waiting_list = true", staff=2)
    start_day = days_ahead(1)
    dept.open(local(start_day, 10), local(start_day, 14))  # daily, for ever
    alice, bob, carol, dave = (dept.recipient() for _ in range(4))
    day = days_ahead(3)
    s1, s2 = dept.staff
    first = world.book(alice, dept, local(day, 11), local(day, 12))
    second = world.book(bob, dept, local(day, 11), local(day, 12))
    waiting = world.book(carol, dept, local(day, 11), local(day, 12))
    later = world.book(dave, dept, local(day + timedelta(days=1), 11), local(day + timedelta(days=1), 12))
    assert first.confirmed and second.confirmed and later.confirmed
    assert waiting.status == "TENTATIVE"
    before = view_days(world, carol, dept.id)
    assert before[0] == start_day and before[-1] == days_ahead(14)

    # Nothing has changed: a pass writes nothing.
    assert upkeep(world, time.time()) == 0

    # Two days on, 10:30 on the day of the visits: the notice (1 h) for
    # 11:00 has run out.
    at = local(day, 10, 30)
    assert upkeep(world, at.timestamp()) > 0
    shown = view_days(world, carol, dept.id)
    assert shown[0] == day and shown[-1] == (at + timedelta(days=14)).astimezone(OSLO).date()
    text = world.get(carol, waiting.path).text.replace("\r\n ", "")
    assert "STATUS:CANCELLED" in text and "no place became free" in text
    assert sorted(r["status"] for r in world.bookings(dept)) == ["confirmed", "confirmed", "confirmed"]
    assert ("wait", "expired") in [(e.action, e.outcome) for e in world.audit(dept)]

    # A staff member disabled in the directory: their coming visit goes to
    # the other one where free, and is flagged where not.
    staff_of_later = next(r["staff"] for r in world.bookings(dept) if r["recipient"] == dave)
    with world.db.transaction("w") as conn:
        directory.set_disabled(conn, staff_of_later, True)
    upkeep(world, at.timestamp())
    rows = {r["recipient"]: r for r in world.bookings(dept)}
    other = s2 if staff_of_later == s1 else s1
    assert rows[dave]["status"] == "confirmed" and rows[dave]["staff"] == other
    assert world.assignments(other)  # the visit is in their calendar
    # The visits already under way (11:00 has not started at 10:30, but
    # both staff were busy at 11-12): one of alice/bob lost their employee
    # and nobody else is free then.
    statuses = sorted(rows[r]["status"] for r in (alice, bob))
    assert statuses == ["confirmed", "flagged"]
