"""The booking rules of DESIGN.md, pure: plain values in, a ``Decision`` out.

No Radicale, no SQL, no I/O, no clock: ``now`` is an argument. The same
inputs give the same decision whatever the order of ``windows`` and
``bookings``. All times are compared as instants (UTC); calendar questions
(which day, which ISO week) are asked in the department's time zone.

Choices made where DESIGN.md leaves room:

- Notice and horizon bound the *start*: ``now + minimum_notice <= start <=
  now + horizon`` (both ends allowed). A start before ``now`` is reported as
  ``IN_THE_PAST`` instead of ``TOO_SOON``.
- Durations are elapsed time: a local 01:00-04:00 is 2 h on the last Sunday
  of March and 4 h on the last Sunday of October.
- "Wholly inside one window": the interval must fit in a single window;
  adjacent or overlapping windows are not joined. The staff on duty for the
  interval are those of every window that contains it. ``NO_STAFF_FREE`` is
  only reported for an interval inside a window (outside, ``OUTSIDE_OPENING``
  already says it).
- Weekly entitlement: a booking counts wholly in the ISO week (department
  time zone) in which it *starts*, also when it runs past midnight into
  Monday. Past bookings of the week count. Reaching the entitlement exactly
  is allowed. ``weekly_minutes=None`` means unlimited.
- Travel buffer: an employee's two visits must be at least ``travel_buffer``
  apart, on both sides of the new visit.
- Assignment among the qualifying staff: most visits to this recipient that
  *ended* within ``continuity_days`` days before ``now`` (``now - period <=
  end <= now``), then fewest booked *minutes* on the request's local day
  (bookings count on the local day they start), then username.
- The booking named by ``request.replaces`` is left out of every check
  (own overlap, entitlement, staff load, continuity). The caller verifies
  that it belongs to the recipient. Its employee, when free for the new
  time, keeps it: a recipient who moves a visit expects the same person.
- Alternatives (only on refusal): candidate starts on a grid of ``grid``
  (15 min) counted in elapsed time from each window's start, inside the
  notice/horizon limits, same duration as the request; every candidate is
  run through all the rules for this recipient. The ``max_alternatives``
  nearest to the requested start (ties: the earlier) are returned in
  chronological order, expressed in the department's time zone. None when
  the requested duration is itself out of bounds.
- Reasons are returned in the declaration order of ``Reason``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta

from .model import Booking, Decision, Interval, Reason, Request, Rules, Window, instant

__all__ = ["GRID", "decide", "free_intervals"]

GRID = timedelta(minutes=15)
"""Default step between the alternatives offered, counted from a window's start."""

_ORDER = {reason: index for index, reason in enumerate(Reason)}

Span = tuple[datetime, datetime]
"""An interval as (start, end) in UTC: cheap to compare."""


def _span(interval: Interval) -> Span:
    return instant(interval.start), instant(interval.end)


def _windows(windows: Iterable[Window]) -> list[tuple[datetime, datetime, frozenset[str]]]:
    spans = {(*_span(w.interval), w.staff) for w in windows}
    return sorted(spans, key=lambda w: (w[0], w[1], sorted(w[2])))


def _busy_by_staff(bookings: Iterable[Booking]) -> dict[str, list[Span]]:
    busy: dict[str, list[Span]] = defaultdict(list)
    for booking in bookings:
        busy[booking.staff].append(_span(booking.interval))
    for spans in busy.values():
        spans.sort()
    return busy


class _Context:
    """Everything about one recipient's request that does not depend on the
    interval asked for, so that alternatives are checked cheaply."""

    def __init__(
        self,
        request: Request,
        *,
        now: datetime,
        rules: Rules,
        windows: Sequence[Window],
        bookings: Sequence[Booking],
        weekly_minutes: int | None,
    ) -> None:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.rules = rules
        self.tz = rules.timezone
        self.now = instant(now)
        self.earliest = self.now + rules.minimum_notice
        self.latest = self.now + rules.horizon
        self.windows = _windows(windows)
        self.entitlement = None if weekly_minutes is None else timedelta(minutes=max(weekly_minutes, 0))

        others = [b for b in bookings if request.replaces is None or b.id != request.replaces]
        # A moved booking stays with its employee when they are free.
        self.keep = next((b.staff for b in bookings if b.id == request.replaces), None)
        self.busy = _busy_by_staff(others)
        self.own: list[Span] = []
        self.week_used: dict[tuple[int, int], timedelta] = defaultdict(timedelta)
        self.served: dict[str, int] = defaultdict(int)
        self.day_load: dict[date, dict[str, timedelta]] = defaultdict(lambda: defaultdict(timedelta))
        since = self.now - timedelta(days=rules.continuity_days)
        for booking in others:
            start, end = _span(booking.interval)
            self.day_load[self._day(start)][booking.staff] += end - start
            if booking.recipient != request.recipient:
                continue
            self.own.append((start, end))
            self.week_used[self._week(start)] += end - start
            if since <= end <= self.now:
                self.served[booking.staff] += 1

    def _day(self, moment: datetime) -> date:
        return moment.astimezone(self.tz).date()

    def _week(self, moment: datetime) -> tuple[int, int]:
        year, week, _ = moment.astimezone(self.tz).isocalendar()
        return year, week

    def _free(self, staff: str, start: datetime, end: datetime) -> bool:
        gap = self.rules.travel_buffer
        return not any(s < end + gap and start < e + gap for s, e in self.busy.get(staff, ()))

    def duration_ok(self, duration: timedelta) -> bool:
        return self.rules.min_duration <= duration <= self.rules.max_duration

    def check(self, start: datetime, end: datetime) -> tuple[tuple[Reason, ...], str | None]:
        """All reasons to refuse (start, end); if none, the staff member to assign."""
        rules = self.rules
        reasons: set[Reason] = set()
        if start < self.now:
            reasons.add(Reason.IN_THE_PAST)
        elif start < self.earliest:
            reasons.add(Reason.TOO_SOON)
        if start > self.latest:
            reasons.add(Reason.BEYOND_HORIZON)
        duration = end - start
        if duration < rules.min_duration:
            reasons.add(Reason.TOO_SHORT)
        if duration > rules.max_duration:
            reasons.add(Reason.TOO_LONG)
        on_duty: set[str] = set()
        inside = False
        for w_start, w_end, staff in self.windows:
            if w_start <= start and end <= w_end:
                inside = True
                on_duty |= staff
        if not inside:
            reasons.add(Reason.OUTSIDE_OPENING)
        if any(s < end and start < e for s, e in self.own):
            reasons.add(Reason.OWN_OVERLAP)
        if self.entitlement is not None and self.week_used[self._week(start)] + duration > self.entitlement:
            reasons.add(Reason.ENTITLEMENT)
        free = [s for s in on_duty if self._free(s, start, end)]
        if inside and not free:
            reasons.add(Reason.NO_STAFF_FREE)
        if reasons:
            return tuple(sorted(reasons, key=_ORDER.__getitem__)), None
        load = self.day_load.get(self._day(start), {})
        chosen = min(
            free, key=lambda s: (s != self.keep, -self.served.get(s, 0), load.get(s, timedelta(0)), s)
        )
        return (), chosen

    def alternatives(self, start: datetime, end: datetime, limit: int, grid: timedelta) -> list[Interval]:
        """Up to ``limit`` accepted intervals of the same duration, nearest to ``start``."""
        if limit <= 0 or grid <= timedelta(0) or not self.duration_ok(end - start):
            return []
        duration = end - start
        starts: set[datetime] = set()
        for w_start, w_end, _staff in self.windows:
            k = 0 if self.earliest <= w_start else -((w_start - self.earliest) // grid)
            candidate = w_start + k * grid
            while candidate <= self.latest and candidate + duration <= w_end:
                starts.add(candidate)
                candidate += grid
        starts.discard(start)
        found: list[Interval] = []
        for candidate in sorted(starts, key=lambda c: (abs(c - start), c)):
            if not self.check(candidate, candidate + duration)[0]:
                found.append(Interval(candidate, candidate + duration).astimezone(self.tz))
                if len(found) == limit:
                    break
        return sorted(found, key=lambda i: instant(i.start))


def decide(
    request: Request,
    *,
    now: datetime,
    rules: Rules,
    windows: Sequence[Window],
    bookings: Sequence[Booking],
    weekly_minutes: int | None,
    max_alternatives: int = 3,
    grid: timedelta = GRID,
) -> Decision:
    """Accept ``request`` with the staff member to serve it, or refuse it
    with every reason that applies and the nearest free alternatives.

    ``windows`` are the department's opening windows, ``bookings`` its
    confirmed bookings (past ones too: they count for continuity and the
    weekly entitlement), ``weekly_minutes`` the recipient's entitlement
    (``None``: unlimited).
    """
    context = _Context(
        request, now=now, rules=rules, windows=windows, bookings=bookings, weekly_minutes=weekly_minutes
    )
    start, end = _span(request.interval)
    reasons, staff = context.check(start, end)
    if staff is not None:
        return Decision(staff=staff)
    return Decision(
        staff=None,
        reasons=reasons,
        alternatives=tuple(context.alternatives(start, end, max_alternatives, grid)),
    )


def _merge(spans: Iterable[Span]) -> list[Span]:
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _subtract(whole: Span, holes: Iterable[Span]) -> list[Span]:
    pieces: list[Span] = []
    cursor, stop = whole
    for start, end in _merge(holes):
        if end <= cursor or start >= stop:
            continue
        if start > cursor:
            pieces.append((cursor, start))
        cursor = max(cursor, end)
    if cursor < stop:
        pieces.append((cursor, stop))
    return pieces


def free_intervals(windows: Sequence[Window], bookings: Sequence[Booking], rules: Rules) -> list[Interval]:
    """For each window, the parts where at least one employee on duty is free
    (travel buffer included), in the department's time zone, sorted.

    Parts of different windows are not joined (a booking must fit in one
    window), so overlapping windows may give overlapping parts; equal parts
    are listed once. A part may be covered by several employees in turn: a
    booking fits where one employee is free for all of it.
    """
    busy = _busy_by_staff(bookings)
    gap = rules.travel_buffer
    found: set[Span] = set()
    for w_start, w_end, staff in _windows(windows):
        pieces: list[Span] = []
        for member in staff:
            pieces += _subtract((w_start, w_end), [(s - gap, e + gap) for s, e in busy.get(member, ())])
        found.update(_merge(pieces))
    return [Interval(start, end).astimezone(rules.timezone) for start, end in sorted(found)]
