"""Helpers shared by the robustness tests (tests/test_robustness_*.py).

iCalendar builders, the few WebDAV/CalDAV requests the tests speak by hand
(so they see every status code), and looks straight into the database.
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import requests
from sqlalchemy import select

from servicehop_caldav.db.engine import Database
from servicehop_caldav.db.schema import metadata
from servicehop_caldav.store.verify import verify_database

NS = {"D": "DAV:", "C": "urn:ietf:params:xml:ns:caldav", "CS": "http://calendarserver.org/ns/"}
UTC = dt.UTC


# -- iCalendar --------------------------------------------------------------


def _stamp(when: dt.datetime) -> str:
    return when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def vevent(
    uid: str,
    start: dt.datetime,
    minutes: int = 60,
    summary: str = "",
    description: str | None = None,
    rrule: str | None = None,
    exdates: Iterable[dt.datetime] = (),
    component: str = "VEVENT",
) -> str:
    lines = [
        f"BEGIN:{component}",
        f"UID:{uid}",
        "DTSTAMP:20250101T000000Z",
        f"DTSTART:{_stamp(start)}",
    ]
    if component == "VEVENT":
        lines.append(f"DTEND:{_stamp(start + dt.timedelta(minutes=minutes))}")
    else:
        lines.append(f"DUE:{_stamp(start + dt.timedelta(minutes=minutes))}")
    lines.append(f"SUMMARY:{summary or uid}")
    if description is not None:
        lines.append(f"DESCRIPTION:{description}")
    if rrule:
        lines.append(f"RRULE:{rrule}")
    lines.extend(f"EXDATE:{_stamp(x)}" for x in exdates)
    lines.append(f"END:{component}")
    return "\r\n".join(lines) + "\r\n"


def vcalendar(*components: str, name: str | None = None) -> str:
    head = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//servicehop//robustness tests//EN\r\n"
    if name:
        head += f"X-WR-CALNAME:{name}\r\n"
    return head + "".join(components) + "END:VCALENDAR\r\n"


def event(uid: str, summary: str = "", description: str | None = None) -> str:
    """A one-event VCALENDAR, one hour on a fixed day."""
    start = dt.datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    return vcalendar(vevent(uid, start, summary=summary, description=description))


# -- WebDAV / CalDAV --------------------------------------------------------

ICS = {"Content-Type": "text/calendar; charset=utf-8"}
XML = {"Content-Type": "application/xml; charset=utf-8"}


def path_url(base: str, *segments: str, collection: bool = False) -> str:
    """``base`` plus URL-encoded path segments (unicode and spaces welcome)."""
    url = base.rstrip("/") + "/" + "/".join(quote(s, safe="") for s in segments)
    return url + "/" if collection else url


def mkcalendar(
    s: requests.Session, url: str, components: Iterable[str] | None = None
) -> requests.Response:
    comps = ""
    if components is not None:
        comps = (
            "<C:supported-calendar-component-set>"
            + "".join(f'<C:comp name="{c}"/>' for c in components)
            + "</C:supported-calendar-component-set>"
        )
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
        f"<D:set><D:prop>{comps}</D:prop></D:set></C:mkcalendar>"
    )
    return s.request("MKCALENDAR", url, data=body.encode(), headers=XML)


def put(s: requests.Session, url: str, body: str | bytes, **headers: str) -> requests.Response:
    data = body.encode("utf-8") if isinstance(body, str) else body
    return s.put(url, data=data, headers={**ICS, **headers})


def _multistatus(r: requests.Response) -> ET.Element:
    assert r.status_code == 207, (r.status_code, r.text[:500])
    return ET.fromstring(r.content)


def _href_path(href: str) -> str:
    """An href of a response as an unquoted path (hrefs may be absolute URLs)."""
    return unquote(urlsplit(href).path)


def collection_state(s: requests.Session, url: str) -> dict[str, str]:
    """getctag, getetag and sync-token of a collection (PROPFIND depth 0)."""
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<D:propfind xmlns:D="DAV:" xmlns:CS="http://calendarserver.org/ns/">'
        "<D:prop><CS:getctag/><D:getetag/><D:sync-token/></D:prop></D:propfind>"
    )
    r = s.request("PROPFIND", url, data=body.encode(), headers={**XML, "Depth": "0"})
    root = _multistatus(r)
    state = {}
    for key, path in (
        ("ctag", ".//CS:getctag"),
        ("etag", ".//D:getetag"),
        ("sync-token", ".//D:sync-token"),
    ):
        element = root.find(path, NS)
        assert element is not None and element.text, (key, r.text)
        state[key] = element.text
    return state


def list_hrefs(s: requests.Session, url: str) -> dict[str, str]:
    """Members of a collection (PROPFIND depth 1): unquoted path -> getetag."""
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<D:propfind xmlns:D="DAV:"><D:prop><D:getetag/></D:prop></D:propfind>'
    )
    r = s.request("PROPFIND", url, data=body.encode(), headers={**XML, "Depth": "1"})
    own = _href_path(url)
    members = {}
    for response in _multistatus(r).findall("D:response", NS):
        path = _href_path(response.findtext("D:href", "", NS))
        if path.rstrip("/") == own.rstrip("/"):
            continue
        members[path] = response.findtext(".//D:getetag", "", NS)
    return members


def sync_collection(
    s: requests.Session, url: str, token: str = ""
) -> tuple[str, dict[str, int]]:
    """RFC 6578 sync-collection: the new token and {unquoted path: status}.

    The status is 200 for a member that exists now and 404 for one removed.
    """
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<D:sync-collection xmlns:D="DAV:">'
        f"<D:sync-token>{token}</D:sync-token><D:sync-level>1</D:sync-level>"
        "<D:prop><D:getetag/></D:prop></D:sync-collection>"
    )
    r = s.request("REPORT", url, data=body.encode(), headers={**XML, "Depth": "1"})
    root = _multistatus(r)
    changes: dict[str, int] = {}
    for response in root.findall("D:response", NS):
        path = _href_path(response.findtext("D:href", "", NS))
        status = response.findtext("D:status", "", NS) or response.findtext(
            "D:propstat/D:status", "", NS
        )
        changes[path] = int(status.split()[1])
    new_token = root.findtext("D:sync-token", "", NS)
    assert new_token, r.text
    return new_token, changes


def calendar_query(
    s: requests.Session, url: str, start: dt.datetime, end: dt.datetime
) -> dict[str, str]:
    """VEVENTs overlapping [start, end): unquoted path -> calendar-data."""
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
        "<D:prop><D:getetag/><C:calendar-data/></D:prop>"
        '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
        f'<C:time-range start="{_stamp(start)}" end="{_stamp(end)}"/>'
        "</C:comp-filter></C:comp-filter></C:filter></C:calendar-query>"
    )
    r = s.request("REPORT", url, data=body.encode(), headers={**XML, "Depth": "1"})
    found = {}
    for response in _multistatus(r).findall("D:response", NS):
        path = _href_path(response.findtext("D:href", "", NS))
        found[path] = response.findtext(".//C:calendar-data", "", NS)
    return found


# -- the database -----------------------------------------------------------


def db_snapshot(database_url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a stable order: equal means untouched."""
    db = Database(database_url)
    try:
        with db.transaction("r") as conn:
            return {
                table.name: sorted(
                    (tuple(row) for row in conn.execute(select(table))), key=repr
                )
                for table in metadata.sorted_tables
            }
    finally:
        db.dispose()


def verify(database_url: str) -> bool:
    db = Database(database_url)
    try:
        return verify_database(db)
    finally:
        db.dispose()
