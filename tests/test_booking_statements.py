"""What a new booking reads and writes, statement by statement.

Each statement on PostgreSQL is a round trip, and a booking PUT made 35 of
them before issue 5's work. This pins what was merged: the UID checks, the
booking row with its audit entry; the key, the department (with where
its views are), the event's booking, the recipient and (on PostgreSQL)
the staff with their assignments calendars, all read with the path; the
opening objects and the bookings around the request. A change that
splits one of them again fails here."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from tests.helpers.booking_world import BookingWorld, booking_world, days_ahead, local
from tests.helpers.statements import recorded


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BookingWorld]:
    yield from booking_world(request.param, tmp_path_factory.mktemp(f"statements-{request.param}"))


def test_a_new_booking_merges_its_reads_and_writes(world: BookingWorld) -> None:
    dept = world.department(staff=2)
    day = days_ahead(3)
    dept.open(local(day, 8), local(day, 16), staff=dept.staff)
    rita = dept.recipient()
    assert world.get(rita, f"/{rita}/bookings-{dept.id}/").status_code in (200, 207)  # logs in
    seen = recorded(world.db.engine)
    start = local(day, 10)
    booked = world.book(rita, dept, start, start + timedelta(hours=1))
    assert booked.confirmed
    put = list(seen)  # the PUT's statements, then the GET's (one)

    def reading(*words: str) -> list[str]:
        return [s for s in put if all(w in s for w in words)]

    # Radicale's and the desk's UID checks, read with the path (the UID the body names).
    assert len(reading("calendar_objects.uid =")) == 1
    assert "max(key_checks.key_id)" in reading("calendar_objects.uid =")[0]
    # ... by the UID's index, not over the department's bookings (a new UID is in no other calendar).
    assert reading("bookings.recipient_id !=") == []
    assert len(reading("max(key_checks.key_id)")) == 1 and "departments" in reading("max(key_checks")[0]
    assert [s for s in put if s.startswith("SELECT departments.")] == []  # read with the path
    assert [s for s in put if s.startswith("SELECT department_views.")] == []  # ... and so are its views
    assert "department_views" in reading("max(key_checks")[0]
    # ... and the booking behind the event (none: a new booking).
    assert [s for s in put if s.startswith("SELECT bookings.id, bookings.department_id")] == []
    assert "bookings.booking_href =" in reading("max(key_checks")[0]
    assert len(reading("INSERT INTO bookings")) == 1
    if world.db.backend == "postgresql":
        assert reading("INSERT INTO bookings")[0].startswith("WITH booking AS")  # with its audit entry
    # The recipient with their roles, read with the path too.
    assert [s for s in put if s.startswith("SELECT users.id, users.username, users.password_hash")] == []
    assert "user_roles.weekly_minutes" in reading("max(key_checks")[0]
    staff = reading("FROM users", "user_roles.role =")
    assert len(staff) == 1 and "calendar_instances" in staff[0]  # with the assignments calendars
    # ... on PostgreSQL read with the path too (on SQLite a statement is no round trip).
    assert ("max(key_checks.key_id)" in staff[0]) == (world.db.backend == "postgresql")
    assert [s for s in put if s.startswith("SELECT calendar_instances.") and "assignments" in s] == []
    # The opening objects around the request and the bookings around it, in one statement.
    around = reading("bookings.staff_id IS NOT NULL")
    assert len(around) == 1 and "UNION ALL" in around[0] and "calendar_objects.etag" in around[0], put
    assert [s for s in put if s.startswith("SELECT calendar_objects.href, calendar_objects.etag")] == []
    assert len(world.bookings(dept)) == 1 and len(world.audit(dept)) == 1
