"""What a write reads before it writes, in the statement that looks its path up.

A write transaction (a PUT, a DELETE) takes the write lock, then looks its
request path up (Radicale's ``discover``). Before it writes anything it
reads more: the newest key (``codec.check_current``: nothing is
written under a key a rotation has retired) and, for the calendars of a
department (its opening calendar, a recipient's bookings calendar), the
department, with where its computed views are (a booking updates them)
and the latest start of its bookings (a change of opening times later
than that decides no booking again), and the booking whose event the
request names; for a bookings calendar, its recipient with their roles
(a booking reads them) and, on PostgreSQL, the department's staff with
their assignments calendars (a booking chooses among them and writes the
visit into the chosen one's). A PUT of a new object
also asks whether its UID is taken (Radicale's no-uid-conflict check, and
for a bookings calendar whether another calendar holds it): the UID the
body names is read ahead of Radicale's parser (:func:`sending`), and the
storage answers from what this statement read when the parser agrees.
On PostgreSQL each was a round trip of its own. Here the path lookup
reads them too. It runs after the lock, in the same transaction, so
it sees what those reads would have seen (under READ COMMITTED each
statement sees what was committed before it began, and a key rotation
commits under the same lock).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    Text,
    bindparam,
    cast,
    exists,
    literal_column,
    null,
    select,
    true,
    union_all,
)

from servicehop_caldav.db.direct import Direct
from servicehop_caldav.db.schema import (
    bookings,
    calendar_instances,
    calendar_objects,
    department_views,
    departments,
)
from servicehop_caldav.directory import store as directory
from servicehop_caldav.store import bookings as store_bookings
from servicehop_caldav.store import codec, one_trip
from servicehop_caldav.store import objects as store_objects
from servicehop_caldav.store import views as store_views
from servicehop_caldav.store.records import Instance, StoredObject

_d = departments.c
_DEPARTMENT_COLUMNS = (_d.id, _d.name, _d.timezone, _d.language, _d.opening_calendar_id)
# One row even with no key and no department (an aggregate without GROUP BY).
_newest = codec.NEWEST_KEY.subquery()
_department = (
    select(*_DEPARTMENT_COLUMNS, *store_views.COLUMNS)
    .select_from(departments.outerjoin(department_views, department_views.c.department_id == _d.id))
    .where(_d.id == bindparam("department_id"))
    .subquery()
)
_path = store_objects.PATH_PARENT_AND_MEMBER.subquery()
# The booking whose event is the member (a bookings calendar's PUT or DELETE asks).
_b, _i, _o = bookings.c, calendar_instances.c, calendar_objects.c
_parent_calendar = select(_i.calendar_id).where(_i.path == bindparam("parent")).scalar_subquery()
_booking = select(*store_bookings.ROW_COLUMNS).where(
    _b.booking_calendar_id == _parent_calendar,
    _b.booking_href == bindparam("href"),
).subquery()
# The sent UID in the parent calendar, and in any other (NULL: nothing sent).
_UID = bindparam("uid", type_=Text)
_uids = (
    exists().where(_o.calendar_id == _parent_calendar, _o.uid == _UID).label("uid_here"),
    exists().where(_o.uid == _UID, _o.calendar_id != _parent_calendar).label("uid_elsewhere"),
)
# The recipient whose bookings calendar it is, with their roles (a row each).
_person = directory.PERSON.subquery()
_COLUMNS = select(*_uids, store_bookings.LATEST_START.label("latest_booking_start"),
                  _newest, _department, _path, _booking, _person).selected_columns
# On PostgreSQL, for a bookings calendar (whose PUT decides among them), the
# department's staff with their assignments calendars: rows of their own,
# tagged apart, each kind's columns NULL in the other's rows. Elsewhere the
# write reads no staff, and on SQLite, where a statement is no round trip,
# the larger statement cost more than the desk's own staff read.
_staff = directory.members_statement(calendar=True).order_by(None).subquery()
_WRITE, _STAFF = "w", "s"


def _write_row(*staff_columns: ColumnElement[Any]) -> Select[Any]:
    return (select(literal_column(f"'{_WRITE}'").label("kind"), *_COLUMNS, *staff_columns)
            .select_from(_newest.outerjoin(_department, true()).outerjoin(_path, true())
                         .outerjoin(_booking, true()).outerjoin(_person, true())))


# With the staff or not; run on the driver's cursor (db.direct): the one
# with the staff is longer than psycopg converts once and keeps.
_STATEMENTS: dict[bool, Direct] = {
    False: Direct(_write_row()),
    True: Direct(union_all(
        _write_row(*(cast(null(), c.type).label(f"staff_{c.name}") for c in _staff.c)),
        select(literal_column(f"'{_STAFF}'"), *(cast(null(), c.type) for c in _COLUMNS), *_staff.c),
    )),
}
_STAFF_AT = 1 + len(_COLUMNS)  # in a row as read; the rest are positions in a row without its kind
_LATEST_AT = len(_uids)
_NEWEST_AT = _LATEST_AT + 1
_DEPARTMENT_AT = _NEWEST_AT + 1
_VIEWS_AT = _DEPARTMENT_AT + len(_DEPARTMENT_COLUMNS)
_PATH_AT = _VIEWS_AT + len(store_views.COLUMNS)
_BOOKING_AT = _PATH_AT + len(_path.c)
_PERSON_AT = _BOOKING_AT + len(_booking.c)


def get_path_and_member(
    conn: Connection, path: str, parent: str, href: str, department_id: str | None,
    recipient: str | None = None,
) -> tuple[Instance | None, Instance | None, StoredObject | None]:
    """:func:`store_objects.get_path_and_member`, in a write transaction
    holding the lock; its first lookup reads the newest key and department
    ``department_id`` (None: none) and user ``recipient`` (the owner of a
    bookings calendar; None: nobody) in the same statement."""
    if codec.knows_newest(conn):  # not the transaction's first lookup
        return store_objects.get_path_and_member(conn, path, parent, href)
    uid = _SENT_UID.get()
    with_staff = recipient is not None and department_id is not None and one_trip.in_one_trip(conn)
    read = _STATEMENTS[with_staff].rows(conn, {
        "path": path, "parent": parent, "href": href, "uid": uid, "department_id": department_id or "",
        "username": recipient, "role": directory.STAFF_ROLE, "calendar": directory.STAFF_CALENDAR,
    })
    rows = [row[1:_STAFF_AT] for row in read if row[0] == _WRITE]
    codec.remember_newest(conn, rows[0][_NEWEST_AT])
    if recipient is not None:
        directory.remember_person(conn, recipient, rows, at=_PERSON_AT)
    if department_id is not None:
        found = rows[0][_DEPARTMENT_AT] is not None
        directory.remember_department(conn, department_id, directory.Department(
            *rows[0][_DEPARTMENT_AT:_VIEWS_AT]) if found else None)
        if found:
            store_views.remember_views(conn, department_id, rows[0][_VIEWS_AT:_PATH_AT])
            store_bookings.remember_latest_start(conn, department_id, rows[0][_LATEST_AT])
            if with_staff:
                staff = [row[_STAFF_AT:] for row in read if row[0] == _STAFF]
                directory.remember_members(
                    conn, department_id, directory.STAFF_ROLE, directory.STAFF_CALENDAR, staff)
    at_path, at_parent = store_objects.remember_path_and_member(conn, path, parent, href, rows, at=_PATH_AT)
    if at_path is not None:
        return at_path, None, None
    if uid is not None and at_parent is not None:
        store_objects.remember_uid(conn, at_parent.calendar_id, uid, *map(bool, rows[0][:_LATEST_AT]))
    if department_id is not None and at_parent is not None:
        store_bookings.remember_for_event(conn, at_parent.calendar_id, href, rows[0][_BOOKING_AT:_PERSON_AT])
    member = store_objects.get_object(conn, at_parent.calendar_id, href) if at_parent is not None else None
    return None, at_parent, member


_SENT_UID: ContextVar[str | None] = ContextVar("servicehop_sent_uid", default=None)
_FOLD = re.compile(rb"\r?\n[ \t]")
_UID_LINE = re.compile(rb"^UID(?:;[^:\r\n]*)?:([^\r\n]*)", re.MULTILINE | re.IGNORECASE)


def sent_uid(body: bytes) -> str | None:
    """The UID a PUT body names, if it names exactly one: a guess at what
    Radicale's parser will read. It is only ever compared with what the
    parser read, so a wrong guess costs the statement it was to save."""
    uids = set(_UID_LINE.findall(_FOLD.sub(b"", body)))
    if len(uids) != 1:
        return None
    try:
        return uids.pop().decode()
    except UnicodeDecodeError:
        return None


@contextmanager
def sending(body: bytes) -> Iterator[None]:
    """While the block runs (a PUT), the write's path lookup also reads
    whether the UID ``body`` names is taken."""
    token = _SENT_UID.set(sent_uid(body))
    try:
        yield
    finally:
        _SENT_UID.reset(token)
