"""A booking's whole life over real HTTP: booked, edited, moved, cancelled,
refused (annotated or answered 403), renamed with MOVE, audited - and bad
input in a bookings calendar, refused with its own reason and never half
stored. Each test makes its own department (tests/helpers/booking_world.py);
every response to the world's HTTP sessions is checked for 5xx (the caldav
library raises on one by itself).
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from typing import Any

import icalendar
import pytest
import requests
from caldav.lib import error as caldav_error

from tests.helpers.booking_world import (
    BookingWorld,
    Department,
    booking_world,
    days_ahead,
    dump,
    event_of,
    ics_event,
    local,
)

CALDAV_NS = "urn:ietf:params:xml:ns:caldav"
SH_NS = "urn:x-servicehop:ns"
SEPARATOR = "— servicehop —"
NOT_BOOKED = "NOT BOOKED: "
CHANGE_REFUSED = "The change was not made; the booking stands as before."
OUTSIDE_OPENING = "That time is outside the opening hours."
MAX_RESOURCE_SIZE = 1_000_000  # radicale.conf written by `init`

SERVER_ERRORS: list[str] = []


def _record_server_errors(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    if response.status_code >= 500:
        SERVER_ERRORS.append(f"{response.request.method} {response.url} -> {response.status_code}")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BookingWorld]:
    for w in booking_world(request.param, tmp_path_factory.mktemp(f"lifecycle-{request.param}")):
        make_session = w.session

        def session(
            username: str, make: Callable[[str], requests.Session] = make_session
        ) -> requests.Session:
            s = make(username)
            if _record_server_errors not in s.hooks["response"]:
                s.hooks["response"].append(_record_server_errors)
            return s

        w.session = session  # type: ignore[method-assign]
        yield w


@pytest.fixture(autouse=True)
def no_server_errors(world: BookingWorld) -> Iterator[None]:
    """Never a 5xx, whatever a test sends."""
    SERVER_ERRORS.clear()
    yield
    assert SERVER_ERRORS == [], SERVER_ERRORS


# -- helpers --------------------------------------------------------------------


def uid_() -> str:
    return f"booking-{uuid.uuid4().hex[:10]}"


def edited(text: str, edit: Callable[[icalendar.Component], None]) -> str:
    """``text`` with its first VEVENT changed by ``edit`` (as a client would)."""
    cal = icalendar.Calendar.from_ical(text)
    edit(next(iter(cal.walk("VEVENT"))))
    return str(cal.to_ical().decode())


def set_prop(name: str, value: Any) -> Callable[[icalendar.Component], None]:
    def edit(event: icalendar.Component) -> None:
        event.pop(name, None)
        event.add(name, value)

    return edit


def set_times(start: datetime, end: datetime) -> Callable[[icalendar.Component], None]:
    def edit(event: icalendar.Component) -> None:
        for name in ("DTSTART", "DTEND", "DURATION"):
            event.pop(name, None)
        event.add("DTSTART", start)
        event.add("DTEND", end)

    return edit


def times_of(text: str) -> tuple[date, date]:
    event = event_of(text)
    return event.start, event.end


def ts(moment: datetime) -> int:
    return int(moment.timestamp())


def notes_of(description: str) -> str:
    """The recipient's part of a server-written DESCRIPTION."""
    assert SEPARATOR in description, description
    return description.split(SEPARATOR, 1)[1].lstrip("\n")


def visits(world: BookingWorld, staff: str) -> list[dict[str, Any]]:
    """A staff member's visits: the booking UID, times and notes of each."""
    return [
        {
            "related": str(v.get("RELATED-TO", "")),
            "start": v.start,
            "end": v.end,
            "description": str(v.get("DESCRIPTION", "")),
        }
        for v in world.assignments(staff)
    ]


def audit_of(world: BookingWorld, dept: Department) -> list[tuple[str, str, tuple[str, ...], str | None]]:
    return [(a.action, a.outcome, a.reasons, a.staff) for a in world.audit(dept)]


def dav_error(response: requests.Response) -> ET.Element:
    content_type = response.headers.get("Content-Type", "")
    assert content_type.startswith(("text/xml", "application/xml")), response.headers
    root = ET.fromstring(response.content)
    assert root.tag == "{DAV:}error", response.text
    return root


def reason_text(error: ET.Element) -> str:
    reason = error.find(f"{{{SH_NS}}}reason")
    assert reason is not None and reason.text, ET.tostring(error)
    return reason.text


def move(world: BookingWorld, user: str, path: str, to_path: str) -> requests.Response:
    return world.session(user).request(
        "MOVE", world.server.url + path, headers={"Destination": world.server.url + to_path, "Overwrite": "F"}
    )


def delete(world: BookingWorld, user: str, path: str) -> requests.Response:
    return world.session(user).delete(world.server.url + path)


def opened(world: BookingWorld, staff: int = 1, rules: str = "") -> tuple[Department, date]:
    """A department open 08-16 every day from the day after tomorrow."""
    dept = world.department(rules, staff=staff)
    day = days_ahead(2)
    dept.open(local(day, 8), local(day, 16))
    return dept, day


# -- the caldav library: create, edit notes, move, delete -------------------------


def test_booking_lifecycle_with_the_caldav_library(world: BookingWorld) -> None:
    dept, day = opened(world, staff=1)
    rita = dept.recipient()
    staff = dept.staff[0]
    principal = world.client(rita).principal()
    calendar = next(
        c for c in principal.get_calendars() if str(c.url).rstrip("/").endswith(f"bookings-{dept.id}")
    )
    uid = uid_()

    event = calendar.add_event(ics_event(uid, local(day, 10), local(day, 11), description="Ring twice"))
    event.load()
    component = event.get_icalendar_component()
    assert str(component["STATUS"]) == "CONFIRMED", event.data
    assert str(component["DESCRIPTION"]).startswith("Confirmed: Staff 1"), event.data
    assert notes_of(str(component["DESCRIPTION"])) == "Ring twice"
    [row] = world.bookings(dept)
    assert (row["recipient"], row["staff"], row["start_ts"]) == (rita, staff, ts(local(day, 10)))

    # Notes only: the recipient edits below the separator.
    with event.edit_icalendar_component() as component:
        description = str(component["DESCRIPTION"])
        component.pop("DESCRIPTION")
        component.add("DESCRIPTION", description.replace("Ring twice", "Use the back door"))
    event.save()
    event.load()
    component = event.get_icalendar_component()
    assert str(component["STATUS"]) == "CONFIRMED"
    assert notes_of(str(component["DESCRIPTION"])) == "Use the back door"
    [visit] = visits(world, staff)
    assert "Use the back door" in visit["description"] and "Ring twice" not in visit["description"]
    assert [r["id"] for r in world.bookings(dept)] == [row["id"]]

    # New times: decided again, the visit follows.
    with event.edit_icalendar_component() as component:
        set_times(local(day, 13), local(day, 14))(component)
    event.save()
    event.load()
    component = event.get_icalendar_component()
    assert str(component["STATUS"]) == "CONFIRMED", event.data
    assert component["DTSTART"].dt == local(day, 13)
    [moved] = world.bookings(dept)
    assert (moved["id"], moved["start_ts"], moved["end_ts"]) == (
        row["id"], ts(local(day, 13)), ts(local(day, 14))
    )
    [visit] = visits(world, staff)
    assert (visit["start"], visit["end"], visit["related"]) == (local(day, 13), local(day, 14), uid)

    event.delete()
    assert world.bookings(dept) == []
    assert visits(world, staff) == []
    assert world.get(rita, f"/{rita}/bookings-{dept.id}/{uid}.ics").status_code == 404
    assert [(a, o) for a, o, _, _ in audit_of(world, dept)] == [
        ("book", "accepted"), ("change", "kept"), ("move", "accepted"), ("cancel", "cancelled"),
    ]
    with pytest.raises(caldav_error.NotFoundError):
        calendar.get_event_by_uid(uid)


# -- ETag --------------------------------------------------------------------------


def test_etag_only_when_the_server_stored_what_was_sent(world: BookingWorld) -> None:
    dept, day = opened(world, staff=1)
    rita = dept.recipient()

    confirmed = world.book(rita, dept, local(day, 10), local(day, 11))
    assert confirmed.response.status_code == 201 and confirmed.confirmed, confirmed.text
    assert "ETag" not in confirmed.response.headers, "a confirmed (rewritten) booking must not carry an ETag"

    refused = world.book(rita, dept, local(day, 18), local(day, 19))
    assert refused.response.status_code == 201 and refused.status == "CANCELLED", refused.text
    assert "ETag" not in refused.response.headers, "a refusal annotation is a rewrite: no ETag"

    # The server's own text sent back unchanged is stored as it is: ETag.
    got = world.get(rita, confirmed.path)
    again = world.put(rita, confirmed.path, got.text)
    assert again.status_code == 204, again.text
    assert again.headers.get("ETag") == got.headers["ETag"]
    after = world.get(rita, confirmed.path)
    assert (after.headers["ETag"], after.text) == (got.headers["ETag"], got.text)
    assert len(world.bookings(dept)) == 1
    # Nothing was decided again and the employee's calendar did not change.
    visit_path = f"/{dept.staff[0]}/assignments/"
    visit_etags = world.session(dept.staff[0]).request("PROPFIND", world.server.url + visit_path,
                                                       headers={"Depth": "1"}).text
    decisions = len(world.audit(dept))
    assert world.put(rita, confirmed.path, got.text).status_code == 204
    assert len(world.audit(dept)) == decisions
    assert world.session(dept.staff[0]).request("PROPFIND", world.server.url + visit_path,
                                                headers={"Depth": "1"}).text == visit_etags

    # Outside bookings calendars nothing is rewritten.
    uid = "open-extra"
    path = f"/{dept.admin}/opening-{dept.id}/{uid}.ics"
    r = world.put(dept.admin, path, ics_event(uid, local(day, 17), local(day, 18), summary="Open"))
    assert r.status_code == 201, r.text
    assert r.headers.get("ETag") and r.headers["ETag"] == world.get(dept.admin, path).headers["ETag"]


# -- moving ------------------------------------------------------------------------


def test_move_keeps_a_free_staff_member(world: BookingWorld) -> None:
    dept, day = opened(world, staff=2)
    s1, s2 = dept.staff
    other, rita = dept.recipient(), dept.recipient()
    assert world.book(other, dept, local(day, 10), local(day, 11)).confirmed
    booked = world.book(rita, dept, local(day, 10), local(day, 11))
    assert booked.confirmed
    [row] = [b for b in world.bookings(dept) if b["recipient"] == rita]
    assert row["staff"] == s2

    r = world.put(rita, booked.path, edited(booked.text or "", set_times(local(day, 12), local(day, 13))))
    assert r.status_code == 204, r.text
    got = world.get(rita, booked.path)
    # Same staff member: the confirmation line the client sent is still right,
    # so the server stores the event as sent and the PUT keeps its ETag.
    assert r.headers.get("ETag") == got.headers["ETag"]
    stored = got.text
    assert event_of(stored)["STATUS"] == "CONFIRMED" and times_of(stored) == (local(day, 12), local(day, 13))
    [moved] = [b for b in world.bookings(dept) if b["recipient"] == rita]
    assert (moved["id"], moved["staff"]) == (row["id"], s2)
    assert (moved["start_ts"], moved["end_ts"]) == (ts(local(day, 12)), ts(local(day, 13)))
    uid = str(booked.event["UID"])
    assert [(v["start"], v["end"]) for v in visits(world, s2) if v["related"] == uid] == [
        (local(day, 12), local(day, 13))
    ]
    assert [v for v in visits(world, s1) if v["related"] == uid] == []
    assert audit_of(world, dept)[-1] == ("move", "accepted", (), s2)


def test_move_to_a_time_when_the_staff_member_is_busy_changes_hands(world: BookingWorld) -> None:
    dept, day = opened(world, staff=2)
    s1, s2 = dept.staff
    rita, bob, carl = dept.recipient(), dept.recipient(), dept.recipient()
    booked = world.book(rita, dept, local(day, 10), local(day, 11))
    assert world.book(bob, dept, local(day, 10), local(day, 11)).confirmed
    assert world.book(carl, dept, local(day, 13), local(day, 14)).confirmed
    staff_of = {b["recipient"]: b["staff"] for b in world.bookings(dept)}
    assert staff_of == {rita: s1, bob: s2, carl: s1}, dump(world.bookings(dept))
    uid = str(booked.event["UID"])

    r = world.put(rita, booked.path, edited(booked.text or "", set_times(local(day, 13), local(day, 14))))
    assert r.status_code == 204 and "ETag" not in r.headers, r.text  # a new confirmation line
    stored = world.get(rita, booked.path).text
    assert event_of(stored)["STATUS"] == "CONFIRMED", stored
    assert "Staff 2" in str(event_of(stored)["DESCRIPTION"])
    [row] = [b for b in world.bookings(dept) if b["recipient"] == rita]
    assert (row["staff"], row["start_ts"], row["end_ts"]) == (s2, ts(local(day, 13)), ts(local(day, 14)))
    assert [v for v in visits(world, s1) if v["related"] == uid] == []
    assert [(v["start"], v["end"]) for v in visits(world, s2) if v["related"] == uid] == [
        (local(day, 13), local(day, 14))
    ]
    assert len(visits(world, s1)) == 1 and len(visits(world, s2)) == 2
    assert audit_of(world, dept)[-1] == ("move", "accepted", (), s2)


def test_move_to_an_impossible_time_is_a_refused_change(world: BookingWorld) -> None:
    dept, day = opened(world, staff=1)
    staff = dept.staff[0]
    rita = dept.recipient()
    booked = world.book(rita, dept, local(day, 10), local(day, 11), description="Ring twice")
    assert booked.confirmed
    [row] = world.bookings(dept)
    before_visits = visits(world, staff)

    r = world.put(rita, booked.path, edited(booked.text or "", set_times(local(day, 18), local(day, 19))))
    assert r.status_code == 204 and "ETag" not in r.headers, r.text
    stored = world.get(rita, booked.path).text
    event = event_of(stored)
    assert times_of(stored) == (local(day, 10), local(day, 11)), stored
    assert str(event["STATUS"]) == "CONFIRMED"
    description = str(event["DESCRIPTION"])
    assert description.startswith(f"{CHANGE_REFUSED}\n{OUTSIDE_OPENING}\n"), description
    assert "Confirmed: Staff 1" in description and notes_of(description) == "Ring twice"
    assert world.bookings(dept) == [row]
    assert visits(world, staff) == before_visits
    assert audit_of(world, dept)[-1] == ("move", "refused", ("outside-opening",), None)


# -- notes -------------------------------------------------------------------------


def test_notes_only_change_keeps_booking_and_staff(world: BookingWorld) -> None:
    dept, day = opened(world, staff=2)
    s1, s2 = dept.staff
    other, rita = dept.recipient(), dept.recipient()
    first = world.book(other, dept, local(day, 10), local(day, 11))
    booked = world.book(rita, dept, local(day, 10), local(day, 11), description="Ring twice")
    assert booked.confirmed
    [row] = [b for b in world.bookings(dept) if b["recipient"] == rita]
    assert row["staff"] == s2
    # s1 is free again: a decision taken anew would now pick s1 (by name).
    assert delete(world, other, first.path).status_code in (200, 204)
    uid = str(booked.event["UID"])

    description = booked.description.replace("Ring twice", "Use the back door")
    r = world.put(rita, booked.path, edited(booked.text or "", set_prop("DESCRIPTION", description)))
    assert r.status_code == 204, r.text
    stored = event_of(world.get(rita, booked.path).text)
    assert str(stored["STATUS"]) == "CONFIRMED"
    assert notes_of(str(stored["DESCRIPTION"])) == "Use the back door"
    assert world.bookings(dept) == [row]
    [visit] = [v for v in visits(world, s2) if v["related"] == uid]
    assert "Use the back door" in visit["description"] and "Ring twice" not in visit["description"]
    assert visits(world, s1) == []

    # The whole DESCRIPTION replaced by new notes (separator gone too).
    current = world.get(rita, booked.path).text
    r = world.put(rita, booked.path, edited(current, set_prop("DESCRIPTION", "Bring the key")))
    assert r.status_code == 204, r.text
    stored = event_of(world.get(rita, booked.path).text)
    description = str(stored["DESCRIPTION"])
    assert description.startswith("Confirmed: Staff 2"), description
    assert notes_of(description) == "Bring the key"
    assert world.bookings(dept) == [row]
    [visit] = [v for v in visits(world, s2) if v["related"] == uid]
    assert "Bring the key" in visit["description"] and "Use the back door" not in visit["description"]
    assert [(a, o) for a, o, _, _ in audit_of(world, dept)][-2:] == [("change", "kept"), ("change", "kept")]


def test_notes_too_long_on_a_confirmed_booking_keep_the_booking_and_the_text(world: BookingWorld) -> None:
    dept, day = opened(world, staff=1)
    rita = dept.recipient()
    booked = world.book(rita, dept, local(day, 10), local(day, 11), description="Ring twice")
    assert booked.confirmed
    [row] = world.bookings(dept)
    long_notes = " ".join(f"word-{i:04d}" for i in range(600))  # 5,999 characters
    r = world.put(rita, booked.path, edited(booked.text or "", set_prop("DESCRIPTION", long_notes)))
    assert r.status_code == 204 and "ETag" not in r.headers, r.text
    stored = event_of(world.get(rita, booked.path).text)
    description = str(stored["DESCRIPTION"])
    assert str(stored["STATUS"]) == "CONFIRMED"
    assert description.startswith(CHANGE_REFUSED), description
    assert "The description is too long (at most 4000 characters)." in description
    assert notes_of(description) == long_notes  # what the recipient typed is kept
    assert world.bookings(dept) == [row]
    [visit] = visits(world, dept.staff[0])
    assert "Ring twice" in visit["description"] and "word-0001" not in visit["description"]
    assert audit_of(world, dept)[-1][:3] == ("change", "refused", ("notes-too-long",))


# -- cancelling --------------------------------------------------------------------


def test_delete_cancels_and_frees_the_time(world: BookingWorld) -> None:
    dept, day = opened(world, staff=1)
    staff = dept.staff[0]
    rita, bob = dept.recipient(), dept.recipient()
    booked = world.book(rita, dept, local(day, 10), local(day, 11))
    assert booked.confirmed
    taken = world.book(bob, dept, local(day, 10), local(day, 11))
    assert taken.status == "CANCELLED" and "No member of staff is free" in taken.description, taken.text

    r = delete(world, rita, booked.path)
    assert r.status_code in (200, 204), r.text
    assert world.get(rita, booked.path).status_code == 404
    assert world.bookings(dept) == []
    assert visits(world, staff) == []
    assert audit_of(world, dept)[-1] == ("cancel", "cancelled", (), staff)

    now_free = world.book(bob, dept, local(day, 10), local(day, 11))
    assert now_free.confirmed, now_free.text
    assert [(b["recipient"], b["staff"]) for b in world.bookings(dept)] == [(bob, staff)]
    assert len(visits(world, staff)) == 1


def test_status_cancelled_sent_by_the_client_cancels(world: BookingWorld) -> None:
    dept, day = opened(world, staff=1)
    staff = dept.staff[0]
    rita, bob = dept.recipient(), dept.recipient()
    booked = world.book(rita, dept, local(day, 10), local(day, 11))
    assert booked.confirmed

    sent = edited(booked.text or "", set_prop("STATUS", "CANCELLED"))
    r = world.put(rita, booked.path, sent)
    assert r.status_code == 204, r.text
    got = world.get(rita, booked.path)
    assert got.status_code == 200
    assert r.headers.get("ETag") == got.headers["ETag"], "stored as sent: the PUT keeps its ETag"
    stored, wanted = event_of(got.text), event_of(sent)
    for name in ("STATUS", "SUMMARY", "DESCRIPTION", "DTSTART", "DTEND"):
        assert stored[name].to_ical() == wanted[name].to_ical(), name
    assert world.bookings(dept) == []
    assert visits(world, staff) == []
    assert audit_of(world, dept)[-1] == ("cancel", "cancelled", (), staff)
    assert world.book(bob, dept, local(day, 10), local(day, 11)).confirmed


# -- a refused event saved again -----------------------------------------------------


def test_refused_event_resaved_is_not_decided_again_until_its_times_change(world: BookingWorld) -> None:
    dept, day = opened(world, staff=1)
    staff = dept.staff[0]
    rita = dept.recipient()
    refused = world.book(rita, dept, local(day, 18), local(day, 19), description="Ring twice")
    assert refused.status == "CANCELLED" and refused.summary.startswith(NOT_BOOKED), refused.text
    assert refused.description.startswith(OUTSIDE_OPENING), refused.text
    entries = audit_of(world, dept)
    assert entries == [("book", "refused", ("outside-opening",), None)]

    got = world.get(rita, refused.path)
    r = world.put(rita, refused.path, got.text)
    assert r.status_code == 204, r.text
    assert r.headers.get("ETag") == got.headers["ETag"]
    assert world.get(rita, refused.path).text == got.text
    assert audit_of(world, dept) == entries, "a refused event saved unchanged asks for nothing"
    assert world.bookings(dept) == []

    r = world.put(rita, refused.path, edited(got.text, set_times(local(day, 10), local(day, 11))))
    assert r.status_code == 204 and "ETag" not in r.headers, r.text
    stored = event_of(world.get(rita, refused.path).text)
    assert str(stored["STATUS"]) == "CONFIRMED", stored.to_ical()
    assert not str(stored["SUMMARY"]).startswith(NOT_BOOKED.strip())
    description = str(stored["DESCRIPTION"])
    assert description.startswith("Confirmed: Staff 1") and OUTSIDE_OPENING not in description, description
    assert notes_of(description) == "Ring twice"
    assert [(b["recipient"], b["staff"]) for b in world.bookings(dept)] == [(rita, staff)]
    assert audit_of(world, dept)[-1] == ("book", "accepted", (), staff)


# -- on_reject = "refuse" ------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "days", "hours", "precondition", "code", "sentence"),
    [
        ("beyond-horizon", 20, (10, 11), f"{{{CALDAV_NS}}}max-date-time", "beyond-horizon",
         "Visits can be booked at most 14 days ahead."),
        ("outside-opening", 2, (18, 19), f"{{{SH_NS}}}outside-opening", "outside-opening", OUTSIDE_OPENING),
    ],
)
def test_refuse_mode_answers_403_and_stores_nothing(
    world: BookingWorld, case: str, days: int, hours: tuple[int, int], precondition: str, code: str,
    sentence: str,
) -> None:
    dept, day = opened(world, staff=1, rules='on_reject = "refuse"')
    rita = dept.recipient()
    when = days_ahead(days)
    booked = world.book(rita, dept, local(when, hours[0]), local(when, hours[1]))
    assert booked.response.status_code == 403, (booked.response.status_code, booked.response.text)
    error = dav_error(booked.response)
    assert error.find(precondition) is not None, booked.response.text
    assert sentence in reason_text(error)
    assert world.get(rita, booked.path).status_code == 404, "nothing may be stored"
    assert world.bookings(dept) == []
    assert visits(world, dept.staff[0]) == []
    [entry] = audit_of(world, dept)
    assert entry[:2] == ("book", "refused") and code in entry[2], entry


def test_refuse_mode_refused_move_leaves_the_booking(world: BookingWorld) -> None:
    dept, day = opened(world, staff=1, rules='on_reject = "refuse"')
    staff = dept.staff[0]
    rita = dept.recipient()
    booked = world.book(rita, dept, local(day, 10), local(day, 11))
    assert booked.confirmed
    before = world.get(rita, booked.path)
    rows, before_visits = world.bookings(dept), visits(world, staff)

    r = world.put(rita, booked.path, edited(before.text, set_times(local(day, 18), local(day, 19))))
    assert r.status_code == 403, (r.status_code, r.text)
    error = dav_error(r)
    assert error.find(f"{{{SH_NS}}}outside-opening") is not None, r.text
    assert OUTSIDE_OPENING in reason_text(error)
    after = world.get(rita, booked.path)
    assert (after.text, after.headers["ETag"]) == (before.text, before.headers["ETag"])
    assert world.bookings(dept) == rows
    assert visits(world, staff) == before_visits
    assert audit_of(world, dept)[-1] == ("move", "refused", ("outside-opening",), None)


# -- WebDAV MOVE ---------------------------------------------------------------------


def test_webdav_move_inside_the_bookings_calendar_keeps_the_booking(world: BookingWorld) -> None:
    dept, day = opened(world, staff=1)
    staff = dept.staff[0]
    rita = dept.recipient()
    booked = world.book(rita, dept, local(day, 10), local(day, 11))
    assert booked.confirmed
    [row] = world.bookings(dept)
    to_path = f"/{rita}/bookings-{dept.id}/renamed.ics"

    r = move(world, rita, booked.path, to_path)
    assert r.status_code in (201, 204), (r.status_code, r.text)
    assert world.get(rita, booked.path).status_code == 404
    moved = world.get(rita, to_path)
    assert moved.status_code == 200 and event_of(moved.text)["STATUS"] == "CONFIRMED"
    [after] = world.bookings(dept)
    assert (after["id"], after["booking_href"], after["staff"]) == (row["id"], "renamed.ics", staff)
    assert len(visits(world, staff)) == 1

    r = delete(world, rita, to_path)
    assert r.status_code in (200, 204), r.text
    assert world.bookings(dept) == []
    assert visits(world, staff) == []
    assert audit_of(world, dept)[-1] == ("cancel", "cancelled", (), staff)


def test_webdav_move_over_another_booking_is_refused_and_both_stay(world: BookingWorld) -> None:
    dept, day = opened(world, staff=2)
    rita = dept.recipient()
    first = world.book(rita, dept, local(day, 10), local(day, 11))
    second = world.book(rita, dept, local(day, 13), local(day, 14))
    assert first.confirmed and second.confirmed
    before = world.bookings(dept)
    r = world.session(rita).request("MOVE", world.server.url + first.path, headers={
        "Destination": world.server.url + second.path, "Overwrite": "T"})
    assert r.status_code == 409 and b"no-uid-conflict" in r.content, (r.status_code, r.text)
    assert world.bookings(dept) == before
    assert world.get(rita, first.path).text == first.text and world.get(rita, second.path).text == second.text


def test_webdav_move_to_another_calendar_is_refused(world: BookingWorld) -> None:
    east, day = opened(world, staff=1)
    west, _ = opened(world, staff=1)
    rita = f"r-both-{uuid.uuid4().hex[:6]}"
    world.add_person(rita, "Rita Both", [(east.id, "recipient", None), (west.id, "recipient", None)],
                     address="Gate 1, Larvik")
    booked = world.book(rita, east, local(day, 10), local(day, 11))
    assert booked.confirmed
    rows, before = world.bookings(east), world.get(rita, booked.path)
    to_path = f"/{rita}/bookings-{west.id}/{booked.path.rsplit('/', 1)[1]}"

    r = move(world, rita, booked.path, to_path)
    assert r.status_code == 403, (r.status_code, r.text)
    error = dav_error(r)
    assert error.find(f"{{{SH_NS}}}booking-move") is not None, r.text
    assert "change its times instead" in reason_text(error)
    assert world.get(rita, to_path).status_code == 404
    assert world.get(rita, booked.path).text == before.text
    assert world.bookings(east) == rows and world.bookings(west) == []
    assert len(visits(world, east.staff[0])) == 1 and visits(world, west.staff[0]) == []


# -- the audit command ---------------------------------------------------------------


def test_audit_command_prints_decisions_without_event_text(world: BookingWorld) -> None:
    dept, day = opened(world, staff=1)
    staff = dept.staff[0]
    rita = dept.recipient(name="Zelda Quixote")
    secret_summary, secret_notes = "Zebra-grooming", "Key under the blue flowerpot"
    booked = world.book(rita, dept, local(day, 10), local(day, 11), summary=secret_summary,
                        description=secret_notes)
    assert booked.confirmed, booked.text
    refused = world.book(rita, dept, local(day, 18), local(day, 19), summary=secret_summary,
                         description=secret_notes)
    assert refused.status == "CANCELLED"
    assert delete(world, rita, booked.path).status_code in (200, 204)

    for args in ((), ("--since", days_ahead(0).isoformat())):
        result = world.audit_command(dept, *args)
        assert result.returncode == 0, result.stderr
        header, *lines = result.stdout.strip().splitlines()
        assert header.split() == ["time", "recipient", "interval", "action", "outcome", "reasons", "staff"]
        fields = [line.split("  ") for line in lines]
        assert [f[1:] for f in fields] == [
            [rita, f"{day.isoformat()} 10:00-11:00", "book", "accepted", "-", staff],
            [rita, f"{day.isoformat()} 18:00-19:00", "book", "refused", "outside-opening", "-"],
            [rita, f"{day.isoformat()} 10:00-11:00", "cancel", "cancelled", "-", staff],
        ], result.stdout
        for secret in (secret_summary, secret_notes, "Zelda", "Quixote", "Larvik", "+47"):
            assert secret not in result.stdout + result.stderr, secret
    future = world.audit_command(dept, "--since", (day + timedelta(days=30)).isoformat())
    assert future.returncode == 0 and future.stdout.strip().splitlines()[1:] == []


# -- bad input -----------------------------------------------------------------------


def _annotated(sentence: str) -> dict[str, Any]:
    return {"status": 201, "sentence": sentence}


def _answered(status: int, caldav_precondition: str, why: str) -> dict[str, Any]:
    """Refused by HTTP status with a DAV:error body: the precondition and a
    reason that contains ``why``; nothing stored."""
    return {"status": status, "precondition": f"{{{CALDAV_NS}}}{caldav_precondition}", "why": why}


BAD_INPUT: dict[str, dict[str, Any]] = {
    "all-day": _annotated("A visit needs a time of day; all-day events cannot be booked."),
    "recurring": _annotated("Recurring visits cannot be booked; book each visit on its own."),
    "end-before-start": _annotated("The visit ends before it starts."),
    "zero-length": _annotated("The visit ends when it starts."),
    "uid-taken": _annotated("This event's UID belongs to another booking; create a new event."),
    "notes-too-long": _annotated("The description is too long (at most 4000 characters)."),
    # Radicale's own item check (radicale/item/filter.py visit_time_ranges)
    # refuses a VEVENT without DTSTART before the storage sees it: the
    # booking reason "no-time" is never reached; servicehop's app explains the 400.
    "no-dtstart": _answered(400, "valid-calendar-data", "DTSTART"),
    "vtodo": _answered(403, "supported-calendar-component", "VTODO"),
    "too-big": _answered(403, "max-resource-size", "1000000"),
    "garbage": _answered(400, "valid-calendar-data", "cannot be read"),
}
LONG_NOTES = " ".join(f"note-{i:04d}" for i in range(500))[:5000]


def _bad_body(case: str, uid: str, day: date, taken_uid: str) -> str:
    start, end = local(day, 12), local(day, 13)
    bodies: dict[str, Callable[[], str]] = {
        "all-day": lambda: ics_event(uid, day, day + timedelta(days=1)),
        "recurring": lambda: ics_event(uid, start, end, rrule="FREQ=DAILY;COUNT=3"),
        "end-before-start": lambda: ics_event(uid, end, start),
        "zero-length": lambda: ics_event(uid, start, start),
        "uid-taken": lambda: ics_event(taken_uid, start, end),
        "notes-too-long": lambda: ics_event(uid, start, end, description=LONG_NOTES),
        "no-dtstart": lambda: ics_event(uid, None, end),
        "vtodo": lambda: ics_event(uid, start, end).replace("VEVENT", "VTODO"),
        "too-big": lambda: ics_event(uid, start, end, description="x" * (MAX_RESOURCE_SIZE + 10_000)),
        "garbage": lambda: "this is not a calendar\r\nat all\r\n",
    }
    return bodies[case]()


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_refused_with_its_reason_and_never_half_stored(world: BookingWorld, case: str) -> None:
    expected = BAD_INPUT[case]
    dept, day = opened(world, staff=1)
    staff = dept.staff[0]
    owner, rita = dept.recipient(), dept.recipient()
    taken = world.book(owner, dept, local(day, 10), local(day, 11))
    assert taken.confirmed
    taken_uid = str(taken.event["UID"])
    rows, owner_visits, entries = world.bookings(dept), visits(world, staff), audit_of(world, dept)
    uid = taken_uid if case == "uid-taken" else uid_()
    path = f"/{rita}/bookings-{dept.id}/{uid}.ics"
    body = _bad_body(case, uid, day, taken_uid)
    if case == "too-big":
        assert len(body.encode()) > MAX_RESOURCE_SIZE

    r = world.put(rita, path, body)
    assert r.status_code == expected["status"], (r.status_code, r.text[:500])
    # Nothing half stored: no row, no visit, the other booking untouched.
    assert world.bookings(dept) == rows
    assert visits(world, staff) == owner_visits
    assert world.get(owner, taken.path).text == taken.text
    got = world.get(rita, path)

    if "sentence" not in expected:
        assert got.status_code == 404, got.text[:300]
        assert audit_of(world, dept) == entries
        error = dav_error(r)
        assert error.find(expected["precondition"]) is not None, r.text
        assert expected["why"] in reason_text(error), r.text
        return

    assert "ETag" not in r.headers
    assert got.status_code == 200
    event = event_of(got.text)
    assert str(event["STATUS"]) == "CANCELLED", got.text[:2000]
    assert str(event["SUMMARY"]).startswith(NOT_BOOKED), event["SUMMARY"]
    description = str(event["DESCRIPTION"])
    assert description.startswith(expected["sentence"] + "\n"), description[:500]
    if case == "notes-too-long":
        assert notes_of(description) == LONG_NOTES, "the recipient's notes must be kept in full"
    new = audit_of(world, dept)[len(entries):]
    assert [(a, o, reasons) for a, o, reasons, _ in new] == [("book", "refused", (case,))]


def test_a_uid_held_elsewhere_but_by_no_other_recipient_here_is_booked(world: BookingWorld) -> None:
    """Only another recipient's booking in the same department takes a UID.
    A UID found in another calendar (an opening event, a booking in another
    department) is asked about in full, and the booking goes ahead."""
    dept, day = opened(world, staff=2)
    other, _ = opened(world, staff=1)
    rita, sam = dept.recipient(), other.recipient()
    opening_uid = dept.open(local(day, 15), local(day, 16), rrule=None, staff=dept.staff)
    in_other = world.book(sam, other, local(day, 10), local(day, 11))
    assert in_other.confirmed
    for uid, hour in ((opening_uid, 9), (str(in_other.event["UID"]), 11)):
        booked = world.book(rita, dept, local(day, hour), local(day, hour + 1), uid=uid)
        assert booked.confirmed, (uid, booked.text)
    # ... while the department's own other recipient's UID stays taken.
    taken = world.book(dept.recipient(), dept, local(day, 13), local(day, 14), uid=opening_uid)
    assert not taken.confirmed and "UID belongs to another booking" in taken.description


EDGE_TIMES = {
    # Floating times are in Europe/Oslo (+00:43 in year 1): UTC is before year 1.
    "year-1-floating": ("00010101T100000", "00010101T110000"),
    "year-1-utc": ("00010102T100000Z", "00010102T110000Z"),
    "year-9999-utc": ("99991231T100000Z", "99991231T110000Z"),
}


@pytest.mark.parametrize("case", list(EDGE_TIMES))
def test_times_at_the_ends_of_the_calendar_are_refused_not_a_server_error(
    world: BookingWorld, case: str
) -> None:
    """Radicale accepts these events; the booking desk must refuse them
    (annotated, or 4xx), never fail with 5xx (DAVx5 stops syncing on 5xx)."""
    dept, day = opened(world, staff=1)
    rita = dept.recipient()
    start, end = EDGE_TIMES[case]
    uid = uid_()
    body = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//servicehop tests//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:{start}\r\nDTEND:{end}\r\nSUMMARY:Visit\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    path = f"/{rita}/bookings-{dept.id}/{uid}.ics"
    r = world.put(rita, path, body)
    errors = list(SERVER_ERRORS)
    SERVER_ERRORS.clear()  # reported here, not again by the autouse check
    assert r.status_code < 500 and errors == [], (r.status_code, r.text[:300])
    assert world.bookings(dept) == []
    assert visits(world, dept.staff[0]) == []
    got = world.get(rita, path)
    if r.status_code in (201, 204):
        event = event_of(got.text)
        assert str(event["STATUS"]) == "CANCELLED" and str(event["SUMMARY"]).startswith(NOT_BOOKED), got.text
        [entry] = audit_of(world, dept)
        assert entry[:2] == ("book", "refused") and entry[2], entry
    else:
        assert 400 <= r.status_code < 500 and got.status_code == 404
    assert world.book(rita, dept, local(day, 10), local(day, 11)).confirmed, "the desk keeps serving"
