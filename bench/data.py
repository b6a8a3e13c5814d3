"""The seed calendar, the events the workloads write, and the expected answers.

A calendar of ``size`` events spread over 2026 (one year from Monday
2026-01-05), one hour each, starting on the hour between 08:00 and 17:00 UTC,
so no event touches a day boundary and a time range of whole days has no
edge cases. About 10 % are weekly recurring: half open-ended, half with
COUNT=20. Times are UTC (no VTIMEZONE): every server parses the same text.

The week the calendar-query asks for is fixed (``QUERY_START`` to
``QUERY_END``); the expected hrefs are computed from the seed texts with
``recurring_ical_events``, independently of any server. Events written by the
workloads (PUT, concurrent writers) lie in 2027, outside that week, and
changes for sync keep their times, so the expected week stays the same for the
whole run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import icalendar
import recurring_ical_events

YEAR_START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
QUERY_START = datetime(2026, 6, 1, tzinfo=UTC)  # a Monday
QUERY_END = QUERY_START + timedelta(days=7)
WRITES_START = datetime(2027, 3, 1, tzinfo=UTC)  # where the workloads' new events go
RECURRING_SHARE = 0.10
PRODID = "-//servicehop-caldav bench//EN"
_STAMP = "20260101T000000Z"
_FILLER = (
    "Seeded by the servicehop-caldav benchmark. A line of text so the object is "
    "about the size of a real appointment with a short description."
)


def _ical_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def event_text(
    uid: str, start: datetime, end: datetime, summary: str, rrule: str | None = None,
    status: str | None = None, description: str = _FILLER,
) -> str:
    """One VEVENT in a VCALENDAR, CRLF line endings, UTC times."""
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        "BEGIN:VEVENT",
        f"UID:{uid}",
        f"DTSTAMP:{_STAMP}",
        f"DTSTART:{_ical_time(start)}",
        f"DTEND:{_ical_time(end)}",
        f"SUMMARY:{summary}",
        f"DESCRIPTION:{description}",
    ]
    if rrule:
        lines.append(f"RRULE:{rrule}")
    if status:
        lines.append(f"STATUS:{status}")
    lines += ["END:VEVENT", "END:VCALENDAR"]
    return "\r\n".join(lines) + "\r\n"


@dataclass(frozen=True)
class Event:
    href: str  # the resource name inside the calendar, e.g. "ev-00042.ics"
    uid: str
    start: datetime
    end: datetime
    summary: str
    rrule: str | None

    @property
    def text(self) -> str:
        return event_text(self.uid, self.start, self.end, self.summary, self.rrule)

    def changed_text(self, number: int) -> str:
        """The same event at the same times with another SUMMARY (a change for sync)."""
        return event_text(self.uid, self.start, self.end, f"{self.summary} (change {number})", self.rrule)


def make_calendar(size: int, seed: int) -> list[Event]:
    """``size`` events, ~10 % weekly recurring, reproducible from ``seed``."""
    rng = random.Random(f"calendar-{size}-{seed}")
    events = []
    for number in range(size):
        day = rng.randrange(364)
        hour = rng.randrange(8, 18)
        start = YEAR_START + timedelta(days=day, hours=hour)
        rrule = None
        if rng.random() < RECURRING_SHARE:
            rrule = "FREQ=WEEKLY" if rng.random() < 0.5 else "FREQ=WEEKLY;COUNT=20"
        uid = f"bench-{size}-{number:05d}@servicehop.invalid"
        events.append(Event(f"ev-{number:05d}.ics", uid, start, start + timedelta(hours=1),
                            f"Bench event {number}", rrule))
    return events


def expected_hrefs_between(events: list[Event], start: datetime, end: datetime) -> set[str]:
    """Hrefs of the events with an occurrence overlapping [start, end), by
    ``recurring_ical_events`` (the CalDAV time-range test of RFC 4791 9.9)."""
    calendar = icalendar.Calendar()
    calendar.add("PRODID", PRODID)
    calendar.add("VERSION", "2.0")
    by_uid = {}
    for event in events:
        component = icalendar.Calendar.from_ical(event.text).walk("VEVENT")[0]
        calendar.add_component(component)
        by_uid[event.uid] = event.href
    occurrences = recurring_ical_events.of(calendar).between(start, end)
    return {by_uid[str(occurrence["UID"])] for occurrence in occurrences}


def new_event(tag: str, number: int) -> tuple[str, str]:
    """(href, text) of a new event written by a workload, outside the query week."""
    uid = f"new-{tag}-{number:06d}@servicehop.invalid"
    start = WRITES_START + timedelta(days=number % 300, hours=8 + number % 9)
    return f"new-{tag}-{number:06d}.ics", event_text(uid, start, start + timedelta(hours=1),
                                                     f"New event {tag} {number}")
