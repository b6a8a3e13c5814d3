"""Plain values the booking rules work on: no Radicale, no SQL.

All datetimes are timezone-aware; the rules compare them as instants.
Python compares two datetimes that share one tzinfo by wall time (ignoring
``fold``), which is wrong in the repeated hour of a daylight-saving change;
``Interval`` therefore validates, measures and compares through UTC.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo


def instant(moment: datetime) -> datetime:
    """The same moment in UTC: safe to compare and subtract across DST folds."""
    return moment.astimezone(UTC)


@dataclass(frozen=True, order=True)
class Interval:
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("interval times must be timezone-aware")
        if instant(self.end) <= instant(self.start):
            raise ValueError("an interval ends after it starts")

    @classmethod
    def of_timestamps(cls, start: int, end: int) -> Interval:
        """The interval between two POSIX times, in UTC: what a decision
        makes of each of the hundreds of stored bookings it reads, checked
        on the integers instead of through two time-zone conversions."""
        if end <= start:
            raise ValueError("an interval ends after it starts")
        interval = object.__new__(cls)
        object.__setattr__(interval, "start", datetime.fromtimestamp(start, UTC))
        object.__setattr__(interval, "end", datetime.fromtimestamp(end, UTC))
        return interval

    @property
    def duration(self) -> timedelta:
        """Elapsed time (a local 01:00-04:00 on a DST day is 2 or 4 hours)."""
        return instant(self.end) - instant(self.start)

    def overlaps(self, other: Interval, gap: timedelta = timedelta(0)) -> bool:
        """True if the two intervals are closer than ``gap`` (0: they overlap)."""
        return (
            instant(self.start) < instant(other.end) + gap and instant(other.start) < instant(self.end) + gap
        )

    def contains(self, other: Interval) -> bool:
        return instant(self.start) <= instant(other.start) and instant(other.end) <= instant(self.end)

    def utc(self) -> Interval:
        """The same interval with both ends in UTC."""
        return Interval(instant(self.start), instant(self.end))

    def astimezone(self, tz: tzinfo) -> Interval:
        """The same interval with both ends expressed in ``tz``."""
        return Interval(self.start.astimezone(tz), self.end.astimezone(tz))


@dataclass(frozen=True)
class Window:
    """One opening window and the staff (usernames) on duty for all of it."""

    interval: Interval
    staff: frozenset[str]


@dataclass(frozen=True)
class Booking:
    """A confirmed booking: who is served, by whom, when."""

    id: str
    recipient: str
    staff: str
    interval: Interval


@dataclass(frozen=True)
class Request:
    """A booking request. ``replaces`` is the id of the booking it moves
    (that booking does not count against the request)."""

    recipient: str
    interval: Interval
    service: str
    replaces: str | None = None


@dataclass(frozen=True)
class Rules:
    """A department's booking rules (defaults as in DESIGN.md)."""

    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Europe/Oslo"))
    horizon: timedelta = timedelta(days=14)
    minimum_notice: timedelta = timedelta(minutes=60)
    min_duration: timedelta = timedelta(minutes=15)
    max_duration: timedelta = timedelta(minutes=240)
    travel_buffer: timedelta = timedelta(0)
    continuity_days: int = 30


class Reason(enum.Enum):
    """Why a request is refused; codes go into the audit log."""

    TOO_SOON = "too-soon"
    BEYOND_HORIZON = "beyond-horizon"
    IN_THE_PAST = "in-the-past"
    TOO_SHORT = "too-short"
    TOO_LONG = "too-long"
    OUTSIDE_OPENING = "outside-opening"
    OWN_OVERLAP = "own-overlap"
    ENTITLEMENT = "entitlement-exceeded"
    NO_STAFF_FREE = "no-staff-free"
    # Found by reading the event, before the rules run.
    ALL_DAY = "all-day"
    RECURRING = "recurring"
    NO_TIME = "no-time"
    UNKNOWN_SERVICE = "unknown-service"
    BAD_TIME = "bad-time"
    END_BEFORE_START = "end-before-start"
    ZERO_LENGTH = "zero-length"
    NOTES_TOO_LONG = "notes-too-long"
    UID_TAKEN = "uid-taken"


@dataclass(frozen=True)
class Decision:
    """Accepted with the staff member to serve it, or refused with reasons
    and the nearest free alternatives (same duration)."""

    staff: str | None
    reasons: tuple[Reason, ...] = ()
    alternatives: tuple[Interval, ...] = ()

    @property
    def accepted(self) -> bool:
        return self.staff is not None
