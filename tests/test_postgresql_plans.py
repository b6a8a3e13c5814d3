"""A calendar's reads cost in proportion to their result on PostgreSQL too.

PostgreSQL plans with the table sizes it knows, and it plans a prepared
statement once for every later run (its generic plan, which psycopg's
statements, prepared from their second run, get some runs later). Two reads went wrong that way at
the benchmark's 10,000 events, and neither shows with a test's few rows
unless their plan is asked for:

* the time-range query's test of recorded occurrences was made a hashed
  subplan: every recorded occurrence of every calendar overlapping the
  range read into a hash table once per query (4 ms of a week's 5);
* a multiget's IN list of 100 hrefs, prepared before the tables were
  analysed, was read by calendar_id alone, every object of the calendar
  tested against the list (and the list was rendered anew each call).

Here a calendar of some thousands of events (a tenth weekly recurring, as
the benchmark's) is analysed, and each statement's custom and generic
plans must find its rows by index: no plan reads a whole table, and none
hashes the occurrences. So must a write's first statement, which reads
the path, the member, the key, the department, the recipient and whether
the sent UID is taken, in any calendar, at once (store/write_ahead.py)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from psycopg import sql as psycopg_sql
from radicale_storage_servicehop import object_of_text
from sqlalchemy import Connection, event, text

from servicehop_caldav.db.engine import Database
from servicehop_caldav.instance import Instance, init_instance
from servicehop_caldav.store import collections as store_collections
from servicehop_caldav.store import objects as store_objects
from servicehop_caldav.store import write_ahead
from servicehop_caldav.store.records import StoredObject
from tests.conftest import make_database_url
from tests.helpers.robust import vcalendar, vevent

CALENDAR = "demo/opening-demo"
EVENTS = 3000
FIRST = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)
WEEK = (int((FIRST + dt.timedelta(days=140)).timestamp()), int((FIRST + dt.timedelta(days=147)).timestamp()))


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Database, int]]:
    """A PostgreSQL instance whose opening calendar holds EVENTS events
    over a year, every tenth weekly recurring; the tables analysed."""
    url, drop = make_database_url("postgres", tmp_path_factory.mktemp("pg-plans"))
    try:
        home = tmp_path_factory.mktemp("pg-plans-home") / "instance"
        init_instance(home, url)
        make = object_of_text(CALENDAR)
        with Instance(home).open() as (db, _keyring):
            with db.transaction("w") as conn:
                instance = store_collections.get_instance(conn, CALENDAR)
                assert instance is not None and instance.calendar_id is not None
                for n in range(EVENTS):
                    start = FIRST + dt.timedelta(days=n % 365, hours=n % 9)
                    rrule = "FREQ=WEEKLY;COUNT=60" if n % 10 == 0 else None
                    text_ = vcalendar(vevent(f"ev-{n}", start, rrule=rrule))
                    store_objects.put_object(conn, instance.calendar_id, f"ev-{n}.ics", make(text_))
            with db.engine.connect() as conn:
                conn.execute(text("ANALYZE"))
                conn.commit()
            yield db, instance.calendar_id
    finally:
        drop()


_TYPES = {int: "bigint", str: "text", list: "text[]"}


def _sent(db: Database, read: Callable[[Connection], object]) -> tuple[str, dict[str, Any]]:
    """The one statement ``read`` sends, with its parameters."""
    sent: list[tuple[str, list[Any]]] = []  # on the driver's cursor (db.direct)

    def record(_c: Connection, _cur: object, statement: str, parameters: list[Any], *_: object) -> None:
        sent.append((statement, parameters))

    with db.transaction("r") as conn:
        event.listen(db.engine, "before_cursor_execute", record)
        try:
            read(conn)
        finally:
            event.remove(db.engine, "before_cursor_execute", record)
    assert len(sent) == 1, sent
    return sent[0]


def _plans(db: Database, statement: str, params: dict[str, Any] | list[Any]) -> dict[str, str]:
    """The custom and the generic plan of ``statement`` with ``params``, as
    the driver was given them: ``%(name)s`` placeholders and a dict
    (through SQLAlchemy), or ``$1`` and a list (``db.direct``)."""
    names: list[str] = []

    def numbered(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    if isinstance(params, dict):
        sql = re.sub(r"%\((\w+)\)s", numbered, statement)
        values = [params[n] for n in names]
    else:
        sql, values = statement, params
    types = ", ".join(_TYPES[type(v)] for v in values)
    plans = {}
    with db.engine.connect() as conn:
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cursor.execute(f"PREPARE probe ({types}) AS {sql}")
        # Literals: EXECUTE's arguments take no parameters of unknown type.
        arguments = psycopg_sql.SQL(", ").join(psycopg_sql.Literal(v) for v in values)
        for mode in ("force_custom_plan", "force_generic_plan"):
            cursor.execute(f"SET plan_cache_mode = {mode}")
            cursor.execute(psycopg_sql.SQL("EXPLAIN EXECUTE probe({})").format(arguments))
            plans[mode] = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("DEALLOCATE probe")
        conn.rollback()
    return plans


def test_a_time_range_query_looks_up_the_occurrences_of_the_objects_it_tests(
    analysed: tuple[Database, int],
) -> None:
    db, calendar_id = analysed
    found: set[str] = set()

    def read(conn: Connection) -> None:
        found.update(obj.href for obj, _ in store_objects.objects_matching_range(
            conn, calendar_id, "VEVENT", WEEK[0], WEEK[1]))

    for mode, plan in _plans(db, *_sent(db, read)).items():
        assert "calendar_occurrences" in plan, (mode, plan)
        assert "Seq Scan" not in plan and "hashed SubPlan" not in plan, (mode, plan)
    # ... and it answers what the events say: the week's single events and
    # the recurring ones with an occurrence in it.
    assert "ev-140.ics" in found and "ev-130.ics" in found  # a single one, a weekly one
    assert "ev-139.ics" not in found and "ev-120.ics" in found  # before; weekly from 20 weeks earlier
    assert "ev-131.ics" not in found  # single, nine days before


def test_a_multiget_reads_each_href_by_its_index(analysed: tuple[Database, int]) -> None:
    db, calendar_id = analysed
    hrefs = [f"ev-{n}.ics" for n in range(0, EVENTS, 30)] + ["missing.ics"]
    found: dict[str, StoredObject] = {}
    statement, params = _sent(
        db, lambda conn: found.update(store_objects.get_objects(conn, calendar_id, hrefs)))
    assert sorted(found) == sorted(hrefs[:-1])
    assert all(found[h].href == h and f"UID:ev-{h[3:-4]}" in found[h].text for h in found)
    # One statement whatever the number of hrefs (an array, not an IN list
    # of as many parameters): prepared once, not rendered again per call.
    assert _sent(db, lambda conn: store_objects.get_objects(conn, calendar_id, hrefs[:3]))[0] == statement
    # Its generic plan (psycopg's from the fifth run): each href by the
    # (calendar_id, href) index, never the calendar's every object. The
    # custom plan may read a small calendar whole where that is cheaper.
    plan = _plans(db, statement, params)["force_generic_plan"]
    assert "uq_objects_href" in plan and "ix_objects_uid" not in plan, plan
    assert "Seq Scan on calendar_objects" not in plan, plan


def test_a_writes_first_statement_reads_the_calendar_by_index(analysed: tuple[Database, int]) -> None:
    db, _calendar_id = analysed
    sent: list[tuple[str, list[Any]]] = []  # on the driver's cursor (db.direct)

    def record(_c: Connection, _cur: object, statement: str, parameters: list[Any], *_: object) -> None:
        sent.append((statement, parameters))

    with db.transaction("w") as conn, write_ahead.sending(vcalendar(vevent("ev-7", FIRST)).encode()):
        event.listen(db.engine, "before_cursor_execute", record)
        try:
            _, parent, member = write_ahead.get_path_and_member(
                conn, f"{CALENDAR}/ev-7.ics", CALENDAR, "ev-7.ics", "demo", recipient="demo")
        finally:
            event.remove(db.engine, "before_cursor_execute", record)
        assert parent is not None and member is not None and "UID:ev-7" in member.text
        assert store_objects.has_uid(conn, parent.calendar_id, "ev-7")
    statement, params = next((s, p) for s, p in sent if "max(key_checks.key_id)" in s)
    for mode, plan in _plans(db, statement, params).items():
        assert "Seq Scan on calendar_objects" not in plan, (mode, plan)
        assert "Seq Scan on calendar_occurrences" not in plan, (mode, plan)
