"""The calendars people look at, over real HTTP: availability, overview,
assignments; admin edits that re-decide bookings; the waiting list.

Each test makes its own department in a shared server per backend
(``tests/helpers/booking_world.py``); opening windows are single (not
recurring) unless a test needs more, so each view holds a few events.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import icalendar
import pytest
import requests
from sqlalchemy import func, select

from servicehop_caldav.db.schema import calendar_objects
from servicehop_caldav.store.verify import verify_database
from tests.helpers.booking_world import (
    OSLO,
    BookingWorld,
    Department,
    booking_world,
    days_ahead,
    ics_event,
    local,
)

DAV = "{DAV:}"
XML = {"Content-Type": "application/xml; charset=utf-8"}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BookingWorld]:
    yield from booking_world(request.param, tmp_path_factory.mktemp(f"views-{request.param}"))


# -- helpers --------------------------------------------------------------------


@dataclass(frozen=True)
class Shown:
    """One event of a view, as a client reads it."""

    uid: str
    summary: str
    start: datetime
    end: datetime
    text: str

    @property
    def local(self) -> tuple[str, str, str]:
        return (self.summary, self.start.astimezone(OSLO).strftime("%H:%M"),
                self.end.astimezone(OSLO).strftime("%H:%M"))


def events_of(text: str) -> list[Shown]:
    found = []
    for ev in icalendar.Calendar.from_ical(text).walk("VEVENT"):
        found.append(Shown(str(ev["UID"]), str(ev.get("SUMMARY", "")), ev.decoded("DTSTART"),
                           ev.decoded("DTEND"), ev.to_ical().decode()))
    return sorted(found, key=lambda e: (e.start, e.end, e.summary))


def collection(world: BookingWorld, user: str, name: str) -> list[Shown]:
    """GET of a whole collection: what a subscribed .ics feed reads."""
    r = world.get(user, f"/{user}/{name}/")
    assert r.status_code == 200, (r.status_code, r.text[:300])
    assert r.headers["Content-Type"].startswith("text/calendar")
    return events_of(r.text)


def on_day(events: list[Shown], day: date) -> list[tuple[str, str, str]]:
    return [e.local for e in events if e.start.astimezone(OSLO).date() == day]


def availability(world: BookingWorld, user: str, dept: Department, day: date) -> list[tuple[str, str, str]]:
    return on_day(collection(world, user, f"availability-{dept.id}"), day)


def report(world: BookingWorld, user: str, path: str, body: str, depth: str = "1") -> requests.Response:
    return world.session(user).request(
        "REPORT", world.server.url + path, data=body.encode(), headers={**XML, "Depth": depth}
    )


def sync(world: BookingWorld, user: str, path: str, token: str = "") -> tuple[str, dict[str, int]]:
    """sync-collection: the new token and {href name: status} of what changed."""
    body = (f'<?xml version="1.0" encoding="utf-8"?><D:sync-collection xmlns:D="DAV:">'
            f"<D:sync-token>{token}</D:sync-token><D:sync-level>1</D:sync-level>"
            "<D:prop><D:getetag/></D:prop></D:sync-collection>")
    r = report(world, user, path, body, depth="0")
    assert r.status_code == 207, (r.status_code, r.text[:300])
    root = ET.fromstring(r.content)
    changed: dict[str, int] = {}
    for response in root.findall(f"{DAV}response"):
        href = (response.findtext(f"{DAV}href") or "").rstrip("/").rsplit("/", 1)[-1]
        status = response.findtext(f"{DAV}status") or response.findtext(f"{DAV}propstat/{DAV}status") or ""
        changed[href] = int(status.split()[1])
    return root.findtext(f"{DAV}sync-token") or "", changed


def time_range_query(
    world: BookingWorld, user: str, path: str, start: datetime, end: datetime
) -> list[Shown]:
    fmt = "%Y%m%dT%H%M%SZ"
    body = ('<?xml version="1.0" encoding="utf-8"?>'
            '<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
            "<D:prop><D:getetag/><C:calendar-data/></D:prop>"
            '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
            f'<C:time-range start="{start.astimezone(UTC).strftime(fmt)}" '
            f'end="{end.astimezone(UTC).strftime(fmt)}"/>'
            "</C:comp-filter></C:comp-filter></C:filter></C:calendar-query>")
    r = report(world, user, path, body)
    assert r.status_code == 207, (r.status_code, r.text[:300])
    found = []
    for data in ET.fromstring(r.content).iter("{urn:ietf:params:xml:ns:caldav}calendar-data"):
        found += events_of(data.text or "")
    return sorted(found, key=lambda e: (e.start, e.end))


def single_window(world: BookingWorld, staff: int = 1, rules: str = "",
                  hours: tuple[int, int] = (10, 14)) -> tuple[Department, date, str]:
    """A department open once, ``hours`` local, the day after tomorrow."""
    dept = world.department(rules, staff=staff)
    day = days_ahead(2)
    uid = dept.open(local(day, hours[0]), local(day, hours[1]), rrule=None)
    return dept, day, uid


def delete(world: BookingWorld, user: str, path: str) -> None:
    r = world.session(user).delete(world.server.url + path)
    assert r.status_code in (200, 204), (r.status_code, r.text)


def row_of(world: BookingWorld, dept: Department, href: str) -> dict:
    return next(r for r in world.bookings(dept) if r["booking_href"] == href)


def reshape_window(world: BookingWorld, dept: Department, uid: str, start: datetime, end: datetime,
                   staff: tuple[str, ...] = ()) -> None:
    """The admin edits an opening window in place (same UID and href)."""
    body = ics_event(uid, start, end, summary="Open", attendees=[dept.email(s) for s in staff])
    r = world.put(dept.admin, f"/{dept.admin}/opening-{dept.id}/{uid}.ics", body)
    assert r.status_code in (201, 204), (r.status_code, r.text)


# -- availability ---------------------------------------------------------------------


def test_availability_splits_the_window_into_free_and_anonymous_busy(world: BookingWorld) -> None:
    dept, day, _ = single_window(world, staff=1)
    alice, bob = dept.recipient(), dept.recipient()
    assert availability(world, bob, dept, day) == [("Free", "10:00", "14:00")]

    assert world.book(alice, dept, local(day, 11), local(day, 12)).confirmed
    assert availability(world, bob, dept, day) == [
        ("Free", "10:00", "11:00"), ("Busy", "11:00", "12:00"), ("Free", "12:00", "14:00"),
    ]
    # Alice's own visit is not "Busy" to her: she can move it anywhere in 10-14.
    assert availability(world, alice, dept, day) == [("Free", "10:00", "11:00"), ("Free", "12:00", "14:00")]
    free = next(e for e in collection(world, bob, f"availability-{dept.id}") if e.summary == "Free")
    assert "TRANSP:TRANSPARENT" in free.text
    busy = next(e for e in collection(world, bob, f"availability-{dept.id}") if e.summary == "Busy")
    assert "TRANSP:OPAQUE" in busy.text


def test_one_booking_of_two_staff_leaves_the_time_free(world: BookingWorld) -> None:
    dept, day, _ = single_window(world, staff=2)
    alice, bob, carol = dept.recipient(), dept.recipient(), dept.recipient()
    assert world.book(alice, dept, local(day, 11), local(day, 12)).confirmed
    assert availability(world, carol, dept, day) == [("Free", "10:00", "14:00")]
    assert world.book(bob, dept, local(day, 11, 30), local(day, 12, 30)).confirmed
    assert availability(world, carol, dept, day) == [
        ("Free", "10:00", "11:30"), ("Busy", "11:30", "12:00"), ("Free", "12:00", "14:00"),
    ]
    # For Alice, the half hour is her own visit; for Bob likewise.
    assert availability(world, alice, dept, day) == [
        ("Free", "10:00", "11:30"), ("Free", "12:00", "14:00"),
    ]


def test_a_booking_that_leaves_time_free_writes_no_availability_event(world: BookingWorld) -> None:
    """Another employee free all through the visit and its travel buffers:
    the view says what it said (the desk does not compute the day again);
    a visit whose buffers leave nobody free there changes it."""
    dept, day, _ = single_window(world, staff=2, rules="travel_buffer_minutes = 30")
    alice, bob, carol = dept.recipient(), dept.recipient(), dept.recipient()
    path = f"/{carol}/availability-{dept.id}/"
    token, _ = sync(world, carol, path)
    assert world.book(alice, dept, local(day, 11), local(day, 12)).confirmed
    assert sync(world, carol, path, token) == (token, {})
    assert availability(world, carol, dept, day) == [("Free", "10:00", "14:00")]

    # The first employee is within 30 minutes of 12:15 and the second is
    # blocked from 11:45: nobody is free from 11:45 to 12:30.
    assert world.book(bob, dept, local(day, 12, 15), local(day, 13)).confirmed
    new_token, changed = sync(world, carol, path, token)
    assert new_token != token and changed
    assert availability(world, carol, dept, day) == [
        ("Free", "10:00", "11:45"), ("Busy", "11:45", "12:00"), ("Busy", "12:00", "12:15"),
        ("Busy", "12:15", "12:30"), ("Free", "12:30", "14:00"),
    ]


def test_cancelling_and_moving_update_the_view(world: BookingWorld) -> None:
    dept, day, _ = single_window(world, staff=1)
    alice, bob = dept.recipient(), dept.recipient()
    booked = world.book(alice, dept, local(day, 11), local(day, 12), uid="mover")
    assert booked.confirmed
    assert world.book(alice, dept, local(day, 12, 30), local(day, 13, 30), uid="mover").confirmed
    assert availability(world, bob, dept, day) == [
        ("Free", "10:00", "12:30"), ("Busy", "12:30", "13:30"), ("Free", "13:30", "14:00"),
    ]
    delete(world, alice, booked.path)
    assert availability(world, bob, dept, day) == [("Free", "10:00", "14:00")]


def test_availability_is_read_only_and_answers_every_report(world: BookingWorld) -> None:
    dept, day, _ = single_window(world, staff=1)
    alice, bob = dept.recipient(), dept.recipient()
    assert world.book(alice, dept, local(day, 11), local(day, 12)).confirmed
    path = f"/{bob}/availability-{dept.id}/"
    r = world.put(bob, path + "mine.ics", ics_event("mine", local(day, 12), local(day, 13)))
    assert r.status_code == 403
    # calendar-query with a time range: only that day's events.
    found = time_range_query(world, bob, path, local(day, 0), local(day + timedelta(days=1), 0))
    assert [e.local for e in found] == [
        ("Free", "10:00", "11:00"), ("Busy", "11:00", "12:00"), ("Free", "12:00", "14:00"),
    ]
    assert time_range_query(world, bob, path, local(day, 14), local(day, 23)) == []
    # multiget of two hrefs, one of them unknown.
    href = f"{path}{found[1].uid}.ics"
    body = ('<?xml version="1.0" encoding="utf-8"?>'
            '<C:calendar-multiget xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
            f"<D:prop><D:getetag/><C:calendar-data/></D:prop><D:href>{href}</D:href>"
            f"<D:href>{path}nothing.ics</D:href></C:calendar-multiget>")
    r = report(world, bob, path, body)
    assert r.status_code == 207
    assert "Busy" in r.text and "404" in r.text
    # free-busy-query: the busy hour, not the free ones.
    fmt = "%Y%m%dT%H%M%SZ"
    body = ('<?xml version="1.0" encoding="utf-8"?>'
            '<C:free-busy-query xmlns:C="urn:ietf:params:xml:ns:caldav">'
            f'<C:time-range start="{local(day, 0).astimezone(UTC).strftime(fmt)}" '
            f'end="{local(day, 23).astimezone(UTC).strftime(fmt)}"/></C:free-busy-query>')
    r = report(world, bob, path, body)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    lines = [line for line in r.text.replace("\r\n ", "").splitlines() if line.startswith("FREEBUSY")]
    period = f"{local(day, 11).astimezone(UTC).strftime(fmt)}/{local(day, 12).astimezone(UTC).strftime(fmt)}"
    assert len(lines) == 1 and lines[0].endswith(period), r.text


def test_nothing_private_in_any_availability_event(world: BookingWorld) -> None:
    dept, day, _ = single_window(world, staff=2, hours=(8, 16))
    people = [dept.recipient(name=f"Secret Person {n}") for n in range(4)]
    uids = []
    for n, who in enumerate(people):
        uid = f"private-booking-{n}"
        hour = 9 + 2 * (n // 2)  # two at a time: both staff busy
        booked = world.book(who, dept, local(day, hour), local(day, hour + 1), uid=uid,
                            summary="Shopping", description=f"door code {n}{n}{n}")
        assert booked.confirmed, booked.description
        uids.append(uid)
    overlap = world.book(people[0], dept, local(day, 9, 30), local(day, 10, 30), uid="private-booking-x")
    assert not overlap.confirmed  # own overlap
    watcher = dept.recipient()
    events = collection(world, watcher, f"availability-{dept.id}")
    assert any(e.summary == "Busy" for e in events)
    forbidden = [*people, *dept.staff, dept.admin, *uids, "Shopping", "Secret", "Staff", "door code",
                 "example.org", "Gate", "+47"]
    for event in events:
        for word in forbidden:
            assert word.lower() not in event.text.lower(), (word, event.text)
        names = {line.split(":", 1)[0].split(";", 1)[0] for line in event.text.splitlines() if ":" in line}
        assert names <= {"BEGIN", "END", "UID", "DTSTAMP", "DTSTART", "DTEND", "SUMMARY", "TRANSP",
                         "CLASS", "DESCRIPTION"}, names


def test_sync_reports_only_the_changed_hrefs_of_each_view(world: BookingWorld) -> None:
    dept = world.department(staff=1)
    first_day, other_day = days_ahead(2), days_ahead(4)
    dept.open(local(first_day, 10), local(first_day, 14), rrule="FREQ=DAILY;COUNT=5")
    alice, bob = dept.recipient(), dept.recipient()
    staff = dept.staff[0]
    avail = f"/{bob}/availability-{dept.id}/"
    over = f"/{dept.admin}/overview-{dept.id}/"
    work = f"/{staff}/assignments/"
    own = f"/{alice}/availability-{dept.id}/"
    tokens = {path: sync(world, user, path)[0] for user, path in
              ((bob, avail), (dept.admin, over), (staff, work), (alice, own))}
    before = {e.uid for e in collection(world, bob, f"availability-{dept.id}")}
    assert len(before) == 5  # one Free window a day

    assert world.book(alice, dept, local(other_day, 11), local(other_day, 12)).confirmed

    _, changed = sync(world, bob, avail, tokens[avail])
    after = {e.uid: e for e in collection(world, bob, f"availability-{dept.id}")}
    day_uids = {uid for uid, e in after.items() if e.start.astimezone(OSLO).date() == other_day}
    old_day_uid = {uid for uid in before - after.keys()}
    assert len(old_day_uid) == 1 and len(day_uids) == 3
    assert {h.removesuffix(".ics") for h, s in changed.items() if s == 200} == day_uids
    assert {h.removesuffix(".ics") for h, s in changed.items() if s == 404} == old_day_uid
    # Alice, who booked, gets the same hrefs, but her own busy hour as gone.
    busy = {uid for uid in day_uids if after[uid].summary == "Busy"}
    _, changed = sync(world, alice, own, tokens[own])
    assert {h.removesuffix(".ics") for h, s in changed.items() if s == 200} == day_uids - busy
    assert {h.removesuffix(".ics") for h, s in changed.items() if s == 404} == old_day_uid | busy
    _, changed = sync(world, dept.admin, over, tokens[over])
    assert list(changed.values()) == [200]
    _, changed = sync(world, staff, work, tokens[work])
    assert list(changed.values()) == [200]
    # The subscribed feed: the whole assignments calendar as one .ics.
    assert [e.local[1:] for e in collection(world, staff, "assignments")] == [("11:00", "12:00")]


def test_initial_sync_lists_only_what_the_reader_sees(world: BookingWorld) -> None:
    dept, day, _ = single_window(world, staff=1)
    alice = dept.recipient()
    assert world.book(alice, dept, local(day, 11), local(day, 12)).confirmed
    _, listed = sync(world, alice, f"/{alice}/availability-{dept.id}/")
    shown = {e.uid + ".ics" for e in collection(world, alice, f"availability-{dept.id}")}
    assert set(listed) == shown and set(listed.values()) == {200} and len(shown) == 2


# -- overview -----------------------------------------------------------------------------


def test_overview_lists_every_booking_with_recipient_service_and_staff(world: BookingWorld) -> None:
    dept, day, _ = single_window(world, staff=1)
    alice = dept.recipient(name="Alice Example")
    booked = world.book(alice, dept, local(day, 11), local(day, 12, 30), summary="Shopping",
                        description="bring bags")
    assert booked.confirmed
    items = collection(world, dept.admin, f"overview-{dept.id}")
    assert len(items) == 1
    item = icalendar.Calendar.from_ical(items[0].text).walk("VEVENT")[0]
    assert str(item["SUMMARY"]) == f"Shopping – Alice Example (Staff 1 {dept.id})"
    assert "bring bags" in str(item["DESCRIPTION"])
    assert item.decoded("DTSTART") == local(day, 11)
    r = world.put(dept.admin, f"/{dept.admin}/overview-{dept.id}/x.ics", ics_event("x", local(day, 9)))
    assert r.status_code == 403
    # Recipients and staff have no overview.
    assert world.get(alice, f"/{dept.admin}/overview-{dept.id}/").status_code in (403, 404)
    delete(world, alice, booked.path)
    assert collection(world, dept.admin, f"overview-{dept.id}") == []


# -- admin edits ----------------------------------------------------------------------------


def test_shortened_window_flags_the_booking_outside_it_and_a_restored_one_confirms_it(
    world: BookingWorld,
) -> None:
    dept, day, uid = single_window(world, staff=1)
    alice = dept.recipient()
    early = world.book(alice, dept, local(day, 10), local(day, 11))
    late = world.book(alice, dept, local(day, 12, 30), local(day, 13, 30))
    assert early.confirmed and late.confirmed
    staff = dept.staff[0]
    assert len(world.assignments(staff)) == 2

    reshape_window(world, dept, uid, local(day, 10), local(day, 12))

    kept, flagged = world.get(alice, early.path).text, world.get(alice, late.path).text
    assert "STATUS:CONFIRMED" in kept
    assert "STATUS:TENTATIVE" in flagged and "will contact you" in flagged.replace("\r\n ", "")
    assert row_of(world, dept, late.path.rsplit("/", 1)[1])["status"] == "flagged"
    assert [e["SUMMARY"] for e in world.assignments(staff)] == [
        e["SUMMARY"] for e in world.assignments(staff)][:1]
    assert len(world.assignments(staff)) == 1
    overview = collection(world, dept.admin, f"overview-{dept.id}")
    marked = [e for e in overview if e.summary.startswith("NEEDS ATTENTION: ")]
    assert len(marked) == 1 and "CATEGORIES:Needs attention" in marked[0].text
    assert [(a.action, a.outcome) for a in world.audit(dept)][-1] == ("flag", "flagged")
    assert availability(world, dept.recipient(), dept, day) == [("Busy", "10:00", "11:00"),
                                                                ("Free", "11:00", "12:00")]

    reshape_window(world, dept, uid, local(day, 10), local(day, 14))
    assert "STATUS:CONFIRMED" in world.get(alice, late.path).text
    assert row_of(world, dept, late.path.rsplit("/", 1)[1])["status"] == "confirmed"
    assert len(world.assignments(staff)) == 2
    overview = collection(world, dept.admin, f"overview-{dept.id}")
    assert not any(e.summary.startswith("NEEDS") for e in overview)


def test_deleted_window_flags_every_booking_in_it(world: BookingWorld) -> None:
    dept, day, uid = single_window(world, staff=2)
    alice, bob = dept.recipient(), dept.recipient()
    a = world.book(alice, dept, local(day, 10), local(day, 11))
    b = world.book(bob, dept, local(day, 10), local(day, 11))
    assert a.confirmed and b.confirmed
    delete(world, dept.admin, f"/{dept.admin}/opening-{dept.id}/{uid}.ics")
    rows = world.bookings(dept)
    assert [r["status"] for r in rows] == ["flagged", "flagged"]
    assert all(r["staff"] is None for r in rows)
    for booked, who in ((a, alice), (b, bob)):
        text = world.get(who, booked.path).text
        assert "STATUS:TENTATIVE" in text
    assert all(world.assignments(s) == [] for s in dept.staff)
    assert availability(world, alice, dept, day) == []


def test_staff_taken_off_a_window_hands_the_visit_to_another(world: BookingWorld) -> None:
    dept, day, uid = single_window(world, staff=2)
    alice, bob = dept.recipient(), dept.recipient()
    a = world.book(alice, dept, local(day, 10), local(day, 11))
    b = world.book(bob, dept, local(day, 12), local(day, 13))
    assert a.confirmed and b.confirmed
    first = {r["booking_href"]: r["staff"] for r in world.bookings(dept)}
    s1, s2 = dept.staff
    # Only s2 stays on duty: every visit is now s2's (they do not overlap).
    reshape_window(world, dept, uid, local(day, 10), local(day, 14), staff=(s2,))
    after = {r["booking_href"]: r["staff"] for r in world.bookings(dept)}
    assert set(after.values()) == {s2}
    assert world.assignments(s1) == [] and len(world.assignments(s2)) == 2
    moved = [h for h in first if first[h] != after[h]]
    assert moved and all(("reassign", "accepted") in [(e.action, e.outcome) for e in world.audit(dept)]
                         for _ in moved)
    for booked, who in ((a, alice), (b, bob)):
        text = world.get(who, booked.path).text.replace("\r\n ", "")
        assert "STATUS:CONFIRMED" in text and f"Staff 2 {dept.id}" in text


def test_staff_taken_off_with_nobody_free_flags_only_the_overlap(world: BookingWorld) -> None:
    dept, day, uid = single_window(world, staff=2)
    alice, bob = dept.recipient(), dept.recipient()
    a = world.book(alice, dept, local(day, 10), local(day, 11))
    b = world.book(bob, dept, local(day, 10), local(day, 11))
    assert a.confirmed and b.confirmed
    s2 = dept.staff[1]
    reshape_window(world, dept, uid, local(day, 10), local(day, 14), staff=(s2,))
    rows = world.bookings(dept)
    assert sorted(r["status"] for r in rows) == ["confirmed", "flagged"]
    assert next(r for r in rows if r["status"] == "confirmed")["staff"] == s2


# -- the waiting list ----------------------------------------------------------------------------


def test_a_cancellation_confirms_the_earliest_waiting_request(world: BookingWorld) -> None:
    dept, day, _ = single_window(world, staff=1, rules="waiting_list = true")
    alice, bob, carol = dept.recipient(), dept.recipient(), dept.recipient()
    held = world.book(alice, dept, local(day, 11), local(day, 12))
    assert held.confirmed
    bob_wait = world.book(bob, dept, local(day, 11), local(day, 12))
    carol_wait = world.book(carol, dept, local(day, 11), local(day, 12))
    for waiting in (bob_wait, carol_wait):
        assert waiting.response.status_code == 201
        assert waiting.status == "TENTATIVE" and "waiting list" in waiting.description
    assert sorted(r["status"] for r in world.bookings(dept)) == ["confirmed", "waiting", "waiting"]
    overview = collection(world, dept.admin, f"overview-{dept.id}")
    assert sum(e.summary.startswith("WAITING: ") for e in overview) == 2

    delete(world, alice, held.path)

    assert "STATUS:CONFIRMED" in world.get(bob, bob_wait.path).text
    assert "STATUS:TENTATIVE" in world.get(carol, carol_wait.path).text
    rows = {r["recipient"]: r for r in world.bookings(dept)}
    assert rows[bob]["status"] == "confirmed" and rows[bob]["staff"] == dept.staff[0]
    assert rows[carol]["status"] == "waiting"
    assert len(world.assignments(dept.staff[0])) == 1
    assert ("confirm-waiting", "accepted") in [(e.action, e.outcome) for e in world.audit(dept)]


def test_no_confirmation_when_the_waiting_request_no_longer_fits(world: BookingWorld) -> None:
    dept, day, _ = single_window(world, staff=1, rules="waiting_list = true")
    alice, bob, carol = dept.recipient(), dept.recipient(), dept.recipient()
    first = world.book(alice, dept, local(day, 11), local(day, 12))
    second = world.book(carol, dept, local(day, 12), local(day, 13))
    assert first.confirmed and second.confirmed
    # Bob waits for 11:30-12:30: it needs both hours free.
    waiting = world.book(bob, dept, local(day, 11, 30), local(day, 12, 30))
    assert waiting.status == "TENTATIVE"
    delete(world, alice, first.path)
    assert "STATUS:TENTATIVE" in world.get(bob, waiting.path).text
    assert {r["recipient"]: r["status"] for r in world.bookings(dept)}[bob] == "waiting"


def test_a_request_refused_for_other_reasons_does_not_wait(world: BookingWorld) -> None:
    dept, day, _ = single_window(world, staff=1, rules="waiting_list = true")
    alice, bob = dept.recipient(), dept.recipient()
    assert world.book(alice, dept, local(day, 11), local(day, 12)).confirmed
    outside = world.book(bob, dept, local(day, 13, 30), local(day, 14, 30))
    assert outside.status == "CANCELLED"
    assert [r["status"] for r in world.bookings(dept)] == ["confirmed"]


def test_without_the_waiting_list_a_full_time_is_refused(world: BookingWorld) -> None:
    dept, day, _ = single_window(world, staff=1)
    alice, bob = dept.recipient(), dept.recipient()
    assert world.book(alice, dept, local(day, 11), local(day, 12)).confirmed
    assert world.book(bob, dept, local(day, 11), local(day, 12)).status == "CANCELLED"


def test_an_excluded_day_flags_its_bookings_and_leaves_the_others(world: BookingWorld) -> None:
    dept = world.department(staff=1)
    first = days_ahead(2)
    uid = dept.open(local(first, 10), local(first, 14), rrule="FREQ=DAILY;COUNT=3")
    alice = dept.recipient()
    on_first = world.book(alice, dept, local(first, 11), local(first, 12))
    second = first + timedelta(days=1)
    on_second = world.book(alice, dept, local(second, 11), local(second, 12))
    assert on_first.confirmed and on_second.confirmed
    # The admin excludes the second day (EXDATE), as a calendar app does.
    body = ics_event(uid, local(first, 10), local(first, 14), summary="Open", rrule="FREQ=DAILY;COUNT=3",
                     extra=[("EXDATE", local(first + timedelta(days=1), 10))])
    r = world.put(dept.admin, f"/{dept.admin}/opening-{dept.id}/{uid}.ics", body)
    assert r.status_code == 204, (r.status_code, r.text)
    assert "STATUS:CONFIRMED" in world.get(alice, on_first.path).text
    assert "STATUS:TENTATIVE" in world.get(alice, on_second.path).text
    assert sorted(r["status"] for r in world.bookings(dept)) == ["confirmed", "flagged"]
    assert availability(world, dept.recipient(), dept, first + timedelta(days=1)) == []


def test_an_opening_change_beyond_the_horizon_changes_no_view(world: BookingWorld) -> None:
    dept, day, _ = single_window(world, staff=1)
    alice = dept.recipient()
    assert world.book(alice, dept, local(day, 11), local(day, 12)).confirmed
    path = f"/{alice}/availability-{dept.id}/"
    token, _ = sync(world, alice, path)
    far = days_ahead(200)
    dept.open(local(far, 8), local(far, 9), rrule=None)
    assert sync(world, alice, path, token) == (token, {})
    # One inside the horizon does.
    dept.open(local(day, 15), local(day, 16), rrule=None)
    new_token, changed = sync(world, alice, path, token)
    assert new_token != token and list(changed.values()) == [200]


def test_an_opening_change_beyond_the_horizon_still_decides_a_booking_there_again(
    world: BookingWorld,
) -> None:
    """A booking made when the horizon was longer lies beyond the days the
    availability covers now: the change there is not skipped."""
    dept = world.department("horizon_days = 30", staff=1)
    far = days_ahead(20)
    uid = dept.open(local(far, 10), local(far, 14), rrule=None)
    alice = dept.recipient()
    assert world.book(alice, dept, local(far, 11), local(far, 12)).confirmed
    world.set_rules(dept, "horizon_days = 7")
    delete(world, dept.admin, f"/{dept.admin}/opening-{dept.id}/{uid}.ics")
    assert [(r["status"], r["staff"]) for r in world.bookings(dept)] == [("flagged", None)]


def test_every_object_the_server_wrote_verifies(world: BookingWorld) -> None:
    """Last in the module: after all of the above, every stored object's
    etag, UID and time-range index match its data (the server computes them
    without parsing the texts it writes itself)."""
    with world.db.transaction("r") as conn:
        written = conn.execute(select(func.count()).select_from(calendar_objects)).scalar_one()
    assert written > 100
    assert verify_database(world.db)
