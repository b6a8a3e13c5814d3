"""PostgreSQL: a write, its occurrences, the new revision and the change row in one statement.

Every write to a calendar is several statements: the object's INSERT, UPDATE
or DELETE, its occurrence ranges (the old ones dropped on a replace), the
calendar's revision bump, the change row. On SQLite they are calls into the
library in this process; on PostgreSQL each is a round trip to the server,
and a booking writes three objects. Data-modifying CTEs (PostgreSQL's
``WITH ... AS (UPDATE ... RETURNING ...)``) run them as one statement: all
of it or, when it fails, none of it, in the caller's transaction, which
holds the write lock.

The statements are built once and run on the driver's cursor
(:mod:`servicehop_caldav.db.direct` says why, and what it saved a PUT).
:mod:`servicehop_caldav.store.objects` calls
these functions on PostgreSQL (:func:`in_one_trip`) and keeps the separate
statements for SQLite.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    CTE,
    BigInteger,
    Connection,
    Float,
    Integer,
    Text,
    bindparam,
    delete,
    exists,
    func,
    insert,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY

from servicehop_caldav.db.direct import Direct
from servicehop_caldav.db.schema import (
    OP_ADDED,
    OP_DELETED,
    OP_MODIFIED,
    calendar_changes,
    calendar_objects,
    calendar_occurrences,
    calendars,
)

_o = calendar_objects.c
# Parameters are named apart from the columns: SQLAlchemy adds a parameter
# named like a column to an UPDATE's SET clause.
_CALENDAR = bindparam("b_calendar_id", type_=Integer)
_HREF = bindparam("b_href", type_=Text)
_OPERATION = bindparam("b_operation", type_=Integer)
_NOW = bindparam("b_modified", type_=Float)
_WRITTEN = ("uid", "etag", "name", "component", "first_occurrence", "last_occurrence",
            "size", "key_id", "data", "occurrences_until")
_VALUES = {name: bindparam(f"b_{name}", type_=_o[name].type) for name in _WRITTEN} | {"modified": _NOW}


def _bump(written: CTE) -> CTE:
    """The revision bump, when the write touched a row."""
    return (
        update(calendars).where(calendars.c.id == _CALENDAR, exists(select(written.c.id)))
        .values(revision=calendars.c.revision + 1, modified=_NOW)
        .returning(calendars.c.revision).cte("bumped")
    )


def _logged(written: CTE) -> CTE:
    """The change row of the bumped revision (none when nothing was written)."""
    bumped = _bump(written)
    return insert(calendar_changes).from_select(
        ["calendar_id", "revision", "href", "operation"],
        select(_CALENDAR, bumped.c.revision, _HREF, _OPERATION).select_from(bumped),
    ).returning(calendar_changes.c.id).cte("logged")


_SPANS = func.unnest(
    bindparam("b_starts", type_=ARRAY(BigInteger)),
    bindparam("b_ends", type_=ARRAY(BigInteger)),
    bindparam("b_afters", type_=ARRAY(BigInteger)),
).table_valued("start_ts", "end_ts", "after_ts").render_derived(name="spans")


def _spans(written: CTE) -> CTE:
    """The object's occurrence ranges, from three parallel arrays."""
    return insert(calendar_occurrences).from_select(
        ["object_id", "start_ts", "end_ts", "after_ts"],
        select(written.c.id, _SPANS.c.start_ts, _SPANS.c.end_ts, _SPANS.c.after_ts)
        .select_from(written).join(_SPANS, true()),
    ).returning(calendar_occurrences.c.object_id).cte("spans_written")


_inserted = insert(calendar_objects).values(
    calendar_id=_CALENDAR, href=_HREF, **_VALUES
).returning(_o.id).cte("written")
_INSERT = Direct(select(_inserted.c.id).add_cte(_spans(_inserted), _logged(_inserted)))

_updated = (
    update(calendar_objects)
    .where(_o.calendar_id == _CALENDAR, _o.href == _HREF)
    .values(**_VALUES)
    .returning(_o.id).cte("written")
)
_dropped = (
    delete(calendar_occurrences)
    .where(calendar_occurrences.c.object_id.in_(select(_updated.c.id)))
    .returning(calendar_occurrences.c.object_id).cte("dropped")
)
_UPDATE = Direct(select(_updated.c.id).add_cte(_dropped, _spans(_updated), _logged(_updated)))

_deleted = (
    delete(calendar_objects)
    .where(_o.calendar_id == _CALENDAR, _o.href == _HREF)
    .returning(_o.id).cte("written")
)
_DELETE = Direct(select(_deleted.c.id).add_cte(_logged(_deleted)))


def in_one_trip(conn: Connection) -> bool:
    """Whether this connection takes the one-statement writes."""
    return conn.dialect.name == "postgresql"


def put_object(
    conn: Connection, calendar_id: int, href: str, values: dict[str, Any],
    spans: Sequence[tuple[int, int, int]], replacing: bool | None,
) -> None:
    """Write the object row ``values`` (the columns of ``_WRITTEN`` and
    ``modified``) at ``href`` with its occurrence ``spans`` (start, end,
    after), bump and log. ``replacing``: as
    :func:`servicehop_caldav.store.objects.put_object`'s (False: only the
    INSERT). A replaced object's earlier spans are dropped."""
    params = {f"b_{name}": values[name] for name in _WRITTEN}
    params.update(b_calendar_id=calendar_id, b_href=href, b_modified=values["modified"],
                  b_starts=[s[0] for s in spans], b_ends=[s[1] for s in spans],
                  b_afters=[s[2] for s in spans])
    if replacing is not False:
        if _UPDATE.rows(conn, {**params, "b_operation": OP_MODIFIED}):
            return
    if len(_INSERT.rows(conn, {**params, "b_operation": OP_ADDED})) != 1:
        # No href in the message: an error's text may reach the log, which
        # carries no personal data above debug level (DESIGN.md).
        raise RuntimeError("the object's INSERT returned no row")


def delete_object(conn: Connection, calendar_id: int, href: str) -> bool:
    """Delete the object at ``href``, bump and log; False if there was none."""
    params = {"b_calendar_id": calendar_id, "b_href": href, "b_modified": time.time(),
              "b_operation": OP_DELETED}
    return bool(_DELETE.rows(conn, params))
