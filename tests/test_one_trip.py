"""Writes, revisions and the change log: the same rows on both backends.

On PostgreSQL an object's write, its occurrence ranges, the calendar's
revision and the change row are one statement (``store/one_trip.py``); on
SQLite they are separate statements. Both must leave the same rows."""

from __future__ import annotations

from typing import Any

import pytest
from radicale_storage_servicehop import object_of_text
from sqlalchemy import Connection, func, select
from sqlalchemy.exc import IntegrityError

from servicehop_caldav.db.engine import Database
from servicehop_caldav.db.schema import calendar_changes, calendar_objects, calendar_occurrences, calendars
from servicehop_caldav.store import collections as store_collections
from servicehop_caldav.store import objects as store_objects
from servicehop_caldav.store.records import NewObject

PATH = "u/cal"


def event(uid: str, rrule: str = "") -> NewObject:
    text = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\n"
            f"UID:{uid}\r\nDTSTAMP:20250101T000000Z\r\nDTSTART:20250106T100000Z\r\n"
            f"DTEND:20250106T110000Z\r\n{rrule}SUMMARY:x\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    return object_of_text(PATH)(text)


def rows(conn: Connection, calendar_id: int) -> dict[str, Any]:
    o, c, s = calendar_objects.c, calendar_changes.c, calendar_occurrences.c
    return {
        "revision": conn.execute(select(calendars.c.revision).where(calendars.c.id == calendar_id)).scalar(),
        "changes": conn.execute(select(c.revision, c.href, c.operation).where(c.calendar_id == calendar_id)
                                .order_by(c.revision)).all(),
        "objects": conn.execute(select(o.href, o.uid).where(o.calendar_id == calendar_id)
                                .order_by(o.href)).all(),
        "occurrences": conn.execute(
            select(o.href, func.count()).select_from(calendar_occurrences.join(
                calendar_objects, s.object_id == o.id)).group_by(o.href).order_by(o.href)).all(),
    }


def test_put_replace_and_delete_leave_revisions_changes_and_occurrences(db: Database) -> None:
    with db.transaction("w") as conn:
        calendar_id = store_collections.create_instance(conn, PATH, {}).calendar_id
    with db.transaction("w") as conn:
        store_objects.put_object(conn, calendar_id, "a.ics", event("a"), replacing=False)
        store_objects.put_object(conn, calendar_id, "b.ics", event("b"))  # looked for first
        # Replaced by a weekly series of three: its one range becomes three.
        store_objects.put_object(conn, calendar_id, "a.ics", event("a", "RRULE:FREQ=WEEKLY;COUNT=3\r\n"))
        assert rows(conn, calendar_id) == {
            "revision": 3,
            "changes": [(1, "a.ics", 1), (2, "b.ics", 1), (3, "a.ics", 2)],
            "objects": [("a.ics", "a"), ("b.ics", "b")],
            "occurrences": [("a.ics", 3), ("b.ics", 1)],
        }
        assert "RRULE" in store_objects.get_object(conn, calendar_id, "a.ics").text  # type: ignore[union-attr]
        assert store_objects.delete_object(conn, calendar_id, "a.ics")
        assert not store_objects.delete_object(conn, calendar_id, "a.ics")  # nothing: no revision
        assert rows(conn, calendar_id) == {
            "revision": 4,
            "changes": [(1, "a.ics", 1), (2, "b.ics", 1), (3, "a.ics", 2), (4, "a.ics", 3)],
            "objects": [("b.ics", "b")],
            "occurrences": [("b.ics", 1)],
        }
        assert store_collections.get_instance(conn, PATH).state.revision == 4  # type: ignore[union-attr]


def test_the_written_row_holds_each_value_as_given(db: Database) -> None:
    """Every column of the write, read back as written: on PostgreSQL the
    write's parameters go to the driver as plain values (db.direct), its
    own types deciding (a float's fraction, bytes, NULL, the spans' arrays)."""
    weekly = event("w", "RRULE:FREQ=WEEKLY;COUNT=3\r\n")
    with db.transaction("w") as conn:
        calendar_id = store_collections.create_instance(conn, PATH, {}).calendar_id
        stored = store_objects.put_object(conn, calendar_id, "w.ics", weekly, replacing=False)
    o, s = calendar_objects.c, calendar_occurrences.c
    with db.transaction("r") as conn:
        row = conn.execute(select(o.uid, o.etag, o.name, o.component, o.first_occurrence, o.last_occurrence,
                                  o.size, o.modified, o.key_id, o.occurrences_until)
                           .where(o.calendar_id == calendar_id, o.href == "w.ics")).one()
        spans = conn.execute(select(s.start_ts, s.end_ts, s.after_ts).join_from(
            calendar_occurrences, calendar_objects, s.object_id == o.id).where(o.href == "w.ics")
            .order_by(s.start_ts)).all()
        text = store_objects.get_object(conn, calendar_id, "w.ics").text  # type: ignore[union-attr]
    assert weekly.occurrences is not None
    assert tuple(row) == (
        "w", weekly.etag, weekly.name, weekly.component, weekly.first_occurrence, weekly.last_occurrence,
        len(weekly.text.encode()), stored.modified, None, weekly.occurrences.until,
    )
    assert [tuple(span) for span in spans] == list(weekly.occurrences.spans)
    assert len(spans) == 3 and text == weekly.text


def test_a_failed_insert_leaves_no_revision_and_no_change(db: Database) -> None:
    with db.transaction("w") as conn:
        calendar_id = store_collections.create_instance(conn, PATH, {}).calendar_id
        store_objects.put_object(conn, calendar_id, "a.ics", event("a"))
    # The caller said "new", but there is one: the write fails as a whole.
    with pytest.raises(IntegrityError), db.transaction("w") as conn:
        store_objects.put_object(conn, calendar_id, "a.ics", event("a2"), replacing=False)
    with db.transaction("r") as conn:
        assert rows(conn, calendar_id) == {
            "revision": 1, "changes": [(1, "a.ics", 1)], "objects": [("a.ics", "a")],
            "occurrences": [("a.ics", 1)],
        }
