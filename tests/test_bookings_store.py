"""Booking rows and the audit log in the database, and the `audit` command."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import event, inspect

from servicehop_caldav.directory import store as directory
from servicehop_caldav.instance import Instance
from servicehop_caldav.store import audit, bookings
from servicehop_caldav.store import collections as store_collections
from servicehop_caldav.store.bookings import BookingRow

T0 = int(datetime(2026, 12, 1, 9, tzinfo=UTC).timestamp())  # 10:00 in Oslo
HOUR = 3600


@pytest.fixture
def people(instance_home: Path) -> dict[str, int]:
    """Department `hjem`, recipient rita, staff sam; rita's bookings calendar id."""
    with Instance(instance_home).open() as (db, keyring), db.transaction("w") as conn:
        directory.add_department(conn, "hjem", "Hjemmetjenesten")
        rita = directory.add_user(conn, keyring, "rita", "pw", "Rita Hansen", "rita@example.org",
                                  address="Storgata 1")
        sam = directory.add_user(conn, keyring, "sam", "pw", "Sam Berg", "sam@example.org")
        calendar = store_collections.create_instance(conn, "rita/bookings-hjem", {"tag": "VCALENDAR"})
        return {"rita": rita, "sam": sam, "calendar": calendar.calendar_id}


def booking(people: dict[str, int], id_: str, start: int, hours: int = 1, **kw: object) -> BookingRow:
    values: dict[str, object] = dict(
        id=id_, department_id="hjem", recipient_id=people["rita"], staff_id=people["sam"],
        start_ts=start, end_ts=start + hours * HOUR, status="confirmed",
        booking_calendar_id=people["calendar"], booking_href=f"{id_}.ics",
    )
    values.update(kw)
    return BookingRow(**values)  # type: ignore[arg-type]


def test_bookings_are_found_by_event_and_by_time(instance_home: Path, people: dict[str, int]) -> None:
    with Instance(instance_home).open() as (db, _), db.transaction("w") as conn:
        for n in range(4):
            bookings.insert_booking(conn, booking(people, f"b{n}", T0 + n * 2 * HOUR))
        bookings.insert_booking(conn, booking(people, "w", T0, status="waiting",
                                              booking_href="w.ics"))
        found = bookings.bookings_between(conn, "hjem", T0 + HOUR, T0 + 5 * HOUR)
        assert [b.id for b in found] == ["b1", "b2"]  # b0 ends as the range starts
        assert [b.id for b in bookings.bookings_between(conn, "hjem", T0, T0 + 1)] == ["b0", "w"]
        assert [b.id for b in bookings.bookings_between(conn, "hjem", T0, T0 + 1,
                                                        status="confirmed")] == ["b0"]
        assert bookings.bookings_between(conn, "other", T0, T0 + 10 * HOUR) == []
        row = bookings.booking_for_event(conn, people["calendar"], "b2.ics")
        assert row is not None and row.start == datetime(2026, 12, 1, 13, tzinfo=UTC)
        bookings.save_booking(conn, bookings.moved(row, T0 + 20 * HOUR, T0 + 21 * HOUR, None))
        again = bookings.booking_for_event(conn, people["calendar"], "b2.ics")
        assert again is not None and (again.start_ts, again.staff_id) == (T0 + 20 * HOUR, None)
        assert bookings.delete_booking(conn, "b2") and not bookings.delete_booking(conn, "b2")
        with pytest.raises(LookupError):
            bookings.save_booking(conn, row)
        with pytest.raises(ValueError, match="status"):
            bookings.insert_booking(conn, booking(people, "x", T0, status="maybe"))


def test_a_decisions_read_finds_the_longest_bookings_at_its_edges(
    instance_home: Path, people: dict[str, int]
) -> None:
    """confirmed_spans bounds each span's start from below by the longest
    booking there can be (24 h), so that it reads the bookings near a span
    rather than all before it: a 24-hour booking ending one second into a
    span is still found, one ending as the span starts is not; the same for
    the recipient's own span."""
    day = 24 * HOUR
    with Instance(instance_home).open() as (db, _), db.transaction("w") as conn:
        bookings.insert_booking(conn, booking(people, "reaches", T0 - day + 1, hours=24))
        bookings.insert_booking(conn, booking(people, "ends-at-start", T0 - day, hours=24,
                                              booking_href="e.ics"))
        bookings.insert_booking(conn, booking(people, "inside", T0 + HOUR, booking_href="i.ics"))
        found = bookings.confirmed_spans(conn, "hjem", [(T0, T0 + 2 * HOUR)])
        assert [s.id for s in found] == ["reaches", "inside"]
        found = bookings.confirmed_spans(conn, "hjem", [(T0 - 3 * day, T0 - 2 * day), (T0, T0 + 1)])
        assert [s.id for s in found] == ["reaches"]
        own = bookings.confirmed_spans(conn, "hjem", [], people["rita"], (T0 - 1, T0 + 2 * HOUR))
        assert [s.id for s in own] == ["ends-at-start", "reaches", "inside"]
        own = bookings.confirmed_spans(conn, "hjem", [], people["rita"], (T0, T0 + 2 * HOUR))
        assert [s.id for s in own] == ["reaches", "inside"]


def test_the_booking_of_an_event_follows_its_writes_within_a_transaction(
    instance_home: Path, people: dict[str, int]
) -> None:
    """booking_for_event is read once per transaction and remembered (a
    write's path lookup reads it too); every write of a row forgets it."""
    calendar = people["calendar"]
    with Instance(instance_home).open() as (db, _), db.transaction("w") as conn:
        assert bookings.booking_for_event(conn, calendar, "b.ics") is None
        bookings.insert_booking(conn, booking(people, "b", T0, booking_href="b.ics"))
        row = bookings.booking_for_event(conn, calendar, "b.ics")
        assert row is not None and row.start_ts == T0
        bookings.save_booking(conn, bookings.moved(row, T0 + HOUR, T0 + 2 * HOUR, None))
        moved = bookings.booking_for_event(conn, calendar, "b.ics")
        assert moved is not None and (moved.start_ts, moved.staff_id) == (T0 + HOUR, None)
        bookings.delete_booking(conn, "b")
        assert bookings.booking_for_event(conn, calendar, "b.ics") is None
        entry = audit.AuditEntry("hjem", "book", "accepted", people["rita"], T0, T0 + HOUR)
        audit.record(conn, entry, booking(people, "c", T0, booking_href="b.ics"))
        again = bookings.booking_for_event(conn, calendar, "b.ics")
        assert again is not None and again.id == "c"


def test_one_booking_per_event_and_rows_go_with_their_calendar(
    instance_home: Path, people: dict[str, int]
) -> None:
    with Instance(instance_home).open() as (db, _):
        with db.transaction("w") as conn:
            bookings.insert_booking(conn, booking(people, "a", T0))
        with pytest.raises(Exception), db.transaction("w") as conn:  # noqa: B017 - driver's error
            bookings.insert_booking(conn, booking(people, "b", T0 + HOUR, booking_href="a.ics"))
        with db.transaction("w") as conn:
            store_collections.delete_instance_tree(conn, "rita")
            assert bookings.bookings_between(conn, "hjem", 0, 2**40) == []


def test_audit_holds_ids_and_codes_and_the_command_prints_them(
    instance_home: Path, people: dict[str, int]
) -> None:
    at = datetime(2026, 11, 30, 8, tzinfo=UTC).timestamp()
    with Instance(instance_home).open() as (db, _), db.transaction("w") as conn:
        audit.record(conn, audit.AuditEntry("hjem", "book", "accepted", people["rita"], T0,
                                            T0 + HOUR, (), people["sam"], at=at))
        audit.record(conn, audit.AuditEntry("hjem", "book", "refused", people["rita"], T0,
                                            T0 + HOUR, ("no-staff-free", "entitlement-exceeded"),
                                            at=at + 60))
        audit.record(conn, audit.AuditEntry("hjem", "cancel", "cancelled", people["rita"],
                                            at=datetime(2026, 12, 2, 8, tzinfo=UTC).timestamp()))
        with pytest.raises(ValueError, match="unknown audit"):
            audit.record(conn, audit.AuditEntry("hjem", "book", "maybe"))
        columns = {c["name"] for c in inspect(conn).get_columns("audit_log")}
    assert not columns & {"summary", "description", "location", "text", "data"}

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "servicehop_caldav.cli", "audit", "--home", str(instance_home),
             "--department", *extra], capture_output=True, text=True, timeout=60)

    result = run("hjem")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()[1:]
    assert lines == [
        "2026-11-30 09:00:00  rita  2026-12-01 10:00-11:00  book  accepted  -  sam",
        "2026-11-30 09:01:00  rita  2026-12-01 10:00-11:00  book  refused  "
        "no-staff-free,entitlement-exceeded  -",
        "2026-12-02 09:00:00  rita  -  cancel  cancelled  -  -",
    ]
    assert "Rita Hansen" not in result.stdout and "Storgata" not in result.stdout
    since = run("hjem", "--since", "2026-12-01")
    assert since.stdout.splitlines()[1:] == lines[2:]
    missing = run("nowhere")
    assert missing.returncode == 1 and "no department 'nowhere'" in missing.stderr
    bad = run("hjem", "--since", "tomorrow")
    assert bad.returncode == 1 and "YYYY-MM-DD" in bad.stderr


def test_a_new_booking_goes_in_with_its_audit_entry(instance_home: Path, people: dict[str, int]) -> None:
    """On PostgreSQL the booking row and its entry are one statement; on
    both backends both rows are there, or (a refused row) neither."""
    entry = audit.AuditEntry("hjem", "book", "accepted", people["rita"], T0, T0 + HOUR, (), people["sam"])
    with Instance(instance_home).open() as (db, _), db.transaction("w") as conn:
        seen: list[str] = []
        event.listen(conn, "before_cursor_execute", lambda *a: seen.append(a[2].split()[0]))
        audit.record(conn, entry, booking(people, "b1", T0))
        assert seen == (["WITH"] if db.backend == "postgresql" else ["INSERT", "INSERT"])
        assert bookings.booking_for_event(conn, people["calendar"], "b1.ics") is not None
        assert len(audit.entries(conn, "hjem")) == 1
        with pytest.raises(ValueError, match="ends after it starts"):
            audit.record(conn, entry, booking(people, "b2", T0, hours=0))
        assert len(audit.entries(conn, "hjem")) == 1
        assert bookings.booking_for_event(conn, people["calendar"], "b2.ics") is None


def test_the_staff_are_read_with_their_assignments_calendars(
    instance_home: Path, people: dict[str, int]
) -> None:
    """A booking writes the visit into the chosen one's assignments calendar:
    read with the staff, no lookup of its own; a missing one reads None."""
    with Instance(instance_home).open() as (db, keyring), db.transaction("w") as conn:
        directory.add_role(conn, people["sam"], "hjem", "staff")
        made = store_collections.create_instance(conn, "sam/assignments", {"tag": "VCALENDAR"})
        rut = directory.add_user(conn, keyring, "rut", "pw", "Rut Lie", "rut@example.org")
        directory.add_role(conn, rut, "hjem", "staff")
        seen: list[str] = []
        event.listen(conn, "before_cursor_execute", lambda *a: seen.append(a[2]))
        staff = directory.enabled_members(conn, keyring, "hjem", "staff", calendar="assignments")
        assert [(m.username, m.name) for m in staff] == [("rut", "Rut Lie"), ("sam", "Sam Berg")]
        assert len(seen) == 1
        found = store_collections.get_instance(conn, "sam/assignments")
        assert found is not None and found.calendar_id == made.calendar_id
        assert store_collections.get_instance(conn, "rut/assignments") is None
        assert len(seen) == 1  # both answered from the staff's statement
