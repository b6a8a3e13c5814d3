"""Smoke: one booking accepted end to end (the fixture works)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.booking_world import BookingWorld, booking_world, days_ahead, local


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BookingWorld]:
    yield from booking_world(request.param, tmp_path_factory.mktemp(f"booking-{request.param}"))


def test_a_booking_is_confirmed_and_assigned(world: BookingWorld) -> None:
    dept = world.department(staff=1)
    day = days_ahead(2)
    dept.open(local(day, 8), local(day, 16))
    rita = dept.recipient()
    booked = world.book(rita, dept, local(day, 10), local(day, 11), description="Ring twice")
    assert booked.response.status_code == 201
    assert "ETag" not in booked.response.headers
    assert booked.confirmed, booked.text
    visits = world.assignments(dept.staff[0])
    assert len(visits) == 1 and "Ring twice" in str(visits[0]["DESCRIPTION"])
    assert [b["recipient"] for b in world.bookings(dept)] == [rita]
