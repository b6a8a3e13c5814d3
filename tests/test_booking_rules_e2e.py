"""The booking rules of DESIGN.md end to end: one test per rule, over real HTTP.

Each test makes its own department (rules, staff, one opening window) on the
module's server, books as recipients - with raw PUTs (``world.book``) or the
``caldav`` library - and checks three things: the event the recipient now
has in their calendar (STATUS, the "not booked" SUMMARY prefix, the reason
sentence in the department's language), the booking rows and the staff
members' ``assignments/``, and the audit log's reason codes.

Times are relative to now (days >= 2 ahead, hours well inside the windows),
so the tests do not depend on the day or hour they run.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from servicehop_caldav.directory import store as directory
from servicehop_caldav.store import collections as store_collections
from servicehop_caldav.store.bookings import BookingRow, insert_booking
from tests.helpers.booking_world import (
    OSLO,
    Booked,
    BookingWorld,
    Department,
    booking_world,
    days_ahead,
    dump,
    event_of,
    ics_event,
    local,
)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BookingWorld]:
    yield from booking_world(request.param, tmp_path_factory.mktemp(f"booking-rules-{request.param}"))


# -- helpers -------------------------------------------------------------------------------------------------

EN_PREFIX = "NOT BOOKED: "
NB_PREFIX = "IKKE BESTILT: "


@dataclass(frozen=True)
class Row:
    """A booking row in plain values."""

    recipient: str
    staff: str | None
    start: datetime
    end: datetime
    href: str


@dataclass(frozen=True)
class Visit:
    """A visit in a staff member's ``assignments/``."""

    booking_uid: str
    start: datetime
    end: datetime
    summary: str


def rows(world: BookingWorld, dept: Department) -> list[Row]:
    return [
        Row(r["recipient"], r["staff"], datetime.fromtimestamp(r["start_ts"], UTC),
            datetime.fromtimestamp(r["end_ts"], UTC), r["booking_href"])
        for r in world.bookings(dept)
        if r["status"] == "confirmed"
    ]


def instant_of(prop: Any) -> datetime:
    """A DTSTART/DTEND property as an aware UTC datetime."""
    value = prop.dt
    assert isinstance(value, datetime) and value.tzinfo is not None, value
    return value.astimezone(UTC)


def visits(world: BookingWorld, staff: str) -> list[Visit]:
    found = [
        Visit(str(v["RELATED-TO"]), instant_of(v["DTSTART"]), instant_of(v["DTEND"]), str(v["SUMMARY"]))
        for v in world.assignments(staff)
    ]
    return sorted(found, key=lambda v: v.start)


def decisions(world: BookingWorld, dept: Department) -> list[tuple[str, str, tuple[str, ...], str | None]]:
    """(action, outcome, reason codes, staff) of every audit entry, in order."""
    return [(a.action, a.outcome, a.reasons, a.staff) for a in world.audit(dept)]


def uid_of(booked: Booked) -> str:
    return str(booked.event["UID"])


def assert_confirmed(booked: Booked, language: str = "en") -> None:
    assert booked.confirmed, booked.text
    first_line = booked.description.split("\n")[0]
    assert first_line.startswith("Confirmed" if language == "en" else "Bekreftet"), booked.description
    assert not booked.summary.startswith((EN_PREFIX.strip(), NB_PREFIX.strip())), booked.summary


def assert_refused(booked: Booked, *sentences: str, language: str = "en", summary: str = "Visit") -> None:
    """Kept as CANCELLED, with the prefix, and every reason sentence in DESCRIPTION."""
    assert booked.text is not None, "a refused booking is kept (on_reject = annotate)"
    assert booked.status == "CANCELLED", booked.text
    prefix = EN_PREFIX if language == "en" else NB_PREFIX
    assert booked.summary == prefix + summary, booked.summary
    for sentence in sentences:
        assert sentence in booked.description, (sentence, booked.description)


def alternative_line(start: datetime, end: datetime) -> str:
    """An English alternative line as the server writes it ("- Mon 3 Nov 09:00–10:00")."""
    s, e = start.astimezone(OSLO), end.astimezone(OSLO)
    weekdays = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    months = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    return f"- {weekdays[s.weekday()]} {s.day} {months[s.month - 1]} {s:%H:%M}–{e:%H:%M}"


def calendar_url(world: BookingWorld, user: str, dept: Department) -> str:
    return f"{world.server.url}/{user}/bookings-{dept.id}/"


def caldav_book(world: BookingWorld, user: str, dept: Department, ical: str) -> Booked:
    """Save ``ical`` with the caldav library and read back what the server stored."""
    uid = str(event_of(ical)["UID"])
    client: Any = world.client(user)
    calendar = client.calendar(url=calendar_url(world, user, dept))
    saved = calendar.add_event(ical)
    fetched = calendar.get_event_by_uid(uid)
    data = fetched.data
    assert isinstance(data, str)
    path = f"/{user}/bookings-{dept.id}/{uid}.ics"
    assert str(saved.url).endswith(path), saved.url
    response = world.get(user, path)
    assert response.status_code == 200, response.status_code
    return Booked(response, path, data)


def new_uid() -> str:
    return f"booking-{uuid.uuid4().hex[:10]}"


def seed_visit(world: BookingWorld, dept: Department, recipient: str, staff: str,
               start: datetime, end: datetime) -> None:
    """A confirmed booking row written straight into the database (past visits
    cannot be booked over HTTP: the minimum notice forbids it)."""
    with world.db.transaction("w") as conn:
        recipient_id = directory.user_id_of(conn, recipient)
        staff_id = directory.user_id_of(conn, staff)
        instance = store_collections.get_instance(conn, f"{recipient}/bookings-{dept.id}")
        assert recipient_id is not None and staff_id is not None and instance is not None
        insert_booking(conn, BookingRow(
            id=str(uuid.uuid4()), department_id=dept.id, recipient_id=recipient_id, staff_id=staff_id,
            start_ts=int(start.timestamp()), end_ts=int(end.timestamp()), status="confirmed",
            booking_calendar_id=instance.calendar_id, booking_href=f"seed-{uuid.uuid4().hex[:8]}.ics",
        ))


def minute_now() -> datetime:
    return datetime.now(UTC).replace(second=0, microsecond=0)


def all_hours(dept: Department, staff: list[str] | None = None) -> None:
    """One window, open round the clock from yesterday to four days ahead."""
    dept.open(local(days_ahead(-1), 0), local(days_ahead(4), 0), rrule=None, staff=staff or ())


def next_weekday(first: date, weekday: int) -> date:
    return first + timedelta(days=(weekday - first.weekday()) % 7)


def last_sunday(year: int, month: int) -> date:
    following = date(year + (month == 12), month % 12 + 1, 1)
    last = following - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - 6) % 7)


def next_change_day(month: int) -> date:
    """The next last Sunday of ``month`` (3 or 10: the clocks change in Oslo) >= 2 days ahead;
    always within 366 days."""
    earliest = days_ahead(2)
    return next(d for d in (last_sunday(y, month) for y in (earliest.year, earliest.year + 1))
                if d >= earliest)


# -- opening hours -------------------------------------------------------------------------------------------


def test_inside_opening_is_accepted_outside_and_across_its_edges_refused(world: BookingWorld) -> None:
    dept = world.department(staff=2)
    day = days_ahead(2)
    dept.open(local(day, 8), local(day, 16))
    rita, olav, kari = dept.recipient(), dept.recipient(), dept.recipient()
    outside = "That time is outside the opening hours."

    inside = world.book(rita, dept, local(day, 10), local(day, 11))
    assert inside.response.status_code == 201 and "ETag" not in inside.response.headers
    assert_confirmed(inside)
    evening = world.book(rita, dept, local(day, 17), local(day, 18))
    assert evening.response.status_code == 201 and "ETag" not in evening.response.headers
    assert_refused(evening, outside)
    across_end = world.book(olav, dept, local(day, 15, 30), local(day, 16, 30))
    assert_refused(across_end, outside, "Free times nearby:",
                   alternative_line(local(day, 15), local(day, 16)))
    across_start = world.book(kari, dept, local(day, 7, 30), local(day, 8, 30))
    assert_refused(across_start, outside)
    up_to_closing = world.book(olav, dept, local(day, 15), local(day, 16))
    assert_confirmed(up_to_closing)

    got = rows(world, dept)
    assert [(r.recipient, r.start, r.end) for r in got] == [
        (rita, local(day, 10), local(day, 11)), (olav, local(day, 15), local(day, 16)),
    ], dump(got)
    assert {r.href for r in got} == {f"{uid_of(inside)}.ics", f"{uid_of(up_to_closing)}.ics"}
    booked_visits = visits(world, dept.staff[0]) + visits(world, dept.staff[1])
    assert sorted((v.booking_uid, v.start, v.end) for v in booked_visits) == sorted([
        (uid_of(inside), local(day, 10), local(day, 11)),
        (uid_of(up_to_closing), local(day, 15), local(day, 16)),
    ])
    assert [(a, o, r) for a, o, r, _ in decisions(world, dept)] == [
        ("book", "accepted", ()),
        ("book", "refused", ("outside-opening",)),
        ("book", "refused", ("outside-opening",)),
        ("book", "refused", ("outside-opening",)),
        ("book", "accepted", ()),
    ]


# -- notice and horizon --------------------------------------------------------------------------------------


def test_horizon_bounds_the_start(world: BookingWorld) -> None:
    dept = world.department("horizon_days = 2", staff=2)
    all_hours(dept)
    rita, olav = dept.recipient(), dept.recipient()
    edge = minute_now() + timedelta(days=2)

    just_inside = world.book(rita, dept, (edge - timedelta(minutes=5)).astimezone(OSLO),
                             (edge + timedelta(minutes=25)).astimezone(OSLO))
    assert_confirmed(just_inside)
    just_beyond = world.book(olav, dept, (edge + timedelta(minutes=5)).astimezone(OSLO),
                             (edge + timedelta(minutes=35)).astimezone(OSLO))
    assert_refused(just_beyond, "Visits can be booked at most 2 days ahead.")

    assert [(r.recipient, r.staff, r.start) for r in rows(world, dept)] == [
        (rita, dept.staff[0], edge - timedelta(minutes=5))
    ]
    assert visits(world, dept.staff[1]) == []
    assert [(v.booking_uid, v.start, v.end) for v in visits(world, dept.staff[0])] == [
        (uid_of(just_inside), edge - timedelta(minutes=5), edge + timedelta(minutes=25))
    ]
    assert decisions(world, dept) == [
        ("book", "accepted", (), dept.staff[0]),
        ("book", "refused", ("beyond-horizon",), None),
    ]


def test_minimum_notice_bounds_the_start(world: BookingWorld) -> None:
    dept = world.department("minimum_notice_minutes = 60", staff=1)
    all_hours(dept)
    rita = dept.recipient()
    now = minute_now()

    too_soon = world.book(rita, dept, now + timedelta(minutes=30), now + timedelta(minutes=60))
    assert_refused(too_soon, "Visits must be booked at least 1 h before they start.")
    assert "outside the opening hours" not in too_soon.description
    in_time = world.book(rita, dept, now + timedelta(minutes=90), now + timedelta(minutes=120))
    assert_confirmed(in_time)

    assert [(r.recipient, r.start, r.end) for r in rows(world, dept)] == [
        (rita, now + timedelta(minutes=90), now + timedelta(minutes=120))
    ]
    assert [v.booking_uid for v in visits(world, dept.staff[0])] == [uid_of(in_time)]
    assert decisions(world, dept) == [
        ("book", "refused", ("too-soon",), None),
        ("book", "accepted", (), dept.staff[0]),
    ]


# -- the recipient's own limits ------------------------------------------------------------------------------


def test_own_overlap_is_refused_even_with_staff_free(world: BookingWorld) -> None:
    dept = world.department(staff=2)
    day = days_ahead(3)
    dept.open(local(day, 8), local(day, 16))
    rita = dept.recipient()

    first = world.book(rita, dept, local(day, 10), local(day, 11))
    assert_confirmed(first)
    overlapping = world.book(rita, dept, local(day, 10, 30), local(day, 11, 30))
    # The alternatives offered are run through every rule: none overlaps rita's own visit.
    assert_refused(overlapping, "You already have a visit at that time.", "Free times nearby:\n" + "\n".join(
        alternative_line(local(day, 11, m), local(day, 12, m)) for m in (0, 15, 30)))
    assert "No member of staff" not in overlapping.description
    adjacent = world.book(rita, dept, local(day, 11), local(day, 12))
    assert_confirmed(adjacent)

    assert [(r.recipient, r.start, r.end) for r in rows(world, dept)] == [
        (rita, local(day, 10), local(day, 11)), (rita, local(day, 11), local(day, 12)),
    ]
    assert [(a, o, r) for a, o, r, _ in decisions(world, dept)] == [
        ("book", "accepted", ()), ("book", "refused", ("own-overlap",)), ("book", "accepted", ()),
    ]


def test_weekly_entitlement_counts_per_iso_week(world: BookingWorld) -> None:
    dept = world.department("horizon_days = 30", staff=1)
    monday = next_weekday(days_ahead(2), 0)
    dept.open(local(monday, 0), local(monday, 23, 45))
    rita = dept.recipient(weekly_minutes=120)
    wednesday, sunday, next_monday = (monday + timedelta(days=n) for n in (2, 6, 7))

    first = world.book(rita, dept, local(monday, 10), local(monday, 11))
    assert_confirmed(first)
    # Sunday evening is the same ISO week; reaching the entitlement exactly is allowed.
    second = world.book(rita, dept, local(sunday, 22), local(sunday, 23))
    assert_confirmed(second)
    third = world.book(rita, dept, local(wednesday, 10), local(wednesday, 11))
    # The nearest free time within the entitlement is the first slot of the next ISO week.
    assert_refused(third, "This booking would exceed your entitlement of 2 h per week.",
                   "Free times nearby:\n" + alternative_line(local(next_monday, 0), local(next_monday, 1)))
    # Half past midnight on Monday is a new ISO week in Oslo (in UTC it is still Sunday).
    next_week = world.book(rita, dept, local(next_monday, 0, 30), local(next_monday, 2, 30))
    assert_confirmed(next_week)

    assert [(r.start, r.end) for r in rows(world, dept)] == [
        (local(monday, 10), local(monday, 11)), (local(sunday, 22), local(sunday, 23)),
        (local(next_monday, 0, 30), local(next_monday, 2, 30)),
    ]
    assert [v.booking_uid for v in visits(world, dept.staff[0])] == [
        uid_of(first), uid_of(second), uid_of(next_week),
    ]
    assert [(a, o, r) for a, o, r, _ in decisions(world, dept)] == [
        ("book", "accepted", ()), ("book", "accepted", ()),
        ("book", "refused", ("entitlement-exceeded",)), ("book", "accepted", ()),
    ]


# -- capacity and assignment ---------------------------------------------------------------------------------


def test_capacity_two_staff_three_requests_at_once(world: BookingWorld) -> None:
    dept = world.department(staff=2)
    day = days_ahead(2)
    dept.open(local(day, 8), local(day, 16))
    people = [dept.recipient() for _ in range(3)]

    results = [
        caldav_book(world, person, dept, ics_event(new_uid(), local(day, 10), local(day, 11)))
        for person in people
    ]
    assert_confirmed(results[0])
    assert_confirmed(results[1])
    assert_refused(
        results[2], "No member of staff is free at that time.", "Free times nearby:",
        "\n".join(alternative_line(local(day, h, m), local(day, h + 1, m))
                  for h, m in ((8, 45), (9, 0), (11, 0))),
    )

    got = rows(world, dept)
    assert sorted((r.recipient, r.staff) for r in got) == sorted(zip(people[:2], dept.staff, strict=True))
    for staff, result in zip(dept.staff, results, strict=False):
        assert [(v.booking_uid, v.start, v.end) for v in visits(world, staff)] == [
            (uid_of(result), local(day, 10), local(day, 11))
        ]
    assert decisions(world, dept) == [
        ("book", "accepted", (), dept.staff[0]),
        ("book", "accepted", (), dept.staff[1]),
        ("book", "refused", ("no-staff-free",), None),
    ]


def test_continuity_prefers_who_served_the_recipient_in_the_last_30_days(world: BookingWorld) -> None:
    dept = world.department(staff=2)
    anne, bent = dept.staff  # anne sorts first
    day = days_ahead(3)
    dept.open(local(day, 8), local(day, 16))
    rita, per = dept.recipient(), dept.recipient()
    now = datetime.now(UTC)

    def ago(days: int, hours: int) -> datetime:
        return now - timedelta(days=days, hours=hours)

    for days in (5, 12):
        seed_visit(world, dept, rita, bent, ago(days, 2), ago(days, 1))
    seed_visit(world, dept, per, bent, ago(3, 2), ago(3, 1))
    for days in (40, 41, 42):  # served more often by anne, but too long ago
        seed_visit(world, dept, rita, anne, ago(days, 2), ago(days, 1))
    following = day + timedelta(days=1)
    for hour in (8, 10):  # and anne's visits still to come do not count either
        seed_visit(world, dept, rita, anne, local(following, hour), local(following, hour + 1))

    # Equally loaded that day, anne first by name: continuity makes it bent.
    first = world.book(rita, dept, local(day, 10), local(day, 11))
    assert_confirmed(first)
    # Bent now has an hour that day and anne none: continuity still wins.
    second = world.book(per, dept, local(day, 12), local(day, 13))
    assert_confirmed(second)
    # Bent is busy with per: rita goes to anne.
    third = world.book(rita, dept, local(day, 12), local(day, 13))
    assert_confirmed(third)

    that_day = sorted((r.start, r.recipient, r.staff) for r in rows(world, dept)
                      if r.start.astimezone(OSLO).date() == day)
    assert that_day == sorted([
        (local(day, 10), rita, bent), (local(day, 12), per, bent), (local(day, 12), rita, anne),
    ]), dump(that_day)
    assert [v.booking_uid for v in visits(world, bent)] == [uid_of(first), uid_of(second)]
    assert [v.booking_uid for v in visits(world, anne)] == [uid_of(third)]
    assert decisions(world, dept) == [
        ("book", "accepted", (), bent), ("book", "accepted", (), bent), ("book", "accepted", (), anne),
    ]


def test_least_booked_minutes_that_day_then_name(world: BookingWorld) -> None:
    dept = world.department(staff=2)
    anne, bent = dept.staff
    day = days_ahead(2)
    dept.open(local(day, 0), local(day, 23, 45))
    zara, per, quinn, xena, yngve = (dept.recipient() for _ in range(5))
    following = day + timedelta(days=1)

    # A long visit just after midnight does not count on `day` (in UTC it is still `day`).
    assert_confirmed(world.book(zara, dept, local(following, 0, 30), local(following, 4, 30)))
    assert_confirmed(world.book(per, dept, local(day, 8), local(day, 10)))  # anne: tie, by name
    assert_confirmed(world.book(quinn, dept, local(day, 12), local(day, 13)))  # bent: 0 min < 120
    assert_confirmed(world.book(xena, dept, local(day, 14), local(day, 15)))  # bent: 60 min < 120
    assert_confirmed(world.book(yngve, dept, local(day, 15), local(day, 16)))  # tie 120/120: anne

    assert [(r.recipient, r.staff) for r in rows(world, dept)] == [
        (per, anne), (quinn, bent), (xena, bent), (yngve, anne), (zara, anne),
    ]
    assert [(v.start, v.end) for v in visits(world, anne)] == [
        (local(day, 8), local(day, 10)), (local(day, 15), local(day, 16)),
        (local(following, 0, 30), local(following, 4, 30)),
    ]
    assert [(v.start, v.end) for v in visits(world, bent)] == [
        (local(day, 12), local(day, 13)), (local(day, 14), local(day, 15)),
    ]
    assert [s for _, _, _, s in decisions(world, dept)] == [anne, anne, bent, bent, anne]


def test_travel_buffer_between_visits(world: BookingWorld) -> None:
    dept = world.department("travel_buffer_minutes = 30", staff=1)
    (solo,) = dept.staff
    day = days_ahead(2)
    dept.open(local(day, 8), local(day, 16))
    per, quinn, rita = dept.recipient(), dept.recipient(), dept.recipient()

    assert_confirmed(world.book(per, dept, local(day, 10), local(day, 11)))
    too_close_after = world.book(quinn, dept, local(day, 11, 15), local(day, 12, 15))
    assert_refused(too_close_after, "No member of staff is free at that time.",
                   alternative_line(local(day, 11, 30), local(day, 12, 30)))
    assert "11:15–12:15" not in too_close_after.description.split("Free times nearby:")[1]
    after = world.book(quinn, dept, local(day, 11, 30), local(day, 12, 30))
    assert_confirmed(after)
    too_close_before = world.book(rita, dept, local(day, 9), local(day, 9, 45))
    assert_refused(too_close_before, "No member of staff is free at that time.")
    before = world.book(rita, dept, local(day, 8, 30), local(day, 9, 30))
    assert_confirmed(before)

    assert [(r.recipient, r.start) for r in rows(world, dept)] == [
        (rita, local(day, 8, 30)), (per, local(day, 10)), (quinn, local(day, 11, 30)),
    ]
    assert [(v.start, v.end) for v in visits(world, solo)] == [
        (local(day, 8, 30), local(day, 9, 30)), (local(day, 10), local(day, 11)),
        (local(day, 11, 30), local(day, 12, 30)),
    ]
    assert [(o, r) for _, o, r, _ in decisions(world, dept)] == [
        ("accepted", ()), ("refused", ("no-staff-free",)), ("accepted", ()),
        ("refused", ("no-staff-free",)), ("accepted", ()),
    ]


def test_staff_on_duty_are_the_windows_attendees(world: BookingWorld) -> None:
    dept = world.department(staff=2)
    anne, bent = dept.staff
    day = days_ahead(2)
    dept.open(local(day, 8), local(day, 16), staff=[bent])
    per, quinn = dept.recipient(), dept.recipient()

    first = world.book(per, dept, local(day, 10), local(day, 11))
    assert_confirmed(first)
    concurrent = world.book(quinn, dept, local(day, 10), local(day, 11))
    assert_refused(concurrent, "No member of staff is free at that time.")
    later = world.book(quinn, dept, local(day, 12), local(day, 13))
    assert_confirmed(later)

    assert [(r.recipient, r.staff) for r in rows(world, dept)] == [(per, bent), (quinn, bent)]
    assert [v.booking_uid for v in visits(world, bent)] == [uid_of(first), uid_of(later)]
    assert visits(world, anne) == []
    assert decisions(world, dept) == [
        ("book", "accepted", (), bent), ("book", "refused", ("no-staff-free",), None),
        ("book", "accepted", (), bent),
    ]


# -- time zones ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("month", [3, 10])
def test_daylight_saving_day_elapsed_time_and_floating_times(world: BookingWorld, month: int) -> None:
    day = next_change_day(month)
    assert (day - datetime.now(OSLO).date()).days <= 366
    spring = month == 3
    # Spring: 02:00 -> 03:00 (the day has 23 h); autumn: 03:00 -> 02:00 (25 h).
    bound = "min_duration_minutes = 120" if spring else "max_duration_minutes = 150"
    dept = world.department(f"horizon_days = 366\n{bound}", staff=2)
    dept.open(local(day, 0), local(day, 6), rrule=None)
    rita, per = dept.recipient(), dept.recipient()

    # Floating times (no TZID) are the department's local time.
    midnight = datetime(day.year, day.month, day.day)
    midnight_utc = midnight.replace(tzinfo=UTC)
    if spring:  # 00:30 CET - 03:30 CEST: 3 h on the clock, 2 h elapsed
        wall = (midnight + timedelta(minutes=30), midnight + timedelta(hours=3, minutes=30))
        utc = (midnight_utc - timedelta(minutes=30), midnight_utc + timedelta(hours=1, minutes=30))
    else:  # 03:00 CET (after the repeated hour) - 05:00 CET
        wall = (midnight + timedelta(hours=3), midnight + timedelta(hours=5))
        utc = (midnight_utc + timedelta(hours=2), midnight_utc + timedelta(hours=4))
    floating_ics = ics_event(new_uid(), wall[0], wall[1])
    assert "TZID" not in floating_ics and "DTSTART:" in floating_ics
    floating = caldav_book(world, rita, dept, floating_ics)
    assert_confirmed(floating)

    # 01:00-03:00 on the clock: 1 h elapsed in March, 3 h in October.
    bounded = world.book(per, dept, local(day, 1), local(day, 3))
    if spring:
        assert_refused(bounded, "A visit must last at least 2 h.", "No free times nearby.")
        reason = "too-short"
    else:
        assert_refused(bounded, "A visit can last at most 2 h 30 min.", "No free times nearby.")
        reason = "too-long"

    got = rows(world, dept)
    assert [(r.recipient, r.start, r.end) for r in got] == [(rita, *utc)], dump(got)
    assigned = visits(world, dept.staff[0]) + visits(world, dept.staff[1])
    assert [(v.booking_uid, v.start, v.end) for v in assigned] == [(uid_of(floating), *utc)]
    assert [(o, r) for _, o, r, _ in decisions(world, dept)] == [("accepted", ()), ("refused", (reason,))]
    audit_lines = world.audit(dept)
    assert (audit_lines[0].start_ts, audit_lines[0].end_ts) == tuple(int(t.timestamp()) for t in utc)


# -- what the recipient reads --------------------------------------------------------------------------------


def test_norwegian_department_texts(world: BookingWorld) -> None:
    dept = world.department("minimum_notice_minutes = 90", staff=1, language="nb")
    (solo,) = dept.staff
    day = days_ahead(2)
    dept.open(local(day, 8), local(day, 16))
    rita = dept.recipient()

    confirmed = world.book(rita, dept, local(day, 10), local(day, 11), summary="Besøk")
    assert_confirmed(confirmed, language="nb")
    assert confirmed.description.split("\n")[0] == f"Bekreftet: Staff 1 {dept.id} kommer."
    outside = world.book(rita, dept, local(day, 17), local(day, 18), summary="Besøk")
    assert_refused(outside, "Tidspunktet er utenfor åpningstiden.", "Ledige tider i nærheten:",
                   language="nb", summary="Besøk")
    d = local(day, 15)
    weekday = ("man.", "tir.", "ons.", "tor.", "fre.", "lør.", "søn.")[d.weekday()]
    assert f"- {weekday} {d.day}.{d.month}. kl. 15:00–16:00" in outside.description, outside.description
    now = minute_now()
    too_soon = world.book(rita, dept, now + timedelta(minutes=30), now + timedelta(minutes=60))
    assert_refused(too_soon, "Besøket må bestilles minst 1 t 30 min før det starter.", language="nb")
    assert "NOT BOOKED" not in (outside.text or "") + (too_soon.text or "")

    assert [(r.recipient, r.staff, r.start) for r in rows(world, dept)] == [(rita, solo, local(day, 10))]
    assert [v.booking_uid for v in visits(world, solo)] == [uid_of(confirmed)]
    reasons = [r for _, _, r, _ in decisions(world, dept)]
    assert reasons[:2] == [(), ("outside-opening",)] and "too-soon" in reasons[2], reasons


def test_service_catalogue_durations(world: BookingWorld) -> None:
    dept = world.department(staff=2)
    day = days_ahead(2)
    dept.open(local(day, 8), local(day, 16))
    rita = dept.recipient(name="Rita Hansen")

    shopping = caldav_book(world, rita, dept, ics_event(new_uid(), local(day, 10), summary="shopping"))
    assert_confirmed(shopping)
    assert shopping.summary == "shopping"
    unknown = world.book(rita, dept, local(day, 13), summary="Coffee and a chat")
    assert_confirmed(unknown)

    assert [(r.start, r.end - r.start) for r in rows(world, dept)] == [
        (local(day, 10), timedelta(minutes=90)), (local(day, 13), timedelta(minutes=60)),
    ]
    assigned = sorted(visits(world, dept.staff[0]) + visits(world, dept.staff[1]), key=lambda v: v.start)
    assert [(v.booking_uid, v.end - v.start, v.summary) for v in assigned] == [
        (uid_of(shopping), timedelta(minutes=90), "Shopping – Rita Hansen"),
        (uid_of(unknown), timedelta(minutes=60), "Visit – Rita Hansen"),
    ]
    assert [(o, r) for _, o, r, _ in decisions(world, dept)] == [("accepted", ()), ("accepted", ())]


@pytest.mark.parametrize("show", [False, True])
def test_show_staff_names(world: BookingWorld, show: bool) -> None:
    dept = world.department(f"show_staff_names = {str(show).lower()}", staff=1)
    (solo,) = dept.staff
    day = days_ahead(2)
    dept.open(local(day, 8), local(day, 16))
    rita = dept.recipient()
    # Found the way a client finds it: the principal's calendars.
    client: Any = world.client(rita)
    principal = client.principal()
    calendars = [c for c in principal.calendars() if str(c.url).rstrip("/").endswith(f"bookings-{dept.id}")]
    assert len(calendars) == 1, [str(c.url) for c in principal.calendars()]
    uid = new_uid()
    calendars[0].add_event(ics_event(uid, local(day, 10), local(day, 11)))
    booked = world.book(rita, dept, local(day, 10), local(day, 11), uid=uid, description="Ring twice")
    assert_confirmed(booked)

    full_name = f"Staff 1 {dept.id}"
    lines = booked.description.split("\n")
    if show:
        assert lines[0] == f"Confirmed: {full_name} will come.", booked.description
    else:
        assert lines[0] == "Confirmed.", booked.description
        assert full_name not in (booked.text or "") and solo not in (booked.text or "")
    assert lines[-1] == "Ring twice"
    assert [(r.recipient, r.staff) for r in rows(world, dept)] == [(rita, solo)]
    assert [v.booking_uid for v in visits(world, solo)] == [uid]
    assert [(a, o) for a, o, _, _ in decisions(world, dept)] == [("book", "accepted"), ("change", "kept")]
