"""Keeps a department's computed calendars current, inside the write transaction.

``availability-D`` holds, for each local day from today to the last day of
the horizon, the opening windows split into anonymous "Free" and "Busy"
events (:mod:`servicehop_caldav.booking.availability`). An event's href is
a hash of what it says (free or busy, its times, and for busy time the ids
of the bookings overlapping it), so an unchanged interval keeps its href
and etag and sync-collection reports only what a change touched. Only the
days a change can reach are computed again, and only hrefs are compared:
nothing is decrypted.

A recipient does not see "Busy" over their own bookings: the storage plugin
leaves out, for them, the busy events lying inside one of their confirmed
bookings (:func:`hidden_for`). Busy events are split where a booking starts
or ends and name its id in their hash, so any change to a recipient's own
booking changes the hrefs around it: what is hidden from them and what is
not moves through the same change log as everything else.

``overview-D`` holds one event per booking of the department (confirmed,
waiting or flagged) with recipient, service and staff, for its admins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from hashlib import sha256
from typing import Protocol

from sqlalchemy import Connection

from servicehop_caldav.booking import availability, events
from servicehop_caldav.booking.events import BookingEvent
from servicehop_caldav.booking.model import Interval
from servicehop_caldav.desk.department import DepartmentData, as_booking, opening_windows, timestamp
from servicehop_caldav.store import bookings as store_bookings
from servicehop_caldav.store import objects as store_objects
from servicehop_caldav.store import views as store_views
from servicehop_caldav.store.bookings import BookingRow
from servicehop_caldav.store.records import NewObject
from servicehop_caldav.store.views import Views


class MakeObject(Protocol):
    """Row values of an iCalendar text the server writes (the storage adapter
    computes them). ``like``: an object whose UID, component and time range
    the text has too (a rewritten event, or one the server built with known
    times), so the text need not be parsed again to learn them."""

    def __call__(self, text: str, like: NewObject | None = None) -> NewObject: ...


def shaped(uid: str, start: datetime, end: datetime) -> NewObject:
    """What a one-VEVENT text with these UID and times says about itself."""
    return NewObject(uid, "", "VCALENDAR", "VEVENT", timestamp(start), timestamp(end), "")

FREE = "free-"
BUSY = "busy-"
AVAILABILITY_PREFIX = "availability-"


def availability_path(path: str) -> tuple[str, str] | None:
    """(owner, department id) of a path ``<owner>/availability-<dept>``."""
    parts = path.split("/")
    if len(parts) != 2 or not parts[1].startswith(AVAILABILITY_PREFIX):
        return None
    department_id = parts[1][len(AVAILABILITY_PREFIX):]
    return (parts[0], department_id) if department_id else None


def hidden_for(own: Sequence[tuple[int, int]]) -> Callable[[str, int, int], bool]:
    """Whether an availability event (href, first, last) is left out for a
    recipient whose confirmed bookings are ``own``: busy time inside one of
    them is their own visit, not something that stops them moving it."""

    def hidden(href: str, first: int, last: int) -> bool:
        return href.startswith(BUSY) and any(a <= first and last <= b for a, b in own)

    return hidden


def _href(segment: availability.Segment) -> str:
    ids = ",".join(sorted(segment.bookings))
    key = f"{segment.start.timestamp():.0f}/{segment.end.timestamp():.0f}/{ids}"
    return (FREE if segment.free else BUSY) + sha256(key.encode()).hexdigest()[:32] + ".ics"


def _day_span(day: date, data: DepartmentData) -> tuple[datetime, datetime]:
    tz = data.timezone
    return datetime.combine(day, time(0), tz), datetime.combine(day + timedelta(days=1), time(0), tz)


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def days_of(data: DepartmentData, interval: Interval) -> set[date]:
    """The local days whose availability a booking over ``interval`` can change
    (its travel buffer included)."""
    gap = data.rules.travel_buffer
    start = (interval.start - gap).astimezone(data.timezone).date()
    end = (interval.end + gap - timedelta(microseconds=1)).astimezone(data.timezone).date()
    return set(_days(start, end))


def availability_days(now: datetime, timezone: tzinfo, horizon: timedelta) -> tuple[date, date]:
    """The first and last local day the availability calendar covers: today
    to the horizon's last day."""
    return now.astimezone(timezone).date(), (now + horizon).astimezone(timezone).date()


def days_span(first: date, last: date, timezone: tzinfo) -> tuple[int, int]:
    """[start, end) of the local days ``first`` to ``last``, in POSIX seconds."""
    return (timestamp(datetime.combine(first, time(0), timezone)),
            timestamp(datetime.combine(last + timedelta(days=1), time(0), timezone)))


def row_interval(row: BookingRow) -> Interval:
    return Interval(row.start, row.end)


@dataclass
class ViewKeeper:
    """The view calendars of one department during one write transaction."""

    conn: Connection
    data: DepartmentData
    now: datetime
    make_object: MakeObject

    def __post_init__(self) -> None:
        self.views: Views = store_views.ensure_views(self.conn, self.data.department.id)

    # -- availability ---------------------------------------------------------

    def wanted_range(self) -> tuple[date, date]:
        return availability_days(self.now, self.data.timezone, self.data.rules.horizon)

    def roll(self) -> int:
        """Make the availability cover today to the horizon's last day: days
        gone by are removed, new days computed. Nothing when it already does.
        Returns the number of events written or removed."""
        first, last = self.wanted_range()
        views = self.views
        if (views.covered_from, views.covered_to) == (first, last):
            return 0
        changes = 0
        start, end = _day_span(first, self.data)[0], _day_span(last, self.data)[1]
        calendar_id = views.availability_calendar_id
        for href, first_ts, _last_ts in store_objects.spans_in_range(self.conn, calendar_id, 0, 2**62):
            if first_ts < timestamp(start) or first_ts >= timestamp(end):
                store_objects.delete_object(self.conn, calendar_id, href)
                changes += 1
        covered = (
            set(_days(views.covered_from, views.covered_to))
            if views.covered_from is not None and views.covered_to is not None else set()
        )
        store_views.set_covered(self.conn, views.department_id, first, last)
        self.views = Views(views.department_id, views.availability_calendar_id,
                           views.overview_calendar_id, first, last)
        return changes + self.refresh(set(_days(first, last)) - covered)

    def refresh_all(self) -> int:
        """Every covered day computed again (the upkeep: what a directory
        change did to capacity shows)."""
        first, last = self.wanted_range()
        return self.roll() + self.refresh(_days(first, last))

    def refresh(self, days: Iterable[date]) -> int:
        """Compute ``days`` again (those inside the covered range) and write
        what differs; returns the number of events written or removed."""
        views = self.views
        if views.covered_from is None or views.covered_to is None:
            return 0
        wanted_days = sorted(d for d in set(days) if views.covered_from <= d <= views.covered_to)
        if not wanted_days:
            return 0
        data, conn = self.data, self.conn
        start, end = _day_span(wanted_days[0], data)[0], _day_span(wanted_days[-1], data)[1]
        gap = data.rules.travel_buffer
        windows = opening_windows(conn, data, start, end)
        rows = store_bookings.confirmed_spans(
            conn, data.department.id, [(timestamp(start - gap), timestamp(end + gap) + 1)]
        )
        bookings = [as_booking(data, row) for row in rows]
        calendar_id = views.availability_calendar_id
        existing = store_objects.spans_in_range(conn, calendar_id, timestamp(start), timestamp(end))
        changes = 0
        for day in wanted_days:
            day_start, day_end = _day_span(day, data)
            computed = availability.segments(windows, bookings, data.rules, (day_start, day_end))
            wanted = {_href(s): s for s in computed}
            present = {h for h, first, _ in existing if timestamp(day_start) <= first < timestamp(day_end)}
            for href in sorted(present - wanted.keys()):
                store_objects.delete_object(conn, calendar_id, href)
                changes += 1
            for href in sorted(wanted.keys() - present):
                segment = wanted[href]
                text = events.availability_text(
                    uid=href.removesuffix(".ics"), start=segment.start, end=segment.end,
                    free=segment.free, language=data.department.language,
                )
                like = shaped(href.removesuffix(".ics"), segment.start, segment.end)
                store_objects.put_object(
                    conn, calendar_id, href, self.make_object(text, like), replacing=False
                )
                changes += 1
        return changes

    def days_within(self, spans: Iterable[tuple[int, int]]) -> set[date]:
        """The covered local days that overlap any of ``spans`` (POSIX seconds)."""
        views = self.views
        if views.covered_from is None or views.covered_to is None:
            return set()
        found: set[date] = set()
        for day in _days(views.covered_from, views.covered_to):
            start, end = _day_span(day, self.data)
            if any(a < timestamp(end) and timestamp(start) < b for a, b in spans):
                found.add(day)
        return found

    def booking_moved(self, before: Interval | None, after: Interval | None) -> None:
        """A booking appeared, moved or went: its days are computed again."""
        days: set[date] = set()
        for interval in (before, after):
            if interval is not None:
                days |= days_of(self.data, interval)
        self.roll()
        self.refresh(days)

    # -- overview ---------------------------------------------------------------

    def write_overview(
        self, row: BookingRow, event: BookingEvent, recipient_name: str, staff_name: str | None,
        new: bool = False,
    ) -> None:
        """The admins' event of one booking, rewritten only when it says
        something new (so the overview syncs only what changed). ``new``: the
        booking row has just been made, so its id names no event yet."""
        href = f"{row.id}.ics"
        calendar_id = self.views.overview_calendar_id
        if new:
            store_objects.remember_absent(self.conn, calendar_id, href)
        text = events.overview_text(
            uid=f"overview-{row.id}", booking_uid=event.uid, interval=row_interval(row),
            service_name=event.service.name, recipient_name=recipient_name, staff_name=staff_name,
            status=row.status, notes=event.notes, language=self.data.department.language,
            stamp=self.now.astimezone(UTC),
        )
        like = shaped(f"overview-{row.id}", row.start, row.end)
        put_if_changed(self.conn, calendar_id, href, text, self.make_object(text, like))

    def remove_overview(self, row: BookingRow) -> None:
        store_objects.delete_object(self.conn, self.views.overview_calendar_id, f"{row.id}.ics")


def put_if_changed(conn: Connection, calendar_id: int, href: str, text: str, obj: NewObject) -> None:
    """Write a server-built event (``obj``, made of ``text``) unless the one
    stored says the same but for DTSTAMP: its readers sync only what changed."""
    current = store_objects.get_object(conn, calendar_id, href)
    if current is None or events.without_stamp(current.text) != events.without_stamp(text):
        store_objects.put_object(conn, calendar_id, href, obj, replacing=current is not None)
