"""The departments' computed calendars: which calendar holds which view.

A department's availability and overview are ordinary calendars (objects,
change log, sync tokens) that only the server writes; provisioning mounts
them read-only into the homes of the department's recipients and admins,
as the opening calendar is mounted into every admin's home. This module
only knows where they are; :mod:`servicehop_caldav.desk.views` fills them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import Connection, bindparam, insert, select, update

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


def get_views(conn: Connection, department_id: str) -> Views | None:
    """The department's view calendars, if both exist."""
    row = conn.execute(_BY_DEPARTMENT, {"department_id": department_id}).first()
    if row is None or row.availability_calendar_id is None or row.overview_calendar_id is None:
        return None
    return Views(
        department_id, row.availability_calendar_id, row.overview_calendar_id,
        _date(row.covered_from), _date(row.covered_to),
    )


def ensure_views(conn: Connection, department_id: str) -> Views:
    """The department's view calendars, created if missing (write transaction).

    A view calendar whose last mount was deleted went with it (ON DELETE SET
    NULL here); a new one is made, covering nothing yet.
    """
    found = get_views(conn, department_id)
    if found is not None:
        return found
    row = conn.execute(select(department_views).where(_v.department_id == department_id)).first()
    availability = row.availability_calendar_id if row is not None else None
    overview = row.overview_calendar_id if row is not None else None
    values = {
        "availability_calendar_id": availability or create_calendar(conn),
        "overview_calendar_id": overview or create_calendar(conn),
        "covered_from": row.covered_from if row is not None and availability else None,
        "covered_to": row.covered_to if row is not None and availability else None,
    }
    if row is None:
        conn.execute(insert(department_views).values(department_id=department_id, **values))
    else:
        conn.execute(update(department_views).where(_v.department_id == department_id).values(**values))
    views = get_views(conn, department_id)
    assert views is not None
    return views


def set_covered(conn: Connection, department_id: str, first: date, last: date) -> None:
    conn.execute(
        update(department_views)
        .where(_v.department_id == department_id)
        .values(covered_from=first.isoformat(), covered_to=last.isoformat())
    )
