"""Bad input gets a clear 4xx, stores nothing, and the server keeps serving;
names with unicode, spaces and odd characters simply work.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from sqlalchemy import Connection

from servicehop_caldav.db.engine import Database
from servicehop_caldav.db.migrate import ensure_schema
from servicehop_caldav.db.schema import MAX_KEY_BYTES
from servicehop_caldav.store import collections as store_collections
from servicehop_caldav.store.records import Instance
from tests.conftest import Server, start_server
from tests.helpers.robust import (
    NS,
    UTC,
    XML,
    calendar_query,
    collection_state,
    db_snapshot,
    event,
    list_hrefs,
    mkcalendar,
    path_url,
    put,
    sync_collection,
    vcalendar,
    verify,
    vevent,
)

MAX_CONTENT_LENGTH = 100_000
MAX_RESOURCE_SIZE = 20_000
DAY = dt.datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def limited_server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    srv = start_server(
        database_url,
        tmp_path / "server",
        {
            "server": {
                "max_content_length": str(MAX_CONTENT_LENGTH),
                "max_resource_size": str(MAX_RESOURCE_SIZE),
                "delay_on_error": "0",
            }
        },
    )
    yield srv
    srv.stop()


def padded_event(uid: str, size: int) -> str:
    """A valid event of about ``size`` bytes (a long, folded DESCRIPTION)."""
    return event(uid, description="x" * size)


def long_name(chars: int) -> str:
    """A name that does not compress (PostgreSQL compresses long index keys)."""
    digests = (hashlib.sha256(str(i).encode()).hexdigest() for i in range(chars // 64 + 1))
    return "".join(digests)[:chars]


# Longer than a PostgreSQL btree index row can hold (2704 bytes): stored on
# SQLite but a 500 on PostgreSQL, unless the store refuses it on both.
LONG = long_name(3000)

BROKEN_EVENT = "BEGIN:VEVENT\r\nUID:broken\r\nDTSTART:not-a-date\r\nEND:VEVENT\r\n"

# id: (path under /alice/, body, acceptable statuses)
BAD_PUTS: dict[str, tuple[str, str | bytes, set[int]]] = {
    "malformed-unclosed": (
        "cal/bad.ics",
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:bad\r\n",
        {400},
    ),
    "malformed-not-icalendar": ("cal/bad.ics", "hello, calendar\r\n", {400}),
    "malformed-empty": ("cal/bad.ics", "", {400}),
    "malformed-bad-utf8": ("cal/bad.ics", b"\xff\xfe\xfa" + event("bad").encode(), {400}),
    "malformed-bad-date": ("cal/bad.ics", event("bad").replace("DTSTART:2026", "DTSTART:X026"), {400}),
    "body-over-max-content-length": (
        "cal/big.ics",
        padded_event("big", MAX_CONTENT_LENGTH + 10_000),
        {400, 413},
    ),
    "resource-over-max-resource-size": (
        "cal/big.ics",
        padded_event("big", MAX_RESOURCE_SIZE + 10_000),
        {403},
    ),
    "two-uids-in-one-resource": (
        "cal/two.ics",
        vcalendar(vevent("one", DAY), vevent("two", DAY)),
        {400},
    ),
    "two-component-types": (
        "cal/mixed.ics",
        vcalendar(vevent("mixed", DAY), vevent("mixed", DAY, component="VTODO")),
        {400},
    ),
    "rrule-over-occurrence-limit": (
        "cal/rr.ics",
        vcalendar(vevent("rr", DAY, rrule="FREQ=MINUTELY;COUNT=20000")),
        {400},
    ),
    "uid-already-in-calendar": ("cal/again.ics", event("keep"), {409}),
    "parent-missing": ("nope/x.ics", event("orphan"), {409}),
    "whole-calendar-with-broken-event": (
        "newcal/",
        vcalendar(vevent("fine", DAY), BROKEN_EVENT),
        {400},
    ),
    "uid-too-long": ("cal/long-uid.ics", event(LONG), {400}),
    "href-too-long": (f"cal/{LONG}.ics", event("long-href"), {400}),
    "unicode-href-too-long": (f"cal/{'ø' * 1500}.ics", event("long-href"), {400}),
    "whole-calendar-uid-too-long": (
        "newcal/",
        vcalendar(vevent("fine", DAY), vevent(LONG, DAY)),
        {400},
    ),
}


class Calendar:
    """alice's VEVENT-only calendar with one event in it."""

    def __init__(self, srv: Server) -> None:
        self.srv = srv
        self.s = srv.session("alice")
        self.home = srv.url + "/alice/"
        self.url = self.home + "cal/"
        assert mkcalendar(self.s, self.url, ["VEVENT"]).status_code == 201
        assert put(self.s, self.url + "keep.ics", event("keep")).status_code == 201

    def state(self) -> dict[str, Any]:
        return {
            "home": list_hrefs(self.s, self.home),
            "members": list_hrefs(self.s, self.url),
            "collection": collection_state(self.s, self.url),
            "db": db_snapshot(self.srv.database_url),
        }

    def assert_nothing_stored(self, before: dict[str, Any], path: str) -> None:
        assert self.s.get(self.home + path).status_code == 404
        assert self.state() == before
        token = before["collection"]["sync-token"]
        assert sync_collection(self.s, self.url, token) == (token, {})
        assert verify(self.srv.database_url)

    def assert_still_serving(self) -> None:
        r = put(self.s, self.url + "later.ics", event("later"))
        assert r.status_code == 201, r.text
        assert self.s.get(self.url + "later.ics").status_code == 200


@pytest.mark.parametrize("case", list(BAD_PUTS))
def test_bad_put_is_refused_and_stores_nothing(limited_server: Server, case: str) -> None:
    path, body, statuses = BAD_PUTS[case]
    cal = Calendar(limited_server)
    before = cal.state()
    r = put(cal.s, cal.home + path, body)
    assert r.status_code in statuses, (r.status_code, r.text)
    if r.status_code in (400, 403):  # every refusal of a body says why
        reason = ET.fromstring(r.content).find("{urn:x-servicehop:ns}reason")
        assert reason is not None and reason.text, r.text
    cal.assert_nothing_stored(before, path)
    cal.assert_still_serving()


def test_bad_whole_calendar_over_resource_size(limited_server: Server) -> None:
    """One oversized event makes a whole-calendar PUT fail as a whole."""
    cal = Calendar(limited_server)
    before = cal.state()
    body = vcalendar(
        vevent("small-1", DAY),
        vevent("huge", DAY, description="x" * (MAX_RESOURCE_SIZE + 5_000)),
        vevent("small-2", DAY),
    )
    r = put(cal.s, cal.home + "newcal/", body)
    assert r.status_code == 403 and b"max-resource-size" in r.content, r.text
    cal.assert_nothing_stored(before, "newcal/")
    cal.assert_still_serving()


def test_too_long_names_refused_by_every_request(limited_server: Server) -> None:
    cal = Calendar(limited_server)
    before = cal.state()
    r = mkcalendar(cal.s, cal.home + LONG + "/")
    assert r.status_code == 400, r.text
    r = cal.s.request("MOVE", cal.url + "keep.ics", headers={"Destination": cal.url + LONG})
    assert r.status_code == 400, r.text
    cal.assert_nothing_stored(before, LONG + "/")
    assert cal.s.get(cal.url + "keep.ics").status_code == 200
    # Names right at the limit work, on both backends.
    href = long_name(MAX_KEY_BYTES - 4) + ".ics"
    r = put(cal.s, cal.url + href, event(long_name(MAX_KEY_BYTES)))
    assert r.status_code == 201, r.text
    assert cal.s.get(cal.url + href).status_code == 200
    name = long_name(MAX_KEY_BYTES - len("alice/"))
    assert mkcalendar(cal.s, cal.home + name + "/").status_code == 201
    assert put(cal.s, cal.home + name + "/x.ics", event("x")).status_code == 201
    cal.assert_still_serving()
    assert verify(limited_server.database_url)


def supported_components(s: requests.Session, url: str) -> set[str]:
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<D:propfind xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
        "<D:prop><C:supported-calendar-component-set/></D:prop></D:propfind>"
    )
    r = s.request("PROPFIND", url, data=body.encode(), headers={**XML, "Depth": "0"})
    assert r.status_code == 207
    root = ET.fromstring(r.content)
    return {c.attrib["name"] for c in root.iterfind(".//C:supported-calendar-component-set/C:comp", NS)}


def test_vtodo_into_vevent_only_calendar(limited_server: Server) -> None:
    """RFC 4791 5.3.2.1 (Radicale itself does not check it; our storage does):
    403 naming CALDAV:supported-calendar-component, and the reason as text."""
    cal = Calendar(limited_server)
    assert supported_components(cal.s, cal.url) == {"VEVENT"}
    before = cal.state()
    todo = vcalendar(vevent("todo", DAY, component="VTODO"))
    r = put(cal.s, cal.url + "todo.ics", todo)
    assert r.status_code == 403, (r.status_code, "VTODO accepted by a VEVENT-only calendar")
    error = ET.fromstring(r.content)
    assert error.tag == "{DAV:}error"
    assert error.find("C:supported-calendar-component", NS) is not None
    reason = error.find("{urn:x-servicehop:ns}reason")
    assert reason is not None and "VEVENT" in (reason.text or "") and "VTODO" in (reason.text or "")
    cal.assert_nothing_stored(before, "cal/todo.ics")
    cal.assert_still_serving()


def test_move_of_a_vtodo_into_vevent_only_calendar(limited_server: Server) -> None:
    """The same precondition holds for MOVE: the task stays where it was."""
    cal = Calendar(limited_server)
    tasks = cal.home + "tasks/"
    assert mkcalendar(cal.s, tasks, ["VTODO"]).status_code == 201
    todo = vcalendar(vevent("todo", DAY, component="VTODO"))
    assert put(cal.s, tasks + "todo.ics", todo).status_code == 201
    before = cal.state()
    r = cal.s.request("MOVE", tasks + "todo.ics", headers={"Destination": cal.url + "todo.ics"})
    assert r.status_code == 403, r.status_code
    assert ET.fromstring(r.content).find("C:supported-calendar-component", NS) is not None
    assert cal.s.get(tasks + "todo.ics").status_code == 200
    cal.assert_nothing_stored(before, "cal/todo.ics")


# -- names ---------------------------------------------------------------------

ODD_NAMES = [
    "hendelse æøå 1.ics",
    "a+b.ics",
    "rapport 50% ferdig.ics",
    "emoji 📅.ics",
    "hash#tag.ics",
    "semi;colon.ics",
]


def test_unicode_and_spaces_in_names(server: Server) -> None:
    s = server.session("alice")
    home = server.url + "/alice/"
    cal = path_url(server.url, "alice", "Møte kalender", collection=True)
    cal_path = "/alice/Møte kalender/"
    assert mkcalendar(s, cal).status_code == 201
    assert cal_path in list_hrefs(s, home)
    token, _ = sync_collection(s, cal)

    etags = {}
    for n, name in enumerate(ODD_NAMES):
        url = path_url(server.url, "alice", "Møte kalender", name)
        body = event(f"odd-{n}", summary=f"Møte nummer {n} æøå")
        r = put(s, url, body)
        assert r.status_code == 201, (name, r.status_code, r.text)
        etags[cal_path + name] = r.headers["ETag"]
        r = s.get(url)
        assert r.status_code == 200, name
        assert r.headers["ETag"] == etags[cal_path + name]
        assert f"UID:odd-{n}" in r.text and f"SUMMARY:Møte nummer {n} æøå" in r.text
    assert list_hrefs(s, cal) == etags
    new_token, changes = sync_collection(s, cal, token)
    assert changes == {href: 200 for href in etags}
    found = calendar_query(s, cal, DAY - dt.timedelta(days=1), DAY + dt.timedelta(days=1))
    assert set(found) == set(etags)

    # Move to another odd name (Destination URL-encoded), then delete it.
    source = path_url(server.url, "alice", "Møte kalender", ODD_NAMES[0])
    target_name = "flyttet ø 2.ics"
    target = path_url(server.url, "alice", "Møte kalender", target_name)
    r = s.request("MOVE", source, headers={"Destination": target})
    assert r.status_code == 201, r.text
    assert s.get(source).status_code == 404
    assert s.get(target).status_code == 200
    assert s.delete(target).status_code in (200, 204)
    assert s.get(target).status_code == 404
    _, changes = sync_collection(s, cal, new_token)
    assert changes == {cal_path + ODD_NAMES[0]: 404, cal_path + target_name: 404}

    # A whole-calendar PUT to a new unicode path.
    year = path_url(server.url, "alice", "Årskalender 2026", collection=True)
    body = vcalendar(*(vevent(f"år-{i}", DAY + dt.timedelta(days=i)) for i in range(3)), name="År")
    assert put(s, year, body).status_code == 201
    assert set(list_hrefs(s, year)) == {f"/alice/Årskalender 2026/år-{i}.ics" for i in range(3)}
    assert s.get(year + quote("år-1.ics")).status_code == 200
    assert {cal_path, "/alice/Årskalender 2026/"} <= set(list_hrefs(s, home))
    assert verify(server.database_url)


# -- deleting a tree takes exactly that tree ----------------------------------


@pytest.mark.parametrize(
    "victim, bystander",
    [("dave", "Dave"), ("erin", "ERIN"), ("a_b", "aXb"), ("c%", "cd")],
    ids=["case", "upper", "underscore", "percent"],
)
def test_delete_takes_only_its_own_tree(server: Server, victim: str, bystander: str) -> None:
    """Deleting a principal collection leaves every other user's data alone,
    also users whose name differs only in case or matches as a LIKE pattern."""
    users = server.folder / "users"
    users.write_text(users.read_text() + f"{victim}:pw1\n{bystander}:pw2\n")
    sessions = {}
    for name, password in ((victim, "pw1"), (bystander, "pw2")):
        s = requests.Session()
        s.auth = (name, password)
        sessions[name] = s
        cal = path_url(server.url, name, "cal", collection=True)
        assert mkcalendar(s, cal).status_code == 201, name
        assert put(s, cal + "x.ics", event(f"{name}-x")).status_code == 201, name
    s = sessions[bystander]
    cal = path_url(server.url, bystander, "cal", collection=True)
    before = (list_hrefs(s, path_url(server.url, bystander, collection=True)),
              list_hrefs(s, cal), collection_state(s, cal))

    home = path_url(server.url, victim, collection=True)
    assert sessions[victim].delete(home).status_code in (200, 204)
    assert list_hrefs(sessions[victim], home) == {}  # (Radicale recreates the principal)

    after = (list_hrefs(s, path_url(server.url, bystander, collection=True)),
             list_hrefs(s, cal), collection_state(s, cal))
    assert after == before
    assert s.get(cal + "x.ics").status_code == 200
    assert verify(server.database_url)


def test_delete_instance_tree_is_an_exact_prefix(database_url: str) -> None:
    """The store's tree delete, with names no HTTP user can make under owner_only."""
    paths = [
        "møte/kal/sub", "Møte/kal", "MØTE/kal", "møtex/kal", "møte_/kal", "møte%/kal",
        "m/øte", "møte kal/x",
    ]
    db = Database(database_url)
    try:
        ensure_schema(db)
        with db.transaction("w") as conn:
            for path in paths:
                store_collections.create_instance(conn, path, {})
            every = {i.path for i in all_instances(conn)}
            store_collections.delete_instance_tree(conn, "møte")
            assert {i.path for i in all_instances(conn)} == every - {
                "møte", "møte/kal", "møte/kal/sub"
            }
            store_collections.delete_instance_tree(conn, "møte_")
            store_collections.delete_instance_tree(conn, "møte%")
            assert "møtex/kal" in {i.path for i in all_instances(conn)}
            assert not {i.path for i in all_instances(conn)} & {"møte_", "møte_/kal", "møte%"}
    finally:
        db.dispose()


def all_instances(conn: Connection) -> list[Instance]:
    found: list[Instance] = []
    todo = [""]
    while todo:
        children = store_collections.child_instances(conn, todo.pop())
        found.extend(children)
        todo.extend(c.path for c in children)
    return found
