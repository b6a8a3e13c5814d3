"""Opening windows from a department's opening-time calendar (pure: text in, values out).

:func:`expand_windows` reads the iCalendar objects of an ``opening-<dept>``
calendar and returns every opening window that overlaps a time span, with the
staff on duty in it. Recurrence is computed by ``recurring-ical-events``;
this module only decides what an occurrence *means* for the booking rules.

Decisions (see DESIGN.md, "Booking rules"):

- Times. Windows are returned in UTC, so that comparing, subtracting and
  adding works on instants even across daylight-saving changes (Python
  compares and subtracts datetimes that share one tzinfo by wall clock).
  A recurring window keeps its *local* times on every day: 08:00-16:00
  Europe/Oslo is 8 hours on the days the clocks change too; a window that
  spans the change (00:00-04:00) is 3 hours in March and 5 in October.
  The same holds for DURATION (PT4H from 00:00 ends at 04:00 local). This
  is what an admin means by "open 00:00-04:00" and what the library does;
  RFC 5545 (3.8.5.3, 3.3.6) would keep the exact length instead.
  Floating times, and times whose TZID is unknown and has no VTIMEZONE
  (reported, see below), are in the department's ``timezone``. A local time
  that does not exist (02:30 on the March change day) is read with the
  offset before the change, i.e. it falls one hour later on the clock.
- All-day events open the whole local day(s) in the department's time zone,
  from 00:00 on DTSTART to 00:00 on DTEND (23 or 25 hours on change days).
- Cancelled: an occurrence whose STATUS is CANCELLED opens nothing. A master
  with STATUS:CANCELLED cancels every occurrence except overrides that carry
  a STATUS of their own (an override is a whole component: its properties
  replace the master's). TENTATIVE and CONFIRMED open like no STATUS.
- TRANSP is ignored: TRANSPARENT only says the admin is not busy themselves,
  and clients often set it by default on all-day events; the window opens.
- Staff on duty: the occurrence's ATTENDEEs (``mailto:`` stripped, compared
  case-insensitively, PARTSTAT and ROLE not considered) that appear in
  ``staff_by_email``. If none of them does - no ATTENDEE, or only people who
  are not staff - all of ``all_staff`` is on duty. An override's ATTENDEEs
  replace the master's for that occurrence (an override without ATTENDEE
  therefore means all staff).
- Windows are not merged or clipped: each occurrence is one window, whole,
  even where it overlaps another or reaches outside [start, end); the rules
  handle each window with its own staff.
- Bad objects never stop the others. An object that cannot be parsed or
  expanded opens nothing and is reported; so is one with an end before its
  start (the library would silently swap them), or a rule repeating more
  often than hourly (which could make millions of occurrences). Zero-length
  occurrences open nothing and are reported. A TZID that is neither known
  nor defined by a VTIMEZONE is reported, and read as the department's time.
  Reports go to ``on_problem``; without it, they are logged as warnings
  (object position, UID and a reason - never the event's contents).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events
from icalendar.cal import Component

from servicehop_caldav.booking.model import Interval, Window

logger = logging.getLogger(__name__)

# Extra span queried on both sides, then cut exactly: covers floating and
# all-day events, which the library compares by wall clock.
_MARGIN = timedelta(days=1)
_TOO_FREQUENT = frozenset({"SECONDLY", "MINUTELY"})


@dataclass(frozen=True)
class OpeningProblem:
    """Something wrong with one object of the opening calendar.

    ``index`` is the object's position in ``calendars``; ``skipped`` is true
    when the object (or some occurrence of it) opens nothing because of it.
    ``code`` is stable (for tests and texts); ``detail`` is for the admin
    and may quote the offending value, so it is not logged above debug.
    """

    index: int
    uid: str | None
    code: str
    detail: str
    skipped: bool = True


class _Skip(Exception):
    """Stop reading one object; the problem has been described."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def expand_windows(
    calendars: Iterable[str],
    *,
    timezone: ZoneInfo,
    start: datetime,
    end: datetime,
    staff_by_email: Mapping[str, str],
    all_staff: frozenset[str],
    on_problem: Callable[[OpeningProblem], None] | None = None,
) -> list[Window]:
    """Every opening window overlapping [start, end), sorted by (start, end).

    ``calendars`` are the iCalendar texts of the opening calendar's objects;
    ``staff_by_email`` maps e-mail addresses to usernames; ``all_staff`` is
    on duty where an event names no staff. Times returned are in UTC.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    if end <= start:
        raise ValueError("end must be after start")
    report = on_problem if on_problem is not None else _log_problem
    emails = {_email(key): user for key, user in staff_by_email.items()}
    span = (start.astimezone(UTC), end.astimezone(UTC))
    windows: list[Window] = []
    for index, text in enumerate(calendars):
        uid: str | None = None
        try:
            calendar = _parse(text)
            uid = _first_uid(calendar)
            found, problems = _expand_one(calendar, timezone, span, emails, all_staff)
        except _Skip as skip:
            report(OpeningProblem(index, uid, skip.code, skip.detail))
            continue
        except Exception as error:  # the library's and icalendar's errors are many
            report(OpeningProblem(index, uid, "unreadable", f"{type(error).__name__}: {error}"))
            continue
        for code, detail, skipped in problems:
            report(OpeningProblem(index, uid, code, detail, skipped))
        windows.extend(found)
    windows.sort(key=lambda w: (w.interval.start, w.interval.end, sorted(w.staff)))
    return windows


def _log_problem(problem: OpeningProblem) -> None:
    logger.warning(
        "opening calendar object %d (UID %s): %s%s",
        problem.index,
        problem.uid,
        problem.code,
        " - skipped" if problem.skipped else "",
    )
    logger.debug("opening calendar object %d: %s", problem.index, problem.detail)


@functools.lru_cache(maxsize=256)
def _parse(text: str) -> icalendar.Calendar:
    """The parsed object, kept for the next call with the same text: every
    booking decision and availability refresh expands the same few opening
    objects, and parsing them was the larger part of a decision. Expansion
    only reads the parsed calendar, so sharing it is safe."""
    try:
        component = icalendar.Calendar.from_ical(text)
    except ValueError as error:
        raise _Skip("unparsable", str(error)) from None
    if not isinstance(component, icalendar.Calendar) or component.name != "VCALENDAR":
        raise _Skip("not-a-calendar", "the object is not a VCALENDAR")
    return component


def _first_uid(calendar: icalendar.Calendar) -> str | None:
    for event in calendar.walk("VEVENT"):
        if "UID" in event:
            return str(event["UID"])
    return None


def _expand_one(
    calendar: icalendar.Calendar,
    timezone: ZoneInfo,
    span: tuple[datetime, datetime],
    emails: Mapping[str, str],
    all_staff: frozenset[str],
) -> tuple[list[Window], list[tuple[str, str, bool]]]:
    """Windows of one object, and its non-fatal problems (code, detail, skipped)."""
    problems: list[tuple[str, str, bool]] = []
    for event in calendar.walk("VEVENT"):
        _check_event(event, problems)
    query = recurring_ical_events.of(calendar)
    occurrences = query.between(
        (span[0] - _MARGIN).astimezone(timezone), (span[1] + _MARGIN).astimezone(timezone)
    )
    windows: list[Window] = []
    zero_length = False
    for occurrence in occurrences:
        if str(occurrence.get("STATUS", "")).strip().upper() == "CANCELLED":
            continue
        first = _instant(_dt(occurrence, "DTSTART"), timezone)
        last = _instant(_dt(occurrence, "DTEND"), timezone) if "DTEND" in occurrence else first
        if last <= first:
            zero_length = True
            continue
        if first < span[1] and span[0] < last:
            staff = _on_duty(occurrence.get("ATTENDEE"), emails, all_staff)
            windows.append(Window(Interval(first, last), staff))
    if zero_length:
        problems.append(("zero-length", "an occurrence ends when it starts and opens nothing", True))
    return windows, problems


def _check_event(event: Component, problems: list[tuple[str, str, bool]]) -> None:
    """Refuse what the library would misread; note TZIDs read as local time."""
    if "DTSTART" not in event:
        raise _Skip("no-start", "an event has no DTSTART")
    begin = _dt(event, "DTSTART")
    for name in ("DTSTART", "DTEND", "RECURRENCE-ID"):
        if name in event and "TZID" in event[name].params and _is_floating(_dt(event, name)):
            tzid = event[name].params["TZID"]
            problems.append(("unknown-tzid", f"{name} has TZID {tzid!r}, read as local time", False))
    if "DTEND" in event:
        finish = _dt(event, "DTEND")
        if _comparable(finish, begin) < _comparable(begin, finish):
            raise _Skip("end-before-start", "an event ends before it starts")
    if "DURATION" in event and _dt(event, "DURATION") < timedelta(0):
        raise _Skip("end-before-start", "an event has a negative DURATION")
    rules = event.get("RRULE")
    for rule in rules if isinstance(rules, list) else [rules] if rules is not None else []:
        frequency = rule.get("FREQ", [""])
        if str(frequency[0] if isinstance(frequency, list) else frequency).upper() in _TOO_FREQUENT:
            raise _Skip("too-frequent", "an opening event repeats more often than hourly")


def _dt(component: Component, name: str) -> Any:
    """The value of a date, date-time or duration property (raises if broken)."""
    prop: Any = component[name]
    return prop.dt


def _is_floating(value: Any) -> bool:
    return isinstance(value, datetime) and value.tzinfo is None


def _comparable(value: date, other: date) -> datetime:
    """``value`` as a datetime comparable with ``other`` (for DTEND/DTSTART checks)."""
    if not isinstance(value, datetime):
        value = datetime.combine(value, time())
    other_tz = other.tzinfo if isinstance(other, datetime) else None
    if value.tzinfo is None and other_tz is not None:
        return value.replace(tzinfo=other_tz)
    if value.tzinfo is not None and other_tz is None:
        return value.replace(tzinfo=None)
    return value


def _instant(value: date, timezone: ZoneInfo) -> datetime:
    """A DATE, floating or zoned value as an aware UTC datetime."""
    if not isinstance(value, datetime):
        value = datetime.combine(value, time(), timezone)
    elif value.tzinfo is None:
        value = value.replace(tzinfo=timezone)
    return value.astimezone(UTC)


def _email(address: str) -> str:
    address = address.strip()
    if address[:7].lower() == "mailto:":
        address = address[7:]
    return address.strip().lower()


def _on_duty(attendees: Any, emails: Mapping[str, str], all_staff: frozenset[str]) -> frozenset[str]:
    if attendees is None:
        return all_staff
    values = attendees if isinstance(attendees, list) else [attendees]
    staff = frozenset(emails[key] for key in map(_email, map(str, values)) if key in emails)
    return staff or all_staff
