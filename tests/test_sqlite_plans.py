"""No request of the everyday paths scans a table on SQLite.

SQLite plans each statement without the table sizes PostgreSQL knows, and
some shapes defeat it: an outer join of a nested join (``users LEFT JOIN
(calendar_instances JOIN calendars)``) was materialised by scanning every
calendar instance, once per login, which is every request. A scan costs in
proportion to the table, so it does not show with a test's few rows; the
plan does. Every statement a login, a GET, a PROPFIND, a generic PUT and
DELETE, an opening change, a booking and an availability read send is
asked for its plan (``EXPLAIN QUERY PLAN``): none may scan a table of the
schema. A scan of a subquery's result or of a constant row is fine. Nor
may a search of the bookings by time run from the department's first
booking: that too costs in proportion to the table, as the years pass."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from datetime import timedelta

import pytest

from servicehop_caldav.db.schema import metadata
from tests.helpers.booking_world import BookingWorld, booking_world, days_ahead, local
from tests.helpers.statements import recorded

ETAGS = ('<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>')


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BookingWorld]:
    yield from booking_world("sqlite", tmp_path_factory.mktemp("plans"))


def table_scans(database: str, statements: list[str]) -> dict[str, list[str]]:
    """Each statement whose plan scans a table of the schema, with those steps."""
    tables = "|".join(map(re.escape, metadata.tables))
    scan = re.compile(rf"\bSCAN ({tables})\b")
    found: dict[str, list[str]] = {}
    with sqlite3.connect(database) as con:
        for statement in dict.fromkeys(statements):
            if not statement.startswith(("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")):
                continue
            plan = [row[3] for row in con.execute(f"EXPLAIN QUERY PLAN {statement}",
                                                  [None] * statement.count("?"))]
            scans = [step for step in plan if scan.search(step)]
            if scans:
                found[statement] = scans
    return found


def test_everyday_requests_scan_no_table(world: BookingWorld) -> None:
    dept = world.department(staff=2)
    day = days_ahead(3)
    rita = dept.recipient()
    assert world.get(rita, f"/{rita}/bookings-{dept.id}/").status_code in (200, 207)
    seen = recorded(world.db.engine)
    dept.open(local(day, 8), local(day, 16), staff=dept.staff)  # the admin's PUT: an opening change
    start = local(day, 10)
    assert world.book(rita, dept, start, start + timedelta(hours=1)).confirmed
    bookings = f"{world.server.url}/{rita}/bookings-{dept.id}/"
    assert world.session(rita).request("PROPFIND", bookings, data=ETAGS,
                                       headers={"Depth": "1"}).status_code == 207
    assert world.get(rita, f"/{rita}/availability-{dept.id}/").status_code == 200
    # The admin's calendar: a GET, a second window and its removal.
    opening = f"/{dept.admin}/opening-{dept.id}/"
    admin = world.session(dept.admin)
    assert admin.request("PROPFIND", world.server.url + opening, data=ETAGS,
                         headers={"Depth": "1"}).status_code == 207
    later = dept.open(local(day, 17), local(day, 18), rrule=None, staff=dept.staff)
    assert world.get(dept.admin, f"{opening}{later}.ics").status_code == 200
    assert admin.delete(f"{world.server.url}{opening}{later}.ics").status_code in (200, 204)
    assert len(seen) > 40  # all of the above was recorded
    database = world.db.engine.url.database
    assert database
    assert table_scans(database, seen) == {}
    # Bookings overlapping a time are read between two starts (the longest
    # booking bounds how early one can start), not from the first booking
    # ever made: a department's past grows by the thousand a year.
    searches = plan_steps(database, seen, re.compile(r"SEARCH bookings .*start_ts<"))
    assert searches and all("start_ts>" in step for step in searches), searches


def plan_steps(database: str, statements: list[str], step: re.Pattern[str]) -> list[str]:
    """The plan steps, of every statement, that ``step`` matches."""
    found: list[str] = []
    with sqlite3.connect(database) as con:
        for statement in dict.fromkeys(statements):
            if statement.startswith(("SELECT", "WITH")):
                plan = con.execute(f"EXPLAIN QUERY PLAN {statement}", [None] * statement.count("?"))
                found += [row[3] for row in plan if step.search(row[3])]
    return found
