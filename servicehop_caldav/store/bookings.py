"""Booking rows: the engine's record of who is served when, and by whom.

Times are POSIX seconds (UTC). The rows hold ids only; the events' text
lives, encrypted, in the calendar objects they point to.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    Connection,
    Row,
    ScalarSelect,
    Select,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from servicehop_caldav.booking.config import LONGEST_BOOKING
from servicehop_caldav.db import memo
from servicehop_caldav.db.schema import BOOKING_STATUSES, bookings

_b = bookings.c
_LONGEST = int(LONGEST_BOOKING.total_seconds())


@dataclass(frozen=True)
class BookingRow:
    id: str
    department_id: str
    recipient_id: int
    staff_id: int | None
    start_ts: int
    end_ts: int
    status: str
    booking_calendar_id: int
    booking_href: str
    assignment_calendar_id: int | None = None
    assignment_href: str | None = None

    @property
    def start(self) -> datetime:
        return datetime.fromtimestamp(self.start_ts, UTC)

    @property
    def end(self) -> datetime:
        return datetime.fromtimestamp(self.end_ts, UTC)


_FIELDS = len(fields(BookingRow))
if [c.name for c in bookings.columns][:_FIELDS] != [f.name for f in fields(BookingRow)]:
    raise RuntimeError("BookingRow's fields must be the first columns of bookings, in order")


def _row(row: Row) -> BookingRow:
    """A ``select(bookings)`` row, by position (a Row's attributes by name
    cost about 0.6 µs each; the upkeep reads every coming booking)."""
    return BookingRow(*row[:_FIELDS])


def _check(booking: BookingRow) -> None:
    if booking.status not in BOOKING_STATUSES:
        raise ValueError(f"booking status must be one of {', '.join(BOOKING_STATUSES)}")
    if booking.end_ts <= booking.start_ts:
        raise ValueError("a booking ends after it starts")


# Built once (SQLAlchemy keys a statement per object). Its parameters are
# named apart from the columns, so that it can go into another table's
# statement as a CTE (store.audit).
INSERT = insert(bookings).values({c.name: bindparam(f"b_{c.name}") for c in bookings.columns})


def insert_values(booking: BookingRow) -> dict[str, object]:
    """The checked parameters of :data:`INSERT` for a new booking row."""
    _check(booking)
    now = time.time()
    return {f"b_{k}": v for k, v in (*booking.__dict__.items(), ("created", now), ("updated", now))}


def insert_booking(conn: Connection, booking: BookingRow) -> None:
    forget_rows(conn)
    conn.execute(INSERT, insert_values(booking))


def forget_rows(conn: Connection) -> None:
    """Forget what this transaction remembers of booking rows: the caller
    writes one (with :data:`INSERT` in its own statement, store.audit)."""
    memo.forget(conn, _FOR_EVENT_MEMO, _LATEST_MEMO, _SPANS_MEMO)


# The latest start of any booking of department ``department_id`` (NULL:
# none), for another module's statement to read along (store.write_ahead):
# one step down the (department, start) index. No booking is longer than
# LONGEST_BOOKING, so nothing from that long after it on overlaps a booking.
LATEST_START: ScalarSelect[Any] = (
    select(func.max(_b.start_ts)).where(_b.department_id == bindparam("department_id")).scalar_subquery()
)
# Memo kind: department id -> LATEST_START as read in this transaction.
_LATEST_MEMO = "latest_booking_start"


def remember_latest_start(conn: Connection, department_id: str, latest: int | None) -> None:
    """Note what another module's statement read of :data:`LATEST_START`."""
    memo.memo(conn, _LATEST_MEMO)[department_id] = latest


def known_free_from(conn: Connection, department_id: str, moment: int) -> bool:
    """Whether this transaction already knows that no booking of the
    department, of any status, overlaps anything from ``moment`` on (its
    latest start, read along with another statement, is at least
    :data:`LONGEST_BOOKING` before). False when it does not know: then ask."""
    known = memo.memo(conn, _LATEST_MEMO)
    if department_id not in known:
        return False
    latest = known[department_id]
    return latest is None or latest + _LONGEST <= moment


def save_booking(conn: Connection, booking: BookingRow) -> None:
    """Replace the stored row of ``booking.id`` with ``booking``."""
    _check(booking)
    forget_rows(conn)
    values = {k: v for k, v in booking.__dict__.items() if k != "id"}
    if not conn.execute(
        update(bookings).where(_b.id == booking.id).values(**values, updated=time.time())
    ).rowcount:
        raise LookupError(f"no booking {booking.id!r}")


def delete_booking(conn: Connection, booking_id: str) -> bool:
    forget_rows(conn)
    return bool(conn.execute(delete(bookings).where(_b.id == booking_id)).rowcount)


def find_bookings(
    conn: Connection,
    department_id: str,
    statuses: tuple[str, ...],
    *,
    starts_from: int | None = None,
    starts_before: int | None = None,
    overlapping: tuple[int, int] | None = None,
    by_request: bool = False,
) -> list[BookingRow]:
    """The department's bookings with one of ``statuses``, by start (or, with
    ``by_request``, in the order they were asked for), optionally only those
    starting in [starts_from, starts_before) or overlapping ``overlapping``."""
    shape = (len(statuses), starts_from is not None, starts_before is not None, overlapping is not None,
             by_request)
    query = _FIND.get(shape)
    if query is None:
        query = _FIND[shape] = _find_query(*shape)
    params: dict[str, object] = {
        "department_id": department_id, "starts_from": starts_from, "starts_before": starts_before,
        "overlap_start": overlapping[0] if overlapping else None,
        "overlap_end": overlapping[1] if overlapping else None,
    }
    params.update((f"status{i}", status) for i, status in enumerate(statuses))
    return [_row(r) for r in conn.execute(query, params)]


def _find_query(statuses: int, starts_from: bool, starts_before: bool, overlapping: bool,
                by_request: bool) -> Select:
    """:func:`find_bookings`'s statement of one shape, with bound parameters
    (one per status: an expanding IN is rewritten at every execution)."""
    query = select(bookings).where(_b.department_id == bindparam("department_id"),
                                   _b.status.in_([bindparam(f"status{i}") for i in range(statuses)]))
    if starts_from:
        query = query.where(_b.start_ts >= bindparam("starts_from"))
    if starts_before:
        query = query.where(_b.start_ts < bindparam("starts_before"))
    if overlapping:
        query = query.where(_b.start_ts < bindparam("overlap_end"), _b.end_ts > bindparam("overlap_start"))
    order = (_b.created, _b.id) if by_request else (_b.start_ts, _b.created, _b.id)
    return query.order_by(*order)


# find_bookings' statements by shape, each built once (see store.objects):
# every booking decision and opening change runs them.
_FIND: dict[tuple[int, bool, bool, bool, bool], Select] = {}


ROW_COLUMNS = tuple(bookings.c)[:_FIELDS]  # a BookingRow's
_FOR_EVENT = select(*ROW_COLUMNS).where(_b.booking_calendar_id == bindparam("calendar_id"),
                                        _b.booking_href == bindparam("href"))
# Memo kind: (calendar id, href) -> the BookingRow of that event (None: none),
# for the transaction; every write of a booking row forgets it.
_FOR_EVENT_MEMO = "booking_for_event"


def remember_for_event(conn: Connection, calendar_id: int, href: str, row: Sequence[Any]) -> None:
    """Note what another module's statement read of this event's booking
    (:data:`ROW_COLUMNS`; all NULL when there is none)."""
    memo.memo(conn, _FOR_EVENT_MEMO)[(calendar_id, href)] = BookingRow(*row) if row[0] is not None else None


def booking_for_event(conn: Connection, calendar_id: int, href: str) -> BookingRow | None:
    """The booking whose recipient event is ``href`` in calendar ``calendar_id``."""
    def read() -> BookingRow | None:
        row = conn.execute(_FOR_EVENT, {"calendar_id": calendar_id, "href": href}).first()
        return _row(row) if row is not None else None

    return memo.once(conn, _FOR_EVENT_MEMO, (calendar_id, href), read)


def bookings_between(
    conn: Connection, department_id: str, start_ts: int, end_ts: int, status: str | None = None
) -> list[BookingRow]:
    """The department's bookings overlapping [start_ts, end_ts), by start then id."""
    query = select(bookings).where(
        _b.department_id == department_id, _b.start_ts < end_ts, _b.end_ts > start_ts
    )
    if status is not None:
        query = query.where(_b.status == status)
    return [_row(r) for r in conn.execute(query.order_by(_b.start_ts, _b.id))]


class Span(NamedTuple):
    """The few columns a booking decision needs of each booking (a tuple:
    a decision reads hundreds, and a frozen dataclass costs three times as
    much to make)."""

    id: str
    recipient_id: int
    staff_id: int
    start_ts: int
    end_ts: int


def confirmed_spans(
    conn: Connection,
    department_id: str,
    spans: list[tuple[int, int]],
    recipient_id: int | None = None,
    own_span: tuple[int, int] | None = None,
) -> list[Span]:
    """Confirmed, staffed bookings of the department overlapping any of
    ``spans``, and those of ``recipient_id`` overlapping ``own_span``; each
    once. Only the columns a decision reads: a decision at 2,000 bookings in
    the horizon runs this on every PUT. No booking is longer than
    :data:`LONGEST_BOOKING`, so one overlapping a span starts at most that
    long before it: the index reads the bookings near each span, not every
    one before it (a department's past grows by the thousand a year)."""
    own = own_span if recipient_id is not None else None
    if not spans and own is None:
        return []
    key = _spans_key(department_id, spans, recipient_id, own)
    known = memo.memo(conn, _SPANS_MEMO).get(key)
    if known is not None:
        return list(known)
    query = spans_statement(len(spans), own is not None)
    params = spans_params(department_id, spans, recipient_id, own)
    found = [Span._make(row) for row in conn.execute(query, params)]
    return sorted(found, key=lambda s: (s.start_ts, s.id))


def spans_statement(spans: int, own: bool) -> Select:
    """:func:`confirmed_spans`'s statement for ``spans`` spans (and the
    recipient's own span), built once; parameters :func:`spans_params`."""
    shape = (spans, own)
    query = _SPANS.get(shape)
    if query is None:
        query = _SPANS[shape] = _spans_query(*shape)
    return query


def spans_params(
    department_id: str, spans: Sequence[tuple[int, int]], recipient_id: int | None,
    own_span: tuple[int, int] | None,
) -> dict[str, object]:
    params: dict[str, object] = {"department_id": department_id}
    for i, (start, end) in enumerate(spans):
        params[f"start{i}"], params[f"end{i}"], params[f"after{i}"] = start, end, start - _LONGEST
    if own_span is not None:
        params["recipient_id"], (params["own_start"], params["own_end"]) = recipient_id, own_span
        params["own_after"] = own_span[0] - _LONGEST
    return params


def _spans_key(
    department_id: str, spans: Sequence[tuple[int, int]], recipient_id: int | None,
    own_span: tuple[int, int] | None,
) -> tuple[object, ...]:
    return department_id, tuple(spans), recipient_id if own_span is not None else None, own_span


def remember_spans(
    conn: Connection, department_id: str, spans: Sequence[tuple[int, int]], recipient_id: int | None,
    own_span: tuple[int, int] | None, rows: Sequence[Sequence[Any]],
) -> None:
    """Note what another module's statement read of :func:`confirmed_spans`
    (rows of :func:`spans_statement`'s columns)."""
    found = sorted((Span._make(row) for row in rows), key=lambda s: (s.start_ts, s.id))
    memo.memo(conn, _SPANS_MEMO)[_spans_key(department_id, spans, recipient_id, own_span)] = found


def _spans_query(spans: int, own: bool) -> Select:
    """:func:`confirmed_spans`'s statement for ``spans`` spans (and the
    recipient's own span): one statement, each booking once."""
    overlapping = [and_(_b.start_ts < bindparam(f"end{i}"), _b.start_ts > bindparam(f"after{i}"),
                        _b.end_ts > bindparam(f"start{i}"))
                   for i in range(spans)]
    if own:
        overlapping.append(and_(_b.recipient_id == bindparam("recipient_id"),
                                _b.start_ts < bindparam("own_end"), _b.start_ts > bindparam("own_after"),
                                _b.end_ts > bindparam("own_start")))
    return select(_b.id, _b.recipient_id, _b.staff_id, _b.start_ts, _b.end_ts).where(
        _b.department_id == bindparam("department_id"), _b.status == "confirmed",
        _b.staff_id.is_not(None), or_(*overlapping))


# confirmed_spans' statements by shape, each built once: every decision runs one.
_SPANS: dict[tuple[int, bool], Select] = {}
# Memo kind: confirmed_spans' arguments -> its answer, read along with
# another statement (store.decision_ahead); a write of any booking row
# forgets them all.
_SPANS_MEMO = "confirmed_spans"


def own_spans(conn: Connection, department_id: str, recipient_id: int) -> list[tuple[int, int]]:
    """(start_ts, end_ts) of the recipient's confirmed bookings in the
    department, by start: what their availability view leaves out."""
    rows = conn.execute(
        select(_b.start_ts, _b.end_ts)
        .where(_b.department_id == department_id, _b.recipient_id == recipient_id, _b.status == "confirmed")
        .order_by(_b.start_ts)
    )
    return [(int(a), int(b)) for a, b in rows]


def moved(booking: BookingRow, start_ts: int, end_ts: int, staff_id: int | None) -> BookingRow:
    return replace(booking, start_ts=start_ts, end_ts=end_ts, staff_id=staff_id)
