"""What follows from a booking's state, written by whoever changed it.

The desk (a recipient's PUT or DELETE) and the re-decisions (an admin's
opening change, a cancellation that frees time for the waiting list, the
periodic upkeep) change bookings the same way: decide for a recipient,
write or remove the staff member's visit, rewrite the recipient's event,
the overview entry and the availability days, record it in the audit log.
This module holds those steps, so both paths write the same things.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta

from sqlalchemy import Connection

from servicehop_caldav import logs
from servicehop_caldav.booking import events
from servicehop_caldav.booking.events import BookingEvent, EventError
from servicehop_caldav.booking.model import Booking, Decision, Interval, Request, Rules, Window
from servicehop_caldav.booking.rules import decide
from servicehop_caldav.desk.department import (
    ASSIGNMENTS,
    DepartmentData,
    bookings_for_decision,
    opening_windows,
    read_for_decision,
    timestamp,
)
from servicehop_caldav.desk.views import MakeObject, ViewKeeper, put_if_changed, shaped
from servicehop_caldav.directory import store as directory
from servicehop_caldav.directory.store import Person, Role
from servicehop_caldav.provisioning import provision_in
from servicehop_caldav.store import audit, codec
from servicehop_caldav.store import collections as store_collections
from servicehop_caldav.store import objects as store_objects
from servicehop_caldav.store.bookings import BookingRow

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipient:
    """Whom a booking serves: their id, username and (decrypted) details."""

    id: int
    username: str
    person: Person | None

    @property
    def name(self) -> str:
        return self.person.name if self.person is not None and self.person.name else self.username


def recipient(conn: Connection, recipient_id: int, username: str | None = None) -> Recipient:
    username = username or directory.username_of(conn, recipient_id) or f"#{recipient_id}"
    keyring = codec.keyring_of(conn)
    person = directory.get_person(conn, keyring, username) if keyring else None
    return Recipient(recipient_id, username, person)


def recipient_named(conn: Connection, username: str) -> Recipient | None:
    """The user ``username`` as a recipient (None: no such user), their roles
    read with them."""
    keyring = codec.keyring_of(conn)
    if keyring is None:
        user_id = directory.user_id_of(conn, username)
        return Recipient(user_id, username, None) if user_id is not None else None
    person = directory.get_person(conn, keyring, username)
    return Recipient(person.id, username, person) if person is not None else None


def weekly_minutes(conn: Connection, data: DepartmentData, recipient_id: int) -> int | None:
    """The recipient's weekly entitlement in this department (None: unlimited)."""
    return entitlement(data, directory.roles_of(conn, recipient_id))


def entitlement(data: DepartmentData, roles: Sequence[Role]) -> int | None:
    """The weekly entitlement ``roles`` give in this department (None: unlimited)."""
    role = next((r for r in roles if r.department_id == data.department.id and r.role == "recipient"), None)
    return role.weekly_minutes if role is not None else None


@dataclass(frozen=True)
class Considered:
    """A decision, and when its first pass settled it, what that pass read:
    every opening window and every confirmed booking of the department
    overlapping ``cover`` (plus the recipient's own further out)."""

    decision: Decision
    windows: Sequence[Window] = ()
    bookings: Sequence[Booking] = ()
    cover: tuple[datetime, datetime] | None = None


def consider(
    conn: Connection,
    data: DepartmentData,
    now: datetime,
    recipient_id: int,
    interval: Interval,
    *,
    weekly: int | None,
    replaces: str | None = None,
    rules: Rules | None = None,
    max_alternatives: int = 3,
) -> Considered:
    """The rules' decision on ``interval`` for the recipient, with what they
    need read from the database.

    First with only what an acceptance depends on: the windows around the
    interval, the department's bookings of its local day (who is busy then,
    each employee's load that day; two travel buffers beyond it, which the
    caller's availability check needs) and the recipient's own visits
    (overlap, entitlement, continuity). Accepted, that is the decision: the
    rules read nothing else to accept and choose. Refused, it is decided
    again with the whole horizon, which the nearby free times need."""
    rules = rules or data.rules
    request = Request(str(recipient_id), interval, "", replaces)
    reach = rules.max_duration + rules.travel_buffer + timedelta(days=1)
    horizon_end = now + data.rules.horizon + reach
    own = (min(now - timedelta(days=rules.continuity_days + 1), interval.start - timedelta(days=8)),
           max(horizon_end, interval.end + reach))
    day_start = datetime.combine(interval.start.astimezone(data.timezone).date(), time(0), data.timezone)
    buffers = 2 * max(rules.travel_buffer, timedelta(0))
    near = (min(day_start, interval.start - buffers) - timedelta(seconds=1),
            max(day_start + timedelta(days=1), interval.end + buffers) + timedelta(seconds=1))
    # The whole local day at least: the same windows the day's availability reads.
    read_for_decision(conn, data, near, recipient_id, own)
    windows = opening_windows(conn, data, *near)
    bookings = bookings_for_decision(conn, data, [near], recipient_id, own)
    quick = decide(request, now=now, rules=rules, windows=windows, bookings=bookings,
                   weekly_minutes=weekly, max_alternatives=0)
    if quick.accepted or max_alternatives <= 0:
        return Considered(quick, windows, bookings, near)
    spans = [(now - timedelta(days=1), horizon_end)]
    if not (interval.start < horizon_end and interval.end > now - timedelta(days=1)):
        spans.append((interval.start - reach, interval.end + reach))
    return Considered(decide(
        request,
        now=now,
        rules=rules,
        windows=[w for start, end in spans for w in opening_windows(conn, data, start, end)],
        bookings=bookings_for_decision(conn, data, spans, recipient_id, own),
        weekly_minutes=weekly,
        max_alternatives=max_alternatives,
    ))


def read_event(conn: Connection, data: DepartmentData, row: BookingRow) -> tuple[str, BookingEvent] | None:
    """The recipient's stored event of a booking (text, and as read)."""
    stored = store_objects.get_object(conn, row.booking_calendar_id, row.booking_href)
    if stored is None:
        return None
    try:
        event = events.read_booking(stored.text, timezone=data.timezone, settings=data.settings)
    except EventError:
        return None
    if not isinstance(event, BookingEvent):
        return None
    return stored.text, event


def remove_assignment(conn: Connection, row: BookingRow) -> BookingRow:
    if row.assignment_calendar_id is not None and row.assignment_href is not None:
        store_objects.delete_object(conn, row.assignment_calendar_id, row.assignment_href)
    return replace(row, assignment_calendar_id=None, assignment_href=None)


def write_assignment(
    conn: Connection,
    data: DepartmentData,
    now: datetime,
    row: BookingRow,
    event: BookingEvent,
    who: Recipient,
    make_object: MakeObject,
) -> BookingRow:
    """Write (or rewrite) the visit in the staff member's ``assignments/``;
    the row returned says where it is."""
    staff = data.staff.get(row.staff_id) if row.staff_id is not None else None
    if staff is None:
        return row
    calendar_id, href = row.assignment_calendar_id, row.assignment_href
    if calendar_id is None or href is None:
        path = f"{staff.username}/{ASSIGNMENTS}"
        instance = store_collections.get_instance(conn, path)
        if instance is None:
            provision_in(conn, staff.username)
            instance = store_collections.get_instance(conn, path)
        if instance is None:
            raise RuntimeError(f"staff member {staff.id} has no assignments calendar")
        calendar_id, href = instance.calendar_id, f"{uuid.uuid4()}.ics"
        store_objects.remember_absent(conn, calendar_id, href)
    person = who.person
    text = events.assignment_text(
        booking_uid=event.uid,
        assignment_uid=href.removesuffix(".ics"),
        interval=event.interval,
        service_name=event.service.name,
        recipient_name=who.name,
        address=person.address if person is not None else None,
        phone=person.phone if person is not None else None,
        notes=event.notes,
        language=data.department.language,
        stamp=now,
    )
    like = shaped(href.removesuffix(".ics"), event.interval.start, event.interval.end)
    put_if_changed(conn, calendar_id, href, text, make_object(text, like))
    return replace(row, assignment_calendar_id=calendar_id, assignment_href=href)


def staff_name(data: DepartmentData, staff_id: int | None) -> str:
    person = data.staff.get(staff_id) if staff_id is not None else None
    return person.name if person is not None else ""


def shown_staff(data: DepartmentData, staff_id: int | None) -> str | None:
    """The staff name the recipient's event shows (None: the department hides names)."""
    name = staff_name(data, staff_id)
    return name if data.settings.show_staff_names and name else None


def record(
    keeper: ViewKeeper, row: BookingRow, action: str, outcome: str, staff_id: int | None,
    reasons: tuple[str, ...] = (),
) -> None:
    """Record a decision taken without a request of the recipient's in the
    audit log, and log it (ids only) when it commits."""
    entry = audit.AuditEntry(
        keeper.data.department.id, action, outcome, row.recipient_id, row.start_ts, row.end_ts,
        reasons, staff_id, at=keeper.now.timestamp(),
    )
    audit.record(keeper.conn, entry)
    logs.decision(keeper.conn, row.id, entry)


def rewrite_event(conn: Connection, row: BookingRow, text: str, make_object: MakeObject) -> None:
    """The server writes the recipient's event (a decision taken without
    their request): their client fetches it at the next sync."""
    current = store_objects.get_object(conn, row.booking_calendar_id, row.booking_href)
    if current is None or events.normalised(current.text) != text:
        # ``text`` restates the stored event: same UID and times.
        store_objects.put_object(conn, row.booking_calendar_id, row.booking_href, make_object(text, current),
                                 replacing=current is not None)




def times(interval: Interval) -> tuple[int, int]:
    return timestamp(interval.start), timestamp(interval.end)


def new_row(data: DepartmentData, recipient_id: int, interval: Interval, staff_id: int | None,
            status: str, calendar_id: int, href: str) -> BookingRow:
    start, end = times(interval)
    return BookingRow(
        id=str(uuid.uuid4()), department_id=data.department.id, recipient_id=recipient_id,
        staff_id=staff_id, start_ts=start, end_ts=end, status=status,
        booking_calendar_id=calendar_id, booking_href=href,
    )
