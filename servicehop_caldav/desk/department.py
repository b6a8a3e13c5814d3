"""One department as the booking rules see it, read inside the write transaction.

Turns rows into the plain values of :mod:`servicehop_caldav.booking.model`:
staff as usernames, recipients as their user id (a string), bookings with
the username of their staff member, opening windows from the department's
opening calendar. Only staff rows are decrypted (their e-mail addresses
match ATTENDEEs); recipients stay ids.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from servicehop_caldav.booking.config import DepartmentSettings
from servicehop_caldav.booking.model import Booking, Interval, Rules, Window
from servicehop_caldav.booking.opening import expand_windows
from servicehop_caldav.crypto import Keyring
from servicehop_caldav.directory import store as directory
from servicehop_caldav.directory.store import Department, Member
from servicehop_caldav.store import bookings as store_bookings
from servicehop_caldav.store import objects as store_objects
from servicehop_caldav.store.bookings import Span

# Opening objects are found by their stored occurrence range, which Radicale
# computes reading floating times as UTC; this margin covers every offset.
_MARGIN = timedelta(days=1)


@dataclass(frozen=True)
class DepartmentData:
    department: Department
    settings: DepartmentSettings
    staff: dict[int, Member]  # enabled staff, by user id

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.department.timezone)

    @property
    def rules(self) -> Rules:
        return self.settings.rules(self.timezone)

    def staff_username(self, staff_id: int | None) -> str:
        """The username the rules know a staff member by; someone no longer
        on the staff keeps a placeholder, so their visits still count."""
        person = self.staff.get(staff_id) if staff_id is not None else None
        return person.username if person is not None else f"#{staff_id}"

    def staff_by_username(self, username: str) -> Member | None:
        return next((p for p in self.staff.values() if p.username == username), None)


def load_department(
    conn: Connection, keyring: Keyring, department_id: str, settings: DepartmentSettings
) -> DepartmentData | None:
    department = directory.get_department(conn, department_id)
    if department is None:
        return None
    staff = directory.enabled_members(conn, keyring, department_id, "staff")
    return DepartmentData(department, settings, {p.id: p for p in staff})


def opening_windows(conn: Connection, data: DepartmentData, start: datetime, end: datetime) -> list[Window]:
    """The department's opening windows overlapping [start, end)."""
    calendar_id = data.department.opening_calendar_id
    if calendar_id is None:
        return []
    first, last = start - _MARGIN, end + _MARGIN
    texts = [
        obj.text
        for obj in store_objects.objects_in_range(
            conn, calendar_id, "VEVENT", int(first.timestamp()), int(last.timestamp())
        )
    ]
    if not texts:
        return []
    staff = tuple(sorted((p.email, p.username) for p in data.staff.values()))
    return list(_expanded(tuple(texts), data.department.timezone, start, end, staff))


@functools.lru_cache(maxsize=512)
def _expanded(
    texts: tuple[str, ...], timezone: str, start: datetime, end: datetime, staff: tuple[tuple[str, str], ...]
) -> tuple[Window, ...]:
    """Expansion is a pure function of these: a booking decision and the
    availability of its day ask for the same day's windows, and so do the
    next requests until the opening calendar or the staff change."""
    return tuple(expand_windows(
        texts,
        timezone=ZoneInfo(timezone),
        start=start,
        end=end,
        staff_by_email=dict(staff),
        all_staff=frozenset(username for _email, username in staff),
    ))


def as_booking(data: DepartmentData, row: Span) -> Booking:
    return Booking(
        id=row.id,
        recipient=str(row.recipient_id),
        staff=data.staff_username(row.staff_id),
        interval=Interval(datetime.fromtimestamp(row.start_ts, UTC), datetime.fromtimestamp(row.end_ts, UTC)),
    )


def bookings_for_decision(
    conn: Connection,
    data: DepartmentData,
    spans: list[tuple[datetime, datetime]],
    recipient_id: int,
    own_span: tuple[datetime, datetime],
) -> list[Booking]:
    """What the rules need to decide for ``recipient_id``: the department's
    confirmed bookings overlapping ``spans`` (who is busy, each employee's
    load) and the recipient's own overlapping ``own_span`` (overlap, weekly
    entitlement, continuity). Other recipients' past visits are not read."""
    rows = store_bookings.confirmed_spans(
        conn, data.department.id, [(timestamp(a), timestamp(b) + 1) for a, b in spans],
        recipient_id, (timestamp(own_span[0]), timestamp(own_span[1]) + 1),
    )
    return [as_booking(data, row) for row in rows]


def timestamp(moment: datetime) -> int:
    return int(moment.astimezone(UTC).timestamp())
