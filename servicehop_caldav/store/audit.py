"""The audit log: every booking decision, with ids and reason codes only."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, insert, select

from servicehop_caldav.db.schema import audit_log, users
from servicehop_caldav.store import bookings as store_bookings
from servicehop_caldav.store import one_trip
from servicehop_caldav.store.bookings import BookingRow

# Decisions taken without a request: "reassign" (another employee, or a
# flagged booking confirmed again), "flag", "confirm-waiting" (a waiting
# request confirmed by a cancellation), "wait"/"expired" (its notice ran out).
ACTIONS = ("book", "move", "change", "cancel", "reassign", "flag", "wait", "confirm-waiting")
OUTCOMES = ("accepted", "refused", "cancelled", "kept", "flagged", "waiting", "expired")


@dataclass(frozen=True)
class AuditEntry:
    department_id: str
    action: str
    outcome: str
    recipient_id: int | None = None
    start_ts: int | None = None
    end_ts: int | None = None
    reasons: Sequence[str] = ()
    staff_id: int | None = None
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class AuditLine:
    """An entry as the `audit` command prints it (usernames looked up)."""

    at: float
    department_id: str
    recipient: str | None
    start_ts: int | None
    end_ts: int | None
    action: str
    outcome: str
    reasons: tuple[str, ...]
    staff: str | None


# Built once (SQLAlchemy keys a statement per object). On PostgreSQL a new
# booking's row goes in with its entry: one statement, one round trip.
_INSERT = insert(audit_log)
_WITH_BOOKING = _INSERT.add_cte(store_bookings.INSERT.cte("booking"))


def record(conn: Connection, entry: AuditEntry, booking: BookingRow | None = None) -> None:
    """Write ``entry``; with ``booking``, the new booking row it decided
    (:func:`store_bookings.insert_booking`), in one statement where the
    backend can."""
    if entry.action not in ACTIONS or entry.outcome not in OUTCOMES:
        raise ValueError(f"unknown audit action/outcome {entry.action!r}/{entry.outcome!r}")
    values = {
        "at": entry.at, "department_id": entry.department_id, "recipient_id": entry.recipient_id,
        "start_ts": entry.start_ts, "end_ts": entry.end_ts, "action": entry.action,
        "outcome": entry.outcome, "reasons": ",".join(entry.reasons), "staff_id": entry.staff_id,
    }
    if booking is None:
        conn.execute(_INSERT, values)
    elif one_trip.in_one_trip(conn):
        store_bookings.forget_rows(conn)
        conn.execute(_WITH_BOOKING, {**values, **store_bookings.insert_values(booking)})
    else:
        store_bookings.insert_booking(conn, booking)
        conn.execute(_INSERT, values)


def entries(conn: Connection, department_id: str, since: float | None = None) -> list[AuditLine]:
    """The department's entries in time order, with usernames (None when gone)."""
    recipient, staff = users.alias("recipient_user"), users.alias("staff_user")
    a = audit_log.c
    query = (
        select(a.at, a.department_id, recipient.c.username.label("recipient"), a.start_ts,
               a.end_ts, a.action, a.outcome, a.reasons, staff.c.username.label("staff"))
        .select_from(
            audit_log.outerjoin(recipient, recipient.c.id == a.recipient_id)
            .outerjoin(staff, staff.c.id == a.staff_id)
        )
        .where(a.department_id == department_id)
        .order_by(a.at, a.id)
    )
    if since is not None:
        query = query.where(a.at >= since)
    return [
        AuditLine(r.at, r.department_id, r.recipient, r.start_ts, r.end_ts, r.action, r.outcome,
                  tuple(x for x in r.reasons.split(",") if x), r.staff)
        for r in conn.execute(query)
    ]
