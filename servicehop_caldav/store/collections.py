"""Collections: calendar instances at paths, and the calendars behind them."""

from __future__ import annotations

import json
import posixpath
import secrets
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    FromClause,
    Join,
    Row,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from servicehop_caldav.db import memo
from servicehop_caldav.db.schema import calendar_instances, calendars, check_key
from servicehop_caldav.store.records import CalendarState, Instance

_i = calendar_instances.c
# What an Instance is made of; joined into other modules' lookups too
# (instance_of reads them by position, in this order).
INSTANCE_COLUMNS = (
    _i.id,
    _i.calendar_id,
    _i.path,
    _i.props,
    _i.modified,
    calendars.c.sync_salt,
    calendars.c.revision,
    calendars.c.modified.label("calendar_modified"),
)
_WIDTH = len(INSTANCE_COLUMNS)
# The instances with their calendars, to join onto from another table.
INSTANCES_WITH_CALENDARS = calendar_instances.join(calendars, calendars.c.id == _i.calendar_id)


def with_instance(left: FromClause, on: ColumnElement[bool]) -> Join:
    """``left`` with the instance ``on`` picks (and its calendar), if any.

    Two flat outer joins, not an outer join of :data:`INSTANCES_WITH_CALENDARS`:
    SQLite materialises such a nested join by scanning every instance, on
    every login. The same rows, as every instance has its calendar
    (``calendar_id`` is a non-null foreign key)."""
    return left.outerjoin(calendar_instances, on).outerjoin(calendars, calendars.c.id == _i.calendar_id)
_INSTANCES = select(*INSTANCE_COLUMNS).select_from(INSTANCES_WITH_CALENDARS)


def props_to_json(props: Mapping[str, str]) -> str:
    return json.dumps(dict(props), sort_keys=True, ensure_ascii=False)


def parent_of(path: str) -> str:
    return posixpath.dirname(path)


def instance_of(row: Row[Any], at: int = 0) -> Instance:
    """The Instance of a row holding :data:`INSTANCE_COLUMNS` from column
    ``at`` on. Read by position: a Row's attributes by name cost about 0.6 µs
    each, some 30 times its unpacking."""
    id_, calendar_id, path, props, modified, salt, revision, calendar_modified = row[at:at + _WIDTH]
    return Instance(id_, path, props, modified, CalendarState(calendar_id, salt, revision, calendar_modified))


_BY_PATH = _INSTANCES.where(_i.path == bindparam("path"))  # built once (see store.objects)


# Memo kind (servicehop_caldav.db.memo): path -> Instance or None, as read in
# this transaction. A request looks its path up more than once (Radicale's
# PUT discovers the path, then the parent); any write to instances or to a
# calendar's revision forgets them all (the Instance carries the revision).
_MEMO = "instances"


def forget_instances(conn: Connection) -> None:
    """Instances read earlier in this transaction are read again (a writer
    outside this module changed calendar_instances or calendars)."""
    memo.forget(conn, _MEMO)


def remember(conn: Connection, path: str, instance: Instance | None) -> None:
    """Note what another module's statement read at ``path`` in this
    transaction, so the lookups below do not read it again."""
    memo.memo(conn, _MEMO)[path] = instance


def known(conn: Connection, path: str) -> tuple[bool, Instance | None]:
    """(read already in this transaction, what was read) for ``path``."""
    entries = memo.memo(conn, _MEMO)
    return path in entries, entries.get(path)


def get_instance(conn: Connection, path: str) -> Instance | None:
    def read() -> Instance | None:
        row = conn.execute(_BY_PATH, {"path": path}).first()
        return instance_of(row) if row is not None else None

    return memo.once(conn, _MEMO, path, read)


def child_instances(conn: Connection, parent_path: str) -> list[Instance]:
    rows = conn.execute(_INSTANCES.where(_i.parent_path == parent_path).order_by(_i.path))
    return [instance_of(row) for row in rows]


def create_calendar(conn: Connection) -> int:
    """A new, empty calendar mounted nowhere yet; its id."""
    return int(conn.execute(
        insert(calendars)
        .values(sync_salt=secrets.token_hex(8), revision=0, modified=time.time())
        .returning(calendars.c.id)
    ).scalar_one())


def create_instance(conn: Connection, path: str, props: Mapping[str, str]) -> Instance:
    """Create a new calendar and mount it at ``path``, creating missing parents."""
    check_key("path", path)
    return mount_instance(conn, path, create_calendar(conn), props)


def mount_instance(
    conn: Connection, path: str, calendar_id: int, props: Mapping[str, str]
) -> Instance:
    """Mount the existing calendar ``calendar_id`` at ``path`` (a new instance
    with its own properties), creating missing parents.

    Every instance of a calendar shows the same objects, revision and change
    log, so its sync tokens and etags are the same in every home.
    """
    assert path, "the root collection always exists"
    check_key("path", path)
    forget_instances(conn)
    parent = parent_of(path)
    if parent and get_instance(conn, parent) is None:
        create_instance(conn, parent, {})
    forget_instances(conn)  # the parent made above, the path now mounted
    conn.execute(
        insert(calendar_instances).values(
            calendar_id=calendar_id,
            path=path,
            parent_path=parent,
            props=props_to_json(props),
            modified=time.time(),
        )
    )
    instance = get_instance(conn, path)
    assert instance is not None
    return instance


def delete_instance_tree(conn: Connection, path: str) -> None:
    """Remove the collection at ``path`` and everything below it.

    A calendar goes with its last instance; its objects and change log go
    with it (ON DELETE CASCADE).
    """
    # Everything: objects go with their calendars, and ids may be reused.
    memo.forget(conn)
    prefix = path + "/"
    where = or_(
        calendar_instances.c.path == path,
        # An exact, case-sensitive prefix test. Not LIKE: SQLite's LIKE ignores
        # ASCII case, so deleting "alice" took "Alice/..." (another user) too.
        func.substr(calendar_instances.c.path, 1, len(prefix)) == prefix,
    )
    calendar_ids = set(conn.execute(select(calendar_instances.c.calendar_id).where(where)).scalars())
    conn.execute(delete(calendar_instances).where(where))
    if not calendar_ids:
        return
    still_mounted = set(
        conn.execute(
            select(calendar_instances.c.calendar_id).where(
                calendar_instances.c.calendar_id.in_(calendar_ids)
            )
        ).scalars()
    )
    orphans = calendar_ids - still_mounted
    if orphans:
        conn.execute(delete(calendars).where(calendars.c.id.in_(orphans)))


def set_props(conn: Connection, instance_id: int, calendar_id: int, props: Mapping[str, str]) -> str:
    props_json = props_to_json(props)
    now = time.time()
    forget_instances(conn)
    conn.execute(
        update(calendar_instances)
        .where(calendar_instances.c.id == instance_id)
        .values(props=props_json, modified=now)
    )
    conn.execute(update(calendars).where(calendars.c.id == calendar_id).values(modified=now))
    return props_json


def calendar_state(conn: Connection, calendar_id: int) -> CalendarState:
    row = conn.execute(
        select(calendars.c.sync_salt, calendars.c.revision, calendars.c.modified).where(
            calendars.c.id == calendar_id
        )
    ).one()
    return CalendarState(calendar_id, row.sync_salt, row.revision, row.modified)


_BUMP = (
    update(calendars)
    .where(calendars.c.id == bindparam("b_id"))
    .values(revision=calendars.c.revision + 1, modified=bindparam("b_modified"))
    .returning(calendars.c.revision)
)  # built once: every write runs it


def bump_revision(conn: Connection, calendar_id: int) -> int:
    """Advance the calendar's revision (caller holds the write lock)."""
    forget_instances(conn)
    revision: int = conn.execute(_BUMP, {"b_id": calendar_id, "b_modified": time.time()}).scalar_one()
    return revision
