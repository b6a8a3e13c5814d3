"""The booking desk: every write into a recipient's ``bookings-<dept>/``.

Runs inside the request's write transaction (writers are serialised across
threads and processes by :class:`servicehop_caldav.db.engine.Database`), so
the decision and everything it writes - the recipient's event, the booking
row, the staff member's visit, the audit entry - commit together or not at
all, and two requests can never both take the last free employee.

What a PUT means (DESIGN.md, "Booking rules"):

- No booking behind the href yet: a booking request. Accepted: stored with
  STATUS:CONFIRMED and a confirmation line, a booking row, the visit in the
  employee's ``assignments/``. Refused: ``annotate`` stores the event with
  STATUS:CANCELLED, a "not booked" prefix, the reasons and nearby free
  times; ``refuse`` answers 403 and stores nothing.
- A confirmed booking behind the href: the same times and only other
  details changed (notes, service name, alarms) keep the booking and its
  employee, and the visit is updated; new times are decided again as a
  whole (the booking itself does not count against its move). A refused
  change keeps the booking as it was, with the reason added (``annotate``),
  or is answered 403 (``refuse``). STATUS:CANCELLED sent by the client
  cancels, like DELETE.
- An event the client sends back as STATUS:CANCELLED at the times it had
  (a refused event, resaved) asks for nothing: stored as sent.

Every decision is recorded in the audit log, also the refusals answered
with 403 (the caller commits the audit entry and raises the refusal).
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, exists, select

from servicehop_caldav.booking import events, texts
from servicehop_caldav.booking.events import BookingEvent, EventError, Unbookable
from servicehop_caldav.booking.model import Decision, Interval, Reason, Request
from servicehop_caldav.booking.rules import decide
from servicehop_caldav.db.schema import bookings as bookings_table
from servicehop_caldav.db.schema import calendar_objects
from servicehop_caldav.desk.department import (
    DepartmentData,
    bookings_for_decision,
    load_department,
    opening_windows,
    timestamp,
)
from servicehop_caldav.desk.settings import SettingsFile
from servicehop_caldav.directory import store as directory
from servicehop_caldav.provisioning import provision_in
from servicehop_caldav.refusal import NAMESPACE, Refusal
from servicehop_caldav.store import audit, codec
from servicehop_caldav.store import bookings as store_bookings
from servicehop_caldav.store import collections as store_collections
from servicehop_caldav.store import objects as store_objects
from servicehop_caldav.store.bookings import BookingRow
from servicehop_caldav.store.records import NewObject, StoredObject

logger = logging.getLogger(__name__)

KIND_PREFIX = "bookings-"
ASSIGNMENTS = "assignments"
MAX_NOTES = 4000
"""Longest recipient's note (characters) a booking takes: it is copied into
the staff member's calendar, and a visit needs a few lines, not a book."""

_EVENT_REASONS = {
    "bad-value": Reason.BAD_TIME,
    "end-before-start": Reason.END_BEFORE_START,
    "zero-length": Reason.ZERO_LENGTH,
}
_CALDAV = "urn:ietf:params:xml:ns:caldav"


@dataclass(frozen=True)
class BookingsCalendar:
    """A recipient's ``<owner>/bookings-<department>`` collection."""

    path: str
    calendar_id: int
    owner: str
    department_id: str


def bookings_calendar(path: str, calendar_id: int) -> BookingsCalendar | None:
    """The bookings calendar at ``path``, if that is what the path names."""
    parts = path.split("/")
    if len(parts) != 2 or not parts[1].startswith(KIND_PREFIX) or len(parts[1]) == len(KIND_PREFIX):
        return None
    return BookingsCalendar(path, calendar_id, parts[0], parts[1][len(KIND_PREFIX) :])


@dataclass(frozen=True)
class Outcome:
    """What became of a PUT: the object now stored at the href (None: the
    request was refused with 403 and nothing but the audit entry was
    written), whether it differs from what the client sent, and the
    refusal to answer with."""

    stored: StoredObject | None
    rewritten: bool = False
    refusal: Refusal | None = None


MakeObject = Callable[[str], NewObject]
"""Row values of an iCalendar text (the storage adapter computes them)."""


@dataclass
class _Put:
    """One PUT being handled: everything read once."""

    conn: Connection
    calendar: BookingsCalendar
    href: str
    sent: NewObject
    data: DepartmentData
    owner_id: int
    now: datetime
    old: StoredObject | None
    row: BookingRow | None

    @functools.cached_property
    def sent_normalised(self) -> str:
        """The sent event as the server would write it (parsed once per PUT)."""
        return events.normalised(self.sent.text)

    @functools.cached_property
    def old_normalised(self) -> str | None:
        return events.normalised(self.old.text) if self.old is not None else None

    @functools.cached_property
    def weekly_minutes(self) -> int | None:
        """The recipient's weekly entitlement in this department (None: unlimited)."""
        role = next(
            (r for r in directory.roles_of(self.conn, self.owner_id)
             if r.department_id == self.data.department.id and r.role == "recipient"),
            None,
        )
        return role.weekly_minutes if role is not None else None


class Desk:
    def __init__(self, settings: SettingsFile, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._clock = clock

    # -- entry points ------------------------------------------------------

    def put(
        self,
        conn: Connection,
        calendar: BookingsCalendar,
        href: str,
        sent: NewObject,
        make_object: MakeObject,
    ) -> Outcome:
        keyring = codec.keyring_of(conn)
        owner_id = directory.user_id_of(conn, calendar.owner)
        settings = self._settings.current().for_department(calendar.department_id)
        data = load_department(conn, keyring, calendar.department_id, settings) if keyring else None
        if data is None or owner_id is None:
            # Not (or no longer) a department's bookings calendar: a plain one.
            return Outcome(store_objects.put_object(conn, calendar.calendar_id, href, sent))
        put = _Put(
            conn, calendar, href, sent, data, owner_id,
            datetime.fromtimestamp(self._clock(), UTC),
            store_objects.get_object(conn, calendar.calendar_id, href),
            store_bookings.booking_for_event(conn, calendar.calendar_id, href),
        )
        if put.old is not None and put.old_normalised == put.sent_normalised:
            # The client saved again what it has from us: nothing to decide.
            return Outcome(put.old)
        try:
            event: BookingEvent | Unbookable = events.read_booking(
                sent.text, timezone=data.timezone, settings=settings
            )
        except EventError as e:
            reason = _EVENT_REASONS.get(e.code)
            if reason is None:  # not an event one can annotate
                return Outcome(None, refusal=Refusal(f"{{{NAMESPACE}}}{e.code}", str(e)))
            return self._refused(put, (reason,), (), None, make_object)
        if isinstance(event, Unbookable):
            return self._refused(put, (event.reason,), (), None, make_object)
        if len(event.notes) > MAX_NOTES:
            return self._refused(put, (Reason.NOTES_TOO_LONG,), (), event.interval, make_object,
                                 keep_notes=event.notes)
        if put.row is None:
            return self._new(put, event, make_object)
        return self._change(put, event, make_object)

    def delete(self, conn: Connection, calendar: BookingsCalendar, href: str) -> None:
        """Cancel the booking behind ``href`` (if any): the visit goes, the
        time is free. The caller deletes the recipient's event."""
        row = store_bookings.booking_for_event(conn, calendar.calendar_id, href)
        if row is None:
            return
        _remove_assignment(conn, row)
        store_bookings.delete_booking(conn, row.id)
        audit.record(conn, audit.AuditEntry(
            row.department_id, "cancel", "cancelled", row.recipient_id, row.start_ts, row.end_ts,
            staff_id=row.staff_id,
        ))
        logger.info("booking %s cancelled", row.id)

    def rename(self, conn: Connection, calendar: BookingsCalendar, href: str, to_href: str) -> None:
        """A MOVE inside one bookings calendar: the booking follows its event.
        (Radicale refuses a MOVE onto another event: its UID differs.)"""
        row = store_bookings.booking_for_event(conn, calendar.calendar_id, href)
        if row is not None:
            store_bookings.save_booking(conn, replace(row, booking_href=to_href))

    # -- new bookings ------------------------------------------------------

    def _new(self, put: _Put, event: BookingEvent, make_object: MakeObject) -> Outcome:
        if event.status == "CANCELLED" and (put.old is None or _same_times(put, event)):
            # A cancelled event asks for nothing (a refused one, saved again).
            return _store_sent(put)
        if _uid_taken(put, event.uid):
            return self._refused(put, (Reason.UID_TAKEN,), (), event.interval, make_object)
        decision = self._decide(put, event.interval, event.service.name, replaces=None)
        if not decision.accepted:
            return self._refused(put, decision.reasons, decision.alternatives, event.interval, make_object)
        staff = put.data.staff_by_username(decision.staff or "")
        assert staff is not None, "the rules chose someone who is not on the staff"
        row = BookingRow(
            id=str(uuid.uuid4()), department_id=put.data.department.id, recipient_id=put.owner_id,
            staff_id=staff.id, start_ts=_times(event.interval)[0], end_ts=_times(event.interval)[1],
            status="confirmed", booking_calendar_id=put.calendar.calendar_id, booking_href=put.href,
        )
        row = _write_assignment(put, row, event, make_object)
        store_bookings.insert_booking(put.conn, row)
        self._audit(put, "book", "accepted", event.interval, (), staff.id)
        logger.info("booking %s accepted, staff %s", row.id, staff.id)
        return self._store_confirmed(put, staff.name, make_object)

    # -- changes to a confirmed booking -------------------------------------

    def _change(self, put: _Put, event: BookingEvent, make_object: MakeObject) -> Outcome:
        row = put.row
        assert row is not None
        if event.status == "CANCELLED":
            self.delete(put.conn, put.calendar, put.href)
            return _store_sent(put)
        if _times(event.interval) == (row.start_ts, row.end_ts) and row.staff_id is not None:
            row = _write_assignment(put, row, event, make_object)
            store_bookings.save_booking(put.conn, row)
            self._audit(put, "change", "kept", event.interval, (), row.staff_id)
            return self._store_confirmed(put, self._staff_name(put, row.staff_id), make_object)
        decision = self._decide(put, event.interval, event.service.name, replaces=row.id)
        if not decision.accepted:
            return self._refused(put, decision.reasons, decision.alternatives, event.interval, make_object)
        staff = put.data.staff_by_username(decision.staff or "")
        assert staff is not None, "the rules chose someone who is not on the staff"
        if staff.id != row.staff_id:
            _remove_assignment(put.conn, row)
            row = replace(row, assignment_calendar_id=None, assignment_href=None)
        row = store_bookings.moved(row, *_times(event.interval), staff.id)
        row = _write_assignment(put, replace(row, status="confirmed"), event, make_object)
        store_bookings.save_booking(put.conn, row)
        self._audit(put, "move", "accepted", event.interval, (), staff.id)
        logger.info("booking %s moved, staff %s", row.id, staff.id)
        return self._store_confirmed(put, staff.name, make_object)

    # -- deciding ------------------------------------------------------------

    def _decide(self, put: _Put, interval: Interval, service: str, replaces: str | None) -> Decision:
        data, now = put.data, put.now
        rules = data.rules
        reach = rules.max_duration + rules.travel_buffer + timedelta(days=1)
        horizon_end = now + rules.horizon + reach
        spans = [(now - timedelta(days=1), horizon_end)]
        if not (interval.start < horizon_end and interval.end > now - timedelta(days=1)):
            spans.append((interval.start - reach, interval.end + reach))
        windows = [w for start, end in spans for w in opening_windows(put.conn, data, start, end)]
        # The recipient's own visits: continuity looks 30 days back, the
        # entitlement at the whole ISO week of the request.
        own = (min(now - timedelta(days=rules.continuity_days + 1), interval.start - timedelta(days=8)),
               max(horizon_end, interval.end + reach))
        return decide(
            Request(str(put.owner_id), interval, service, replaces),
            now=now,
            rules=rules,
            windows=windows,
            bookings=bookings_for_decision(put.conn, data, spans, put.owner_id, own),
            weekly_minutes=put.weekly_minutes,
        )

    def _staff_name(self, put: _Put, staff_id: int | None) -> str:
        person = put.data.staff.get(staff_id) if staff_id is not None else None
        return person.name if person is not None else ""

    # -- answers ------------------------------------------------------------

    def _store_confirmed(self, put: _Put, staff_name: str, make_object: MakeObject) -> Outcome:
        language = put.data.department.language
        shown = staff_name if put.data.settings.show_staff_names and staff_name else None
        text = events.confirmed_text(put.sent.text, language=language, staff_name=shown)
        return _store(put, text, make_object)

    def _refused(
        self,
        put: _Put,
        reasons: Sequence[Reason],
        alternatives: Sequence[Interval],
        interval: Interval | None,
        make_object: MakeObject,
        keep_notes: str | None = None,
    ) -> Outcome:
        """Refuse: record it, then answer 403 (``refuse``) or store the
        explained event (``annotate``; a refused change keeps the confirmed
        booking, with ``keep_notes`` as its notes if given)."""
        data = put.data
        language = data.department.language
        sentences = [texts.reason_text(r, language, **self._values(put)) for r in reasons]
        row = put.row
        moving = interval is not None and row is not None and _times(interval) != (row.start_ts, row.end_ts)
        action = "book" if row is None else "move" if moving else "change"
        self._audit(put, action, "refused", interval, reasons, None)
        logger.info("booking request refused: %s", ",".join(r.value for r in reasons))
        if data.settings.on_reject == "refuse":
            description = texts.refusal_description(sentences, alternatives, data.timezone, language)
            return Outcome(None, refusal=Refusal(_precondition(reasons), description.replace("\n", " ")))
        if put.row is not None and put.old is not None:
            text = events.refused_change_text(
                put.old.text, language=language, reasons=sentences, alternatives=alternatives,
                timezone=data.timezone, notes=keep_notes,
            )
        else:
            text = events.refused_text(
                put.sent.text, language=language, reasons=sentences, alternatives=alternatives,
                timezone=data.timezone,
            )
        return _store(put, text, make_object)

    def _values(self, put: _Put) -> dict[str, object]:
        settings, language = put.data.settings, put.data.department.language
        weekly = put.weekly_minutes or 0
        return {
            "notice": texts.duration_text(settings.minimum_notice_minutes, language),
            "horizon": settings.horizon_days,
            "min_duration": texts.duration_text(settings.min_duration_minutes, language),
            "max_duration": texts.duration_text(settings.max_duration_minutes, language),
            "weekly": texts.duration_text(weekly, language),
            "max_notes": MAX_NOTES,
        }

    def _audit(
        self, put: _Put, action: str, outcome: str, interval: Interval | None,
        reasons: Sequence[Reason], staff_id: int | None,
    ) -> None:
        audit.record(put.conn, audit.AuditEntry(
            put.data.department.id, action, outcome, put.owner_id,
            timestamp(interval.start) if interval is not None else None,
            timestamp(interval.end) if interval is not None else None,
            tuple(r.value for r in reasons), staff_id, at=put.now.timestamp(),
        ))


# -- helpers -------------------------------------------------------------------


def _times(interval: Interval) -> tuple[int, int]:
    return timestamp(interval.start), timestamp(interval.end)


def _precondition(reasons: Sequence[Reason]) -> str:
    if Reason.BEYOND_HORIZON in reasons:
        return f"{{{_CALDAV}}}max-date-time"
    return f"{{{NAMESPACE}}}{reasons[0].value}"


def _store(put: _Put, text: str, make_object: MakeObject) -> Outcome:
    """Store ``text`` at the href, or what the client sent when ``text``
    says the same (then the client's copy is current: it may keep its ETag).
    ``text`` is as :func:`events.normalised` writes it."""
    if text == put.sent_normalised:
        return _store_sent(put)
    if put.old is not None and put.old_normalised == text:
        return Outcome(put.old, rewritten=True)
    stored = store_objects.put_object(put.conn, put.calendar.calendar_id, put.href, make_object(text))
    return Outcome(stored, rewritten=True)


def _store_sent(put: _Put) -> Outcome:
    """Store the event as the client sent it. When it says what the stored
    one says (a client saving again what it fetched), the stored one stays
    with its ETag and no change is logged for sync."""
    if put.old is not None and put.old_normalised == put.sent_normalised:
        return Outcome(put.old)
    return Outcome(store_objects.put_object(put.conn, put.calendar.calendar_id, put.href, put.sent))


def _same_times(put: _Put, event: BookingEvent) -> bool:
    """Whether the stored event asked for the same interval as ``event``."""
    if put.old is None:
        return False
    try:
        before = events.read_booking(put.old.text, timezone=put.data.timezone, settings=put.data.settings)
    except EventError:
        return False
    return isinstance(before, BookingEvent) and before.interval.utc() == event.interval.utc()


def _uid_taken(put: _Put, uid: str) -> bool:
    """Whether another recipient of the department has a booking with this UID."""
    b, o = bookings_table.c, calendar_objects.c
    others = select(b.booking_calendar_id).where(
        b.department_id == put.data.department.id, b.recipient_id != put.owner_id
    )
    return bool(put.conn.execute(
        select(exists().where(o.calendar_id.in_(others), o.uid == uid))
    ).scalar())


def _remove_assignment(conn: Connection, row: BookingRow) -> None:
    if row.assignment_calendar_id is not None and row.assignment_href is not None:
        store_objects.delete_object(conn, row.assignment_calendar_id, row.assignment_href)


def _write_assignment(put: _Put, row: BookingRow, event: BookingEvent, make_object: MakeObject) -> BookingRow:
    """Write (or rewrite) the visit in the staff member's ``assignments/``;
    the row returned says where it is."""
    staff = put.data.staff.get(row.staff_id) if row.staff_id is not None else None
    if staff is None:
        return row
    keyring = codec.keyring_of(put.conn)
    recipient = directory.get_person(put.conn, keyring, put.calendar.owner) if keyring else None
    calendar_id, href = row.assignment_calendar_id, row.assignment_href
    if calendar_id is None or href is None:
        path = f"{staff.username}/{ASSIGNMENTS}"
        instance = store_collections.get_instance(put.conn, path)
        if instance is None:
            provision_in(put.conn, staff.username)
            instance = store_collections.get_instance(put.conn, path)
        if instance is None:
            raise RuntimeError(f"staff member {staff.id} has no assignments calendar")
        calendar_id, href = instance.calendar_id, f"{uuid.uuid4()}.ics"
    text = events.assignment_text(
        booking_uid=event.uid,
        assignment_uid=href.removesuffix(".ics"),
        interval=event.interval,
        service_name=event.service.name,
        recipient_name=recipient.name if recipient is not None else put.calendar.owner,
        address=recipient.address if recipient is not None else None,
        phone=recipient.phone if recipient is not None else None,
        notes=event.notes,
        language=put.data.department.language,
        stamp=put.now,
    )
    current = store_objects.get_object(put.conn, calendar_id, href)
    if current is None or _without_stamp(current.text) != _without_stamp(text):
        # Unchanged visits are left alone: the employee's calendar syncs
        # only what changed.
        store_objects.put_object(put.conn, calendar_id, href, make_object(text))
    return replace(row, assignment_calendar_id=calendar_id, assignment_href=href)


def _without_stamp(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith("DTSTAMP"))
