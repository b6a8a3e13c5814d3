"""A time-range query on a big calendar decodes only its candidate rows.

5,000 events over two years, one in ten weekly recurring (open-ended, COUNT,
UNTIL, some with EXDATEs). The rows are written straight through the store's
schema (a whole-calendar PUT of this size spends its time in vobject, not in
what this test is about); their index columns are computed the way Radicale
computes them (checked on a sample). A one-week calendar-query must decode
exactly the rows whose enclosing time range overlaps the week, and answer
exactly the events with an occurrence in that week.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import icalendar
import pytest
import radicale.item as radicale_item
import recurring_ical_events
from radicale.item.filter import TIMESTAMP_MAX
from sqlalchemy import insert, update

from servicehop_caldav.db.engine import Database
from servicehop_caldav.db.migrate import ensure_schema
from servicehop_caldav.db.schema import OP_ADDED, calendar_changes, calendar_objects, calendars
from servicehop_caldav.store import codec
from servicehop_caldav.store import collections as store_collections
from tests.conftest import Server, start_server
from tests.helpers.robust import UTC, calendar_query, vcalendar, vevent

EVENTS = 5000
BASE = dt.datetime(2025, 1, 6, tzinfo=UTC)  # a Monday
DAYS = 728  # two years of start days
WEEK = dt.timedelta(days=7)
HOUR = dt.timedelta(hours=1)
# Weeks queried: early (few recurring events started), middle, late.
QUERY_WEEKS = [3, 52, 100]


@dataclass(frozen=True)
class Spec:
    uid: str
    start: dt.datetime  # first occurrence; every occurrence lasts one hour
    count: int | None  # occurrences of a weekly rule; None: open-ended; 1: single
    exdates: tuple[dt.datetime, ...] = ()
    until: bool = False  # bound the rule by UNTIL (the last start) instead of COUNT

    @property
    def recurring(self) -> bool:
        return self.count != 1

    def occurrences(self, until: dt.datetime) -> Iterator[dt.datetime]:
        k = 0
        while self.count is None or k < self.count:
            when = self.start + k * WEEK
            if when >= until:
                return
            if when not in self.exdates:
                yield when
            k += 1

    def text(self) -> str:
        rrule = None
        if self.count is None:
            rrule = "FREQ=WEEKLY"
        elif self.until:
            last = self.start + (self.count - 1) * WEEK
            rrule = "FREQ=WEEKLY;UNTIL=" + last.strftime("%Y%m%dT%H%M%SZ")
        elif self.count > 1:
            rrule = f"FREQ=WEEKLY;COUNT={self.count}"
        return vcalendar(vevent(self.uid, self.start, rrule=rrule, exdates=self.exdates))

    def time_range(self) -> tuple[int, int]:
        """The (first, last) index columns: Radicale's item.time_range."""
        first = int(self.start.timestamp())
        if self.count is None:
            return first, TIMESTAMP_MAX
        last = self.start + (self.count - 1) * WEEK + HOUR
        return first, int(last.timestamp())


def make_specs() -> list[Spec]:
    specs = []
    for i in range(EVENTS):
        day = (i * 7919) % DAYS  # 7919 is prime: days spread evenly
        start = BASE + dt.timedelta(days=day, hours=8 + i % 10)
        if i % 10:
            specs.append(Spec(f"s{i:04d}", start, 1))
            continue
        kind = (i // 10) % 4
        count = (None, 8, 21, 30)[kind]
        # Some rules skip every fifth week: candidates that may not match.
        exdates = tuple(start + k * WEEK for k in range(2, 30, 5)) if kind == 3 else ()
        specs.append(Spec(f"r{i:04d}", start, count, exdates, until=kind == 2))
    return specs


SPECS = make_specs()


def week(n: int) -> tuple[dt.datetime, dt.datetime]:
    return BASE + n * WEEK, BASE + (n + 1) * WEEK


def candidates(start: dt.datetime, end: dt.datetime) -> set[str]:
    lo, hi = int(start.timestamp()), int(end.timestamp())
    return {s.uid for s in SPECS if s.time_range()[0] < hi and s.time_range()[1] > lo}


def matches(start: dt.datetime, end: dt.datetime) -> set[str]:
    return {s.uid for s in SPECS if any(w + HOUR > start for w in s.occurrences(end))}


@functools.cache
def whole_calendar() -> icalendar.Calendar:
    return icalendar.Calendar.from_ical(vcalendar(*(vevent_of(s) for s in SPECS)))


def brute_force(n: int) -> set[str]:
    """The events of week n per recurring_ical_events, on the whole calendar."""
    found = recurring_ical_events.of(whole_calendar()).between(*week(n))
    return {str(e["UID"]) for e in found}


def vevent_of(spec: Spec) -> str:
    text = spec.text()
    return text[text.index("BEGIN:VEVENT") : text.index("END:VCALENDAR")]


def seed(database_url: str, path: str) -> None:
    db = Database(database_url)
    try:
        ensure_schema(db)
        with db.transaction("w") as conn:
            instance = store_collections.create_instance(
                conn, path, {"tag": "VCALENDAR", "D:displayname": "Big"}
            )
            rows = []
            for spec in SPECS:
                text = spec.text()
                data, key_id = codec.encode(conn, text)
                first, last = spec.time_range()
                rows.append(
                    dict(
                        calendar_id=instance.calendar_id,
                        href=spec.uid + ".ics",
                        uid=spec.uid,
                        etag=radicale_item.get_etag(text),
                        name="VCALENDAR",
                        component="VEVENT",
                        first_occurrence=first,
                        last_occurrence=last,
                        size=len(data),
                        modified=0.0,
                        key_id=key_id,
                        data=data,
                    )
                )
            conn.execute(insert(calendar_objects), rows)
            conn.execute(
                insert(calendar_changes),
                [
                    dict(calendar_id=instance.calendar_id, revision=n, href=row["href"],
                         operation=OP_ADDED)
                    for n, row in enumerate(rows, 1)
                ],
            )
            conn.execute(
                update(calendars)
                .where(calendars.c.id == instance.calendar_id)
                .values(revision=len(rows))
            )
    finally:
        db.dispose()


@functools.cache
def check_dataset() -> None:
    """The seeded index columns are what Radicale itself would store, and the
    expected answers agree with recurring_ical_events."""
    sample = [s for s in SPECS if s.recurring] + SPECS[1::97]
    for spec in sample:
        item = radicale_item.Item(collection_path="alice/big", text=spec.text())
        assert item.uid == spec.uid
        assert item.component_name == "VEVENT" and item.name == "VCALENDAR"
        assert item.time_range == spec.time_range(), spec
    for n in QUERY_WEEKS:
        assert matches(*week(n)) == brute_force(n), n


@pytest.fixture
def big_server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    seed(database_url, "alice/big")
    srv = start_server(database_url, tmp_path / "server")
    yield srv
    srv.stop()


def test_week_query_decodes_only_candidates(big_server: Server) -> None:
    check_dataset()
    s = big_server.session("alice")
    cal = big_server.url + "/alice/big/"
    assert s.get(cal + "s0001.ics").status_code == 200  # the server sees the seed
    texts = {spec.uid: spec.text() for spec in SPECS}
    for n in QUERY_WEEKS:
        start, end = week(n)
        expected = matches(start, end)
        wanted = candidates(start, end)
        assert expected <= wanted < set(texts)

        codec.decoded.reset()
        found = calendar_query(s, cal, start, end)
        decoded = codec.decoded.reset()

        print(f"week {n}: {len(expected)} events, {len(wanted)} candidates, {decoded} decoded")
        # Only the matches: the recurring candidates are decided by their
        # recorded occurrences before any data is read.
        assert decoded == len(expected), (n, decoded, len(expected), len(wanted))
        assert decoded < 700
        assert set(found) == {f"/alice/big/{uid}.ics" for uid in expected}, n
        for href, data in found.items():
            uid = href.rsplit("/", 1)[1].removesuffix(".ics")
            assert data.replace("\r\n", "\n") == texts[uid].replace("\r\n", "\n")
