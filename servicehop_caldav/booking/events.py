"""Booking events: iCalendar text in, booking values out, and back (pure).

:func:`read_booking` reads what a recipient's client PUT into a bookings
calendar; :func:`confirmed_text`, :func:`refused_text` and
:func:`refused_change_text` rewrite that event so the recipient can read the
decision in their own calendar app (:func:`waiting_text`,
:func:`waiting_expired_text` and :func:`flagged_text` likewise for a booking
on the waiting list, one whose wait ran out, and one nobody can serve any
more); :func:`assignment_text` writes the staff member's visit;
:func:`availability_text` and :func:`overview_text` write the views (free and
busy times for anyone, the department's overview of its bookings). No
Radicale, no SQL, no I/O.

Decisions (see DESIGN.md, "Booking rules"):

- Server-written DESCRIPTION. The server's lines (confirmation, or reason
  and alternatives) come first, then a fixed separator line
  :data:`SEPARATOR`, then the recipient's own notes (the separator is
  written even when there are no notes). Everything above the first
  separator line is the server's and is replaced whole next time; everything
  below is the recipient's. The separator is in the text the user sees, so
  every client keeps it unless the user deletes it. As a second marker the
  server's part is also stored in ``X-SERVICEHOP-ANNOTATION``: if the
  separator is gone but the DESCRIPTION still starts with that text (the user
  deleted only the separator line), the server's part is still recognised.
  iOS, DAVx5, Thunderbird and Evolution keep unknown X- properties when they
  edit an event; a client that drops both markers (Google Calendar does)
  makes the old server lines part of the notes - visible, never lost.
- Rich-text copies of the description (``X-ALT-DESC``, an ``ALTREP``
  parameter) are removed when the server rewrites DESCRIPTION: Thunderbird
  and Outlook would otherwise show the stale copy instead of the decision.
  All other properties, parameters and components (VALARM, VTIMEZONE, X-
  properties, UID, DTSTART/DTEND, DTSTAMP, LAST-MODIFIED) are kept.
- SEQUENCE is not changed. It orders iTIP messages; in a CalDAV collection
  without scheduling clients sync by ETag, and the PUT response carries no
  ETag when the server changed the event, so they fetch its version anyway.
- SUMMARY: the "not booked" prefix of any language is removed before the
  service is matched and before a new prefix is written, so it is never
  doubled, and a confirmed (moved) event loses it.
- Every VEVENT of the object is rewritten (a refused recurring event may
  have overrides; each says it is not booked).
- Times. Floating times, and a TZID that is neither known nor defined by a
  VTIMEZONE, are in the department's time zone (a local time that does not
  exist is read with the offset before the change, as in ``opening``).
  DURATION: its days are added on the local calendar, its hours, minutes and
  seconds as elapsed time (RFC 5545 3.3.6). The interval is returned in UTC.
  Times before 1900 or after 9000 are refused (``bad-value``): no booking
  needs them, and sums near datetime's ends would overflow.
- Not bookable (:class:`Unbookable`, checked in this order): more than one
  VEVENT, RECURRENCE-ID, RRULE or RDATE (RECURRING); no DTSTART (NO_TIME); a
  DATE DTSTART (ALL_DAY); no service matched and no default (UNKNOWN_SERVICE).
  Everything else wrong raises :class:`EventError` (a ValueError) with a
  stable ``code`` and a message the recipient may read.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
from icalendar.cal import Component

from servicehop_caldav.booking import texts
from servicehop_caldav.booking.config import DepartmentSettings, Service
from servicehop_caldav.booking.model import Interval, Reason

SEPARATOR = "— servicehop —"
ANNOTATION = "X-SERVICEHOP-ANNOTATION"
PRODID = "-//servicehop-caldav//EN"

_LABELS = {"nb": {"phone": "Telefon"}, "en": {"phone": "Phone"}}
_PREFIXES = tuple(texts.not_booked_prefix(language) for language in texts.LANGUAGES)
_RICH_TEXT = ("X-ALT-DESC",)
# Times a visit can have: far enough from datetime's ends (years 1 and 9999)
# that every sum the engine makes with them stays representable.
_EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


class EventError(ValueError):
    """The text is not a booking event one can read.

    ``code``: unparsable, not-a-calendar, no-event, no-uid, bad-value,
    end-before-start, zero-length.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class BookingEvent:
    """A readable booking request.

    ``summary`` is SUMMARY without any "not booked" prefix; ``notes`` the
    recipient's own DESCRIPTION text (server lines removed, "" if none);
    ``annotated`` is true when the event carries text the server wrote;
    ``status`` is STATUS upper-cased, or None.
    """

    uid: str
    interval: Interval
    service: Service
    summary: str
    notes: str
    annotated: bool
    status: str | None


@dataclass(frozen=True)
class Unbookable:
    """A readable event that cannot be a booking, and why."""

    uid: str
    reason: Reason
    notes: str
    annotated: bool


# --- reading ---------------------------------------------------------------


def read_booking(
    source: Source, *, timezone: ZoneInfo, settings: DepartmentSettings
) -> BookingEvent | Unbookable:
    """The booking a client's iCalendar object asks for, or why it cannot be one.

    Raises :class:`EventError` (a ValueError) when the text is malformed.
    """
    calendar = _read(source)
    events = _events(calendar)
    event = events[0]
    uid = _uid(event)
    notes, annotated = _notes(event)

    def unbookable(reason: Reason) -> Unbookable:
        return Unbookable(uid, reason, notes, annotated)

    if len(events) > 1 or any(name in event for name in ("RECURRENCE-ID", "RRULE", "RDATE")):
        return unbookable(Reason.RECURRING)
    if "DTSTART" not in event:
        return unbookable(Reason.NO_TIME)
    start_value = _value(event, "DTSTART")
    if not isinstance(start_value, datetime):
        return unbookable(Reason.ALL_DAY)
    summary = strip_prefix(_text(event, "SUMMARY"))
    service = settings.service_for(summary)
    if service is None:
        return unbookable(Reason.UNKNOWN_SERVICE)
    try:
        start, end = _times(event, start_value, service, timezone)
    except OverflowError:
        raise EventError("bad-value", "The visit's time is out of range.") from None
    if not (_EARLIEST <= start and end <= _LATEST):
        raise EventError("bad-value", "The visit's time is out of range.")
    if end < start:
        raise EventError("end-before-start", "The visit ends before it starts.")
    if end == start:
        raise EventError("zero-length", "The visit ends when it starts.")
    status = _text(event, "STATUS").strip().upper() or None
    return BookingEvent(uid, Interval(start, end), service, summary, notes, annotated, status)


def _times(
    event: Component, start_value: datetime, service: Service, timezone: ZoneInfo
) -> tuple[datetime, datetime]:
    """(start, end) of a timed event in UTC (may raise OverflowError)."""
    start = _aware(start_value, timezone)
    if "DTEND" in event and "DURATION" in event:
        raise EventError("bad-value", "The event has both an end time (DTEND) and a DURATION.")
    if "DTEND" in event:
        end_value = _value(event, "DTEND")
        if not isinstance(end_value, datetime):
            raise EventError("bad-value", "The event's end (DTEND) is a date without a time of day.")
        end = _aware(end_value, timezone)
    elif "DURATION" in event:
        duration = _value(event, "DURATION")
        if not isinstance(duration, timedelta):
            raise EventError("bad-value", "The event's DURATION is not a duration.")
        end = _add(start, duration, timezone)
    else:
        end = _add(start, service.duration, timezone)
    return start.astimezone(UTC), end.astimezone(UTC)


def strip_prefix(summary: str) -> str:
    """SUMMARY without any "not booked" prefix (of any language, repeated)."""
    summary = summary.strip()
    while True:
        for prefix in _PREFIXES:
            if summary.casefold().startswith(prefix.strip().casefold()):
                summary = summary[len(prefix.strip()) :].strip()
                break
        else:
            return summary


def recipient_notes(text: str) -> str:
    """The recipient's own notes in an event's DESCRIPTION ("" if none)."""
    return _notes(_events(_parse(text))[0])[0]


Source = str | icalendar.Calendar
"""A client's iCalendar text, or that text as :func:`parse` read it: a PUT
parses the sent event once and hands the result to each function here that
reads it (none of them changes a calendar it is given)."""


def parse(text: str) -> icalendar.Calendar:
    """``text`` read as a VCALENDAR; raises :class:`EventError` when it is not."""
    return _parse(text)


def _read(source: Source) -> icalendar.Calendar:
    """A calendar to read, not to change."""
    return _parse(source) if isinstance(source, str) else source


def _own(source: Source) -> icalendar.Calendar:
    """A calendar of one's own to change (a copy is half the cost of a parse)."""
    return _parse(source) if isinstance(source, str) else copy.deepcopy(source)


def _parse(text: str) -> icalendar.Calendar:
    try:
        component = icalendar.Calendar.from_ical(text)
    except Exception as error:  # icalendar raises ValueError and a few others
        raise EventError("unparsable", f"The calendar data cannot be read: {error}") from None
    if not isinstance(component, icalendar.Calendar) or component.name != "VCALENDAR":
        raise EventError("not-a-calendar", "The calendar data is not a VCALENDAR object.")
    return component


def _events(calendar: icalendar.Calendar) -> list[Component]:
    events = [c for c in calendar.subcomponents if c.name == "VEVENT"]
    if not events:
        raise EventError("no-event", "The calendar object contains no event (VEVENT).")
    return events


def _uid(event: Component) -> str:
    uid = _text(event, "UID").strip()
    if not uid:
        raise EventError("no-uid", "The event has no UID.")
    return uid


def _text(component: Component, name: str) -> str:
    value = component.get(name)
    if value is None:
        return ""
    if isinstance(value, list):  # a property given twice: the first counts
        value = value[0]
    return str(value)


def _value(component: Component, name: str) -> Any:
    prop: Any = component[name]
    if isinstance(prop, list):
        raise EventError("bad-value", f"The event has more than one {name}.")
    try:
        return prop.dt
    except Exception as error:
        raise EventError("bad-value", f"The event's {name} cannot be read: {error}") from None


def _aware(value: datetime, timezone: ZoneInfo) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone)


def _add(start: datetime, duration: timedelta, timezone: ZoneInfo) -> datetime:
    """``start`` + ``duration``: days on the local calendar, the rest elapsed."""
    if duration < timedelta(0):
        raise EventError("end-before-start", "The visit has a negative duration.")
    local = start.astimezone(timezone)
    moved = (local.replace(tzinfo=None) + timedelta(days=duration.days)).replace(tzinfo=timezone)
    return moved.astimezone(UTC) + timedelta(seconds=duration.seconds, microseconds=duration.microseconds)


def _lines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _unescape(value: str) -> str:
    """RFC 5545 3.3.11 TEXT unescaping."""
    return re.sub(r"\\([\\;,nN])", lambda m: "\n" if m[1] in "nN" else m[1], value)


def _annotation(event: Component) -> str:
    """The server part stored in the X- property ("" if none)."""
    prop = event.get(ANNOTATION)
    if isinstance(prop, list):
        prop = prop[0]
    if prop is None:
        return ""
    value = str(prop)
    if not isinstance(prop, icalendar.vText):  # VALUE=TEXT dropped: still escaped
        value = _unescape(value)
    return _lines(value).strip()


def _notes(event: Component) -> tuple[str, bool]:
    """(recipient's notes, whether server text was found) of one VEVENT."""
    description = _lines(_text(event, "DESCRIPTION"))
    annotation = _annotation(event)
    lines = description.split("\n")
    for index, line in enumerate(lines):
        if line.strip() == SEPARATOR:
            return "\n".join(lines[index + 1 :]).strip(), True
    if annotation and description.strip().startswith(annotation):
        return description.strip()[len(annotation) :].strip(), True
    return description.strip(), ANNOTATION in event


# --- the recipient's event -------------------------------------------------


def _restated(original: Source, *, status: str, server_part: str, not_booked: str | None) -> str:
    """``original`` with STATUS ``status`` and ``server_part`` above the
    recipient's notes; SUMMARY gets the "not booked" prefix ``not_booked``
    once, or (None) loses any such prefix."""
    calendar = _own(original)
    for event in _events(calendar):
        _set(event, "STATUS", status)
        if not_booked is not None:
            summary = strip_prefix(_text(event, "SUMMARY"))
            _set(event, "SUMMARY", not_booked + summary if summary else not_booked.strip())
        elif "SUMMARY" in event:
            _set(event, "SUMMARY", strip_prefix(_text(event, "SUMMARY")))
        _annotate(event, server_part, _notes(event)[0])
    return _serialise(calendar)


def confirmed_text(original: Source, *, language: str, staff_name: str | None) -> str:
    """The event as stored when accepted: STATUS:CONFIRMED, no "not booked"
    prefix, and the confirmation line above the recipient's notes."""
    return _restated(original, status="CONFIRMED", not_booked=None,
                     server_part=texts.confirmation_line(language, staff_name))


def refused_text(
    original: Source,
    *,
    language: str,
    reasons: Sequence[str],
    alternatives: Sequence[Interval],
    timezone: ZoneInfo,
) -> str:
    """The event as stored when a new booking is refused: STATUS:CANCELLED,
    the "not booked" prefix once, reasons and alternatives above the notes."""
    return _restated(original, status="CANCELLED", not_booked=texts.not_booked_prefix(language),
                     server_part=texts.refusal_description(reasons, alternatives, timezone, language))


def waiting_text(original: Source, *, language: str, notice: str) -> str:
    """The event as stored when put on the waiting list: STATUS:TENTATIVE, no
    "not booked" prefix, and the waiting sentence (``notice`` is a formatted
    duration such as "1 t") above the recipient's notes."""
    return _restated(original, status="TENTATIVE", not_booked=None,
                     server_part=texts.phrase(language, "waiting", notice=notice))


def waiting_expired_text(original: Source, *, language: str) -> str:
    """The event as stored when its time came while still waiting:
    STATUS:CANCELLED, the "not booked" prefix once, and why above the notes."""
    return _restated(original, status="CANCELLED", not_booked=texts.not_booked_prefix(language),
                     server_part=texts.phrase(language, "waiting_expired"))


def flagged_text(original: Source, *, language: str) -> str:
    """The confirmed event as stored when nobody can serve it any more:
    STATUS:TENTATIVE, SUMMARY kept (without a "not booked" prefix), and the
    sentence that the department will get in touch above the notes."""
    return _restated(original, status="TENTATIVE", not_booked=None,
                     server_part=texts.phrase(language, "flagged"))


def refused_change_text(
    confirmed: str,
    *,
    language: str,
    reasons: Sequence[str],
    alternatives: Sequence[Interval],
    timezone: ZoneInfo,
    notes: str | None = None,
) -> str:
    """The stored confirmed booking, unchanged but for the reason the change
    was refused (above its confirmation line; an earlier refused change's
    reason is replaced, not accumulated). ``notes``, if given, replace the
    recipient's notes: the change refused *was* the notes (too long), and
    what the recipient typed must not be lost."""
    calendar = _parse(confirmed)
    refusal = texts.refusal_description(reasons, alternatives, timezone, language, changed=True)
    for event in _events(calendar):
        confirmation = _confirmation_line(event) or texts.confirmation_line(language, None)
        _annotate(event, f"{refusal}\n\n{confirmation}", _notes(event)[0] if notes is None else notes)
    return _serialise(calendar)


def _confirmation_line(event: Component) -> str | None:
    """The last line of the server's part of DESCRIPTION: the confirmation
    line in everything :func:`confirmed_text` and :func:`refused_change_text` write."""
    description = _lines(_text(event, "DESCRIPTION"))
    annotation = _annotation(event)
    lines = description.split("\n")
    server: list[str] | None = None
    for index, line in enumerate(lines):
        if line.strip() == SEPARATOR:
            server = lines[:index]
            break
    if server is None:
        if not annotation:
            return None
        server = annotation.split("\n")
    server = [line.strip() for line in server if line.strip()]
    return server[-1] if server else None


def _annotate(event: Component, server_part: str, notes: str) -> None:
    description = f"{server_part}\n{SEPARATOR}"
    if notes:
        description += f"\n{notes}"
    _set(event, "DESCRIPTION", description)
    # VALUE=TEXT: without it, parsers (icalendar too) keep an X- value escaped.
    event.pop(ANNOTATION, None)
    event.add(ANNOTATION, icalendar.vText(server_part), parameters={"VALUE": "TEXT"})
    for name in _RICH_TEXT:
        event.pop(name, None)


def _set(component: Component, name: str, value: str) -> None:
    component.pop(name, None)
    component.add(name, icalendar.vText(value))


def _serialise(calendar: icalendar.Calendar) -> str:
    return calendar.to_ical().decode("utf-8")


def annotated(source: Source) -> bool:
    """Whether an event of ``source`` carries the server's annotation
    (everything the server writes into a recipient's event does)."""
    return any(ANNOTATION in event for event in _read(source).walk("VEVENT"))


def normalised(source: Source) -> str:
    """The event as the functions above would write it unchanged: compare a
    rewritten event with this to learn whether the server changed anything."""
    return _serialise(_read(source))


# --- the staff member's visit ----------------------------------------------


def assignment_text(
    *,
    booking_uid: str,
    assignment_uid: str,
    interval: Interval,
    service_name: str,
    recipient_name: str,
    address: str | None,
    phone: str | None,
    notes: str | None,
    language: str,
    stamp: datetime | None = None,
) -> str:
    """The visit in the staff member's ``assignments/`` calendar.

    Its own UID, linked to the booking by RELATED-TO (a UID in the
    recipient's calendar); times in UTC; no ATTENDEE or ORGANIZER, so no
    client treats it as an invitation. ``stamp`` is DTSTAMP (default: now).
    """
    calendar = _new_calendar()
    event = icalendar.Event()
    event.add("UID", assignment_uid)
    event.add("DTSTAMP", (stamp or datetime.now(UTC)).astimezone(UTC))
    event.add("DTSTART", interval.start.astimezone(UTC))
    event.add("DTEND", interval.end.astimezone(UTC))
    event.add("SUMMARY", f"{service_name} – {recipient_name}")
    if address and address.strip():
        event.add("LOCATION", address.strip())
    labels = _LABELS.get(language, _LABELS["nb"])
    parts = []
    if phone and phone.strip():
        parts.append(f"{labels['phone']}: {phone.strip()}")
    if notes and _lines(notes).strip():
        parts.append(_lines(notes).strip())
    if parts:
        event.add("DESCRIPTION", "\n\n".join(parts))
    event.add("STATUS", "CONFIRMED")
    event.add("RELATED-TO", booking_uid)
    calendar.add_component(event)
    return _serialise(calendar)


# --- views -----------------------------------------------------------------


def availability_text(*, uid: str, start: datetime, end: datetime, free: bool, language: str) -> str:
    """One free or busy period, as shown to anyone allowed to see availability.

    Only times, "Free"/"Busy" and (when free) how to book: no names, no
    services, no notes. Deterministic: DTSTAMP is the start, so the same
    inputs give the same text (and the same ETag). Raises ValueError when a
    time is naive or ``end`` is not after ``start``.
    """
    interval = Interval(start, end).utc()
    calendar = _new_calendar()
    event = icalendar.Event()
    event.add("UID", uid)
    event.add("DTSTAMP", interval.start)
    event.add("DTSTART", interval.start)
    event.add("DTEND", interval.end)
    event.add("SUMMARY", texts.phrase(language, "free" if free else "busy"))
    event.add("TRANSP", "TRANSPARENT" if free else "OPAQUE")
    event.add("CLASS", "PUBLIC")
    if free:
        event.add("DESCRIPTION", texts.phrase(language, "free_description"))
    calendar.add_component(event)
    return _serialise(calendar)


_OVERVIEW_STATUSES = {"confirmed": "CONFIRMED", "waiting": "TENTATIVE", "flagged": "TENTATIVE"}


def overview_text(
    *,
    uid: str,
    booking_uid: str,
    interval: Interval,
    service_name: str,
    recipient_name: str,
    staff_name: str | None,
    status: str,
    notes: str | None,
    language: str,
    stamp: datetime,
) -> str:
    """One booking in the department's overview: who, what, who comes.

    ``status`` is "confirmed", "waiting" or "flagged" (else ValueError); a
    waiting or flagged booking is TENTATIVE, its SUMMARY starts with a prefix
    and it carries a category, so it stands out. Linked to the booking by
    RELATED-TO; times in UTC; DTSTAMP is ``stamp``.
    """
    if status not in _OVERVIEW_STATUSES:
        raise ValueError(f"status must be one of {', '.join(_OVERVIEW_STATUSES)}, not {status!r}")
    calendar = _new_calendar()
    event = icalendar.Event()
    event.add("UID", uid)
    event.add("DTSTAMP", stamp.astimezone(UTC))
    event.add("DTSTART", interval.start.astimezone(UTC))
    event.add("DTEND", interval.end.astimezone(UTC))
    summary = f"{service_name} – {recipient_name}"
    if staff_name:
        summary += f" ({staff_name})"
    if status != "confirmed":
        summary = texts.phrase(language, f"{status}_prefix") + summary
        event.add("CATEGORIES", [texts.phrase(language, f"{status}_category")])
    event.add("SUMMARY", summary)
    parts = []
    if staff_name:
        parts.append(f"{texts.phrase(language, 'staff_label')}: {staff_name}")
    if notes and _lines(notes).strip():
        parts.append(_lines(notes).strip())
    if parts:
        event.add("DESCRIPTION", "\n\n".join(parts))
    event.add("STATUS", _OVERVIEW_STATUSES[status])
    event.add("RELATED-TO", booking_uid)
    event.add("TRANSP", "OPAQUE")
    calendar.add_component(event)
    return _serialise(calendar)


def _new_calendar() -> icalendar.Calendar:
    calendar = icalendar.Calendar()
    calendar.add("PRODID", PRODID)
    calendar.add("VERSION", "2.0")
    return calendar


__all__ = [
    "ANNOTATION",
    "SEPARATOR",
    "BookingEvent",
    "EventError",
    "Unbookable",
    "assignment_text",
    "availability_text",
    "confirmed_text",
    "flagged_text",
    "normalised",
    "overview_text",
    "read_booking",
    "recipient_notes",
    "refused_change_text",
    "refused_text",
    "strip_prefix",
    "waiting_expired_text",
    "waiting_text",
    "without_stamp",
]


def without_stamp(text: str) -> str:
    """``text`` without its DTSTAMP lines: what a server-written event says,
    to learn whether writing it again would change anything."""
    return "\n".join(line for line in text.splitlines() if not line.startswith("DTSTAMP"))
