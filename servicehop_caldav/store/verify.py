"""Check the stored data: schema, tree, objects, change log."""

from __future__ import annotations

import json

import radicale.item as radicale_item
from radicale.log import logger
from sqlalchemy import func, select

from servicehop_caldav.db.engine import Database
from servicehop_caldav.db.migrate import current_version
from servicehop_caldav.db.schema import (
    SCHEMA_VERSION,
    calendar_changes,
    calendar_instances,
    calendar_objects,
    calendars,
    department_views,
)
from servicehop_caldav.store import codec
from servicehop_caldav.store import occurrences as store_occurrences


def verify_database(db: Database, max_vevent_rrule_occurrence: int = 0) -> bool:
    """Log every problem found; True when there is none."""
    problems = 0

    def problem(message: str, *args: object) -> None:
        nonlocal problems
        problems += 1
        logger.error("verify: " + message, *args)

    with db.transaction("r") as conn:
        version = current_version(conn)
        if version != SCHEMA_VERSION:
            problem("schema version %r, expected %d", version, SCHEMA_VERSION)
            return False
        i = calendar_instances.c
        paths = {row.path: row for row in conn.execute(select(i.path, i.parent_path, i.props))}
        tags: dict[int, str] = {}
        for row in conn.execute(select(i.calendar_id, i.props)):
            try:
                props = radicale_item.check_and_sanitize_props(json.loads(row.props))
                tags[row.calendar_id] = props.get("tag", "")
            except ValueError as e:
                problem("bad properties of calendar %d: %s", row.calendar_id, e)
        # The departments' computed calendars hold events before anyone
        # mounts them (no recipient or admin yet): calendars all the same.
        for row in conn.execute(select(department_views)):
            for calendar_id in (row.availability_calendar_id, row.overview_calendar_id):
                if calendar_id is not None:
                    tags.setdefault(calendar_id, "VCALENDAR")
        for path, row in paths.items():
            if row.parent_path and row.parent_path not in paths:
                problem("collection %r has no parent collection", path)
        o = calendar_objects.c
        for row in conn.execute(
            select(o.id, o.calendar_id, o.href, o.uid, o.etag, o.key_id, o.data, o.first_occurrence,
                   o.last_occurrence, o.component, o.occurrences_until)
        ):
            where = f"{row.href!r} in calendar {row.calendar_id}"
            try:
                text = codec.decode(conn, row.data, row.key_id)
            except Exception as e:
                problem("cannot decode %s: %s", where, e)
                continue
            if radicale_item.get_etag(text) != row.etag:
                problem("etag of %s does not match its data", where)
            try:
                components = radicale_item.read_components(text)
                radicale_item.check_and_sanitize_items(
                    components,
                    tag=tags.get(row.calendar_id, ""),
                    max_vevent_rrule_occurrence=max_vevent_rrule_occurrence,
                )
                (component,) = components
                item = radicale_item.Item(collection_path="x", vobject_item=component)
                if item.uid != row.uid:
                    problem("UID index of %s is %r, data says %r", where, row.uid, item.uid)
                if item.time_range != (row.first_occurrence, row.last_occurrence):
                    problem("time-range index of %s does not match its data", where)
            except Exception as e:
                problem("invalid iCalendar/vCard in %s: %s", where, e)
            if not store_occurrences.matches_text(conn, row.id, row.occurrences_until, text,
                                                  row.component):
                problem("occurrence index of %s does not match its data", where)
        c = calendar_changes.c
        behind = conn.execute(
            select(calendars.c.id)
            .join(calendar_changes, c.calendar_id == calendars.c.id)
            .group_by(calendars.c.id, calendars.c.revision)
            .having(func.max(c.revision) > calendars.c.revision)
        ).scalars().all()
        for calendar_id in behind:
            problem("change log of calendar %d is ahead of its revision", calendar_id)
    return problems == 0
