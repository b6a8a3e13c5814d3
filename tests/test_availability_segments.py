"""The pure free/busy view: capacity, window edges, booking edges, travel
buffers, clipping to the span, DST days in Europe/Oslo, one recipient's view,
and property tests against a per-minute brute-force oracle."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servicehop_caldav.booking.availability import Segment, segments, stays_free, visible_to
from servicehop_caldav.booking.model import Booking, Interval, Rules, Window, instant

OSLO = ZoneInfo("Europe/Oslo")
MIN = timedelta(minutes=1)
RULES = Rules()


def t(day: int, hour: int, minute: int = 0, *, month: int = 6, year: int = 2025, fold: int = 0) -> datetime:
    """A local Oslo time (June 2025 by default)."""
    return datetime(year, month, day, hour, minute, tzinfo=OSLO, fold=fold)


def u(day: int, hour: int, minute: int = 0, *, month: int = 6, year: int = 2025) -> datetime:
    """A UTC time, to spell out expected results where the local time is ambiguous."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def window(start: datetime, end: datetime, *staff: str) -> Window:
    return Window(Interval(start, end), frozenset(staff))


def booking(id: str, staff: str, start: datetime, end: datetime, recipient: str = "olav") -> Booking:
    return Booking(id, recipient, staff, Interval(start, end))


def free(start: datetime, end: datetime) -> Segment:
    return Segment(instant(start), instant(end), True, frozenset())


def busy(start: datetime, end: datetime, *ids: str) -> Segment:
    return Segment(instant(start), instant(end), False, frozenset(ids))


DAY = (t(3, 0), t(4, 0))  # Tuesday 3 June 2025, local day
SHIFT = [window(t(3, 8), t(3, 16), "ann")]
PAIR = [window(t(3, 8), t(3, 16), "ann", "bo")]


def day(windows: list[Window], bookings: list[Booking] | None = None, rules: Rules = RULES) -> list[Segment]:
    return segments(windows, bookings or [], rules, DAY)


# --- capacity ----------------------------------------------------------------


def test_one_window_without_bookings_is_one_free_segment() -> None:
    result = day(SHIFT)
    assert result == [free(t(3, 8), t(3, 16))]
    assert result[0].start == datetime(2025, 6, 3, 6, tzinfo=UTC)  # UTC, not Oslo
    assert result[0].start.tzinfo is UTC and result[0].end.tzinfo is UTC


def test_capacity_one_with_a_booking_in_the_middle() -> None:
    taken = [booking("b1", "ann", t(3, 10), t(3, 11))]
    assert day(SHIFT, taken) == [
        free(t(3, 8), t(3, 10)),
        busy(t(3, 10), t(3, 11), "b1"),
        free(t(3, 11), t(3, 16)),
    ]


def test_capacity_two_one_booking_leaves_it_free_without_a_split() -> None:
    taken = [booking("b1", "ann", t(3, 10), t(3, 11))]
    assert day(PAIR, taken) == [free(t(3, 8), t(3, 16))]


def test_both_staff_busy_with_overlapping_bookings() -> None:
    taken = [
        booking("b1", "ann", t(3, 10), t(3, 11)),
        booking("b2", "bo", t(3, 10, 30), t(3, 11, 30)),
    ]
    assert day(PAIR, taken) == [
        free(t(3, 8), t(3, 10, 30)),
        busy(t(3, 10, 30), t(3, 11), "b1", "b2"),
        free(t(3, 11), t(3, 16)),
    ]


def test_busy_time_is_split_at_every_booking_edge() -> None:
    taken = [
        booking("b1", "ann", t(3, 10), t(3, 11)),
        booking("b2", "bo", t(3, 10, 30), t(3, 11, 30)),
        booking("b3", "ann", t(3, 11), t(3, 12)),
    ]
    assert day(PAIR, taken) == [
        free(t(3, 8), t(3, 10, 30)),
        busy(t(3, 10, 30), t(3, 11), "b1", "b2"),
        busy(t(3, 11), t(3, 11, 30), "b2", "b3"),
        free(t(3, 11, 30), t(3, 16)),
    ]


def test_back_to_back_bookings_are_separate_busy_segments() -> None:
    taken = [booking("b1", "ann", t(3, 10), t(3, 11)), booking("b2", "ann", t(3, 11), t(3, 12))]
    assert day(SHIFT, taken) == [
        free(t(3, 8), t(3, 10)),
        busy(t(3, 10), t(3, 11), "b1"),
        busy(t(3, 11), t(3, 12), "b2"),
        free(t(3, 12), t(3, 16)),
    ]


def test_booking_edges_inside_free_time_do_not_cut() -> None:
    taken = [booking("b1", "ann", t(3, 10), t(3, 11)), booking("b2", "bo", t(3, 12), t(3, 13))]
    assert day(PAIR, taken) == [free(t(3, 8), t(3, 16))]


def test_staff_not_on_duty_does_not_make_it_free() -> None:
    # bo has no bookings at all but is not on duty in this window.
    windows = [*SHIFT, window(t(4, 8), t(4, 16), "bo")]
    taken = [booking("b1", "ann", t(3, 10), t(3, 11))]
    assert day(windows, taken) == [
        free(t(3, 8), t(3, 10)),
        busy(t(3, 10), t(3, 11), "b1"),
        free(t(3, 11), t(3, 16)),
    ]


def test_window_without_staff_is_busy_throughout() -> None:
    assert day([window(t(3, 8), t(3, 12))]) == [busy(t(3, 8), t(3, 12))]


def test_busy_segment_lists_every_overlapping_booking_also_of_staff_off_duty() -> None:
    # bo is not on duty here; his booking still overlaps the busy time, so it
    # is listed and its edges cut (busy segments split at *any* booking edge).
    taken = [booking("b1", "ann", t(3, 10), t(3, 11)), booking("b2", "bo", t(3, 10, 15), t(3, 10, 45))]
    assert day(SHIFT, taken) == [
        free(t(3, 8), t(3, 10)),
        busy(t(3, 10), t(3, 10, 15), "b1"),
        busy(t(3, 10, 15), t(3, 10, 45), "b1", "b2"),
        busy(t(3, 10, 45), t(3, 11), "b1"),
        free(t(3, 11), t(3, 16)),
    ]


def test_booking_running_into_the_window_from_before() -> None:
    taken = [booking("b1", "ann", t(3, 7), t(3, 9))]
    assert day(SHIFT, taken) == [busy(t(3, 8), t(3, 9), "b1"), free(t(3, 9), t(3, 16))]


# --- travel buffer -------------------------------------------------------------

BUFFER = Rules(travel_buffer=timedelta(minutes=15))


def test_travel_buffer_gives_busy_pieces_without_bookings() -> None:
    taken = [booking("b1", "ann", t(3, 10), t(3, 11))]
    assert day(SHIFT, taken, BUFFER) == [
        free(t(3, 8), t(3, 9, 45)),
        busy(t(3, 9, 45), t(3, 10)),
        busy(t(3, 10), t(3, 11), "b1"),
        busy(t(3, 11), t(3, 11, 15)),
        free(t(3, 11, 15), t(3, 16)),
    ]


def test_overlapping_buffers_merge_into_one_piece() -> None:
    # Buffers 11:00-11:15 (after b1) and 11:05-11:20 (before b2) meet: one piece.
    taken = [booking("b1", "ann", t(3, 10), t(3, 11)), booking("b2", "ann", t(3, 11, 20), t(3, 12))]
    assert day(SHIFT, taken, BUFFER) == [
        free(t(3, 8), t(3, 9, 45)),
        busy(t(3, 9, 45), t(3, 10)),
        busy(t(3, 10), t(3, 11), "b1"),
        busy(t(3, 11), t(3, 11, 20)),
        busy(t(3, 11, 20), t(3, 12), "b2"),
        busy(t(3, 12), t(3, 12, 15)),
        free(t(3, 12, 15), t(3, 16)),
    ]


def test_buffer_of_a_booking_outside_the_window_reaches_in() -> None:
    taken = [booking("b1", "ann", t(3, 16), t(3, 17))]
    assert day(SHIFT, taken, BUFFER) == [free(t(3, 8), t(3, 15, 45)), busy(t(3, 15, 45), t(3, 16))]


def test_buffer_busy_for_one_member_only_stays_free() -> None:
    taken = [booking("b1", "ann", t(3, 10), t(3, 11))]
    assert day(PAIR, taken, BUFFER) == [free(t(3, 8), t(3, 16))]


def test_negative_buffer_shrinks_and_an_emptied_booking_blocks_nothing() -> None:
    # The config does not allow it; the formula is followed all the same.
    taken = [booking("b1", "ann", t(3, 10), t(3, 11))]
    assert day(SHIFT, taken, Rules(travel_buffer=timedelta(minutes=-15))) == [
        free(t(3, 8), t(3, 10, 15)),
        busy(t(3, 10, 15), t(3, 10, 45), "b1"),
        free(t(3, 10, 45), t(3, 16)),
    ]
    assert day(SHIFT, taken, Rules(travel_buffer=timedelta(minutes=-45))) == [free(t(3, 8), t(3, 16))]


# --- window edges -------------------------------------------------------------


def test_adjacent_windows_are_cut_where_they_meet_even_when_free() -> None:
    windows = [window(t(3, 8), t(3, 12), "ann"), window(t(3, 12), t(3, 16), "ann")]
    assert day(windows) == [free(t(3, 8), t(3, 12)), free(t(3, 12), t(3, 16))]


def test_adjacent_windows_cut_busy_time_too() -> None:
    windows = [window(t(3, 8), t(3, 12), "ann"), window(t(3, 12), t(3, 16), "ann")]
    taken = [booking("b1", "ann", t(3, 11), t(3, 13))]
    assert day(windows, taken) == [
        free(t(3, 8), t(3, 11)),
        busy(t(3, 11), t(3, 12), "b1"),
        busy(t(3, 12), t(3, 13), "b1"),
        free(t(3, 13), t(3, 16)),
    ]


def test_overlapping_windows_with_different_staff() -> None:
    windows = [window(t(3, 8), t(3, 12), "ann"), window(t(3, 10), t(3, 14), "bo")]
    taken = [booking("a1", "ann", t(3, 9), t(3, 11)), booking("b1", "bo", t(3, 10, 30), t(3, 11, 30))]
    assert day(windows, taken) == [
        free(t(3, 8), t(3, 9)),
        busy(t(3, 9), t(3, 10), "a1"),  # only ann on duty, and she is busy
        free(t(3, 10), t(3, 10, 30)),  # bo comes on duty at 10 (a window edge: cut)
        busy(t(3, 10, 30), t(3, 11), "a1", "b1"),
        free(t(3, 11), t(3, 12)),  # ann free again; the window edge at 12 cuts
        free(t(3, 12), t(3, 14)),
    ]


def test_window_inside_another_cuts_at_both_its_edges() -> None:
    windows = [window(t(3, 8), t(3, 16), "ann"), window(t(3, 10), t(3, 12), "ann")]
    assert day(windows) == [free(t(3, 8), t(3, 10)), free(t(3, 10), t(3, 12)), free(t(3, 12), t(3, 16))]


def test_duplicate_windows_count_once() -> None:
    assert day([*SHIFT, *SHIFT]) == day(SHIFT)


def test_gaps_between_windows_are_not_covered() -> None:
    windows = [window(t(3, 8), t(3, 10), "ann"), window(t(3, 13), t(3, 15), "ann")]
    assert day(windows) == [free(t(3, 8), t(3, 10)), free(t(3, 13), t(3, 15))]


# --- the span -------------------------------------------------------------------

NIGHT = [window(t(1, 22), t(2, 2), "ann")]  # 22:00 Sunday - 02:00 Monday, local
LATE = [booking("b1", "ann", t(1, 23, 30), t(2, 0, 30))]


def test_window_across_local_midnight_is_clipped_to_the_local_day() -> None:
    monday = segments(NIGHT, LATE, RULES, (t(2, 0), t(3, 0)))
    assert monday == [busy(t(2, 0), t(2, 0, 30), "b1"), free(t(2, 0, 30), t(2, 2))]
    assert monday[0].start == u(1, 22)  # local midnight in summer time
    sunday = segments(NIGHT, LATE, RULES, (t(1, 0), t(2, 0)))
    assert sunday == [free(t(1, 22), t(1, 23, 30)), busy(t(1, 23, 30), t(2, 0), "b1")]


def test_a_span_over_both_days_is_not_cut_at_midnight() -> None:
    assert segments(NIGHT, LATE, RULES, (t(1, 0), t(3, 0))) == [
        free(t(1, 22), t(1, 23, 30)),
        busy(t(1, 23, 30), t(2, 0, 30), "b1"),
        free(t(2, 0, 30), t(2, 2)),
    ]


def test_the_span_may_be_given_in_any_time_zone() -> None:
    local = segments(NIGHT, LATE, RULES, (t(2, 0), t(3, 0)))
    assert segments(NIGHT, LATE, RULES, (u(1, 22), u(2, 22))) == local


def test_span_cutting_inside_a_window_and_inside_a_booking() -> None:
    taken = [booking("b1", "ann", t(3, 10), t(3, 11))]
    assert segments(SHIFT, taken, RULES, (t(3, 10, 30), t(3, 12))) == [
        busy(t(3, 10, 30), t(3, 11), "b1"),
        free(t(3, 11), t(3, 12)),
    ]


def test_empty_span_and_span_outside_the_windows() -> None:
    assert segments(SHIFT, [], RULES, (t(3, 10), t(3, 10))) == []
    assert segments(SHIFT, [], RULES, (t(3, 11), t(3, 10))) == []
    assert segments(SHIFT, [], RULES, (t(3, 16), t(3, 20))) == []  # touching is not inside
    assert segments([], [booking("b1", "ann", t(3, 10), t(3, 11))], RULES, DAY) == []


def test_naive_span_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        segments(SHIFT, [], RULES, (datetime(2025, 6, 3), datetime(2025, 6, 4)))


# --- daylight saving time in Europe/Oslo ---------------------------------------------


def test_spring_forward_day() -> None:
    # Sunday 29 March 2026: 02:00 CET becomes 03:00 CEST; the local day is 23 h.
    span = (t(29, 0, month=3, year=2026), t(30, 0, month=3, year=2026))
    windows = [window(t(29, 0, month=3, year=2026), t(29, 6, month=3, year=2026), "ann")]
    taken = [booking("b1", "ann", t(29, 1, 30, month=3, year=2026), t(29, 3, 30, month=3, year=2026))]
    result = segments(windows, taken, RULES, span)
    assert result == [
        Segment(u(28, 23, month=3, year=2026), u(29, 0, 30, month=3, year=2026), True, frozenset()),
        Segment(u(29, 0, 30, month=3, year=2026), u(29, 1, 30, month=3, year=2026), False, frozenset({"b1"})),
        Segment(u(29, 1, 30, month=3, year=2026), u(29, 4, month=3, year=2026), True, frozenset()),
    ]
    assert result[1].end - result[1].start == timedelta(hours=1)  # 01:30-03:30 local is 1 h
    assert sum((s.end - s.start for s in result), timedelta(0)) == timedelta(hours=5)


def test_fall_back_day_with_bookings_in_the_repeated_hour() -> None:
    # Sunday 25 October 2026: 03:00 CEST becomes 02:00 CET; the local day is 25 h.
    def oct25(hour: int, minute: int = 0, fold: int = 0) -> datetime:
        return t(25, hour, minute, month=10, year=2026, fold=fold)

    span = (oct25(0), t(26, 0, month=10, year=2026))
    windows = [window(oct25(0), oct25(6), "ann", "bo")]
    taken = [
        booking("b1", "ann", oct25(2, 30), oct25(2, 30, fold=1)),  # 00:30-01:30 UTC
        booking("b2", "bo", oct25(2, 15, fold=1), oct25(3, 15)),  # 01:15-02:15 UTC
    ]
    result = segments(windows, taken, RULES, span)
    assert result == [
        Segment(u(24, 22, month=10, year=2026), u(25, 1, 15, month=10, year=2026), True, frozenset()),
        Segment(
            u(25, 1, 15, month=10, year=2026),
            u(25, 1, 30, month=10, year=2026),
            False,
            frozenset({"b1", "b2"}),
        ),
        Segment(u(25, 1, 30, month=10, year=2026), u(25, 5, month=10, year=2026), True, frozenset()),
    ]
    assert sum((s.end - s.start for s in result), timedelta(0)) == timedelta(hours=7)


def test_fall_back_day_capacity_one() -> None:
    def oct25(hour: int, minute: int = 0, fold: int = 0) -> datetime:
        return t(25, hour, minute, month=10, year=2026, fold=fold)

    windows = [window(oct25(0), oct25(6), "ann")]
    taken = [booking("b1", "ann", oct25(2, 30), oct25(2, 30, fold=1))]
    result = segments(windows, taken, RULES, (oct25(0), t(26, 0, month=10, year=2026)))
    assert [(s.start, s.end, s.free, s.bookings) for s in result] == [
        (u(24, 22, month=10, year=2026), u(25, 0, 30, month=10, year=2026), True, frozenset()),
        (u(25, 0, 30, month=10, year=2026), u(25, 1, 30, month=10, year=2026), False, frozenset({"b1"})),
        (u(25, 1, 30, month=10, year=2026), u(25, 5, month=10, year=2026), True, frozenset()),
    ]


# --- Segment ----------------------------------------------------------------------------


def test_segment_validates() -> None:
    with pytest.raises(ValueError):
        Segment(u(3, 10), u(3, 10), True)
    with pytest.raises(ValueError):
        Segment(u(3, 10), u(3, 11), True, frozenset({"b1"}))
    assert Segment(u(3, 10), u(3, 11), False).bookings == frozenset()


# --- visible_to -------------------------------------------------------------------------


def test_visible_to_hides_busy_time_of_own_bookings_only() -> None:
    mine = booking("b1", "ann", t(3, 10), t(3, 11), recipient="rita")
    other = booking("b2", "ann", t(3, 11), t(3, 12))
    segs = day(SHIFT, [mine, other])
    assert visible_to(segs, [mine.interval]) == [
        free(t(3, 8), t(3, 10)),
        busy(t(3, 11), t(3, 12), "b2"),
        free(t(3, 12), t(3, 16)),
    ]
    assert visible_to(segs, []) == segs
    assert visible_to(segs, [mine.interval.utc()]) == visible_to(segs, [mine.interval])


def test_visible_to_keeps_buffers_around_own_bookings() -> None:
    mine = booking("b1", "ann", t(3, 10), t(3, 11), recipient="rita")
    assert visible_to(day(SHIFT, [mine], BUFFER), [mine.interval]) == [
        free(t(3, 8), t(3, 9, 45)),
        busy(t(3, 9, 45), t(3, 10)),
        busy(t(3, 11), t(3, 11, 15)),
        free(t(3, 11, 15), t(3, 16)),
    ]


def test_visible_to_hides_every_busy_piece_inside_and_keeps_free_ones() -> None:
    mine = booking("r1", "ann", t(3, 10), t(3, 12), recipient="rita")
    other = booking("o1", "bo", t(3, 10, 30), t(3, 11))
    segs = day(PAIR, [mine, other])
    assert segs == [
        free(t(3, 8), t(3, 10, 30)),
        busy(t(3, 10, 30), t(3, 11), "o1", "r1"),
        free(t(3, 11), t(3, 16)),
    ]
    # Free time overlapping the own booking stays: someone else could be served then.
    assert visible_to(segs, [mine.interval]) == [free(t(3, 8), t(3, 10, 30)), free(t(3, 11), t(3, 16))]


def test_visible_to_keeps_busy_segments_only_partly_inside() -> None:
    segs = day(SHIFT, [booking("b1", "ann", t(3, 10), t(3, 11))])
    assert visible_to(segs, [Interval(t(3, 10, 30), t(3, 11, 30))]) == segs


# --- properties -------------------------------------------------------------------------

BASE = datetime(2025, 6, 3, 6, tzinfo=UTC)
STAFF = ["ann", "bo", "cy"]
ZONES: list[tzinfo] = [UTC, OSLO, ZoneInfo("America/New_York")]


def at(minute: int, zone: tzinfo | None = None) -> datetime:
    moment = BASE + minute * MIN
    return moment if zone is None else moment.astimezone(zone)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Window], list[Booking], Rules, tuple[datetime, datetime]]:
    """Small minute-granular inputs, each time in a randomly chosen zone."""
    zone = st.sampled_from(ZONES)
    windows = []
    for _ in range(draw(st.integers(0, 4) | st.integers(1, 4))):
        start = draw(st.integers(0, 150))
        end = start + draw(st.integers(1, 90))
        staff = draw(st.frozensets(st.sampled_from(STAFF), max_size=3))
        windows.append(Window(Interval(at(start, draw(zone)), at(end, draw(zone))), staff))
    bookings = []
    for n in range(draw(st.integers(0, 8))):
        start = draw(st.integers(-20, 200))
        end = start + draw(st.integers(1, 60))
        member = draw(st.sampled_from([*STAFF, "dag"]))  # dag is never on duty
        bookings.append(
            Booking(f"b{n}", "olav", member, Interval(at(start, draw(zone)), at(end, draw(zone))))
        )
    rules = Rules(travel_buffer=draw(st.integers(0, 20)) * MIN)
    low = draw(st.integers(-10, 200) | st.integers(-10, 60))
    high = low + draw(st.integers(-5, 250) | st.integers(120, 250))
    return windows, bookings, rules, (at(low, draw(zone)), at(high, draw(zone)))


def minute(moment: datetime) -> int:
    return (instant(moment) - BASE) // MIN


def oracle(
    windows: list[Window], bookings: list[Booking], rules: Rules, span: tuple[datetime, datetime]
) -> list[Segment]:
    """The specification, minute by minute: classify each minute, then cut."""
    low, high = minute(span[0]), minute(span[1])
    gap = rules.travel_buffer // MIN
    clipped = [
        (max(minute(w.interval.start), low), min(minute(w.interval.end), high), w.staff) for w in windows
    ]
    clipped = [(s, e, staff) for s, e, staff in clipped if s < e]
    raw = [(minute(b.interval.start), minute(b.interval.end), b) for b in bookings]
    window_edges = {x for s, e, _ in clipped for x in (s, e)}
    booking_edges = {x for s, e, _ in raw for x in (s, e)}

    def unbusy(member: str, m: int) -> bool:
        return not any(b.staff == member and s - gap <= m < e + gap for s, e, b in raw)

    found: list[tuple[int, int, bool, frozenset[str]]] = []
    for m in range(low, high):
        on = [staff for s, e, staff in clipped if s <= m < e]
        if not on:
            continue
        is_free = any(unbusy(member, m) for staff in on for member in staff)
        ids = frozenset() if is_free else frozenset(b.id for s, e, b in raw if s <= m < e)
        if (
            found
            and found[-1][1] == m
            and found[-1][2] == is_free
            and m not in window_edges
            and (is_free or m not in booking_edges)
        ):
            start, _, _, before = found[-1]
            found[-1] = (start, m + 1, is_free, before | ids)
        else:
            found.append((m, m + 1, is_free, ids))
    return [Segment(at(s), at(e), f, ids) for s, e, f, ids in found]


PROPERTY = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
LIGHT = settings(PROPERTY, max_examples=150)


@PROPERTY
@given(scenarios())
def test_segments_match_the_per_minute_oracle(
    scenario: tuple[list[Window], list[Booking], Rules, tuple[datetime, datetime]],
) -> None:
    windows, bookings, rules, span = scenario
    result = segments(windows, bookings, rules, span)
    assert result == oracle(windows, bookings, rules, span)

    # The invariants, stated directly.
    assert result == sorted(result, key=lambda s: (s.start, s.end))
    for before, after in zip(result, result[1:], strict=False):
        assert before.end <= after.start
    gap = rules.travel_buffer
    for seg in result:
        assert seg.start.tzinfo is UTC and seg.end.tzinfo is UTC and seg.start < seg.end
        assert instant(span[0]) <= seg.start and seg.end <= instant(span[1])
        assert any(w.interval.contains(Interval(seg.start, seg.end)) for w in windows)
        # Every minute: free exactly when some on-duty member is unbusy.
        moment = seg.start
        while moment < seg.end:
            on_duty = {
                s
                for w in windows
                if instant(w.interval.start) <= moment < instant(w.interval.end)
                for s in w.staff
            }
            unbusy = {
                s
                for s in on_duty
                if not any(
                    b.staff == s and instant(b.interval.start) - gap <= moment < instant(b.interval.end) + gap
                    for b in bookings
                )
            }
            assert seg.free == bool(unbusy)
            moment += MIN
        if seg.free:
            assert seg.bookings == frozenset()
        else:
            piece = Interval(seg.start, seg.end)
            assert seg.bookings == {b.id for b in bookings if b.interval.overlaps(piece)}
            # A busy segment lies inside a booking or outside its interior.
            for b in bookings:
                assert b.interval.contains(piece) or not b.interval.overlaps(piece)


@LIGHT
@given(scenarios(), st.randoms(use_true_random=False))
def test_segments_do_not_depend_on_input_order(
    scenario: tuple[list[Window], list[Booking], Rules, tuple[datetime, datetime]], rng: random.Random
) -> None:
    windows, bookings, rules, span = scenario
    expected = segments(windows, bookings, rules, span)
    windows, bookings = list(windows), list(bookings)
    rng.shuffle(windows)
    rng.shuffle(bookings)
    assert segments(windows, bookings, rules, span) == expected


@LIGHT
@given(scenarios(), st.data())
def test_visible_to_hides_exactly_busy_segments_inside_own_bookings(
    scenario: tuple[list[Window], list[Booking], Rules, tuple[datetime, datetime]], data: st.DataObject
) -> None:
    windows, bookings, rules, span = scenario
    segs = segments(windows, bookings, rules, span)
    own = [b.interval for b in bookings if data.draw(st.booleans())]
    shown = visible_to(segs, own)
    hidden = [s for s in segs if s not in shown]
    assert shown == [s for s in segs if s in shown]  # order kept, a subsequence
    assert all(s in shown for s in segs if s.free)
    for seg in hidden:
        assert not seg.free
        assert any(o.contains(Interval(seg.start, seg.end)) for o in own)
    for seg in shown:
        if not seg.free:
            # Split at booking edges: a shown busy segment overlaps no own booking.
            assert not any(o.overlaps(Interval(seg.start, seg.end)) for o in own)


@PROPERTY
@given(scenarios(), st.data())
def test_a_booking_that_stays_free_changes_no_segment_anywhere(
    scenario: tuple[list[Window], list[Booking], Rules, tuple[datetime, datetime]], data: st.DataObject,
) -> None:
    """The desk skips computing a day again when stays_free says the new
    booking left it as it was: then the segments of any span are the same
    with and without it. (It may say no to a booking that changed nothing,
    over time already busy: then the desk computes the day again.) The new
    booking mostly lies in a window, by one of its staff, as the desk's do."""
    windows, bookings, rules, span = scenario
    staffed = [w for w in windows if w.staff]
    if staffed and data.draw(st.integers(0, 3)):
        inside = data.draw(st.sampled_from(staffed))
        first, last = minute(inside.interval.start), minute(inside.interval.end)
        start = data.draw(st.integers(first, last - 1))
        end = data.draw(st.integers(start + 1, last))
        member = data.draw(st.sampled_from(sorted(inside.staff)))
    else:
        start = data.draw(st.integers(-20, 200))
        end = start + data.draw(st.integers(1, 60))
        member = data.draw(st.sampled_from(STAFF))
    added = Booking("new", "olav", member, Interval(at(start), at(end)))
    reach = rules.travel_buffer
    wide = (at(min(start, minute(span[0])) - 400), at(max(end, minute(span[1])) + 400))
    if stays_free(windows, [*bookings, added], rules, added.interval):
        for where in (span, wide, (added.interval.start - reach, added.interval.end + reach)):
            assert segments(windows, [*bookings, added], rules, where) == segments(
                windows, bookings, rules, where)


def test_stays_free_reads_the_travel_buffer_around_the_booking() -> None:
    buffered = Rules(travel_buffer=timedelta(minutes=30))
    shift = [window(t(3, 8), t(3, 16), "ann", "bo")]
    bo_before = booking("b1", "bo", t(3, 10), t(3, 10, 15))
    # Ann at 10:45-11:00: Bo is free then, but not in Ann's buffer from
    # 10:15 (his own runs to 10:45): that half hour turned busy.
    ann = booking("new", "ann", t(3, 10, 45), t(3, 11))
    assert not stays_free(shift, [bo_before, ann], buffered, ann.interval)
    assert segments(shift, [bo_before, ann], buffered, DAY) != segments(shift, [bo_before], buffered, DAY)
    assert stays_free(shift, [bo_before, ann], Rules(), ann.interval)
    # Outside every window nothing can turn busy.
    late = booking("new", "ann", t(3, 18), t(3, 19))
    assert stays_free(shift, [late], buffered, late.interval)
