"""A department's anonymous free/busy view of a time span, pure.

No Radicale, no SQL, no I/O, no clock: windows, bookings, rules and the span
are arguments. All times are compared as instants (UTC) and every result is
in UTC (``instant()``), whatever time zones the inputs use.

``segments(windows, bookings, rules, span)``:

- Only the parts of the windows inside ``span`` = [span[0], span[1]) count
  (windows are clipped to the span). An empty span gives no segments.
- A moment t inside at least one window is FREE if some window w contains t
  and some staff member s in ``w.staff`` is not busy at t; s is busy at t if
  t lies in [b.start - travel_buffer, b.end + travel_buffer) of some booking
  b with ``b.staff == s``. Otherwise t is BUSY. A staff member without
  bookings is always free; a window without staff gives no capacity. A
  buffered interval that is empty (negative buffer) blocks nothing.
- The covered time (the union of the clipped windows) is cut at every window
  edge (also inside another window: a booking must fit in one window, so free
  time is never shown across a window edge), at every change between free
  and busy, and, inside busy time, at every raw (unbuffered) booking edge.
  Adjacent pieces are merged when nothing of that list separates them. Free
  segments are thus maximal free runs between window edges; busy segments
  are also split where any booking starts or ends, so that each busy segment
  lies either inside a booking or outside its interior.
- A busy segment's ``bookings`` are the ids of all bookings (of any staff
  member) whose raw interval overlaps it; it may be empty (busy only through
  a travel buffer). Free segments have no bookings: the view is anonymous
  and a free moment reveals nothing about who is booked.
- The result is sorted by (start, end); segments do not overlap, none has
  zero length, gaps between windows are not covered. It does not depend on
  the order of ``windows`` or ``bookings``.

``visible_to(segs, own)`` is one recipient's view: the busy segments lying
wholly inside one of the recipient's own bookings are dropped (the recipient
sees those bookings themselves); free segments and other busy ones stay.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from .model import Booking, Interval, Rules, Window, instant

__all__ = ["Segment", "segments", "visible_to"]

_K = TypeVar("_K", bound=Hashable)


@dataclass(frozen=True)
class Segment:
    """One piece of the free/busy view, [start, end) in UTC.

    ``bookings`` lists the ids of the bookings overlapping a busy segment
    (always empty for a free one), so a caller can tell a recipient's own
    bookings from the rest without the view naming anyone.
    """

    start: datetime
    end: datetime
    free: bool
    bookings: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if instant(self.end) <= instant(self.start):
            raise ValueError("a segment ends after it starts")
        if self.free and self.bookings:
            raise ValueError("a free segment lists no bookings")


def _add(counter: Counter[_K], delta: Counter[_K]) -> None:
    """Add ``delta`` to ``counter`` in place, dropping keys that reach zero,
    so that "present" means "active" during the sweep."""
    for key, change in delta.items():
        counter[key] += change
        if counter[key] == 0:
            del counter[key]


def segments(
    windows: Sequence[Window],
    bookings: Sequence[Booking],
    rules: Rules,
    span: tuple[datetime, datetime],
) -> list[Segment]:
    """The free/busy segments of ``span`` (see the module docstring).

    One sweep over every edge (window, raw booking, buffered booking): between
    two consecutive edges nothing changes, so each elementary piece is
    classified once and merged into the previous segment unless a cut rule
    separates them.
    """
    if span[0].tzinfo is None or span[1].tzinfo is None:
        raise ValueError("span times must be timezone-aware")
    low, high = instant(span[0]), instant(span[1])
    gap = rules.travel_buffer

    # Per instant, what starts (+1) and ends (-1) there.
    opening: defaultdict[datetime, Counter[frozenset[str]]] = defaultdict(Counter)
    blocking: defaultdict[datetime, Counter[str]] = defaultdict(Counter)
    booked: defaultdict[datetime, Counter[str]] = defaultdict(Counter)
    window_edges: set[datetime] = set()
    booking_edges: set[datetime] = set()

    for window in windows:
        start = max(instant(window.interval.start), low)
        end = min(instant(window.interval.end), high)
        if start < end:
            opening[start][window.staff] += 1
            opening[end][window.staff] -= 1
            window_edges |= {start, end}
    if not window_edges:
        return []
    for booking in bookings:
        start, end = instant(booking.interval.start), instant(booking.interval.end)
        if end + gap <= low or start - gap >= high:
            continue  # cannot touch the span: its edges only cost sorting
        booked[start][booking.id] += 1
        booked[end][booking.id] -= 1
        booking_edges |= {start, end}
        if start - gap < end + gap:
            blocking[start - gap][booking.staff] += 1
            blocking[end + gap][booking.staff] -= 1

    open_windows: Counter[frozenset[str]] = Counter()  # staff set of each open window
    busy: Counter[str] = Counter()  # staff member -> buffered bookings running
    running: Counter[str] = Counter()  # booking id -> raw bookings running
    edges = sorted(opening.keys() | blocking.keys() | booked.keys())
    found: list[Segment] = []
    for here, after in zip(edges, edges[1:], strict=False):
        _add(open_windows, opening.get(here, Counter()))
        _add(busy, blocking.get(here, Counter()))
        _add(running, booked.get(here, Counter()))
        if not open_windows:
            continue
        free = any(member not in busy for staff in open_windows for member in staff)
        last = found[-1] if found else None
        if (
            last is not None
            and last.end == here
            and last.free == free
            and here not in window_edges
            and (free or here not in booking_edges)
        ):
            # No booking edge here, so a busy piece runs the same bookings.
            found[-1] = Segment(last.start, after, free, last.bookings)
        else:
            found.append(Segment(here, after, free, frozenset() if free else frozenset(running)))
    return found


def stays_free(
    windows: Sequence[Window], bookings: Sequence[Booking], rules: Rules, interval: Interval
) -> bool:
    """Whether every moment of ``interval``, widened by the travel buffer,
    is free (or outside every window) with ``bookings``.

    When a new booking over ``interval`` is among ``bookings``, that means it
    changed no segment of any span: nothing turned busy, and no busy segment
    overlaps it to list it or to be cut at its edges. ``windows`` and
    ``bookings`` must hold every window overlapping the widened interval and
    every booking within two travel buffers of ``interval``."""
    reach = max(rules.travel_buffer, timedelta(0))
    span = (instant(interval.start) - reach, instant(interval.end) + reach)
    return all(segment.free for segment in segments(windows, bookings, rules, span))


def visible_to(segs: Sequence[Segment], own: Sequence[Interval]) -> list[Segment]:
    """``segs`` as one recipient sees them: without the busy segments that lie
    wholly inside one of ``own`` (the recipient's confirmed bookings), which
    the recipient sees as their own bookings instead. Order is kept."""
    spans = [(instant(interval.start), instant(interval.end)) for interval in own]
    return [
        seg
        for seg in segs
        if seg.free
        or not any(start <= instant(seg.start) and instant(seg.end) <= end for start, end in spans)
    ]
