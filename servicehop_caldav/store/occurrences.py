"""The occurrences of calendar objects, so time-range REPORTs need no parsing.

Radicale answers a time-range ``calendar-query`` by parsing every candidate
whose first/last occurrence encloses the range (every recurring event that
began before it and ends after it) with vobject and expanding its
recurrence: at 10,000 events, 973 of them weekly, that was 85 % of the
query's time. Here the storage records, when an object is written, each time
range Radicale's filter (:func:`radicale.item.filter.visit_time_ranges`, RFC
4791 9.9) visits for it: recurrences with EXDATE/RDATE, overrides
(RECURRENCE-ID), all-day and floating times, the VTODO and VJOURNAL rules.
It is Radicale's own expansion, called on the same text, so the answer is
Radicale's by construction; tests/test_occurrences.py compares the two over
random events and ranges.

Radicale's filter stops at the first range of the main component that starts
after the query's end (``end < range_start and not is_recurrence``), so a
range visited later counts only for queries ending at or after the latest
start visited before it: each range carries that start (``after``).

Open-ended rules are recorded up to a horizon (:data:`HORIZON_SECONDS` after
the write, at most :data:`MAX_RANGES` ranges); ``until`` says up to where
the rows are complete, and a query ending later goes to Radicale's filter.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import radicale.item as radicale_item
import vobject
from radicale.item import filter as radicale_filter
from radicale.log import logger
from sqlalchemy import ColumnElement, Connection, delete, exists, insert, select, update

from servicehop_caldav.db.schema import calendar_objects, calendar_occurrences
from servicehop_caldav.store import codec
from servicehop_caldav.store.records import Occurrences

# How far after a write an open-ended recurrence is recorded: queries are
# mostly about the coming weeks; later ones are answered by Radicale's filter.
HORIZON_SECONDS = 2 * 366 * 86400
# At most this many ranges of the main component per object (a daily event
# over two years is 732): the table stays in proportion to the calendar.
MAX_RANGES = 1000
# ``until`` of an object whose ranges cannot be known: no query uses them.
UNKNOWN = radicale_filter.TIMESTAMP_MIN
COMPONENTS = ("VEVENT", "VTODO", "VJOURNAL")

_c = calendar_occurrences.c
_o = calendar_objects.c


class _Inexact(Exception):
    """A time with a fraction of a second: integer seconds would not compare
    as Radicale's datetimes do."""


def _seconds(moment: datetime) -> int:
    if moment == radicale_filter.DATETIME_MAX:
        return radicale_filter.TIMESTAMP_MAX
    if moment.microsecond:
        raise _Inexact
    return int(moment.timestamp())


def expand(vobject_item: vobject.base.Component, component: str, limit: int,
           max_ranges: int = MAX_RANGES) -> Occurrences:
    """The ranges Radicale's filter visits for ``component`` of
    ``vobject_item``, up to the first range of the main component that
    starts at or after ``limit`` (or the one after ``max_ranges``).

    Raises what Radicale's expansion raises on this text."""
    spans: list[tuple[int, int, int]] = []
    after = radicale_filter.TIMESTAMP_MIN
    until = radicale_filter.TIMESTAMP_MAX
    main_ranges = 0

    def range_fn(start: datetime, end: datetime, is_recurrence: bool) -> bool:
        nonlocal after, until, main_ranges
        s, e = _seconds(start), _seconds(end)
        if not is_recurrence:
            if s >= limit or main_ranges >= max_ranges:
                # Radicale's filter stops here for every query ending before s.
                until = s
                return True
            main_ranges += 1
        spans.append((s, e, after))
        if not is_recurrence and s > after:
            after = s
        return False

    radicale_filter.visit_time_ranges(vobject_item, component, range_fn, lambda _start: False)
    return Occurrences(until, tuple(spans))


def of_text(text: str, component: str, now: float | None = None) -> Occurrences:
    """The occurrences of a stored text, parsed as Radicale parses it for its
    filter (``vobject.readOne``, :attr:`radicale.item.Item.vobject_item`);
    :data:`UNKNOWN` when Radicale's expansion fails on it or when its times
    have fractions of seconds: the filter then decides, and fails as before."""
    return _of_parsed(lambda: vobject.readOne(text), component, now)


def of_item(item: radicale_item.Item, component: str, now: float | None = None) -> Occurrences:
    """As :func:`of_text` of ``item``'s text, from the object Radicale holds
    for it: an uploaded item's is the one its PUT parsed and serialized into
    that text (Radicale's own time range of the item is read from it too),
    an item made from a text parses it once for both. Parsing the text
    again was a tenth of a PUT."""
    return _of_parsed(lambda: item.vobject_item, component, now)


def _of_parsed(parsed: Callable[[], vobject.base.Component], component: str,
               now: float | None) -> Occurrences:
    if component not in COMPONENTS:
        return Occurrences(UNKNOWN, ())
    limit = int(time.time() if now is None else now) + HORIZON_SECONDS
    try:
        return expand(parsed(), component, limit)
    except Exception as e:  # noqa: BLE001 - whatever Radicale's filter would raise
        logger.debug("no occurrence index for a %s: %s", component, type(e).__name__)
        return Occurrences(UNKNOWN, ())


def write_spans(
    conn: Connection, object_id: int, occurrences: Occurrences | None, replace: bool
) -> None:
    """Record the ranges of ``occurrences`` for the object row ``object_id``
    (its ``occurrences_until`` is the caller's: put_object writes it with
    the row); ``replace``: drop the ranges recorded before."""
    if replace:
        conn.execute(delete(calendar_occurrences).where(_c.object_id == object_id))
    if occurrences is not None and occurrences.spans:
        conn.execute(
            insert(calendar_occurrences),
            [{"object_id": object_id, "start_ts": s, "end_ts": e, "after_ts": a}
             for s, e, a in occurrences.spans],
        )


def fill(conn: Connection, batch: int = 500) -> int:
    """Compute the occurrences of every object that has none recorded yet
    (after the upgrade to version 5; objects the desk rewrote without
    parsing them); returns how many."""
    done = 0
    last_id = 0
    while True:
        rows = conn.execute(
            select(_o.id, _o.component, _o.data, _o.key_id)
            .where(_o.occurrences_until.is_(None), _o.id > last_id)
            .order_by(_o.id).limit(batch)
        ).all()
        if not rows:
            return done
        for row in rows:
            occurrences = of_text(codec.decode(conn, row.data, row.key_id), row.component)
            conn.execute(
                update(calendar_objects).where(_o.id == row.id).values(occurrences_until=occurrences.until)
            )
            write_spans(conn, row.id, occurrences, replace=True)
        done += len(rows)
        last_id = rows[-1].id


def matches_text(conn: Connection, object_id: int, until: int | None, text: str,
                 component: str) -> bool:
    """For verify: the recorded ranges of an object are those its text gives
    up to its recorded ``until`` (NULL, not computed yet, is fine; so is
    UNKNOWN with no ranges)."""
    recorded = sorted(
        (int(s), int(e), int(a)) for s, e, a in conn.execute(
            select(_c.start_ts, _c.end_ts, _c.after_ts).where(_c.object_id == object_id)
        )
    )
    if until is None:
        return not recorded
    if until == UNKNOWN:
        return not recorded
    if component not in COMPONENTS:
        return False
    try:
        # The limit the write used: the ranges up to the first of the main
        # component starting at or after ``until`` (see expand).
        found = expand(vobject.readOne(text), component, until)
    except Exception:  # noqa: BLE001 - the text no longer expands: a mismatch
        return False
    return found.until == until and sorted(found.spans) == recorded


def exact_match_clause(start: int | ColumnElement[int], end: int | ColumnElement[int]) -> ColumnElement[bool]:
    """SQL: the object (a ``calendar_objects`` row) has a recorded range
    that Radicale's filter would find overlapping [start, end), and its
    recorded occurrences reach past ``end`` (else they do not decide).

    That second condition, on the object alone, also keeps PostgreSQL from
    turning the test into a hashed subplan: with an equality as its only
    reference to the object, the planner may hash every recorded
    occurrence of every calendar overlapping the range once per query (a
    scan of the whole table, 4 ms of a 10,000-event calendar's week)
    instead of looking up, by the object's index, the few objects that
    reach this test."""
    return exists().where(
        _c.object_id == _o.id, _o.occurrences_until > end,
        _c.start_ts < end, _c.end_ts > start, _c.after_ts <= end,
    )

