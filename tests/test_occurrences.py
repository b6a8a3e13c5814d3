"""The recorded occurrences decide a time-range filter exactly as Radicale's
own filter does (radicale.item.filter, RFC 4791 9.9), over random events
and ranges: recurrences with COUNT/UNTIL or open-ended, EXDATE, RDATE,
overrides (RECURRENCE-ID), UTC, a time zone with DST, floating and all-day
times, DTEND, DURATION or neither, and VTODOs."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import radicale.item as radicale_item
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from radicale import config as radicale_config
from radicale import xmlutils
from radicale.app.report import test_filter as radicale_test_filter
from sqlalchemy import Connection

from servicehop_caldav.store import occurrences
from servicehop_caldav.store.records import Occurrences

NOW = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
BASE = datetime(2026, 3, 1)  # naive: the wall time the generators add to

BERLIN = "\r\n".join([
    "BEGIN:VTIMEZONE", "TZID:Europe/Berlin",
    "BEGIN:DAYLIGHT", "TZOFFSETFROM:+0100", "TZOFFSETTO:+0200", "TZNAME:CEST",
    "DTSTART:19700329T020000", "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU", "END:DAYLIGHT",
    "BEGIN:STANDARD", "TZOFFSETFROM:+0200", "TZOFFSETTO:+0100", "TZNAME:CET",
    "DTSTART:19701025T030000", "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU", "END:STANDARD",
    "END:VTIMEZONE",
])


def _fmt(moment: datetime, kind: str) -> tuple[str, str]:
    """(parameters, value) of a DATE-TIME or DATE in the style ``kind``."""
    if kind == "date":
        return ";VALUE=DATE", moment.strftime("%Y%m%d")
    if kind == "utc":
        return "", moment.strftime("%Y%m%dT%H%M%SZ")
    if kind == "berlin":
        return ";TZID=Europe/Berlin", moment.strftime("%Y%m%dT%H%M%S")
    return "", moment.strftime("%Y%m%dT%H%M%S")  # floating


@st.composite
def events(draw: st.DrawFn) -> tuple[str, int]:
    kind = draw(st.sampled_from(["utc", "berlin", "floating", "date"]))
    # Around the DST changes of 2026 (29 March, 25 October) and beyond.
    start = BASE + timedelta(days=draw(st.integers(0, 300)),
                             hours=0 if kind == "date" else draw(st.integers(0, 23)),
                             minutes=0 if kind == "date" else draw(st.sampled_from([0, 30])))
    lines = ["BEGIN:VEVENT", "UID:prop@test", "DTSTAMP:20260101T000000Z"]
    p, v = _fmt(start, kind)
    lines.append(f"DTSTART{p}:{v}")
    length = draw(st.sampled_from(["dtend", "duration", "none", "zero"]))
    days = draw(st.integers(1, 3)) if kind == "date" else 0
    span = timedelta(days=days) if kind == "date" else timedelta(minutes=draw(st.integers(1, 60 * 30)))
    if length == "dtend":
        p, v = _fmt(start + span, kind)
        lines.append(f"DTEND{p}:{v}")
    elif length == "duration":
        lines.append(f"DURATION:P{span.days}DT{span.seconds}S" if span.seconds else f"DURATION:P{span.days}D")
    elif length == "zero":
        p, v = _fmt(start, kind)
        lines.append(f"DTEND{p}:{v}")
    freq = draw(st.sampled_from([None, "DAILY", "WEEKLY"]))
    overrides: list[str] = []
    if freq is not None:
        rule = f"RRULE:FREQ={freq};INTERVAL={draw(st.integers(1, 3))}"
        bound = draw(st.sampled_from(["count", "until", "open"]))
        if bound == "count":
            rule += f";COUNT={draw(st.integers(1, 40))}"
        elif bound == "until":
            until = start + timedelta(days=draw(st.integers(0, 200)))
            rule += ";UNTIL=" + (until.strftime("%Y%m%d") if kind == "date"
                                 else (until - timedelta(hours=2)).strftime("%Y%m%dT%H%M%SZ"))
        lines.append(rule)
        step = timedelta(days=1 if freq == "DAILY" else 7)
        for n in draw(st.lists(st.integers(0, 30), max_size=3, unique=True)):
            p, v = _fmt(start + n * step, kind)
            lines.append(f"EXDATE{p}:{v}")
        for n in draw(st.lists(st.integers(1, 400), max_size=2, unique=True)):
            p, v = _fmt(start + timedelta(days=n, hours=0 if kind == "date" else 5), kind)
            lines.append(f"RDATE{p}:{v}")
        for n in draw(st.lists(st.integers(1, 20), max_size=2, unique=True)):
            p, original = _fmt(start + n * step, kind)
            moved = start + n * step + timedelta(days=draw(st.integers(-3, 40)))
            mp, mv = _fmt(moved, kind)
            override = ["BEGIN:VEVENT", "UID:prop@test", "DTSTAMP:20260101T000000Z",
                        f"RECURRENCE-ID{p}:{original}", f"DTSTART{mp}:{mv}"]
            if draw(st.booleans()):
                ep, ev = _fmt(moved + span, kind)
                override.append(f"DTEND{ep}:{ev}")
            override.append("END:VEVENT")
            overrides += override
    lines.append("END:VEVENT")
    head = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//test//EN"]
    if kind == "berlin":
        head.append(BERLIN)
    text = "\r\n".join(head + lines + overrides + ["END:VCALENDAR"]) + "\r\n"
    return text, int(start.replace(tzinfo=UTC).timestamp())


@st.composite
def todos(draw: st.DrawFn) -> tuple[str, int]:
    lines = ["BEGIN:VTODO", "UID:todo@test", "DTSTAMP:20260101T000000Z"]
    start = BASE + timedelta(days=draw(st.integers(0, 200)), hours=draw(st.integers(0, 23)))
    fields = draw(st.sets(st.sampled_from(["dtstart", "due", "duration", "completed", "created"])))
    if "dtstart" in fields:
        lines.append("DTSTART:" + start.strftime("%Y%m%dT%H%M%SZ"))
    if "due" in fields:
        lines.append("DUE:" + (start + timedelta(hours=draw(st.integers(1, 100)))).strftime("%Y%m%dT%H%M%SZ"))
    elif "duration" in fields and "dtstart" in fields:
        lines.append(f"DURATION:PT{draw(st.integers(0, 50))}H")
    if "completed" in fields:
        lines.append("COMPLETED:" + (start + timedelta(days=3)).strftime("%Y%m%dT%H%M%SZ"))
    if "created" in fields:
        lines.append("CREATED:" + (start - timedelta(days=2)).strftime("%Y%m%dT%H%M%SZ"))
    if "dtstart" in fields and draw(st.booleans()):
        lines.append(f"RRULE:FREQ=WEEKLY;COUNT={draw(st.integers(1, 10))}")
    lines.append("END:VTODO")
    text = "\r\n".join(["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//test//EN", *lines,
                          "END:VCALENDAR"]) + "\r\n"
    return text, int(start.replace(tzinfo=UTC).timestamp())


# (offset from the event's start, length): from ten days before it to about
# a year after, on the hour or the half hour or at odd seconds, from one
# second to sixty days.
ranges = st.tuples(
    st.integers(-24 * 10, 24 * 400), st.sampled_from([0, 1800, 1, 59]),
    st.sampled_from([1, 1800, 3600, 86400, 7 * 86400, 60 * 86400]),
).map(lambda t: (t[0] * 3600 + t[1], t[2]))


def _filter(component: str, start: int, end: int) -> ET.Element:
    def stamp(ts: int) -> str:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y%m%dT%H%M%SZ")

    root = ET.Element(xmlutils.make_clark("C:filter"))
    calendar = ET.SubElement(root, xmlutils.make_clark("C:comp-filter"), name="VCALENDAR")
    comp = ET.SubElement(calendar, xmlutils.make_clark("C:comp-filter"), name=component)
    ET.SubElement(comp, xmlutils.make_clark("C:time-range"), start=stamp(start), end=stamp(end))
    return root


def _exact(found: Occurrences, start: int, end: int) -> bool:
    """What objects_matching_range's SQL asks of the recorded ranges."""
    return any(s < end and e > start and a <= end for s, e, a in found.spans)


def _check(event: tuple[str, int], component: str, queries: list[tuple[int, int]]) -> None:
    text, anchor = event
    found = occurrences.of_text(text, component, now=NOW)
    item = radicale_item.Item(collection_path="cal", text=text)
    for offset, length in queries:
        start = anchor + offset
        end = start + length
        if end >= found.until:
            continue  # beyond the recorded horizon: Radicale's filter decides
        expected = radicale_test_filter("VCALENDAR", item, _filter(component, start, end))
        assert _exact(found, start, end) == expected, (text, start, end, found)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events(), st.lists(ranges, min_size=1, max_size=8))
def test_events_match_as_radicale_filters_them(
    event: tuple[str, int], queries: list[tuple[int, int]]
) -> None:
    _check(event, "VEVENT", queries)


@settings(max_examples=150, deadline=None)
@given(todos(), st.lists(ranges, min_size=1, max_size=8))
def test_todos_match_as_radicale_filters_them(
    todo: tuple[str, int], queries: list[tuple[int, int]]
) -> None:
    _check(todo, "VTODO", queries)


def _uploaded(text: str) -> radicale_item.Item | None:
    """The item a PUT of ``text`` hands the storage: parsed, checked and
    prepared as Radicale's do_PUT does for one item (None: Radicale
    refuses the PUT, as a rule ending before its start)."""
    vobject_items = radicale_item.read_components(text)
    try:
        radicale_item.check_and_sanitize_items(
            vobject_items, radicale_config.load().get("server", "max_vevent_rrule_occurrence"),
            tag="VCALENDAR")
    except ValueError:
        return None
    item = radicale_item.Item(collection_path="cal", vobject_item=vobject_items[0])
    item.prepare()
    return item


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(events(), todos()))
def test_an_uploaded_item_has_the_occurrences_of_its_stored_text(event: tuple[str, int]) -> None:
    """The storage takes an upload's occurrences from the object Radicale
    parsed (of_item), not from a second parse of the text it stores: the
    two must agree, or the index would not be what the filter reads back."""
    item = _uploaded(event[0])
    assume(item is not None)
    assert item is not None
    for component in ("VEVENT", "VTODO"):
        stored = occurrences.of_text(item.serialize(), component, now=NOW)
        assert occurrences.of_item(item, component, now=NOW) == stored
        assert occurrences.of_item(radicale_item.Item(collection_path="cal", text=item.serialize()),
                                   component, now=NOW) == stored


def test_open_ended_rule_is_recorded_up_to_the_horizon() -> None:
    text = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:w\r\n"
            "DTSTAMP:20260101T000000Z\r\nDTSTART:20260105T100000Z\r\nDTEND:20260105T110000Z\r\n"
            "RRULE:FREQ=DAILY\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    found = occurrences.of_text(text, "VEVENT", now=NOW)
    assert NOW + occurrences.HORIZON_SECONDS <= found.until < NOW + occurrences.HORIZON_SECONDS + 86400
    assert 700 < len(found.spans) <= occurrences.MAX_RANGES


@pytest.mark.parametrize("text", [
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:x\r\n"
    "DTSTAMP:20260101T000000Z\r\nSUMMARY:no start\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
    "not an icalendar text",
])
def test_what_radicale_cannot_expand_is_left_to_its_filter(text: str) -> None:
    assert occurrences.of_text(text, "VEVENT", now=NOW).until == occurrences.UNKNOWN


WEEKLY = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n"
          "DTSTAMP:20260101T000000Z\r\nDTSTART:{start}\r\nDTEND:{end}\r\n{rule}"
          "END:VEVENT\r\nEND:VCALENDAR\r\n")


def _object(uid: str, start: str, end: str, rule: str = "") -> Any:
    from radicale_storage_servicehop import object_of_text

    text = WEEKLY.format(uid=uid, start=start, end=end, rule=rule)
    return object_of_text("cal")(text)


def _week(conn: Connection, calendar_id: int) -> dict[str, bool]:
    """objects_matching_range for the week of Monday 1 June 2026."""
    from servicehop_caldav.store import objects as store_objects

    start = int(datetime(2026, 6, 1, tzinfo=UTC).timestamp())
    end = start + 7 * 86400
    found = list(store_objects.objects_matching_range(conn, calendar_id, "VEVENT", start, end))
    # The REPORT's reading of the same statement gives the same answer.
    assert list(store_objects.matches_in_range(conn, calendar_id, "VEVENT", start, end)) == [
        (o.href, o.etag, o.name, o.component, o.first_occurrence, o.last_occurrence, o.text, matched)
        for o, matched in found]
    assert list(store_objects.matches_in_range(conn, calendar_id, "VEVENT", start, end, with_text=False)) == [
        (o.href, o.etag, o.name, o.component, o.first_occurrence, o.last_occurrence, None, matched)
        for o, matched in found]
    return {obj.href: matched for obj, matched in found}


def test_upgrade_from_version_4_then_fill_and_verify(database_url: str) -> None:
    """A version-4 database (no occurrence table) upgrades; its objects are
    left to Radicale's filter until ``fill`` records their occurrences, then
    the recurring event that misses the week is not even read, and verify
    accepts the table (and notices a row that does not match the data)."""
    from sqlalchemy import text as sql

    from servicehop_caldav.db import migrate
    from servicehop_caldav.db.engine import Database
    from servicehop_caldav.db.schema import schema_info
    from servicehop_caldav.store import collections as store_collections
    from servicehop_caldav.store import objects as store_objects
    from servicehop_caldav.store.verify import verify_database

    db = Database(database_url)
    try:
        migrate.ensure_schema(db)
        with db.transaction("w") as conn:
            calendar_id = store_collections.create_instance(conn, "u/cal", {"tag": "VCALENDAR"}).calendar_id
            rows = {
                # Weekly on Tuesdays since January: an occurrence on 2 June.
                "hit.ics": _object("hit", "20260106T100000Z", "20260106T110000Z", "RRULE:FREQ=WEEKLY\r\n"),
                # Every other week, on the weeks the query does not ask for.
                "miss.ics": _object("miss", "20260105T100000Z", "20260105T110000Z",
                                    "RRULE:FREQ=WEEKLY;INTERVAL=2\r\n"),
                "inside.ics": _object("inside", "20260603T100000Z", "20260603T110000Z"),
            }
            for href, row in rows.items():
                store_objects.put_object(conn, calendar_id, href, row)
            assert _week(conn, calendar_id) == {"hit.ics": True, "inside.ics": True}
            # Back to version 4.
            conn.execute(sql("DROP TABLE calendar_occurrences"))
            conn.execute(sql("ALTER TABLE calendar_objects DROP COLUMN occurrences_until"))
            conn.execute(schema_info.update().values(version=4))
        assert migrate.ensure_schema(db) == 4
        with db.transaction("w") as conn:
            # Not known yet: all candidates go to Radicale's filter.
            assert _week(conn, calendar_id) == {"hit.ics": False, "miss.ics": False, "inside.ics": True}
            assert occurrences.fill(conn) == 3
            assert occurrences.fill(conn) == 0
            assert _week(conn, calendar_id) == {"hit.ics": True, "inside.ics": True}
        assert verify_database(db)
        with db.transaction("w") as conn:
            conn.execute(sql("DELETE FROM calendar_occurrences WHERE start_ts = "
                             + str(int(datetime(2026, 6, 2, 10, tzinfo=UTC).timestamp()))))
            assert _week(conn, calendar_id) == {"inside.ics": True}
        assert not verify_database(db)
    finally:
        db.dispose()


def test_rewrite_and_delete_keep_the_table_current(database_url: str) -> None:
    from sqlalchemy import func, select

    from servicehop_caldav.db import migrate
    from servicehop_caldav.db.engine import Database
    from servicehop_caldav.db.schema import calendar_occurrences
    from servicehop_caldav.store import collections as store_collections
    from servicehop_caldav.store import objects as store_objects

    db = Database(database_url)
    try:
        migrate.ensure_schema(db)
        with db.transaction("w") as conn:
            calendar_id = store_collections.create_instance(conn, "u/cal", {"tag": "VCALENDAR"}).calendar_id
            store_objects.put_object(conn, calendar_id, "a.ics", _object(
                "a", "20260106T100000Z", "20260106T110000Z", "RRULE:FREQ=WEEKLY;COUNT=30\r\n"))
            assert _week(conn, calendar_id) == {"a.ics": True}
            # The same UID moved to Wednesdays of other weeks: no longer on 1-7 June.
            store_objects.put_object(conn, calendar_id, "a.ics", _object(
                "a", "20260107T100000Z", "20260107T110000Z", "RRULE:FREQ=WEEKLY;INTERVAL=2;COUNT=30\r\n"))
            assert _week(conn, calendar_id) == {}
            assert conn.execute(select(func.count()).select_from(calendar_occurrences)).scalar() == 30
            store_objects.delete_object(conn, calendar_id, "a.ics")
            assert conn.execute(select(func.count()).select_from(calendar_occurrences)).scalar() == 0
    finally:
        db.dispose()
