"""End to end: CalDAV/WebDAV as clients speak it, against the real server.

Every test runs on SQLite and on PostgreSQL (the ``server`` fixture). The
``caldav`` library drives the flows a calendar client uses; raw requests are
used wherever the exact request or the exact answer (status codes, hrefs,
headers, XML error elements) is what is under test.

All event times are fixed UTC dates in 2027, after "today" (2026-11-22).
"""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import icalendar
import requests
from caldav.elements import dav as dav_element

from tests.conftest import Server, start_server

NS = {
    "D": "DAV:",
    "C": "urn:ietf:params:xml:ns:caldav",
    "CS": "http://calendarserver.org/ns/",
    "A": "http://apple.com/ns/ical/",
}
XMLNS = " ".join(f'xmlns:{prefix}="{uri}"' for prefix, uri in NS.items())
ICS = {"Content-Type": "text/calendar; charset=utf-8"}
XML = {"Content-Type": "application/xml; charset=utf-8"}


def clark(name: str) -> str:
    prefix, local = name.split(":")
    return f"{{{NS[prefix]}}}{local}"


# -- iCalendar ----------------------------------------------------------------


def new_uid() -> str:
    return str(uuid.uuid4())


def vevent(uid: str, start: str, end: str, *lines: str, summary: str = "") -> str:
    """One VEVENT; ``lines`` are extra content lines.

    ``start``/``end`` are UTC stamps ("20270607T100000Z") or, starting with
    ";", parameters and value (";TZID=Europe/Berlin:20270608T013000").
    """

    def when(name: str, value: str) -> str:
        return name + value if value.startswith(";") else f"{name}:{value}"

    body = [
        "BEGIN:VEVENT",
        f"UID:{uid}",
        "DTSTAMP:20261101T000000Z",
        when("DTSTART", start),
        when("DTEND", end),
        f"SUMMARY:{summary or uid}",
        *lines,
        "END:VEVENT",
    ]
    return "\r\n".join(body) + "\r\n"


def vcalendar(*components: str) -> str:
    head = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//servicehop//protocol tests//EN\r\n"
    return head + "".join(components) + "END:VCALENDAR\r\n"


def event(uid: str, start: str = "20270301T090000Z", end: str = "20270301T100000Z",
          *lines: str, summary: str = "") -> str:
    """A VCALENDAR holding one VEVENT."""
    return vcalendar(vevent(uid, start, end, *lines, summary=summary))


VTIMEZONE_BERLIN = "\r\n".join([
    "BEGIN:VTIMEZONE",
    "TZID:Europe/Berlin",
    "BEGIN:DAYLIGHT",
    "TZOFFSETFROM:+0100",
    "TZOFFSETTO:+0200",
    "TZNAME:CEST",
    "DTSTART:19700329T020000",
    "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU",
    "END:DAYLIGHT",
    "BEGIN:STANDARD",
    "TZOFFSETFROM:+0200",
    "TZOFFSETTO:+0100",
    "TZNAME:CET",
    "DTSTART:19701025T030000",
    "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU",
    "END:STANDARD",
    "END:VTIMEZONE",
]) + "\r\n"


# -- WebDAV -------------------------------------------------------------------


@dataclass
class Entry:
    """One <D:response> of a multistatus."""

    status: int | None = None  # a <D:status> directly in the response
    props: dict[str, ET.Element] = field(default_factory=dict)  # found (200)
    missing: set[str] = field(default_factory=set)  # asked for, not found (404)


@dataclass
class Multistatus:
    entries: dict[str, Entry]  # unquoted href path -> entry
    sync_token: str | None


def href_path(href: str) -> str:
    return unquote(urlsplit(href).path)


def parse_multistatus(r: requests.Response) -> Multistatus:
    assert r.status_code == 207, (r.status_code, r.text[:1000])
    root = ET.fromstring(r.content)
    entries: dict[str, Entry] = {}
    for response in root.findall("D:response", NS):
        path = href_path(response.findtext("D:href", "", NS))
        assert path not in entries, f"{path} twice in one multistatus"
        entry = entries[path] = Entry()
        status = response.findtext("D:status", None, NS)
        if status is not None:
            entry.status = int(status.split()[1])
        for propstat in response.findall("D:propstat", NS):
            code = int(propstat.findtext("D:status", "", NS).split()[1])
            for prop in propstat.findall("D:prop/*", NS):
                if code == 200:
                    entry.props[prop.tag] = prop
                else:
                    assert code == 404, (code, r.text[:1000])
                    entry.missing.add(prop.tag)
    return Multistatus(entries, root.findtext("D:sync-token", None, NS))


class Dav:
    """Raw requests of one user against the server, paths relative to its root."""

    def __init__(self, server: Server, user: str = "alice") -> None:
        self.server = server
        self.s = server.session(user)

    def url(self, path: str) -> str:
        return self.server.url + path

    def request(self, method: str, path: str, body: str | None = None,
                **headers: str) -> requests.Response:
        data = body.encode("utf-8") if body is not None else None
        return self.s.request(method, self.url(path), data=data, headers=headers)

    def put(self, path: str, text: str, **headers: str) -> requests.Response:
        return self.request("PUT", path, text, **ICS, **headers)

    def get(self, path: str) -> requests.Response:
        return self.request("GET", path)

    def delete(self, path: str, **headers: str) -> requests.Response:
        return self.request("DELETE", path, **headers)

    def mkcalendar(self, path: str) -> None:
        r = self.request("MKCALENDAR", path)
        assert r.status_code == 201, (r.status_code, r.text)

    def put_new(self, path: str, text: str) -> str:
        """PUT a new resource; return its ETag."""
        r = self.put(path, text, **{"If-None-Match": "*"})
        assert r.status_code == 201, (path, r.status_code, r.text)
        assert r.headers.get("ETag"), r.headers
        return r.headers["ETag"]

    def propfind(self, path: str, props: str, depth: str = "0") -> Multistatus:
        body = f'<?xml version="1.0"?><D:propfind {XMLNS}><D:prop>{props}</D:prop></D:propfind>'
        return parse_multistatus(self.request("PROPFIND", path, body, Depth=depth, **XML))

    def state(self, path: str) -> tuple[str, str]:
        """(getctag, sync-token) of a collection."""
        entry = self.propfind(path, "<CS:getctag/><D:sync-token/>").entries[path]
        ctag = entry.props[clark("CS:getctag")].text
        token = entry.props[clark("D:sync-token")].text
        assert ctag and token
        return ctag, token

    def members(self, path: str) -> dict[str, str]:
        """PROPFIND depth 1 on a collection: member href -> getetag."""
        result = self.propfind(path, "<D:getetag/>", depth="1").entries
        assert path in result, result.keys()
        return {
            href: entry.props[clark("D:getetag")].text or ""
            for href, entry in result.items()
            if href != path
        }

    def report(self, path: str, body: str, depth: str | None = "1") -> requests.Response:
        """A REPORT; ``depth`` None sends no Depth header (multiget, RFC 4791 7.9)."""
        headers = {"Depth": depth} if depth is not None else {}
        return self.request("REPORT", path, '<?xml version="1.0"?>' + body, **headers, **XML)

    def sync_raw(self, path: str, token: str = "") -> requests.Response:
        return self.report(
            path,
            f"<D:sync-collection {XMLNS}><D:sync-token>{token}</D:sync-token>"
            "<D:sync-level>1</D:sync-level><D:prop><D:getetag/></D:prop>"
            "</D:sync-collection>",
            depth="0",  # RFC 6578 3.2: sync-level, not Depth, says how deep
        )

    def sync(self, path: str, token: str = "") -> tuple[str, dict[str, Entry]]:
        """sync-collection: (new token, href -> entry)."""
        result = parse_multistatus(self.sync_raw(path, token))
        assert result.sync_token, "sync-collection answered without a sync-token"
        return result.sync_token, result.entries

    def query(self, path: str, start: str, end: str, component: str = "VEVENT") -> set[str]:
        """calendar-query with one time-range: the hrefs returned."""
        r = self.report(
            path,
            f"<C:calendar-query {XMLNS}><D:prop><D:getetag/></D:prop>"
            f'<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="{component}">'
            f'<C:time-range start="{start}" end="{end}"/>'
            "</C:comp-filter></C:comp-filter></C:filter></C:calendar-query>",
        )
        return set(parse_multistatus(r).entries)


def changes(entries: dict[str, Entry]) -> dict[str, int]:
    """href -> 200 (present, with its getetag) or 404 (gone) of a sync answer."""
    out = {}
    for href, entry in entries.items():
        if entry.status is not None:
            out[href] = entry.status
        else:
            assert clark("D:getetag") in entry.props, (href, entry)
            out[href] = 200
    return out


def cal_path(url: object) -> str:
    return href_path(str(url)).rstrip("/") + "/"


# -- collections ----------------------------------------------------------------


def test_create_list_calendars(server: Server) -> None:
    dav = Dav(server)
    principal = server.client("alice").principal()
    work = principal.make_calendar(name="Work", cal_id="work")
    assert cal_path(work.url) == "/alice/work/"

    body = (
        f'<?xml version="1.0"?><D:mkcol {XMLNS}><D:set><D:prop>'
        "<D:resourcetype><D:collection/><C:calendar/></D:resourcetype>"
        "<D:displayname>Raw</D:displayname></D:prop></D:set></D:mkcol>"
    )
    r = dav.request("MKCOL", "/alice/raw/", body, **XML)
    assert r.status_code == 201, r.text
    # An existing collection is not created twice.
    assert dav.request("MKCOL", "/alice/raw/", body, **XML).status_code == 405
    r = dav.request("MKCALENDAR", "/alice/work/")
    assert r.status_code == 409 and "resource-must-be-null" in r.text

    calendars = {cal_path(c.url): c.get_display_name() for c in principal.calendars()}
    assert calendars == {"/alice/work/": "Work", "/alice/raw/": "Raw"}

    entry = dav.propfind("/alice/raw/", "<D:resourcetype/>").entries["/alice/raw/"]
    kinds = {child.tag for child in entry.props[clark("D:resourcetype")]}
    assert kinds == {clark("D:collection"), clark("C:calendar")}
    # It holds calendar objects like any calendar.
    dav.put_new("/alice/raw/a.ics", event(new_uid()))
    assert set(dav.members("/alice/raw/")) == {"/alice/raw/a.ics"}
    assert dav.members("/alice/work/") == {}


def test_delete_calendar_removes_its_objects(server: Server) -> None:
    dav = Dav(server)
    principal = server.client("alice").principal()
    work = principal.make_calendar(name="Work", cal_id="work")
    # A sibling whose path starts with the same letters must survive.
    shop = principal.make_calendar(name="Workshop", cal_id="workshop")
    uid = new_uid()
    dav.put_new("/alice/work/a.ics", event(uid))
    dav.put_new("/alice/work/b.ics", event(new_uid()))
    dav.put_new("/alice/workshop/c.ics", event(new_uid()))
    _, old_token = dav.state("/alice/work/")
    # A stale If-Match protects the whole calendar too.
    entry = dav.propfind("/alice/work/", "<D:getetag/>").entries["/alice/work/"]
    etag = entry.props[clark("D:getetag")].text or ""
    dav.put_new("/alice/work/late.ics", event(new_uid()))
    assert dav.delete("/alice/work/", **{"If-Match": etag}).status_code == 412
    assert dav.get("/alice/work/a.ics").status_code == 200

    work.delete()

    assert dav.get("/alice/work/a.ics").status_code == 404
    assert dav.get("/alice/work/b.ics").status_code == 404
    assert dav.get("/alice/work/late.ics").status_code == 404
    assert dav.request("PROPFIND", "/alice/work/", Depth="0").status_code == 404
    assert [cal_path(c.url) for c in principal.calendars()] == [cal_path(shop.url)]
    assert set(dav.members("/alice/workshop/")) == {"/alice/workshop/c.ics"}

    # A new calendar at the same path starts empty: no objects, no UIDs,
    # nothing to sync, and the old sync token means nothing to it.
    again = principal.make_calendar(name="Work again", cal_id="work")
    assert again.events() == []
    assert dav.members("/alice/work/") == {}
    assert dav.get("/alice/work/a.ics").status_code == 404
    _, entries = dav.sync("/alice/work/")
    assert entries == {}
    r = dav.sync_raw("/alice/work/", old_token)
    assert r.status_code == 403 and "valid-sync-token" in r.text
    r = dav.put("/alice/work/a.ics", event(uid))
    assert r.status_code == 201, r.text


def test_proppatch_displayname_and_color(server: Server) -> None:
    dav = Dav(server)
    cal = server.client("alice").principal().make_calendar(name="Before", cal_id="cal")
    ctag_before, token_before = dav.state("/alice/cal/")

    body = (
        f'<?xml version="1.0"?><D:propertyupdate {XMLNS}><D:set><D:prop>'
        "<D:displayname>Büro ✓</D:displayname>"
        "<A:calendar-color>#FF5733FF</A:calendar-color>"
        "</D:prop></D:set></D:propertyupdate>"
    )
    result = parse_multistatus(dav.request("PROPPATCH", "/alice/cal/", body, **XML))
    entry = result.entries["/alice/cal/"]
    assert set(entry.props) == {clark("D:displayname"), clark("A:calendar-color")}

    props = "<D:displayname/><A:calendar-color/>"
    entry = dav.propfind("/alice/cal/", props).entries["/alice/cal/"]
    assert entry.props[clark("D:displayname")].text == "Büro ✓"
    assert entry.props[clark("A:calendar-color")].text == "#FF5733FF"
    assert cal.get_property(dav_element.DisplayName(), use_cached=False) == "Büro ✓"
    # Clients that poll the ctag must see the change.
    ctag_after, _ = dav.state("/alice/cal/")
    assert ctag_after != ctag_before

    body = (
        f'<?xml version="1.0"?><D:propertyupdate {XMLNS}><D:remove><D:prop>'
        "<A:calendar-color/></D:prop></D:remove></D:propertyupdate>"
    )
    parse_multistatus(dav.request("PROPPATCH", "/alice/cal/", body, **XML))
    entry = dav.propfind("/alice/cal/", props).entries["/alice/cal/"]
    assert entry.props[clark("D:displayname")].text == "Büro ✓"
    assert entry.missing == {clark("A:calendar-color")}
    # Properties are not members: the calendar is still a calendar, still empty.
    assert dav.members("/alice/cal/") == {}
    _, entries = dav.sync("/alice/cal/", token_before)
    assert entries == {}


# -- objects ----------------------------------------------------------------------


def test_put_get_update_delete_event(server: Server) -> None:
    dav = Dav(server)
    dav.mkcalendar("/alice/cal/")
    uid = new_uid()

    r = dav.put("/alice/cal/ev.ics", event(uid, summary="First"))
    assert r.status_code == 201, r.text
    etag1 = r.headers["ETag"]
    r = dav.get("/alice/cal/ev.ics")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/calendar")
    assert r.headers["ETag"] == etag1
    (component,) = icalendar.Calendar.from_ical(r.text).walk("VEVENT")
    assert (str(component["UID"]), str(component["SUMMARY"])) == (uid, "First")

    r = dav.put("/alice/cal/ev.ics", event(uid, summary="Second"))
    assert r.status_code == 204, r.text
    etag2 = r.headers["ETag"]
    assert etag2 != etag1
    r = dav.get("/alice/cal/ev.ics")
    assert r.headers["ETag"] == etag2
    assert "SUMMARY:Second" in r.text and "First" not in r.text
    assert dav.members("/alice/cal/") == {"/alice/cal/ev.ics": etag2}

    r = dav.delete("/alice/cal/ev.ics")
    assert r.status_code in (200, 204), r.text
    assert dav.get("/alice/cal/ev.ics").status_code == 404
    assert dav.delete("/alice/cal/ev.ics").status_code == 404
    assert dav.members("/alice/cal/") == {}


def test_event_lifecycle_with_caldav_library(server: Server) -> None:
    cal = server.client("alice").principal().make_calendar(name="Lib", cal_id="lib")
    uid = new_uid()
    saved = cal.save_event(event(uid, summary="Library"))
    other = cal.save_event(event(new_uid(), "20270302T090000Z", "20270302T100000Z"))

    found = cal.event_by_uid(uid)
    assert str(found.icalendar_component["SUMMARY"]) == "Library"
    found.icalendar_component["SUMMARY"] = "Changed"
    found.save()
    assert str(cal.event_by_uid(uid).icalendar_component["SUMMARY"]) == "Changed"
    assert {str(e.icalendar_component["UID"]) for e in cal.events()} == {
        uid, str(other.icalendar_component["UID"])
    }

    saved.delete()
    assert [str(e.icalendar_component["UID"]) for e in cal.events()] == [
        str(other.icalendar_component["UID"])
    ]


def test_if_match_and_if_none_match(server: Server) -> None:
    dav = Dav(server)
    dav.mkcalendar("/alice/cal/")
    uid = new_uid()
    path = "/alice/cal/ev.ics"

    r = dav.put(path, event(uid, summary="v1"), **{"If-None-Match": "*"})
    assert r.status_code == 201
    etag1 = r.headers["ETag"]
    r = dav.put(path, event(uid, summary="clobber"), **{"If-None-Match": "*"})
    assert r.status_code == 412
    _, token = dav.state("/alice/cal/")

    r = dav.put(path, event(uid, summary="v2"), **{"If-Match": etag1})
    assert r.status_code == 204
    etag2 = r.headers["ETag"]
    r = dav.put(path, event(uid, summary="lost update"), **{"If-Match": etag1})
    assert r.status_code == 412
    # "*" matches any current version, but only of an existing resource.
    r = dav.put(path, event(uid, summary="v3"), **{"If-Match": "*"})
    assert r.status_code == 204
    etag3 = r.headers["ETag"]
    assert len({etag1, etag2, etag3}) == 3
    r = dav.put("/alice/cal/nothing.ics", event(new_uid()), **{"If-Match": "*"})
    assert r.status_code == 412
    # If-Match on a resource that does not exist fails too.
    r = dav.put("/alice/cal/nothing.ics", event(new_uid()), **{"If-Match": etag1})
    assert r.status_code == 412
    assert dav.get("/alice/cal/nothing.ics").status_code == 404

    r = dav.get(path)
    assert r.headers["ETag"] == etag3 and "SUMMARY:v3" in r.text

    r = dav.delete(path, **{"If-Match": etag2})
    assert r.status_code == 412
    assert dav.get(path).status_code == 200
    # The refused writes changed nothing a client can see.
    _, entries = dav.sync("/alice/cal/", token)
    assert changes(entries) == {path: 200}  # only the v2 and v3 updates
    assert entries[path].props[clark("D:getetag")].text == etag3

    r = dav.delete(path, **{"If-Match": etag3})
    assert r.status_code in (200, 204)
    assert dav.get(path).status_code == 404


def test_uid_conflict(server: Server) -> None:
    dav = Dav(server)
    dav.mkcalendar("/alice/cal/")
    dav.mkcalendar("/alice/other/")
    uid = new_uid()
    etag = dav.put_new("/alice/cal/a.ics", event(uid))
    _, token = dav.state("/alice/cal/")

    r = dav.put("/alice/cal/b.ics", event(uid, summary="duplicate"))
    assert r.status_code == 409
    assert "no-uid-conflict" in r.text
    assert dav.get("/alice/cal/b.ics").status_code == 404
    # Changing the UID of an existing resource is refused as well.
    r = dav.put("/alice/cal/a.ics", event(new_uid()))
    assert r.status_code == 409 and "no-uid-conflict" in r.text
    assert dav.members("/alice/cal/") == {"/alice/cal/a.ics": etag}
    _, entries = dav.sync("/alice/cal/", token)
    assert entries == {}

    # UIDs are unique per calendar, not per user.
    assert dav.put("/alice/other/a.ics", event(uid)).status_code == 201
    # Once the first resource is gone, its UID is free again.
    assert dav.delete("/alice/cal/a.ics").status_code in (200, 204)
    assert dav.put("/alice/cal/b.ics", event(uid)).status_code == 201


# -- calendar-query: time ranges ---------------------------------------------------

# The window: Monday 2027-06-07, the whole UTC day.
WINDOW = ("20270607T000000Z", "20270608T000000Z")
WEEKLY = "RRULE:FREQ=WEEKLY"
# name -> (VCALENDAR components, in the window by RFC 4791 9.9?)
TIME_RANGE_CASES: dict[str, tuple[list[str], bool]] = {
    "single-inside": ([vevent("U", "20270607T120000Z", "20270607T130000Z")], True),
    "single-after": ([vevent("U", "20270609T120000Z", "20270609T130000Z")], False),
    "single-before": ([vevent("U", "20270601T120000Z", "20270601T130000Z")], False),
    "spans-window": ([vevent("U", "20270606T120000Z", "20270609T130000Z")], True),
    # Touching the window's edges is not overlapping (end is exclusive).
    "ends-at-start": ([vevent("U", "20270606T230000Z", "20270607T000000Z")], False),
    "starts-at-end": ([vevent("U", "20270608T000000Z", "20270608T010000Z")], False),
    # 01:30 in Berlin (CEST, +02:00) on 8 June is 23:30 UTC on 7 June.
    "berlin-local": ([
        VTIMEZONE_BERLIN,
        vevent("U", ";TZID=Europe/Berlin:20270608T013000", ";TZID=Europe/Berlin:20270608T023000"),
    ], True),
    # Weekly on Mondays from January: the 23rd occurrence is in the window.
    "weekly-monday": ([vevent("U", "20270104T100000Z", "20270104T110000Z", WEEKLY)], True),
    # Weekly on Tuesdays: spans the window, but no occurrence is in it.
    "weekly-tuesday": ([vevent("U", "20270105T100000Z", "20270105T110000Z", WEEKLY)], False),
    # Mondays, but the rule ends in March.
    "weekly-count-ended": (
        [vevent("U", "20270104T100000Z", "20270104T110000Z", WEEKLY + ";COUNT=10")], False
    ),
    "weekly-until-ended": (
        [vevent("U", "20270104T100000Z", "20270104T110000Z", WEEKLY + ";UNTIL=20270531T235959Z")],
        False,
    ),
    # Mondays, the window's occurrence excluded.
    "weekly-exdate": ([
        vevent("U", "20270104T100000Z", "20270104T110000Z", WEEKLY, "EXDATE:20270607T100000Z")
    ], False),
    # Mondays, the window's occurrence moved to Wednesday.
    "override-moved-out": ([
        vevent("U", "20270104T100000Z", "20270104T110000Z", WEEKLY),
        vevent("U", "20270609T100000Z", "20270609T110000Z", "RECURRENCE-ID:20270607T100000Z"),
    ], False),
    # Tuesdays, the occurrence of 8 June moved to Monday afternoon.
    "override-moved-in": ([
        vevent("U", "20270105T100000Z", "20270105T110000Z", WEEKLY),
        vevent("U", "20270607T150000Z", "20270607T160000Z", "RECURRENCE-ID:20270608T100000Z"),
    ], True),
    # Three Mondays in January; the last one moved far out, into the window.
    "override-beyond-rule-end": ([
        vevent("U", "20270104T100000Z", "20270104T110000Z", WEEKLY + ";COUNT=3"),
        vevent("U", "20270607T160000Z", "20270607T170000Z", "RECURRENCE-ID:20270118T100000Z"),
    ], True),
    # Starts in the window, but that first occurrence is excluded.
    "first-occurrence-exdate": ([
        vevent("U", "20270607T100000Z", "20270607T110000Z", WEEKLY, "EXDATE:20270607T100000Z")
    ], False),
}


def test_time_range_query(server: Server) -> None:
    dav = Dav(server)
    dav.mkcalendar("/alice/cal/")
    expected = set()
    for name, (components, inside) in TIME_RANGE_CASES.items():
        uid = new_uid()
        text = vcalendar(*(c.replace("UID:U\r\n", f"UID:{uid}\r\n") for c in components))
        dav.put_new(f"/alice/cal/{name}.ics", text)
        if inside:
            expected.add(f"/alice/cal/{name}.ics")
    # A task in the window is not an event.
    dav.put_new("/alice/cal/task.ics", vcalendar(
        f"BEGIN:VTODO\r\nUID:{new_uid()}\r\nDTSTAMP:20261101T000000Z\r\n"
        "DTSTART:20270607T100000Z\r\nDUE:20270607T110000Z\r\nEND:VTODO\r\n"
    ))

    assert dav.query("/alice/cal/", *WINDOW) == expected
    # A task without any date matches every time range (RFC 4791 9.9).
    dav.put_new("/alice/cal/undated.ics", vcalendar(
        f"BEGIN:VTODO\r\nUID:{new_uid()}\r\nDTSTAMP:20261101T000000Z\r\n"
        "SUMMARY:some day\r\nEND:VTODO\r\n"
    ))
    assert dav.query("/alice/cal/", *WINDOW, component="VTODO") == {
        "/alice/cal/task.ics", "/alice/cal/undated.ics",
    }

    # A narrower window, 12:00-12:30: only the single event and the long one.
    assert dav.query("/alice/cal/", "20270607T120000Z", "20270607T123000Z") == {
        "/alice/cal/single-inside.ics", "/alice/cal/spans-window.ics",
    }
    # Far in the future only the open-ended Monday rules have occurrences
    # (Monday 2031-01-06); the excluded and moved ones were single
    # occurrences in June 2027.
    assert dav.query("/alice/cal/", "20310106T000000Z", "20310107T000000Z") == {
        "/alice/cal/weekly-monday.ics",
        "/alice/cal/weekly-exdate.ics",
        "/alice/cal/override-moved-out.ics",
        "/alice/cal/first-occurrence-exdate.ics",
    }


def test_time_range_search_with_caldav_library(server: Server) -> None:
    cal = server.client("alice").principal().make_calendar(name="Lib", cal_id="lib")
    weekly, single, other = new_uid(), new_uid(), new_uid()
    cal.save_event(event(weekly, "20270104T100000Z", "20270104T110000Z", WEEKLY))
    cal.save_event(event(single, "20270607T120000Z", "20270607T130000Z"))
    cal.save_event(event(other, "20270614T120000Z", "20270614T130000Z"))
    # (The library may filter the answer again on the client: this checks
    # the library flow and that nothing is missing; test_time_range_query
    # checks the server's own answer.)
    found = cal.search(
        start=datetime(2027, 6, 7, tzinfo=UTC), end=datetime(2027, 6, 8, tzinfo=UTC),
        event=True,
    )
    assert {str(e.icalendar_component["UID"]) for e in found} == {weekly, single}


def test_calendar_multiget(server: Server) -> None:
    dav = Dav(server)
    dav.mkcalendar("/alice/cal/")
    uids = [new_uid() for _ in range(3)]
    etags = {
        f"/alice/cal/{i}.ics": dav.put_new(f"/alice/cal/{i}.ics", event(uid))
        for i, uid in enumerate(uids)
    }
    wanted = ["/alice/cal/0.ics", "/alice/cal/2.ics", "/alice/cal/missing.ics"]
    r = dav.report(
        "/alice/cal/",
        f"<C:calendar-multiget {XMLNS}><D:prop><D:getetag/><C:calendar-data/></D:prop>"
        + "".join(f"<D:href>{href}</D:href>" for href in wanted)
        + "</C:calendar-multiget>",
        depth=None,
    )
    entries = parse_multistatus(r).entries
    assert set(entries) == set(wanted)
    assert entries["/alice/cal/missing.ics"].status == 404
    for href, uid in (("/alice/cal/0.ics", uids[0]), ("/alice/cal/2.ics", uids[2])):
        entry = entries[href]
        assert entry.status is None
        assert entry.props[clark("D:getetag")].text == etags[href]
        data = entry.props[clark("C:calendar-data")].text or ""
        (component,) = icalendar.Calendar.from_ical(data).walk("VEVENT")
        assert str(component["UID"]) == uid


def test_whole_calendar_put_and_large_multiget(server: Server) -> None:
    """An import (PUT of a whole VCALENDAR) and a multiget of all its objects.

    More hrefs than the store asks for in one IN list (500).
    """
    dav = Dav(server)
    uids = [new_uid() for _ in range(510)]
    r = dav.put("/alice/big/", vcalendar(
        *(vevent(uid, "20270501T100000Z", "20270501T110000Z") for uid in uids)
    ))
    assert r.status_code == 201, r.text
    members = dav.members("/alice/big/")
    assert set(members) == {f"/alice/big/{uid}.ics" for uid in uids}

    wanted = [*members, "/alice/big/missing.ics"]
    r = dav.report(
        "/alice/big/",
        f"<C:calendar-multiget {XMLNS}><D:prop><D:getetag/></D:prop>"
        + "".join(f"<D:href>{href}</D:href>" for href in wanted)
        + "</C:calendar-multiget>",
        depth=None,
    )
    entries = parse_multistatus(r).entries
    assert set(entries) == set(wanted)
    assert entries.pop("/alice/big/missing.ics").status == 404
    assert {href: e.props[clark("D:getetag")].text for href, e in entries.items()} == members


def test_unusual_hrefs(server: Server) -> None:
    """Hrefs are case-sensitive and may hold spaces, unicode and escapes."""
    dav = Dav(server)
    dav.mkcalendar("/alice/cal/")
    names = ["A.ics", "a.ics", "with space ü.ics", "100%.ics", "x%20y.ics", "x+y;z=1.ics"]
    uids = {name: new_uid() for name in names}
    for name in names:
        dav.put_new("/alice/cal/" + quote(name), event(uids[name]))
    expected = {"/alice/cal/" + name for name in names}
    assert set(dav.members("/alice/cal/")) == expected
    token, entries = dav.sync("/alice/cal/")
    assert set(entries) == expected
    for name in names:
        r = dav.get("/alice/cal/" + quote(name))
        assert r.status_code == 200 and f"UID:{uids[name]}" in r.text, name
    assert dav.delete("/alice/cal/" + quote("with space ü.ics")).status_code in (200, 204)
    assert dav.delete("/alice/cal/A.ics").status_code in (200, 204)
    assert dav.get("/alice/cal/A.ics").status_code == 404
    assert dav.get("/alice/cal/a.ics").status_code == 200
    _, entries = dav.sync("/alice/cal/", token)
    assert changes(entries) == {"/alice/cal/with space ü.ics": 404, "/alice/cal/A.ics": 404}


# -- sync-collection ----------------------------------------------------------------


def test_sync_collection(server: Server) -> None:
    dav = Dav(server)
    dav.mkcalendar("/alice/cal/")
    a, b, c = (f"/alice/cal/{n}.ics" for n in "abc")
    etag_a = dav.put_new(a, event(new_uid()))
    uid_b = new_uid()
    dav.put_new(b, event(uid_b))
    dav.put_new(c, event(new_uid()))

    token1, entries = dav.sync("/alice/cal/")
    assert changes(entries) == {a: 200, b: 200, c: 200}
    assert entries[a].props[clark("D:getetag")].text == etag_a
    # The PROPFIND sync-token is the one sync-collection hands out.
    assert dav.state("/alice/cal/")[1] == token1

    # Nothing changed: no responses, and the same token.
    token, entries = dav.sync("/alice/cal/", token1)
    assert entries == {} and token == token1

    d = "/alice/cal/d.ics"
    dav.put_new(d, event(new_uid()))
    r = dav.put(b, event(uid_b, summary="changed"))
    assert r.status_code == 204
    etag_b = r.headers["ETag"]
    assert dav.delete(c).status_code in (200, 204)

    token2, entries = dav.sync("/alice/cal/", token1)
    assert token2 != token1
    assert changes(entries) == {b: 200, c: 404, d: 200}
    assert entries[b].props[clark("D:getetag")].text == etag_b

    token3, entries = dav.sync("/alice/cal/", token2)
    assert entries == {} and token3 == token2
    dav.delete(a)
    token4, entries = dav.sync("/alice/cal/", token2)
    assert changes(entries) == {a: 404}
    # An old token still works and sees everything since then.
    _, entries = dav.sync("/alice/cal/", token1)
    assert changes(entries) == {a: 404, b: 200, c: 404, d: 200}
    # A fresh start lists only what exists.
    token, entries = dav.sync("/alice/cal/")
    assert changes(entries) == {b: 200, d: 200} and token == token4


def test_sync_collection_rejects_foreign_tokens(server: Server) -> None:
    dav = Dav(server)
    principal = server.client("alice").principal()
    cal = principal.make_calendar(name="Cal", cal_id="cal")
    principal.make_calendar(name="Other", cal_id="other")
    dav.put_new("/alice/cal/a.ics", event(new_uid()))
    dav.put_new("/alice/other/a.ics", event(new_uid()))
    token, _ = dav.sync("/alice/cal/")
    other_token, _ = dav.sync("/alice/other/")
    revision = re.search(r"(\d+)$", token)
    assert revision is not None, token
    future = token[: revision.start()] + str(int(revision.group(1)) + 5)

    bad = {
        "garbage": "bogus",
        "foreign": other_token,
        "future": future,
        "http URL": "http://radicale.org/ns/sync/" + "0" * 64,
    }
    for name, bad_token in bad.items():
        r = dav.sync_raw("/alice/cal/", bad_token)
        assert r.status_code == 403, (name, r.status_code, r.text)
        assert "valid-sync-token" in r.text, name
    # The real token still works after the refusals.
    _, entries = dav.sync("/alice/cal/", token)
    assert entries == {}

    # Delete the calendar and make a new one at the same path, with an
    # object at the same href: the old token must not be taken for its own.
    cal.delete()
    again = principal.make_calendar(name="Cal", cal_id="cal")
    dav.put_new("/alice/cal/a.ics", event(new_uid()))
    assert again.url is not None
    r = dav.sync_raw("/alice/cal/", token)
    assert r.status_code == 403 and "valid-sync-token" in r.text


def test_sync_with_caldav_library(server: Server) -> None:
    cal = server.client("alice").principal().make_calendar(name="Lib", cal_id="lib")
    first = cal.save_event(event(new_uid()))
    synced = cal.objects_by_sync_token(load_objects=True)
    assert len(list(synced)) == 1
    token = synced.sync_token
    second = cal.save_event(event(new_uid(), "20270302T090000Z", "20270302T100000Z"))
    first.delete()
    update = cal.objects_by_sync_token(sync_token=token, load_objects=False)
    assert {cal_path(o.url).rstrip("/") for o in update} == {
        cal_path(first.url).rstrip("/"), cal_path(second.url).rstrip("/")
    }
    assert update.sync_token != token


# -- MOVE ---------------------------------------------------------------------------


def test_move_between_calendars(server: Server) -> None:
    dav = Dav(server)
    dav.mkcalendar("/alice/from/")
    dav.mkcalendar("/alice/to/")
    uid = new_uid()
    etag = dav.put_new("/alice/from/ev.ics", event(uid))
    dav.put_new("/alice/from/stay.ics", event(new_uid()))
    from_token, _ = dav.sync("/alice/from/")
    to_token, _ = dav.sync("/alice/to/")

    r = dav.request(
        "MOVE", "/alice/from/ev.ics",
        Destination=dav.url("/alice/to/moved.ics"), Overwrite="F",
    )
    assert r.status_code == 201, r.text
    assert dav.get("/alice/from/ev.ics").status_code == 404
    r = dav.get("/alice/to/moved.ics")
    assert r.status_code == 200 and f"UID:{uid}" in r.text
    assert r.headers["ETag"] == etag  # the same data
    assert set(dav.members("/alice/from/")) == {"/alice/from/stay.ics"}
    assert dav.members("/alice/to/") == {"/alice/to/moved.ics": etag}
    # Both sides tell syncing clients.
    _, entries = dav.sync("/alice/from/", from_token)
    assert changes(entries) == {"/alice/from/ev.ics": 404}
    _, entries = dav.sync("/alice/to/", to_token)
    assert changes(entries) == {"/alice/to/moved.ics": 200}
    # The UID moved along: it is free in the source, taken in the destination.
    assert dav.put("/alice/from/again.ics", event(uid)).status_code == 201
    assert dav.put("/alice/to/dup.ics", event(uid)).status_code == 409


def test_move_overwrite(server: Server) -> None:
    dav = Dav(server)
    dav.mkcalendar("/alice/from/")
    dav.mkcalendar("/alice/to/")
    uid = new_uid()
    dav.put_new("/alice/from/ev.ics", event(uid, summary="new"))
    dav.put_new("/alice/to/ev.ics", event(uid, summary="old"))
    destination = dav.url("/alice/to/ev.ics")

    r = dav.request("MOVE", "/alice/from/ev.ics", Destination=destination, Overwrite="F")
    assert r.status_code == 412
    assert dav.get("/alice/from/ev.ics").status_code == 200
    assert "SUMMARY:old" in dav.get("/alice/to/ev.ics").text

    r = dav.request("MOVE", "/alice/from/ev.ics", Destination=destination, Overwrite="T")
    assert r.status_code == 204, r.text
    assert dav.get("/alice/from/ev.ics").status_code == 404
    assert "SUMMARY:new" in dav.get("/alice/to/ev.ics").text
    assert set(dav.members("/alice/to/")) == {"/alice/to/ev.ics"}

    # A rename inside one calendar.
    token, _ = dav.sync("/alice/to/")
    r = dav.request("MOVE", "/alice/to/ev.ics", Destination=dav.url("/alice/to/renamed.ics"))
    assert r.status_code == 201, r.text
    assert set(dav.members("/alice/to/")) == {"/alice/to/renamed.ics"}
    _, entries = dav.sync("/alice/to/", token)
    assert changes(entries) == {"/alice/to/ev.ics": 404, "/alice/to/renamed.ics": 200}

    # Into a calendar holding the same UID at another href: a UID conflict.
    other = new_uid()
    dav.put_new("/alice/from/x.ics", event(other))
    dav.put_new("/alice/to/y.ics", event(other))
    r = dav.request("MOVE", "/alice/from/x.ics", Destination=dav.url("/alice/to/z.ics"))
    assert r.status_code == 409 and "no-uid-conflict" in r.text
    assert dav.get("/alice/from/x.ics").status_code == 200
    assert dav.get("/alice/to/z.ics").status_code == 404


# -- whole collections ---------------------------------------------------------------


def test_get_whole_calendar(server: Server) -> None:
    dav = Dav(server)
    dav.mkcalendar("/alice/cal/")
    single, weekly = new_uid(), new_uid()
    dav.put_new("/alice/cal/single.ics", event(single))
    dav.put_new("/alice/cal/weekly.ics", vcalendar(
        vevent(weekly, "20270104T100000Z", "20270104T110000Z", WEEKLY),
        vevent(weekly, "20270609T100000Z", "20270609T110000Z",
               "RECURRENCE-ID:20270607T100000Z", summary="moved"),
    ))
    dav.put_new("/alice/cal/other.ics", event(new_uid(), "20270303T090000Z", "20270303T100000Z"))
    dav.mkcalendar("/alice/elsewhere/")
    dav.put_new("/alice/elsewhere/x.ics", event(new_uid()))

    r = dav.get("/alice/cal/")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/calendar")
    calendar = icalendar.Calendar.from_ical(r.text)
    assert calendar.name == "VCALENDAR"
    vevents = calendar.walk("VEVENT")
    uids = [str(v["UID"]) for v in vevents]
    assert len(vevents) == 4
    assert uids.count(weekly) == 2 and uids.count(single) == 1
    (moved,) = [v for v in vevents if "RECURRENCE-ID" in v]
    assert str(moved["SUMMARY"]) == "moved"
    # The elsewhere calendar's event is not part of it.
    assert len(set(uids)) == 3


def test_free_busy_query(server: Server) -> None:
    dav = Dav(server)
    dav.mkcalendar("/alice/cal/")
    events = [
        ("20270607T090000Z", "20270607T100000Z", ()),
        ("20270607T093000Z", "20270607T110000Z", ()),  # overlaps the one before
        ("20270607T160000Z", "20270607T170000Z", ("TRANSP:TRANSPARENT",)),
        ("20270607T180000Z", "20270607T190000Z", ("STATUS:TENTATIVE",)),
        ("20270607T230000Z", "20270608T010000Z", ()),  # past the end of the range
        ("20270609T090000Z", "20270609T100000Z", ()),  # outside the range
    ]
    for i, (start, end, lines) in enumerate(events):
        dav.put_new(f"/alice/cal/{i}.ics", event(new_uid(), start, end, *lines))
    dav.put_new("/alice/cal/weekly.ics", event(
        new_uid(), "20270104T140000Z", "20270104T150000Z", WEEKLY
    ))

    r = dav.report(
        "/alice/cal/",
        f'<C:free-busy-query {XMLNS}><C:time-range start="{WINDOW[0]}" end="{WINDOW[1]}"/>'
        "</C:free-busy-query>",
    )
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/calendar")
    (freebusy,) = icalendar.Calendar.from_ical(r.text).walk("VFREEBUSY")
    assert freebusy.decoded("DTSTART") == datetime(2027, 6, 7, tzinfo=UTC)
    assert freebusy.decoded("DTEND") == datetime(2027, 6, 8, tzinfo=UTC)
    props = freebusy.get("FREEBUSY", [])
    props = props if isinstance(props, list) else [props]
    periods = set()
    for prop in props:
        for start, end in prop.dt if isinstance(prop.dt, list) else [prop.dt]:
            periods.add((start.astimezone(UTC), end.astimezone(UTC), prop.params["FBTYPE"]))

    def at(hour: int, day: int = 7) -> datetime:
        return datetime(2027, 6, day, hour, tzinfo=UTC)

    assert periods == {
        (at(9), at(11), "BUSY"),
        (at(14), at(15), "BUSY"),
        (at(18), at(19), "BUSY-TENTATIVE"),
        (at(23), at(0, day=8), "BUSY"),
    }


def test_propfind_depth1_ctag_and_sync_token(server: Server) -> None:
    dav = Dav(server)
    dav.mkcalendar("/alice/cal/")
    etags = {
        f"/alice/cal/{n}.ics": dav.put_new(f"/alice/cal/{n}.ics", event(new_uid()))
        for n in ("a", "b", "c")
    }
    assert dav.members("/alice/cal/") == etags
    # An item answers a PROPFIND of its own.
    entry = dav.propfind("/alice/cal/a.ics", "<D:getetag/>").entries["/alice/cal/a.ics"]
    assert entry.props[clark("D:getetag")].text == etags["/alice/cal/a.ics"]

    states = [dav.state("/alice/cal/")]
    assert dav.state("/alice/cal/") == states[-1]  # stable while nothing changes
    dav.put_new("/alice/cal/d.ics", event(new_uid()))
    states.append(dav.state("/alice/cal/"))
    assert dav.put("/alice/cal/a.ics", event(new_uid())).status_code == 409  # refused
    assert dav.state("/alice/cal/") == states[-1]
    dav.delete("/alice/cal/b.ics")
    states.append(dav.state("/alice/cal/"))
    ctags, tokens = zip(*states, strict=True)
    assert len(set(ctags)) == 3, states
    assert len(set(tokens)) == 3, states
    assert set(dav.members("/alice/cal/")) == {
        "/alice/cal/a.ics", "/alice/cal/c.ics", "/alice/cal/d.ics"
    }

    # The principal lists its calendars, not their objects.
    principal = dav.propfind("/alice/", "<D:resourcetype/>", depth="1").entries
    assert set(principal) == {"/alice/", "/alice/cal/"}


# -- privacy and persistence -----------------------------------------------------------


def test_other_user_cannot_read_or_write(server: Server) -> None:
    alice, bob = Dav(server, "alice"), Dav(server, "bob")
    alice.mkcalendar("/alice/cal/")
    etag = alice.put_new("/alice/cal/a.ics", event(new_uid(), summary="secret"))

    for r in (
        bob.get("/alice/cal/a.ics"),
        bob.get("/alice/cal/"),
        bob.request("PROPFIND", "/alice/cal/", Depth="1"),
        bob.sync_raw("/alice/cal/"),
        bob.put("/alice/cal/b.ics", event(new_uid())),
        bob.delete("/alice/cal/a.ics"),
    ):
        assert r.status_code in (403, 404), (r.request.method, r.status_code)
        assert "secret" not in r.text
    assert alice.members("/alice/cal/") == {"/alice/cal/a.ics": etag}
    # Listing the root shows bob his own home only.
    bob.propfind("/bob/", "<D:resourcetype/>")  # log in once: creates /bob/
    listed = bob.propfind("/", "<D:resourcetype/>", depth="1").entries
    assert "/bob/" in listed and not any(href.startswith("/alice") for href in listed)


def test_second_server_on_same_database(server: Server, tmp_path: Path) -> None:
    """All state lives in the database: a second server on it (as after a
    restart) serves the same calendars, properties and sync tokens.

    (Both run in this process; the storage may share one engine per URL,
    so this is not a test of two processes.)
    """
    dav = Dav(server)
    server.client("alice").principal().make_calendar(name="Shared", cal_id="cal")
    etag = dav.put_new("/alice/cal/a.ics", event(new_uid()))
    ctag, token = dav.state("/alice/cal/")

    second = start_server(server.database_url, tmp_path / "second")
    try:
        dav2 = Dav(second)
        assert dav2.members("/alice/cal/") == {"/alice/cal/a.ics": etag}
        assert dav2.state("/alice/cal/") == (ctag, token)
        assert dav2.propfind("/alice/cal/", "<D:displayname/>").entries[
            "/alice/cal/"
        ].props[clark("D:displayname")].text == "Shared"
        dav2.put_new("/alice/cal/b.ics", event(new_uid()))
    finally:
        second.stop()
    _, entries = dav.sync("/alice/cal/", token)
    assert changes(entries) == {"/alice/cal/b.ics": 200}
