"""What a booking decision reads first, in one statement.

A decision reads the department's opening objects around the request (their
etags: the expanded windows are kept per etag) and the confirmed bookings
around it with the recipient's own (who is busy, each employee's load, the
weekly entitlement). On PostgreSQL each was a round trip. Here one UNION ALL
reads both, and each answer is remembered for the transaction
(:func:`store_objects.remember_etags`, :func:`store_bookings.remember_spans`):
:func:`store_objects.etags_in_range` and
:func:`store_bookings.confirmed_spans` asked the same then read nothing.
The statements are those two functions' own, so the rows are theirs.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import (
    BigInteger,
    CompoundSelect,
    Connection,
    Integer,
    String,
    cast,
    literal_column,
    null,
    select,
)

from servicehop_caldav.store import bookings as store_bookings
from servicehop_caldav.store import objects as store_objects

_OPENING, _BOOKING = "o", "b"


def _statement(component: bool, spans: int, own: bool) -> CompoundSelect:
    etags = store_objects.etags_statement(component).order_by(None).subquery()
    booked = store_bookings.spans_statement(spans, own).subquery()
    no_int = cast(null(), Integer)
    return select(
        literal_column(f"'{_OPENING}'").label("kind"), etags.c.href.label("text_a"),
        etags.c.etag.label("text_b"), no_int, no_int, cast(null(), BigInteger), cast(null(), BigInteger),
    ).union_all(select(
        literal_column(f"'{_BOOKING}'"), booked.c.id, cast(null(), String), booked.c.recipient_id,
        booked.c.staff_id, booked.c.start_ts, booked.c.end_ts,
    ))


# By shape (component or not, spans, own span or not), each built once:
# every booking decision runs one.
_STATEMENTS: dict[tuple[bool, int, bool], CompoundSelect] = {}


def read(
    conn: Connection,
    calendar_id: int,
    component: str | None,
    start: int,
    end: int,
    department_id: str,
    spans: Sequence[tuple[int, int]],
    recipient_id: int,
    own_span: tuple[int, int],
) -> None:
    """Read ``etags_in_range(conn, calendar_id, component, start, end)`` and
    ``confirmed_spans(conn, department_id, spans, recipient_id, own_span)``
    at once; those calls then answer from what was read."""
    shape = (component is not None, len(spans), True)
    statement = _STATEMENTS.get(shape)
    if statement is None:
        statement = _STATEMENTS[shape] = _statement(*shape)
    params = store_bookings.spans_params(department_id, spans, recipient_id, own_span)
    params.update(calendar_id=calendar_id, start=start, end=end, component=component)
    etags: list[tuple[str, str]] = []
    booked: list[tuple[str, int, int | None, int, int]] = []
    for kind, text_a, text_b, recipient, staff, start_ts, end_ts in conn.execute(statement, params):
        if kind == _OPENING:
            etags.append((text_a, text_b))
        else:
            booked.append((text_a, recipient, staff, start_ts, end_ts))
    store_objects.remember_etags(conn, calendar_id, component, start, end, etags)
    store_bookings.remember_spans(conn, department_id, spans, recipient_id, own_span, booked)
