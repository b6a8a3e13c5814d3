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
- Waiting list (``waiting_list = true``): a new request refused only because
  nobody is free is kept as "waiting" (STATUS:TENTATIVE, a row without
  staff). When a cancellation or a move frees time, the waiting requests it
  overlaps are decided again, earliest request first, in the same
  transaction; those that now fit are confirmed and assigned.

Each of these also keeps the department's computed calendars current
(:mod:`servicehop_caldav.desk.views`): the availability days it touches and
the booking's event in the admins' overview. Opening-time changes and the
periodic upkeep decide affected bookings again (:mod:`servicehop_caldav.desk.redecide`).

Every decision is recorded in the audit log, also the refusals answered
with 403 (the caller commits the audit entry and raises the refusal).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
from sqlalchemy import Connection, bindparam, exists, select

from servicehop_caldav import logs
from servicehop_caldav.booking import availability, events, texts
from servicehop_caldav.booking.events import BookingEvent, EventError, Unbookable
from servicehop_caldav.booking.model import Booking, Decision, Interval, Reason
from servicehop_caldav.db import memo
from servicehop_caldav.db.schema import bookings as bookings_table
from servicehop_caldav.db.schema import calendar_objects
from servicehop_caldav.desk import redecide, visits
from servicehop_caldav.desk.department import (
    OCCURRENCE_MARGIN,
    DepartmentData,
    load_department,
    timestamp,
)
from servicehop_caldav.desk.settings import SettingsFile
from servicehop_caldav.desk.views import (
    MakeObject,
    ViewKeeper,
    availability_days,
    days_span,
    hidden_for,
    row_interval,
)
from servicehop_caldav.directory import store as directory
from servicehop_caldav.refusal import NAMESPACE, Refusal
from servicehop_caldav.store import audit, codec
from servicehop_caldav.store import bookings as store_bookings
from servicehop_caldav.store import objects as store_objects
from servicehop_caldav.store.bookings import BookingRow
from servicehop_caldav.store.records import NewObject, StoredObject

KIND_PREFIX = "bookings-"
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


_OPENING_PREFIX = "opening-"


def department_named(path: str) -> str | None:
    """The department a calendar path names, if it is a department's: its
    opening calendar or a recipient's bookings calendar (which the desk
    then checks); what a write there will read."""
    parts = path.split("/")
    if len(parts) != 2:
        return None
    for prefix in (_OPENING_PREFIX, KIND_PREFIX):
        if parts[1].startswith(prefix) and len(parts[1]) > len(prefix):
            return parts[1][len(prefix):]
    return None


def opening_calendar(conn: Connection, path: str, calendar_id: int) -> str | None:
    """The department whose opening calendar is mounted at ``path``, if any."""
    parts = path.split("/")
    if len(parts) != 2 or not parts[1].startswith(_OPENING_PREFIX):
        return None
    department = directory.get_department(conn, parts[1][len(_OPENING_PREFIX):])
    if department is None or department.opening_calendar_id != calendar_id:
        return None
    return department.id


def recipient_named_in(path: str) -> str | None:
    """The owner of the bookings calendar ``path`` names, if it names one
    (the recipient a booking there reads, with its path)."""
    parts = path.split("/")
    if len(parts) != 2 or not parts[1].startswith(KIND_PREFIX) or len(parts[1]) == len(KIND_PREFIX):
        return None
    return parts[0]


def bookings_calendar(path: str, calendar_id: int) -> BookingsCalendar | None:
    """The bookings calendar at ``path``, if that is what the path names."""
    owner = recipient_named_in(path)
    if owner is None:
        return None
    return BookingsCalendar(path, calendar_id, owner, path.split("/")[1][len(KIND_PREFIX) :])


@dataclass(frozen=True)
class Outcome:
    """What became of a PUT: the object now stored at the href (None: the
    request was refused with 403 and nothing but the audit entry was
    written), whether it differs from what the client sent, and the
    refusal to answer with."""

    stored: StoredObject | None
    rewritten: bool = False
    refusal: Refusal | None = None




@dataclass
class _Put:
    """One PUT being handled: everything read once."""

    conn: Connection
    calendar: BookingsCalendar
    href: str
    sent: NewObject
    data: DepartmentData
    recipient: visits.Recipient  # the calendar's owner
    now: datetime
    old: StoredObject | None
    row: BookingRow | None
    view_object: MakeObject  # row values of a text the server writes elsewhere

    @functools.cached_property
    def sent_calendar(self) -> icalendar.Calendar:
        """The sent event, parsed once for this PUT and read by every step
        (raises EventError when it cannot be read). Kept only as long as
        the PUT."""
        return events.parse(self.sent.text)

    @functools.cached_property
    def sent_normalised(self) -> str:
        """The sent event as the server would write it."""
        return events.normalised(self.sent_calendar)

    @functools.cached_property
    def old_normalised(self) -> str | None:
        return events.normalised(self.old.text) if self.old is not None else None

    @property
    def owner_id(self) -> int:
        return self.recipient.id

    @functools.cached_property
    def weekly_minutes(self) -> int | None:
        person = self.recipient.person
        if person is None:
            return visits.weekly_minutes(self.conn, self.data, self.owner_id)
        return visits.entitlement(self.data, person.roles)

    def write_assignment(self, row: BookingRow, event: BookingEvent) -> BookingRow:
        return visits.write_assignment(
            self.conn, self.data, self.now, row, event, self.recipient, self.view_object
        )

    @functools.cached_property
    def views(self) -> ViewKeeper:
        return ViewKeeper(self.conn, self.data, self.now, self.view_object)


class Desk:
    def __init__(
        self, settings: SettingsFile, make_object: MakeObject, clock: Callable[[], float] = time.time
    ) -> None:
        self._settings = settings
        self._make_object = make_object
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def _load(self, conn: Connection, department_id: str) -> DepartmentData | None:
        keyring = codec.keyring_of(conn)
        settings = self._settings.current().for_department(department_id)
        return load_department(conn, keyring, department_id, settings) if keyring else None

    # -- what others see ------------------------------------------------------

    def hidden_for(self, conn: Connection, owner: str, department_id: str) -> Callable[[str, int, int], bool]:
        """What ``owner``'s view of the department's availability leaves out."""
        owner_id = directory.user_id_of(conn, owner)
        own = store_bookings.own_spans(conn, department_id, owner_id) if owner_id is not None else []
        return hidden_for(own)

    def opening_changed(self, conn: Connection, department_id: str, spans: Sequence[tuple[int, int]]) -> None:
        """The department's opening times changed over ``spans`` (POSIX
        seconds: the changed event's occurrences, before and after): decide
        the bookings there again and compute the availability of those days
        again, in the admin's transaction. A change wholly outside the
        days the availability covers costs one look at the bookings."""
        margin = int(OCCURRENCE_MARGIN.total_seconds())
        affected = [(a - margin, b + margin) for a, b in spans]
        if not self._opening_reaches(conn, department_id, affected):
            return
        data = self._load(conn, department_id)
        if data is None:
            return
        keeper = ViewKeeper(conn, data, self._now(), self._make_object)
        keeper.roll()
        redecide.redecide(keeper, affected)
        keeper.refresh(keeper.days_within(affected))

    def _opening_reaches(
        self, conn: Connection, department_id: str, affected: Sequence[tuple[int, int]]
    ) -> bool:
        """Whether an opening change over ``affected`` (POSIX-second spans)
        can change the availability (today to the horizon's last day) or a
        booking that has not started (what :func:`redecide.redecide` would
        decide again). A change later than every booking, as a write's
        path lookup read them (store.write_ahead), is answered without a
        statement."""
        department = directory.get_department(conn, department_id)
        if department is None or not affected:
            return False
        now, zone = self._now(), ZoneInfo(department.timezone)
        horizon = timedelta(days=self._settings.current().for_department(department_id).horizon_days)
        first, last = days_span(*availability_days(now, zone, horizon), zone)
        if any(a < last and first < b for a, b in affected):
            return True
        if store_bookings.known_free_from(conn, department_id, min(a for a, _ in affected)):
            return False  # later than every booking: nothing to look up
        coming = store_bookings.find_bookings(
            conn, department_id, ("confirmed", "flagged"), starts_from=timestamp(now),
            overlapping=(min(a for a, _ in affected), max(b for _, b in affected)),
        )
        return any(r.start_ts < b and a < r.end_ts for r in coming for a, b in affected)

    def upkeep(self, conn: Connection) -> int:
        """The periodic pass over every department: the availability follows
        the calendar (a new day enters the horizon), directory changes (staff
        removed or disabled) are decided, waiting requests whose notice has
        run out are closed. Returns the number of view events written."""
        changes = 0
        for department in directory.list_departments(conn):
            data = self._load(conn, department.id)
            if data is None:
                continue
            keeper = ViewKeeper(conn, data, self._now(), self._make_object)
            redecide.redecide(keeper)
            redecide.expire_waiting(keeper)
            changes += keeper.refresh_all()
        return changes

    # -- entry points ------------------------------------------------------

    def put(
        self,
        conn: Connection,
        calendar: BookingsCalendar,
        href: str,
        sent: NewObject,
        make_object: MakeObject,
    ) -> Outcome:
        data = self._load(conn, calendar.department_id)
        owner = visits.recipient_named(conn, calendar.owner) if data is not None else None
        if data is None or owner is None:
            # Not (or no longer) a department's bookings calendar: a plain one.
            return Outcome(store_objects.put_object(conn, calendar.calendar_id, href, sent))
        put = _Put(
            conn, calendar, href, sent, data, owner, self._now(),
            store_objects.get_object(conn, calendar.calendar_id, href),
            store_bookings.booking_for_event(conn, calendar.calendar_id, href),
            self._make_object,
        )
        if put.old is not None and put.old_normalised == put.sent_normalised:
            # The client saved again what it has from us: nothing to decide.
            return Outcome(put.old)
        try:
            event: BookingEvent | Unbookable = events.read_booking(
                put.sent_calendar, timezone=data.timezone, settings=data.settings
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
        time is free (and given to the waiting list). The caller deletes
        the recipient's event."""
        row = store_bookings.booking_for_event(conn, calendar.calendar_id, href)
        if row is None:
            return
        data = self._load(conn, row.department_id)
        visits.remove_assignment(conn, row)
        store_bookings.delete_booking(conn, row.id)
        entry = audit.AuditEntry(
            row.department_id, "cancel", "cancelled", row.recipient_id, row.start_ts, row.end_ts,
            staff_id=row.staff_id, at=self._now().timestamp(),
        )
        audit.record(conn, entry)
        logs.decision(conn, row.id, entry)
        if data is not None:
            keeper = ViewKeeper(conn, data, self._now(), self._make_object)
            keeper.remove_overview(row)
            if row.status == "confirmed":
                keeper.booking_moved(row_interval(row), None)
                redecide.promote_waiting(keeper, row_interval(row))

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
        considered = visits.consider(put.conn, put.data, put.now, put.owner_id, event.interval,
                                     weekly=put.weekly_minutes)
        decision = considered.decision
        if not decision.accepted:
            if put.data.settings.waiting_list and decision.reasons == (Reason.NO_STAFF_FREE,):
                return self._wait(put, event, make_object)
            return self._refused(put, decision.reasons, decision.alternatives, event.interval, make_object)
        staff = put.data.staff_by_username(decision.staff or "")
        assert staff is not None, "the rules chose someone who is not on the staff"
        row = visits.new_row(put.data, put.owner_id, event.interval, staff.id, "confirmed",
                             put.calendar.calendar_id, put.href)
        row = put.write_assignment(row, event)
        self._audit(put, row.id, "book", "accepted", event.interval, (), staff.id, new=row)
        if _availability_unchanged(put, considered, Booking(row.id, str(put.owner_id), staff.username,
                                                             event.interval)):
            put.views.roll()
        else:
            put.views.booking_moved(None, event.interval)
        put.views.write_overview(row, event, put.recipient.name, staff.name, new=True)
        return self._store_confirmed(put, staff.id, make_object)

    def _wait(self, put: _Put, event: BookingEvent, make_object: MakeObject) -> Outcome:
        """Full, and the department keeps a waiting list: the request waits."""
        row = visits.new_row(put.data, put.owner_id, event.interval, None, "waiting",
                             put.calendar.calendar_id, put.href)
        self._audit(put, row.id, "book", "waiting", event.interval, (Reason.NO_STAFF_FREE,), None, new=row)
        put.views.write_overview(row, event, put.recipient.name, None, new=True)
        return self._store_waiting(put, make_object)

    # -- changes to a booking ------------------------------------------------

    def _change(self, put: _Put, event: BookingEvent, make_object: MakeObject) -> Outcome:
        row = put.row
        assert row is not None
        if event.status == "CANCELLED":
            self.delete(put.conn, put.calendar, put.href)
            return _store_sent(put)
        same_times = visits.times(event.interval) == (row.start_ts, row.end_ts)
        if row.status == "waiting":
            if same_times:
                put.views.write_overview(row, event, put.recipient.name, None)
                return self._store_waiting(put, make_object)
            # New times: a new request in place of the waiting one.
            store_bookings.delete_booking(put.conn, row.id)
            put.views.remove_overview(row)
            return self._new(replace(put, row=None), event, make_object)
        if same_times and row.status == "flagged":
            put.views.write_overview(row, event, put.recipient.name, None)
            text = events.flagged_text(put.sent_calendar, language=put.data.department.language)
            return _store(put, text, make_object)
        if same_times and row.staff_id is not None:
            row = put.write_assignment(row, event)
            store_bookings.save_booking(put.conn, row)
            self._audit(put, row.id, "change", "kept", event.interval, (), row.staff_id)
            put.views.write_overview(
                row, event, put.recipient.name, visits.staff_name(put.data, row.staff_id)
            )
            return self._store_confirmed(put, row.staff_id, make_object)
        decision = self._decide(put, event.interval, replaces=row.id)
        if not decision.accepted:
            return self._refused(put, decision.reasons, decision.alternatives, event.interval, make_object)
        staff = put.data.staff_by_username(decision.staff or "")
        assert staff is not None, "the rules chose someone who is not on the staff"
        before = row_interval(row) if row.status == "confirmed" else None
        if staff.id != row.staff_id:
            row = visits.remove_assignment(put.conn, row)
        row = store_bookings.moved(row, *visits.times(event.interval), staff.id)
        row = put.write_assignment(replace(row, status="confirmed"), event)
        store_bookings.save_booking(put.conn, row)
        self._audit(put, row.id, "move", "accepted", event.interval, (), staff.id)
        put.views.booking_moved(before, event.interval)
        put.views.write_overview(row, event, put.recipient.name, staff.name)
        if before is not None:
            redecide.promote_waiting(put.views, before)
        return self._store_confirmed(put, staff.id, make_object)

    # -- deciding ------------------------------------------------------------

    def _decide(self, put: _Put, interval: Interval, replaces: str | None) -> Decision:
        return visits.consider(
            put.conn, put.data, put.now, put.owner_id, interval, weekly=put.weekly_minutes, replaces=replaces
        ).decision

    # -- answers ------------------------------------------------------------

    def _store_confirmed(self, put: _Put, staff_id: int | None, make_object: MakeObject) -> Outcome:
        language = put.data.department.language
        shown = visits.shown_staff(put.data, staff_id)
        text = events.confirmed_text(put.sent_calendar, language=language, staff_name=shown)
        return _store(put, text, make_object)

    def _store_waiting(self, put: _Put, make_object: MakeObject) -> Outcome:
        language = put.data.department.language
        notice = texts.duration_text(put.data.settings.minimum_notice_minutes, language)
        return _store(put, events.waiting_text(put.sent_calendar, language=language, notice=notice),
                      make_object)

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
        moving = (
            interval is not None and row is not None
            and visits.times(interval) != (row.start_ts, row.end_ts)
        )
        action = "book" if row is None else "move" if moving else "change"
        self._audit(put, row.id if row is not None else None, action, "refused", interval, reasons, None)
        if data.settings.on_reject == "refuse":
            description = texts.refusal_description(sentences, alternatives, data.timezone, language)
            return Outcome(None, refusal=Refusal(_precondition(reasons), description.replace("\n", " ")))
        if put.row is not None and put.old is not None:
            text = events.refused_change_text(
                put.old.text, language=language, reasons=sentences, alternatives=alternatives,
                timezone=data.timezone, notes=keep_notes,
            )
            return _store(put, text, make_object, like=put.old)
        text = events.refused_text(
            put.sent_calendar, language=language, reasons=sentences, alternatives=alternatives,
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
        self, put: _Put, booking_id: str | None, action: str, outcome: str,
        interval: Interval | None, reasons: Sequence[Reason], staff_id: int | None,
        new: store_bookings.BookingRow | None = None,
    ) -> None:
        """Record the decision in the audit log, and log it (ids only) when
        it commits; ``booking_id`` is None for a new request refused. ``new``:
        the booking row the decision makes, inserted with the entry."""
        entry = audit.AuditEntry(
            put.data.department.id, action, outcome, put.owner_id,
            timestamp(interval.start) if interval is not None else None,
            timestamp(interval.end) if interval is not None else None,
            tuple(r.value for r in reasons), staff_id, at=put.now.timestamp(),
        )
        audit.record(put.conn, entry, new)
        logs.decision(put.conn, booking_id, entry)


# -- helpers -------------------------------------------------------------------


def _precondition(reasons: Sequence[Reason]) -> str:
    if Reason.BEYOND_HORIZON in reasons:
        return f"{{{_CALDAV}}}max-date-time"
    return f"{{{NAMESPACE}}}{reasons[0].value}"


def _store(put: _Put, text: str, make_object: MakeObject, like: NewObject | None = None) -> Outcome:
    """Store ``text`` at the href, or what the client sent when ``text``
    says the same (then the client's copy is current: it may keep its ETag).
    ``text`` is as :func:`events.normalised` writes it."""
    if _may_be_sent(put, text) and text == put.sent_normalised:
        return _store_sent(put)
    if put.old is not None and put.old_normalised == text:
        return Outcome(put.old, rewritten=True)
    # The text restates the sent event (or ``like``, the stored one): the
    # same UID and times, nothing to parse again.
    shape = like or put.sent
    stored = store_objects.put_object(put.conn, put.calendar.calendar_id, put.href, make_object(text, shape),
                                      replacing=put.old is not None)
    return Outcome(stored, rewritten=True)


def _may_be_sent(put: _Put, text: str) -> bool:
    """Whether ``text`` can say what the client sent. The server's texts
    carry its annotation; a sent event without one cannot be the same,
    which spares writing the sent event out again to compare (most
    bookings: a client's new event)."""
    return events.ANNOTATION not in text or events.annotated(put.sent_calendar)


def _store_sent(put: _Put) -> Outcome:
    """Store the event as the client sent it. When it says what the stored
    one says (a client saving again what it fetched), the stored one stays
    with its ETag and no change is logged for sync."""
    if put.old is not None and put.old_normalised == put.sent_normalised:
        return Outcome(put.old)
    return Outcome(store_objects.put_object(put.conn, put.calendar.calendar_id, put.href, put.sent,
                                            replacing=put.old is not None))


def _same_times(put: _Put, event: BookingEvent) -> bool:
    """Whether the stored event asked for the same interval as ``event``."""
    if put.old is None:
        return False
    try:
        before = events.read_booking(put.old.text, timezone=put.data.timezone, settings=put.data.settings)
    except EventError:
        return False
    return isinstance(before, BookingEvent) and before.interval.utc() == event.interval.utc()


def _availability_unchanged(put: _Put, considered: visits.Considered, added: Booking) -> bool:
    """Whether the new booking ``added`` left the department's availability
    as it was, judged from what its decision read
    (:func:`servicehop_caldav.booking.availability.stays_free`): then its days
    need not be computed again. Most bookings leave another employee free."""
    if considered.cover is None:
        return False
    buffers = 2 * max(put.data.rules.travel_buffer, timedelta(0))
    first, last = considered.cover
    if not (first <= added.interval.start - buffers and added.interval.end + buffers <= last):
        return False
    return availability.stays_free(
        considered.windows, [*considered.bookings, added], put.data.rules, added.interval
    )


_b, _o = bookings_table.c, calendar_objects.c


# Whether a recipient of the department other than the owner has a booking
# event with the UID: the objects with that UID (the UID index: a few rows,
# whatever the department holds), each asked whether a booking of the
# department by someone else lives in its calendar.
_UID_TAKEN = select(exists().where(
    _o.uid == bindparam("uid"),
    exists().where(
        _b.booking_calendar_id == _o.calendar_id,
        _b.department_id == bindparam("department_id"), _b.recipient_id != bindparam("owner_id"),
    ),
))
# Radicale's no-uid-conflict check of the calendar, and whether the UID is in
# any other calendar at all, in one statement: a new booking asks both, and a
# new UID is (nearly always) nowhere else, which settles _UID_TAKEN unasked.
# Two lookups of an index each, whatever plan the database's statistics (or
# their absence, just after a bulk import) would choose for _UID_TAKEN.
_UID_HERE_AND_ANYWHERE = select(
    store_objects.UID_IN_CALENDAR,
    exists().where(_o.uid == bindparam("uid"), _o.calendar_id != bindparam("calendar_id")),
)
# Memo kind: (bookings calendar id, uid) -> True when uid_in_calendar found
# the UID in no other calendar (then no other recipient has a booking with it).
_NOWHERE_ELSE = "uid_nowhere_else"


def uid_in_calendar(conn: Connection, calendar: BookingsCalendar, uid: str) -> bool:
    """Whether bookings calendar ``calendar`` holds an object with ``uid``
    (Radicale's no-uid-conflict check); whether any other calendar holds one
    is read in the same statement, for :func:`_uid_taken` (or was read
    with the write's path, :mod:`servicehop_caldav.store.write_ahead`)."""
    known = store_objects.known_uid(conn, calendar.calendar_id, uid)
    here, elsewhere = known if known is not None else conn.execute(
        _UID_HERE_AND_ANYWHERE, {"calendar_id": calendar.calendar_id, "uid": uid}).one()
    if not elsewhere:
        memo.memo(conn, _NOWHERE_ELSE)[(calendar.calendar_id, uid)] = True
    return bool(here)


def _uid_taken(put: _Put, uid: str) -> bool:
    """Whether another recipient of the department has a booking with this UID."""
    if (put.calendar.calendar_id, uid) in memo.memo(put.conn, _NOWHERE_ELSE):
        return False
    return bool(put.conn.execute(
        _UID_TAKEN, {"department_id": put.data.department.id, "owner_id": put.owner_id, "uid": uid}
    ).scalar())
