"""The pure booking rules: one test per rule, assignment order, moves, DST
days in Europe/Oslo, alternatives, free intervals, and property-based tests
that apply random requests in sequence and check the invariants."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from servicehop_caldav.booking.model import (
    Booking,
    Decision,
    Interval,
    Reason,
    Request,
    Rules,
    Window,
    instant,
)
from servicehop_caldav.booking.rules import GRID, decide, free_intervals

OSLO = ZoneInfo("Europe/Oslo")
MIN = timedelta(minutes=1)
H = timedelta(hours=1)
RULES = Rules()


def t(day: int, hour: int, minute: int = 0, *, month: int = 6, fold: int = 0) -> datetime:
    """A local Oslo time in 2025 (June by default: Monday 2 June is day 2)."""
    return datetime(2025, month, day, hour, minute, tzinfo=OSLO, fold=fold)


NOW = t(2, 8)  # Monday 2 June 2025, 08:00


def iv(start: datetime, end: datetime) -> Interval:
    return Interval(start, end)


def window(start: datetime, end: datetime, *staff: str) -> Window:
    return Window(Interval(start, end), frozenset(staff))


def booking(id: str, recipient: str, staff: str, start: datetime, end: datetime) -> Booking:
    return Booking(id, recipient, staff, Interval(start, end))


def request(start: datetime, end: datetime, recipient: str = "rita", replaces: str | None = None) -> Request:
    return Request(recipient, Interval(start, end), "help", replaces)


def run(
    req: Request,
    windows: list[Window],
    bookings: list[Booking] | tuple[Booking, ...] = (),
    *,
    now: datetime = NOW,
    rules: Rules = RULES,
    weekly_minutes: int | None = None,
    max_alternatives: int = 3,
) -> Decision:
    return decide(
        req,
        now=now,
        rules=rules,
        windows=windows,
        bookings=list(bookings),
        weekly_minutes=weekly_minutes,
        max_alternatives=max_alternatives,
    )


# A working day every day of the first two weeks of June, 08:00-16:00, staff ann and bo.
WEEKDAYS = [window(t(d, 8), t(d, 16), "ann", "bo") for d in range(2, 17)]


# --- each rule --------------------------------------------------------------


def test_accepted_inside_opening() -> None:
    decision = run(request(t(3, 10), t(3, 11)), WEEKDAYS)
    assert decision == Decision(staff="ann")
    assert decision.accepted and decision.reasons == () and decision.alternatives == ()


def test_minimum_notice_bounds_the_start() -> None:
    assert run(request(t(2, 9), t(2, 10)), WEEKDAYS).accepted  # exactly now + 1 h
    refused = run(request(t(2, 8, 45), t(2, 9, 45)), WEEKDAYS)
    assert refused.reasons == (Reason.TOO_SOON,)
    assert not refused.accepted


def test_start_before_now_is_in_the_past() -> None:
    decision = run(request(t(2, 7), t(2, 9)), [window(t(2, 6), t(2, 16), "ann")])
    assert decision.reasons == (Reason.IN_THE_PAST,)


def test_horizon_bounds_the_start() -> None:
    windows = [window(t(16, 6), t(16, 12), "ann")]
    assert run(request(t(16, 8), t(16, 9)), windows).accepted  # exactly now + 14 days
    assert run(request(t(16, 8, 15), t(16, 9, 15)), windows).reasons == (Reason.BEYOND_HORIZON,)


def test_duration_bounds() -> None:
    assert run(request(t(3, 10), t(3, 10, 15)), WEEKDAYS).accepted
    assert run(request(t(3, 10), t(3, 14)), WEEKDAYS).accepted
    assert run(request(t(3, 10), t(3, 10, 14)), WEEKDAYS).reasons == (Reason.TOO_SHORT,)
    assert run(request(t(3, 10), t(3, 14, 1)), WEEKDAYS).reasons == (Reason.TOO_LONG,)


def test_must_lie_wholly_inside_one_window() -> None:
    windows = [window(t(3, 8), t(3, 12), "ann"), window(t(3, 12), t(3, 16), "ann")]
    assert run(request(t(3, 11), t(3, 12)), windows).accepted
    assert run(request(t(3, 12), t(3, 13)), windows).accepted
    spanning = run(request(t(3, 11, 30), t(3, 12, 30)), windows)
    assert spanning.reasons == (Reason.OUTSIDE_OPENING,)
    assert run(request(t(3, 7, 30), t(3, 8, 30)), windows).reasons == (Reason.OUTSIDE_OPENING,)
    assert run(request(t(3, 17), t(3, 18)), windows).reasons == (Reason.OUTSIDE_OPENING,)


def test_no_overlap_with_the_recipients_own_bookings() -> None:
    mine = booking("b1", "rita", "ann", t(3, 10), t(3, 11))
    assert run(request(t(3, 10, 30), t(3, 11, 30)), WEEKDAYS, [mine]).reasons == (Reason.OWN_OVERLAP,)
    assert run(request(t(3, 11), t(3, 12)), WEEKDAYS, [mine]).accepted  # touching is fine
    other = booking("b2", "olav", "ann", t(3, 10), t(3, 11))
    assert run(request(t(3, 10, 30), t(3, 11, 30)), WEEKDAYS, [other]).staff == "bo"


def test_weekly_entitlement_per_iso_week() -> None:
    # Week 23 of 2025 runs Monday 2 June - Sunday 8 June.
    week = [
        booking("b1", "rita", "ann", t(3, 10), t(3, 12)),  # 120 min
        booking("b2", "rita", "ann", t(9, 10), t(9, 13)),  # next week: does not count
        booking("b3", "olav", "ann", t(4, 10), t(4, 14)),  # someone else: does not count
    ]
    req = request(t(5, 10), t(5, 11))  # 60 min
    assert run(req, WEEKDAYS, week, weekly_minutes=180).accepted  # exactly reached
    assert run(req, WEEKDAYS, week, weekly_minutes=179).reasons == (Reason.ENTITLEMENT,)
    assert run(req, WEEKDAYS, week, weekly_minutes=None).accepted
    assert run(req, WEEKDAYS, weekly_minutes=0).reasons == (Reason.ENTITLEMENT,)


def test_entitlement_week_is_local_and_counts_where_the_booking_starts() -> None:
    windows = [window(t(1, 20), t(2, 4), "ann"), window(t(8, 20), t(9, 4), "ann")]
    now = t(1, 8)
    # Sunday 8 June 23:00-01:00 counts wholly in week 23, where it starts.
    late = booking("b1", "rita", "ann", t(8, 23), t(9, 1))
    monday = request(t(9, 1, 30), t(9, 2, 30))  # local Monday: week 24 (still Sunday in UTC)
    assert instant(monday.interval.start).day == 8
    assert run(monday, windows, [late], now=now, weekly_minutes=60).accepted
    sunday = request(t(8, 21), t(8, 22))
    assert run(sunday, windows, [late], now=now, weekly_minutes=150).reasons == (Reason.ENTITLEMENT,)
    assert run(sunday, windows, [late], now=now, weekly_minutes=180).accepted


def test_past_bookings_of_the_week_count() -> None:
    earlier = booking("b1", "rita", "ann", t(2, 8), t(2, 10))  # this morning, before now+notice
    now = t(2, 10)
    decision = run(request(t(4, 10), t(4, 11)), WEEKDAYS, [earlier], now=now, weekly_minutes=150)
    assert decision.reasons == (Reason.ENTITLEMENT,)


def test_capacity_is_the_staff_on_duty() -> None:
    taken = [
        booking("b1", "olav", "ann", t(3, 10), t(3, 11)),
        booking("b2", "per", "bo", t(3, 10, 30), t(3, 11, 30)),
    ]
    decision = run(request(t(3, 10, 45), t(3, 11, 15)), WEEKDAYS, taken)
    assert decision.reasons == (Reason.NO_STAFF_FREE,)
    assert run(request(t(3, 11), t(3, 12)), WEEKDAYS, taken).staff == "ann"


def test_staff_must_be_on_duty_for_the_whole_interval() -> None:
    windows = [window(t(3, 8), t(3, 12), "ann"), window(t(3, 10), t(3, 16), "bo")]
    busy_ann = [booking("b1", "olav", "ann", t(3, 9), t(3, 10))]
    # 9:30-10:30 lies inside ann's window only; bo is on duty from 10:00 only.
    decision = run(request(t(3, 9, 30), t(3, 10, 30)), windows, busy_ann)
    assert decision.reasons == (Reason.NO_STAFF_FREE,)
    assert run(request(t(3, 10), t(3, 13)), windows, busy_ann).staff == "bo"
    busy_bo = [booking("b2", "olav", "bo", t(3, 10), t(3, 11))]
    assert run(request(t(3, 10, 30), t(3, 11, 30)), windows, busy_bo).staff == "ann"  # in both windows
    assert run(request(t(3, 11, 30), t(3, 12, 30)), windows, busy_bo).staff == "bo"


def test_window_without_staff_has_no_capacity() -> None:
    decision = run(request(t(3, 10), t(3, 11)), [window(t(3, 8), t(3, 16))])
    assert decision.reasons == (Reason.NO_STAFF_FREE,)
    assert decision.alternatives == ()


def test_staff_busy_elsewhere_still_counts() -> None:
    # ann's visit in another department's window (not among ours) still blocks her.
    windows = [window(t(3, 8), t(3, 16), "ann")]
    elsewhere = [booking("x1", "olav", "ann", t(3, 10), t(3, 11))]
    assert run(request(t(3, 10), t(3, 11)), windows, elsewhere).reasons == (Reason.NO_STAFF_FREE,)


def test_travel_buffer_on_both_sides() -> None:
    rules = Rules(travel_buffer=timedelta(minutes=30))
    windows = [window(t(3, 8), t(3, 16), "ann")]
    visit = [booking("b1", "olav", "ann", t(3, 10), t(3, 11))]
    for start, ok in [
        (t(3, 8, 30), True),  # ends 9:30, 30 min before
        (t(3, 8, 45), False),  # ends 9:45
        (t(3, 11, 15), False),  # starts 15 min after
        (t(3, 11, 30), True),  # starts 30 min after
    ]:
        decision = run(request(start, start + H), windows, visit, rules=rules)
        assert decision.accepted is ok, start
        if not ok:
            assert decision.reasons == (Reason.NO_STAFF_FREE,)
    assert run(request(t(3, 11), t(3, 12)), windows, visit).accepted  # no buffer by default


def test_buffer_does_not_apply_between_different_staff_or_own_visits() -> None:
    rules = Rules(travel_buffer=timedelta(minutes=30))
    visit = [booking("b1", "rita", "ann", t(3, 10), t(3, 11))]
    assert run(request(t(3, 11), t(3, 12)), WEEKDAYS, visit, rules=rules).staff == "bo"


def test_all_reasons_in_a_stable_order() -> None:
    mine = booking("b1", "rita", "ann", t(1, 6), t(1, 7))
    decision = run(request(t(1, 6, 30), t(1, 6, 35)), WEEKDAYS, [mine], now=t(1, 6, 15), weekly_minutes=0)
    assert decision.reasons == (
        Reason.TOO_SOON,
        Reason.TOO_SHORT,
        Reason.OUTSIDE_OPENING,
        Reason.OWN_OVERLAP,
        Reason.ENTITLEMENT,
    )
    late = run(request(t(20, 10), t(20, 15)), WEEKDAYS)
    assert late.reasons == (Reason.BEYOND_HORIZON, Reason.TOO_LONG, Reason.OUTSIDE_OPENING)
    full = [booking("o1", "olav", "ann", t(3, 9), t(3, 12)), booking("o2", "per", "bo", t(3, 9), t(3, 12))]
    both = run(request(t(3, 10), t(3, 11)), WEEKDAYS, [*full, mine], weekly_minutes=30)
    assert both.reasons == (Reason.ENTITLEMENT, Reason.NO_STAFF_FREE)


def test_naive_now_is_rejected() -> None:
    with pytest.raises(ValueError):
        run(request(t(3, 10), t(3, 11)), WEEKDAYS, now=datetime(2025, 6, 2, 8))


# --- assignment -------------------------------------------------------------


TRIO = [window(t(d, 8), t(d, 16), "ann", "bo", "cy") for d in range(2, 17)]


def test_assignment_by_name_when_all_else_is_equal() -> None:
    assert run(request(t(3, 10), t(3, 11)), TRIO).staff == "ann"
    shuffled = [window(t(3, 8), t(3, 16), "cy", "bo", "ann")]
    assert run(request(t(3, 10), t(3, 11)), shuffled).staff == "ann"


def test_assignment_least_booked_minutes_that_day() -> None:
    load = [
        booking("b1", "olav", "ann", t(3, 8), t(3, 9)),  # ann 60 min
        booking("b2", "olav", "bo", t(3, 12), t(3, 12, 30)),  # bo 30 min
        booking("b3", "per", "bo", t(3, 13), t(3, 13, 15)),  # bo 45 min
        booking("b4", "per", "cy", t(4, 8), t(4, 16)),  # cy: another day
        booking("b5", "per", "cy", t(2, 23), t(3, 1)),  # cy: starts the day before
    ]
    assert run(request(t(3, 10), t(3, 11)), TRIO, load).staff == "cy"
    load.append(booking("b6", "per", "cy", t(3, 14), t(3, 15)))  # cy 60 min
    assert run(request(t(3, 10), t(3, 11)), TRIO, load).staff == "bo"
    load.append(booking("b7", "per", "bo", t(3, 15), t(3, 15, 15)))  # bo 60 min: ties go by name
    assert run(request(t(3, 10), t(3, 11)), TRIO, load).staff == "ann"


def test_assignment_continuity_first() -> None:
    now = NOW
    history = [
        booking("p1", "rita", "cy", t(20, 10, month=5), t(20, 11, month=5)),
        booking("p2", "rita", "cy", t(27, 10, month=5), t(27, 11, month=5)),
        booking("p3", "rita", "bo", t(28, 10, month=5), t(28, 11, month=5)),
        booking("l1", "olav", "cy", t(3, 8), t(3, 9)),  # cy is the most loaded that day
    ]
    assert run(request(t(3, 10), t(3, 11)), TRIO, history, now=now).staff == "cy"
    # cy busy at that time: the next in continuity, bo.
    busy = [*history, booking("l2", "olav", "cy", t(3, 10), t(3, 11))]
    assert run(request(t(3, 10), t(3, 11)), TRIO, busy, now=now).staff == "bo"


def test_continuity_counts_only_visits_that_ended_in_the_period() -> None:
    history = [
        # ended 31 days before now: too old
        booking("p1", "rita", "cy", t(2, 6, month=5), t(2, 7, month=5)),
        booking("p2", "rita", "cy", t(1, 6, month=5), t(1, 7, month=5)),
        # ended exactly 30 days before now: counts
        booking("p3", "rita", "bo", t(3, 7, month=5), t(3, 8, month=5)),
        # future bookings with cy: not continuity
        booking("f1", "rita", "cy", t(4, 10), t(4, 11)),
        booking("f2", "rita", "cy", t(5, 10), t(5, 11)),
        # another recipient's history with ann: not continuity
        booking("o1", "olav", "ann", t(30, 10, month=5), t(30, 11, month=5)),
        booking("o2", "olav", "ann", t(31, 10, month=5), t(31, 11, month=5)),
    ]
    assert run(request(t(3, 10), t(3, 11)), TRIO, history).staff == "bo"
    shorter = Rules(continuity_days=29)
    assert run(request(t(3, 10), t(3, 11)), TRIO, history, rules=shorter).staff == "ann"


def test_continuity_counts_visits_in_progress_only_once_ended() -> None:
    ongoing = [booking("p1", "rita", "cy", t(2, 7, 30), t(2, 8, 30))]  # ends after now
    assert run(request(t(3, 10), t(3, 11)), TRIO, ongoing).staff == "ann"
    assert run(request(t(3, 10), t(3, 11)), TRIO, ongoing, now=t(2, 8, 30)).staff == "cy"


# --- moves ------------------------------------------------------------------


def test_move_ignores_the_booking_it_replaces() -> None:
    windows = [window(t(3, 8), t(3, 16), "ann")]
    old = booking("b1", "rita", "ann", t(3, 10), t(3, 11))
    # Overlapping the old time: no own overlap, ann is free again.
    moved = run(request(t(3, 10, 30), t(3, 11, 30), replaces="b1"), windows, [old])
    assert moved == Decision(staff="ann")
    new = run(request(t(3, 10, 30), t(3, 11, 30)), windows, [old])
    assert new.reasons == (Reason.OWN_OVERLAP, Reason.NO_STAFF_FREE)


def test_move_does_not_count_the_old_booking_against_the_entitlement() -> None:
    old = booking("b1", "rita", "ann", t(3, 10), t(3, 12))
    req = request(t(4, 10), t(4, 12), replaces="b1")
    assert run(req, WEEKDAYS, [old], weekly_minutes=120).accepted
    req_new = request(t(4, 10), t(4, 12))
    assert run(req_new, WEEKDAYS, [old], weekly_minutes=120).reasons == (Reason.ENTITLEMENT,)


def test_a_moved_booking_keeps_its_employee_when_free() -> None:
    old = booking("b1", "rita", "cy", t(3, 10), t(3, 11))
    # Everyone free at 14: cy keeps it although ann comes first by name.
    assert run(request(t(3, 14), t(3, 15), replaces="b1"), TRIO, [old]).staff == "cy"
    # cy busy at 14: the usual order among the others (ann has 60 min that day, bo none).
    busy = booking("b2", "olav", "cy", t(3, 14), t(3, 15))
    loaded = booking("b3", "olav", "ann", t(3, 8), t(3, 9))
    assert run(request(t(3, 14), t(3, 15), replaces="b1"), TRIO, [old, busy]).staff == "ann"
    assert run(request(t(3, 14), t(3, 15), replaces="b1"), TRIO, [old, busy, loaded]).staff == "bo"


def test_refused_move_offers_alternatives_that_ignore_the_old_booking() -> None:
    windows = [window(t(3, 8), t(3, 12), "ann")]
    old = booking("b1", "rita", "ann", t(3, 10), t(3, 11))
    decision = run(request(t(3, 11, 30), t(3, 12, 30), replaces="b1"), windows, [old])
    assert decision.reasons == (Reason.OUTSIDE_OPENING,)
    assert decision.alternatives == (
        iv(t(3, 10, 30), t(3, 11, 30)),
        iv(t(3, 10, 45), t(3, 11, 45)),
        iv(t(3, 11), t(3, 12)),
    )


# --- daylight-saving days in Europe/Oslo -------------------------------------


def test_dst_spring_gap_durations_are_elapsed_time() -> None:
    # Sunday 30 March 2025: 02:00-03:00 local does not exist.
    now = t(29, 12, month=3)
    windows = [window(t(30, 0, month=3), t(30, 6, month=3), "ann")]  # 5 hours
    assert windows[0].interval.duration == 5 * H
    rules = Rules(max_duration=2 * H)
    across = request(t(30, 1, month=3), t(30, 4, month=3))  # reads 3 h, lasts 2 h
    assert run(across, windows, now=now, rules=rules).accepted
    longer = request(t(30, 0, 45, month=3), t(30, 4, month=3))
    assert run(longer, windows, now=now, rules=rules).reasons == (Reason.TOO_LONG,)


def test_dst_spring_gap_alternatives_step_in_elapsed_time() -> None:
    now = t(29, 12, month=3)
    windows = [window(t(30, 1, month=3), t(30, 4, month=3), "ann")]  # 2 hours elapsed
    taken = [booking("b1", "olav", "ann", t(30, 1, month=3), t(30, 1, 30, month=3))]
    decision = run(request(t(30, 1, 15, month=3), t(30, 1, 45, month=3)), windows, taken, now=now)
    assert decision.reasons == (Reason.NO_STAFF_FREE,)
    # 01:30, 01:45, then 03:00 (= 02:00 on the grid, which the clock skips).
    assert decision.alternatives == (
        iv(t(30, 1, 30, month=3), t(30, 3, month=3)),
        iv(t(30, 1, 45, month=3), t(30, 3, 15, month=3)),
        iv(t(30, 3, month=3), t(30, 3, 30, month=3)),
    )
    assert [a.duration for a in decision.alternatives] == [30 * MIN] * 3
    assert all(a.start.tzinfo is OSLO for a in decision.alternatives)


def test_dst_autumn_repeated_hour() -> None:
    # Sunday 26 October 2025: 02:00-03:00 local happens twice.
    now = t(25, 12, month=10)
    windows = [window(t(26, 1, month=10), t(26, 4, month=10), "ann")]
    assert windows[0].interval.duration == 4 * H
    first = booking("b1", "rita", "ann", t(26, 2, month=10), t(26, 2, 45, month=10))  # summer time
    # 02:15-02:45 the second time round: one hour later, no overlap.
    second = request(t(26, 2, 15, month=10, fold=1), t(26, 2, 45, month=10, fold=1))
    assert second.interval.duration == 30 * MIN
    assert run(second, windows, [first], now=now).staff == "ann"
    # The first 02:15-02:45 overlaps the booking.
    same = request(t(26, 2, 15, month=10), t(26, 2, 45, month=10))
    assert run(same, windows, [first], now=now).reasons == (Reason.OWN_OVERLAP, Reason.NO_STAFF_FREE)
    # Across the fold: 02:30 (summer) to 02:15 (winter) lasts 45 minutes.
    across = request(t(26, 2, 30, month=10), t(26, 2, 15, month=10, fold=1))
    assert across.interval.duration == 45 * MIN
    assert run(across, windows, now=now).accepted
    # A 4-hour limit: 01:00-04:00 lasts 4 h that day.
    rules = Rules(max_duration=3 * H)
    whole = request(t(26, 1, month=10), t(26, 4, month=10))
    assert run(whole, windows, now=now, rules=rules).reasons == (Reason.TOO_LONG,)


def test_dst_autumn_alternatives_in_the_repeated_hour() -> None:
    now = t(25, 12, month=10)
    windows = [window(t(26, 2, month=10), t(26, 3, month=10), "ann")]  # 2 hours
    taken = [booking("b1", "olav", "ann", t(26, 2, 30, month=10), t(26, 2, 15, month=10, fold=1))]
    decision = run(request(t(26, 2, 30, month=10), t(26, 2, month=10, fold=1)), windows, taken, now=now)
    assert decision.reasons == (Reason.NO_STAFF_FREE,)
    starts = [(a.start.hour, a.start.minute, a.start.fold) for a in decision.alternatives]
    assert starts == [(2, 0, 0), (2, 15, 1), (2, 30, 1)]


def test_dst_day_load_and_entitlement_use_the_local_day() -> None:
    now = t(25, 12, month=10)
    windows = [window(t(26, 0, month=10), t(26, 6, month=10), "ann", "bo")]
    load = [
        booking("b1", "olav", "ann", t(26, 0, month=10), t(26, 2, fold=1, month=10)),  # 3 h
        booking("b2", "olav", "bo", t(25, 23, month=10), t(26, 1, month=10)),  # day before
        booking("b3", "per", "bo", t(26, 4, month=10), t(26, 6, month=10)),  # 2 h
    ]
    assert run(request(t(26, 3, month=10), t(26, 4, month=10)), windows, load, now=now).staff == "bo"


# --- alternatives ------------------------------------------------------------


def test_alternatives_are_nearest_on_both_sides() -> None:
    windows = [window(t(3, 8), t(3, 16), "ann")]
    taken = [booking("b1", "olav", "ann", t(3, 10), t(3, 12))]
    decision = run(request(t(3, 10, 30), t(3, 11, 30)), windows, taken)
    assert decision.reasons == (Reason.NO_STAFF_FREE,)
    # Nearest: 09:00 (90 min before), 12:00 (90 min after), 08:45 / 12:15 (105): the earlier wins.
    assert decision.alternatives == (
        iv(t(3, 8, 45), t(3, 9, 45)),
        iv(t(3, 9), t(3, 10)),
        iv(t(3, 12), t(3, 13)),
    )
    more = run(request(t(3, 10, 30), t(3, 11, 30)), windows, taken, max_alternatives=5)
    assert len(more.alternatives) == 5
    assert run(request(t(3, 10, 30), t(3, 11, 30)), windows, taken, max_alternatives=0).alternatives == ()


def test_alternatives_grid_is_aligned_to_the_window_start() -> None:
    windows = [window(t(3, 8, 10), t(3, 10), "ann")]
    decision = run(request(t(3, 8), t(3, 9)), windows)
    assert decision.reasons == (Reason.OUTSIDE_OPENING,)
    assert [a.start for a in decision.alternatives] == [t(3, 8, 10), t(3, 8, 25), t(3, 8, 40)]
    assert GRID == timedelta(minutes=15)


def test_alternatives_respect_notice_horizon_and_other_windows() -> None:
    windows = [window(t(2, 8), t(2, 10), "ann"), window(t(16, 8), t(16, 10), "ann")]
    early = run(request(t(2, 8, 30), t(2, 9)), windows)
    assert early.reasons == (Reason.TOO_SOON,)
    assert [a.start for a in early.alternatives] == [t(2, 9), t(2, 9, 15), t(2, 9, 30)]
    late = run(request(t(16, 9), t(16, 9, 30)), windows)
    assert late.reasons == (Reason.BEYOND_HORIZON,)
    # 16 June 08:00 is nearest; the next nearest are the latest of 2 June.
    assert [a.start for a in late.alternatives] == [t(2, 9, 15), t(2, 9, 30), t(16, 8)]


def test_alternatives_respect_own_bookings_and_entitlement() -> None:
    windows = [window(t(3, 8), t(3, 10), "ann", "bo"), window(t(10, 8), t(10, 9), "ann")]
    mine = [booking("b1", "rita", "bo", t(3, 8, 30), t(3, 9, 30))]
    decision = run(request(t(3, 9), t(3, 9, 30)), windows, mine)
    assert decision.reasons == (Reason.OWN_OVERLAP,)
    assert [a.start for a in decision.alternatives] == [t(3, 8), t(3, 9, 30), t(10, 8)]
    capped = run(request(t(3, 9), t(3, 9, 30)), windows, mine, weekly_minutes=60)
    assert capped.reasons == (Reason.OWN_OVERLAP, Reason.ENTITLEMENT)
    assert [a.start for a in capped.alternatives] == [t(10, 8), t(10, 8, 15), t(10, 8, 30)]


def test_no_alternatives_for_a_duration_out_of_bounds() -> None:
    decision = run(request(t(3, 8), t(3, 13)), WEEKDAYS)
    assert decision.reasons == (Reason.TOO_LONG,)
    assert decision.alternatives == ()


def test_every_alternative_is_accepted() -> None:
    taken = [booking(f"b{i}", "olav", s, t(3, 8), t(3, 15)) for i, s in enumerate(["ann", "bo"])]
    decision = run(request(t(3, 10), t(3, 11)), WEEKDAYS, taken)
    assert len(decision.alternatives) == 3
    for alternative in decision.alternatives:
        assert alternative.duration == H
        assert run(Request("rita", alternative, "help"), WEEKDAYS, taken).accepted


# --- free intervals ------------------------------------------------------------


def test_free_intervals_per_window() -> None:
    windows = [window(t(3, 8), t(3, 12), "ann", "bo"), window(t(3, 14), t(3, 16), "ann")]
    taken = [
        booking("b1", "olav", "ann", t(3, 9), t(3, 10)),
        booking("b2", "per", "bo", t(3, 9, 30), t(3, 11)),
        booking("b3", "per", "ann", t(3, 14), t(3, 15)),
        booking("b4", "per", "bo", t(3, 14), t(3, 16)),  # bo is not on duty then
    ]
    assert free_intervals(windows, taken, RULES) == [
        iv(t(3, 8), t(3, 9, 30)),
        iv(t(3, 10), t(3, 12)),
        iv(t(3, 15), t(3, 16)),
    ]


def test_free_intervals_with_buffer_and_order() -> None:
    rules = Rules(travel_buffer=timedelta(minutes=15))
    windows = [window(t(3, 8), t(3, 12), "ann")]
    taken = [
        booking("b1", "olav", "ann", t(3, 9), t(3, 10)),
        booking("b2", "o", "ann", t(3, 11, 50), t(3, 13)),
    ]
    expected = [iv(t(3, 8), t(3, 8, 45)), iv(t(3, 10, 15), t(3, 11, 35))]
    assert free_intervals(windows, taken, rules) == expected
    assert free_intervals(windows[::-1], taken[::-1], rules) == expected
    assert all(i.start.tzinfo is OSLO for i in expected)
    assert free_intervals([window(t(3, 8), t(3, 12))], [], RULES) == []


# --- properties ---------------------------------------------------------------

STAFF = ["ann", "bo", "cy", "di"]
RECIPIENTS = ["r1", "r2", "r3"]
# A week around the spring change in Oslo: Sunday 30 March 2025.
P_NOW = datetime(2025, 3, 27, 9, 0, tzinfo=OSLO)


def local(day: int, minutes: int) -> datetime:
    """``minutes`` after local midnight of ``P_NOW``'s day + ``day``, in elapsed time."""
    midnight = datetime.combine(P_NOW.date() + timedelta(days=day), time(), tzinfo=OSLO)
    return (instant(midnight) + timedelta(minutes=minutes)).astimezone(OSLO)


windows_st = st.lists(
    st.builds(
        lambda day, start, length, staff: window(
            local(day, start * 15), local(day, start * 15 + length * 15), *staff
        ),
        st.integers(1, 5),
        st.integers(28, 80),
        st.integers(2, 40),
        st.frozensets(st.sampled_from(STAFF), min_size=1, max_size=3),
    ),
    min_size=1,
    max_size=4,
)

rules_st = st.builds(
    lambda buffer, notice, horizon: Rules(
        travel_buffer=timedelta(minutes=buffer),
        minimum_notice=timedelta(minutes=notice),
        horizon=timedelta(days=horizon),
    ),
    st.sampled_from([0, 10, 30, 30, 60]),
    st.sampled_from([0, 60]),
    st.sampled_from([3, 14, 14]),
)


DURATIONS = (15, 30, 45, 60, 90, 120, 180, 240)
# recipient, window, mode, duration, position inside the window, free duration, free offset
_request_parts = st.tuples(
    st.integers(0, len(RECIPIENTS) - 1),
    st.integers(0, 4),
    st.integers(0, 4),
    st.integers(0, len(DURATIONS) - 1),
    st.integers(0, 10**4),
    st.integers(1, 30),
    st.integers(-12, 1500),
)


def draw_request(data: st.DataObject, windows: list[Window]) -> tuple[str, Interval]:
    """Mostly requests inside a window (so that staff run out), some near one, some anywhere.

    One draw of plain integers per request: composite strategies built per
    draw cost more than the rules themselves."""
    who, which, mode, size, position, free_size, offset = data.draw(_request_parts)
    home = windows[which % len(windows)].interval
    if mode < 3:  # inside the window
        fits = [m for m in DURATIONS if timedelta(minutes=m) <= home.duration] or [15]
        minutes = fits[size % len(fits)]
        room = max((home.duration - timedelta(minutes=minutes)) // timedelta(minutes=5), 0)
        start = instant(home.start) + timedelta(minutes=5 * (position % (room + 1)))
    else:  # near the window's start, or anywhere in the next days
        minutes = free_size * 10
        base = instant(home.start) if mode == 3 else instant(P_NOW)
        start = base + timedelta(minutes=5 * (offset % 73 - 12 if mode == 3 else offset))
    end = start + timedelta(minutes=minutes)
    return RECIPIENTS[who], Interval(start.astimezone(OSLO), end.astimezone(OSLO))


def past_st() -> st.SearchStrategy[list[Booking]]:
    return st.lists(
        st.builds(
            lambda i, r, s, days: booking(
                f"past{i}", r, s, P_NOW - timedelta(days=days, hours=2), P_NOW - timedelta(days=days, hours=1)
            ),
            st.integers(0, 10**6),
            st.sampled_from(RECIPIENTS),
            st.sampled_from(STAFF),
            st.integers(0, 40),
        ),
        max_size=4,
        unique_by=lambda b: b.id,
    )


def decide_at_p_now(
    req: Request,
    rules: Rules,
    windows: list[Window],
    bookings: list[Booking],
    weekly_minutes: int | None,
    rng: random.Random | None = None,
) -> Decision:
    """``decide`` at ``P_NOW``; with ``rng``, on shuffled copies of the windows and bookings."""
    if rng is not None:
        windows, bookings = list(windows), list(bookings)
        rng.shuffle(windows)
        rng.shuffle(bookings)
    return decide(
        req, now=P_NOW, rules=rules, windows=windows, bookings=bookings, weekly_minutes=weekly_minutes
    )


def on_duty_at(windows: list[Window], moment: datetime) -> set[str]:
    return {
        s for w in windows if instant(w.interval.start) <= moment < instant(w.interval.end) for s in w.staff
    }


# Minutes per week for each recipient (None: unlimited).
_entitlements = st.tuples(*[st.one_of(st.none(), st.integers(1, 20).map(lambda n: n * 30))] * len(RECIPIENTS))
_steps = st.integers(4, 14)
_picks = st.integers(0, 7)
_buffers = st.sampled_from([0, 15])

PROPERTY = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
    # Explaining a failure re-runs it hundreds of times: the shrunk example is enough.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)


@PROPERTY
@given(st.data(), windows_st, rules_st, past_st(), st.randoms(use_true_random=False))
def test_sequential_decisions_keep_the_invariants(
    data: st.DataObject, windows: list[Window], rules: Rules, past: list[Booking], rng: random.Random
) -> None:
    entitlement = dict(zip(RECIPIENTS, data.draw(_entitlements), strict=True))
    bookings: list[Booking] = list(past)
    for n in range(data.draw(_steps)):
        recipient, interval = draw_request(data, windows)
        own = sorted(b.id for b in bookings if b.recipient == recipient and not b.id.startswith("past"))
        choices = [None, *own]
        replaces = choices[data.draw(_picks) % len(choices)]
        req = Request(recipient, interval, "help", replaces)
        state = (rules, windows, bookings, entitlement[recipient])
        decision = decide_at_p_now(req, *state)
        assert decide_at_p_now(req, *state, rng=rng) == decision
        others = [b for b in bookings if b.id != replaces]
        if decision.accepted:
            assert decision.reasons == () and decision.alternatives == ()
            start = instant(interval.start)
            assert instant(P_NOW) + rules.minimum_notice <= start <= instant(P_NOW) + rules.horizon
            assert rules.min_duration <= interval.duration <= rules.max_duration
            homes = [w for w in windows if w.interval.contains(interval)]
            assert homes and any(decision.staff in w.staff for w in homes)
            for b in others:
                if b.staff == decision.staff:
                    assert not b.interval.overlaps(interval, rules.travel_buffer)
                if b.recipient == recipient:
                    assert not b.interval.overlaps(interval)
            limit = entitlement[recipient]
            if limit is not None:
                week = start.astimezone(OSLO).isocalendar()[:2]
                used = sum(
                    (
                        b.interval.duration
                        for b in others
                        if b.recipient == recipient
                        and b.interval.start.astimezone(OSLO).isocalendar()[:2] == week
                    ),
                    timedelta(0),
                )
                assert used + interval.duration <= timedelta(minutes=limit)
            assert decision.staff is not None
            bookings = [*others, Booking(f"b{n}", recipient, decision.staff, interval)]
        else:
            assert decision.reasons
            assert len(decision.alternatives) <= 3
            for alternative in decision.alternatives:
                assert alternative.duration == interval.duration
                again = Request(recipient, alternative, "help", replaces)
                assert decide_at_p_now(again, *state).accepted

    # The whole schedule: no employee double-booked (buffer included), capacity kept.
    # (The generated past visits need not be consistent among themselves.)
    for i, a in enumerate(bookings):
        for b in bookings[i + 1 :]:
            if a.staff == b.staff and not (a.id.startswith("past") and b.id.startswith("past")):
                assert not a.interval.overlaps(b.interval, rules.travel_buffer)
    for b in bookings:
        if b.id.startswith("past"):
            continue
        # Every confirmed booking, "moved" onto its own time, is accepted again.
        same = Request(b.recipient, b.interval, "help", replaces=b.id)
        assert decide_at_p_now(same, rules, windows, bookings, entitlement[b.recipient]).accepted
        moment = instant(b.interval.start)
        running = [c for c in bookings if instant(c.interval.start) <= moment < instant(c.interval.end)]
        assert len(running) <= len(on_duty_at(windows, moment))


@PROPERTY
@given(windows_st, st.data())
def test_accepted_requests_fit_in_a_free_interval(windows: list[Window], data: st.DataObject) -> None:
    rules = Rules(travel_buffer=timedelta(minutes=data.draw(_buffers)), minimum_notice=timedelta(0))
    bookings: list[Booking] = []
    for n in range(6):
        recipient, interval = draw_request(data, windows)
        decision = decide_at_p_now(
            Request(f"{recipient}-{n}", interval, "help"), rules, windows, bookings, None
        )
        if decision.staff is not None:
            free = free_intervals(windows, bookings, rules)
            assert any(f.contains(interval) for f in free)
            bookings.append(Booking(f"b{n}", recipient, decision.staff, interval))
    for part in free_intervals(windows, bookings, rules):
        assert any(w.interval.contains(part) and w.staff for w in windows)
        assert part.start.tzinfo is OSLO


def test_an_interval_of_timestamps_is_the_interval_of_those_moments() -> None:
    start, end = 1_764_576_000, 1_764_579_600
    made = Interval.of_timestamps(start, end)
    assert made == Interval(datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC))
    assert made.duration == timedelta(hours=1) and made.start.tzinfo is UTC
    for later_start in (end, end + 1):
        with pytest.raises(ValueError, match="ends after it starts"):
            Interval.of_timestamps(later_start, end)
