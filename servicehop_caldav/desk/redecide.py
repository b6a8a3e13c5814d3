"""Bookings decided again without a request from their recipient.

- After the admin changes opening times (or the upkeep finds a staff member
  gone): every coming booking whose employee is no longer on duty for all
  of it, or no longer on the staff, is decided again. It keeps its
  employee where still valid, else goes to another free employee on duty
  (continuity, load, name: the usual order), else is *flagged*: its row
  has no employee, the visit leaves the staff calendar, the recipient's
  event turns TENTATIVE and says the department will contact them, the
  overview marks it. Flagged bookings are tried again on every pass and
  confirmed when they fit again. Nothing is deleted.
- After a cancellation or a move frees time: the waiting requests that
  overlap it, earliest request first, are decided by the full rules; those
  that fit are confirmed and assigned.
- The upkeep closes waiting requests whose minimum notice has run out.

Re-decisions of existing bookings do not apply the rules that bound a
*request* (notice, horizon, duration bounds, weekly entitlement): the
booking was accepted under them, and a later edit of the opening times
must not take it away for those reasons.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import timedelta

from servicehop_caldav.booking import events
from servicehop_caldav.booking.model import Booking, Interval, Request, Window, instant
from servicehop_caldav.booking.rules import decide
from servicehop_caldav.desk import visits
from servicehop_caldav.desk.department import as_booking, opening_windows, timestamp
from servicehop_caldav.desk.views import ViewKeeper, row_interval
from servicehop_caldav.directory.store import Member
from servicehop_caldav.store import bookings as store_bookings
from servicehop_caldav.store.bookings import BookingRow

_LOOK_BACK = timedelta(days=31)  # continuity of care counts 30 days back


def _coming(
    keeper: ViewKeeper, statuses: tuple[str, ...], within: Sequence[tuple[int, int]] | None = None
) -> list[BookingRow]:
    """The department's bookings with ``statuses`` that have not started
    (and overlap one of ``within``), by start, then in the order asked for."""
    if within is not None and not within:
        return []
    rows = store_bookings.find_bookings(
        keeper.conn, keeper.data.department.id, statuses, starts_from=timestamp(keeper.now),
        overlapping=(min(a for a, _ in within), max(b for _, b in within)) if within else None,
    )
    if within is None:
        return rows
    return [r for r in rows if any(r.start_ts < b and a < r.end_ts for a, b in within)]


def redecide(keeper: ViewKeeper, within: Sequence[tuple[int, int]] | None = None) -> int:
    """Decide again the coming bookings that are no longer valid and the
    flagged ones (only those overlapping ``within``, POSIX-second spans, if
    given); returns how many changed."""
    data, conn, now = keeper.data, keeper.conn, keeper.now
    rows = _coming(keeper, ("confirmed", "flagged"), within)
    if not rows:
        return 0
    end = max(r.end for r in rows) + data.rules.max_duration + timedelta(days=1)
    windows = opening_windows(conn, data, now - timedelta(days=1), end)
    spans = store_bookings.confirmed_spans(
        conn, data.department.id, [(timestamp(now - _LOOK_BACK), timestamp(end))]
    )
    current: dict[str, Booking] = {s.id: as_booking(data, s) for s in spans}
    relaxed = replace(
        data.rules, minimum_notice=timedelta(0), horizon=end - now + timedelta(days=1),
        min_duration=timedelta(0), max_duration=timedelta(days=366),
    )
    changed = 0
    for row in rows:
        interval = row_interval(row)
        if row.status == "confirmed" and _still_valid(row, interval, windows, data.staff):
            continue
        decision = decide(
            Request(str(row.recipient_id), interval, "", replaces=row.id),
            now=now, rules=relaxed, windows=windows, bookings=list(current.values()),
            weekly_minutes=None, max_alternatives=0,
        )
        staff = data.staff_by_username(decision.staff) if decision.staff else None
        if staff is not None:
            if row.status == "confirmed" and staff.id == row.staff_id:
                continue
            _assign(keeper, row, staff.id, "reassign")
            current[row.id] = Booking(row.id, str(row.recipient_id), staff.username, interval)
            changed += 1
        elif row.status == "confirmed":
            _flag(keeper, row, tuple(r.value for r in decision.reasons))
            current.pop(row.id, None)
            changed += 1
    return changed


def _still_valid(
    row: BookingRow, interval: Interval, windows: Sequence[Window], staff: Mapping[int, Member]
) -> bool:
    """The booking's employee is on the staff and on duty in a window that holds all of it."""
    member = staff.get(row.staff_id) if row.staff_id is not None else None
    if member is None:
        return False
    start, end = instant(interval.start), instant(interval.end)
    return any(
        instant(w.interval.start) <= start and end <= instant(w.interval.end) and member.username in w.staff
        for w in windows
    )


def _assign(keeper: ViewKeeper, row: BookingRow, staff_id: int, action: str) -> BookingRow:
    """Give the booking to ``staff_id`` (confirmed): visit, event, overview, audit."""
    data, conn = keeper.data, keeper.conn
    found = visits.read_event(conn, data, row)
    if staff_id != row.staff_id:
        row = visits.remove_assignment(conn, row)
    row = replace(row, staff_id=staff_id, status="confirmed")
    if found is not None:
        text, event = found
        who = visits.recipient(conn, row.recipient_id)
        row = visits.write_assignment(conn, data, keeper.now, row, event, who, keeper.make_object)
        confirmed = events.confirmed_text(
            text, language=data.department.language, staff_name=visits.shown_staff(data, staff_id)
        )
        visits.rewrite_event(conn, row, confirmed, keeper.make_object)
        keeper.write_overview(row, event, who.name, visits.staff_name(data, staff_id))
    store_bookings.save_booking(conn, row)
    keeper.booking_moved(None, row_interval(row))
    visits.record(keeper, row, action, "accepted", staff_id)
    return row


def _flag(keeper: ViewKeeper, row: BookingRow, reasons: tuple[str, ...]) -> None:
    """Nobody can serve the booking any more: keep it, flagged, and say so."""
    data, conn = keeper.data, keeper.conn
    before = row_interval(row)
    row = replace(visits.remove_assignment(conn, row), staff_id=None, status="flagged")
    found = visits.read_event(conn, data, row)
    if found is not None:
        text, event = found
        visits.rewrite_event(
            conn, row, events.flagged_text(text, language=data.department.language), keeper.make_object
        )
        keeper.write_overview(row, event, visits.recipient(conn, row.recipient_id).name, None)
    store_bookings.save_booking(conn, row)
    keeper.booking_moved(before, None)
    visits.record(keeper, row, "flag", "flagged", None, reasons)


def promote_waiting(keeper: ViewKeeper, freed: Interval) -> int:
    """Confirm the waiting requests that fit now that ``freed`` is free:
    those overlapping it, earliest request first, by the full rules."""
    data, conn, now = keeper.data, keeper.conn, keeper.now
    if not data.settings.waiting_list:
        return 0
    waiting = store_bookings.find_bookings(
        conn, data.department.id, ("waiting",), starts_from=timestamp(now + data.rules.minimum_notice),
        overlapping=(timestamp(freed.start), timestamp(freed.end)), by_request=True,
    )
    promoted = 0
    for row in waiting:
        decision = visits.consider(
            conn, data, now, row.recipient_id, row_interval(row),
            weekly=visits.weekly_minutes(conn, data, row.recipient_id), replaces=row.id, max_alternatives=0,
        ).decision
        staff = data.staff_by_username(decision.staff) if decision.staff else None
        if staff is not None:
            _assign(keeper, row, staff.id, "confirm-waiting")
            promoted += 1
    return promoted


def expire_waiting(keeper: ViewKeeper) -> int:
    """Waiting requests whose minimum notice has run out: not booked."""
    data, conn = keeper.data, keeper.conn
    expired = store_bookings.find_bookings(
        conn, data.department.id, ("waiting",),
        starts_before=timestamp(keeper.now + data.rules.minimum_notice),
    )
    for row in expired:
        found = visits.read_event(conn, data, row)
        if found is not None:
            visits.rewrite_event(
                conn, row, events.waiting_expired_text(found[0], language=data.department.language),
                keeper.make_object,
            )
        keeper.remove_overview(row)
        store_bookings.delete_booking(conn, row.id)
        visits.record(keeper, row, "wait", "expired", None)
    return len(expired)
