"""The departments' computed calendars: which calendar holds which view.

A department's availability and overview are ordinary calendars (objects,
change log, sync tokens) that only the server writes; provisioning mounts
them read-only into the homes of the department's recipients and admins,
as the opening calendar is mounted into every admin's home. This module
only knows where they are; :mod:`servicehop_caldav.desk.views` fills them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from servicehop_caldav.db import memo
from servicehop_caldav.db.schema import department_views
from servicehop_caldav.store.collections import create_calendar

_v = department_views.c

AVAILABILITY = "availability"
OVERVIEW = "overview"


@dataclass(frozen=True)
class Views:
    department_id: str
    availability_calendar_id: int
    overview_calendar_id: int
    covered_from: date | None  # first local date the availability holds
    covered_to: date | None  # last local date

    def calendar_id(self, kind: str) -> int:
        return self.availability_calendar_id if kind == AVAILABILITY else self.overview_calendar_id


def _date(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


_BY_DEPARTMENT = select(department_views).where(_v.department_id == bindparam("department_id"))
# What a write reads of the views with the department (store.write_ahead), in this order.
COLUMNS = (_v.availability_calendar_id, _v.overview_calendar_id, _v.covered_from, _v.covered_to)
# Memo kind: department id -> its Views (None: not both calendars), for the transaction.
_MEMO = "department_views"


def _views(department_id: str, row: Sequence[Any] | None) -> Views | None:
    """Views of a row of :data:`COLUMNS` (None: no row, or not both calendars)."""
    if row is None or row[0] is None or row[1] is None:
        return None
    return Views(department_id, row[0], row[1], _date(row[2]), _date(row[3]))


def remember_views(conn: Connection, department_id: str, row: Sequence[Any] | None) -> None:
    """Note what another module's statement read of the department's views
    (a row of :data:`COLUMNS`, None when there is none) in this transaction."""
    memo.memo(conn, _MEMO)[department_id] = _views(department_id, row)


def get_views(conn: Connection, department_id: str) -> Views | None:
    """The department's view calendars, if both exist."""
    def read() -> Views | None:
        row = conn.execute(_BY_DEPARTMENT, {"department_id": department_id}).first()
        return _views(department_id, None if row is None else [row._mapping[c.name] for c in COLUMNS])

    return memo.once(conn, _MEMO, department_id, read)


def ensure_views(conn: Connection, department_id: str) -> Views:
    """The department's view calendars, created if missing (write transaction).

    A view calendar whose last mount was deleted went with it (ON DELETE SET
    NULL here); a new one is made, covering nothing yet.
    """
    found = get_views(conn, department_id)
    if found is not None:
        return found
    row = conn.execute(_BY_DEPARTMENT, {"department_id": department_id}).first()
    availability = row.availability_calendar_id if row is not None else None
    overview = row.overview_calendar_id if row is not None else None
    values = {
        "availability_calendar_id": availability or create_calendar(conn),
        "overview_calendar_id": overview or create_calendar(conn),
        "covered_from": row.covered_from if row is not None and availability else None,
        "covered_to": row.covered_to if row is not None and availability else None,
    }
    memo.forget(conn, _MEMO)
    if row is None:
        conn.execute(insert(department_views).values(department_id=department_id, **values))
    else:
        conn.execute(update(department_views).where(_v.department_id == department_id).values(**values))
    views = get_views(conn, department_id)
    assert views is not None
    return views


def set_covered(conn: Connection, department_id: str, first: date, last: date) -> None:
    memo.forget(conn, _MEMO)
    conn.execute(
        update(department_views)
        .where(_v.department_id == department_id)
        .values(covered_from=first.isoformat(), covered_to=last.isoformat())
    )
