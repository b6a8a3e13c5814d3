"""One department as the booking rules see it, read inside the write transaction.

Turns rows into the plain values of :mod:`servicehop_caldav.booking.model`:
staff as usernames, recipients as their user id (a string), bookings with
the username of their staff member, opening windows from the department's
opening calendar. Only staff rows are decrypted (their e-mail addresses
match ATTENDEEs); recipients stay ids.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from servicehop_caldav.booking.config import DepartmentSettings
from servicehop_caldav.booking.model import Booking, Interval, Rules, Window
from servicehop_caldav.booking.opening import expand_windows
from servicehop_caldav.crypto import Keyring
from servicehop_caldav.directory import store as directory
from servicehop_caldav.directory.store import Department, Member
from servicehop_caldav.store import bookings as store_bookings
from servicehop_caldav.store import decision_ahead
from servicehop_caldav.store import objects as store_objects
from servicehop_caldav.store.bookings import Span

# Opening objects are found by their stored occurrence range, which Radicale
# computes reading floating times as UTC; this margin covers every offset.
OCCURRENCE_MARGIN = timedelta(days=1)

V = TypeVar("V")


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


# Each staff member's calendar of visits, read with the staff (a booking
# writes the visit into the chosen one's).
ASSIGNMENTS = directory.STAFF_CALENDAR


def load_department(
    conn: Connection, keyring: Keyring, department_id: str, settings: DepartmentSettings
) -> DepartmentData | None:
    department = directory.get_department(conn, department_id)
    if department is None:
        return None
    staff = directory.enabled_members(
        conn, keyring, department_id, directory.STAFF_ROLE, calendar=ASSIGNMENTS)
    return DepartmentData(department, settings, {p.id: p for p in staff})


_BLOCK = 8 * 86400
"""Opening objects are expanded in blocks of this many seconds, aligned on
the epoch, so that requests for different spans share the expansions."""


def opening_windows(conn: Connection, data: DepartmentData, start: datetime, end: datetime) -> list[Window]:
    """The department's opening windows overlapping [start, end).

    Each opening object's windows are kept per (etag, block, zone, staff):
    decisions and availability days ask for overlapping spans again and
    again, and an edit of one opening object leaves the others' expansions
    valid. Only objects with a block not yet expanded are read and decrypted."""
    calendar_id = data.department.opening_calendar_id
    if calendar_id is None:
        return []
    found = store_objects.etags_in_range(conn, calendar_id, _OPENING_COMPONENT, *_opening_range(start, end))
    if not found:
        return []
    staff = tuple(sorted((p.email, p.username) for p in data.staff.values()))
    zone = data.department.timezone
    blocks = range(int(start.timestamp()) // _BLOCK, (int(end.timestamp()) - 1) // _BLOCK + 1)
    wanted = {(href, block): (etag, block, zone, staff) for href, etag in found for block in blocks}
    expansions = {part: _EXPANDED.get(key) for part, key in wanted.items()}
    missing = sorted({href for (href, _block), windows in expansions.items() if windows is None})
    if missing:
        objects = store_objects.get_objects(conn, calendar_id, missing)
        texts = {href: obj.text for href, obj in objects.items()}
        for (href, block), part in list(expansions.items()):
            if part is None and href in texts:
                expansions[(href, block)] = _EXPANDED.put(wanted[(href, block)], tuple(expand_windows(
                    [texts[href]],
                    timezone=data.timezone,
                    start=datetime.fromtimestamp(block * _BLOCK, UTC),
                    end=datetime.fromtimestamp((block + 1) * _BLOCK, UTC),
                    staff_by_email=dict(staff),
                    all_staff=frozenset(username for _email, username in staff),
                )))
    span = Interval(start, end)
    windows = {w for part in expansions.values() if part for w in part if w.interval.overlaps(span)}
    return sorted(windows, key=lambda w: (w.interval.start, w.interval.end, sorted(w.staff)))


class _Recent(Generic[V]):
    """A small thread-safe LRU of values made from what they are kept by."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: Hashable, value: V) -> V:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value


_EXPANDED: _Recent[tuple[Window, ...]] = _Recent(8192)


def as_booking(data: DepartmentData, row: Span) -> Booking:
    return _booking(row, data.staff_username(row.staff_id))


@functools.lru_cache(maxsize=4096)
def _booking(row: Span, staff: str) -> Booking:
    """A booking as the rules see it, by its row and staff username, kept:
    every decision reads the same day's bookings (150 at 2,000 in the
    horizon) and made each one's two datetimes again. A row changed is
    another key. functools' cache is kept in C: with a lock and an ordered
    dict of our own, a decision's 150 rows took 0.23 ms to turn, now 0.12."""
    return Booking(
        id=row.id,
        recipient=str(row.recipient_id),
        staff=staff,
        interval=Interval.of_timestamps(row.start_ts, row.end_ts),
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
        conn, data.department.id, _booking_spans(spans), recipient_id, _booking_span(own_span),
    )
    return [as_booking(data, row) for row in rows]


def read_for_decision(
    conn: Connection,
    data: DepartmentData,
    span: tuple[datetime, datetime],
    recipient_id: int,
    own_span: tuple[datetime, datetime],
) -> None:
    """Read in one statement (store.decision_ahead) what
    ``opening_windows(conn, data, *span)`` and
    ``bookings_for_decision(conn, data, [span], recipient_id, own_span)``
    will read; they then read nothing."""
    calendar_id = data.department.opening_calendar_id
    if calendar_id is None:
        return
    decision_ahead.read(conn, calendar_id, _OPENING_COMPONENT, *_opening_range(*span), data.department.id,
                        _booking_spans([span]), recipient_id, _booking_span(own_span))


_OPENING_COMPONENT = "VEVENT"


def _opening_range(start: datetime, end: datetime) -> tuple[int, int]:
    """The POSIX seconds of opening objects to read for windows in [start, end)."""
    return int((start - OCCURRENCE_MARGIN).timestamp()), int((end + OCCURRENCE_MARGIN).timestamp())


def _booking_spans(spans: list[tuple[datetime, datetime]]) -> list[tuple[int, int]]:
    return [_booking_span(span) for span in spans]


def _booking_span(span: tuple[datetime, datetime]) -> tuple[int, int]:
    return timestamp(span[0]), timestamp(span[1]) + 1


def timestamp(moment: datetime) -> int:
    return int(moment.astimezone(UTC).timestamp())
