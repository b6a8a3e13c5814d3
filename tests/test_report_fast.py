"""REPORTs written from the rows (:mod:`servicehop_caldav.report`): the same
answer as Radicale's own.

Every request is sent twice to the same application, once with the fast
path and once with it switched off (``Application.fast_report``); status,
headers and body must be the same, byte for byte and as XML (hrefs,
statuses, properties), and each test says whether the fast path answered,
so a fallback cannot pass for a fast answer. Over HTTP (the caldav library,
the availability view) a spy sends each REPORT to Radicale as well.
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import radicale
import requests

from servicehop_caldav import report
from servicehop_caldav.app import Application
from servicehop_caldav.db.engine import dispose_shared
from tests.conftest import Server
from tests.helpers.booking_world import BookingWorld, booking_world, days_ahead, local
from tests.test_propfind_listing import ODD_NAMES, Client, application

DAV = "{DAV:}"
CALDAV = "urn:ietf:params:xml:ns:caldav"
HEAD = '<?xml version="1.0" encoding="utf-8"?>'
NS = 'xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"'
ETAG_DATA = "<d:prop><d:getetag/><c:calendar-data/></d:prop>"


def query(start: str, end: str, prop: str = ETAG_DATA, component: str = "VEVENT") -> str:
    return (f'{HEAD}<c:calendar-query {NS}>{prop}<c:filter><c:comp-filter name="VCALENDAR">'
            f'<c:comp-filter name="{component}"><c:time-range start="{start}" end="{end}"/>'
            "</c:comp-filter></c:comp-filter></c:filter></c:calendar-query>")


def sync(token: str = "", prop: str = "<d:prop><d:getetag/></d:prop>", extra: str = "") -> str:
    return (f'{HEAD}<d:sync-collection {NS}><d:sync-token>{token}</d:sync-token>'
            f"<d:sync-level>1</d:sync-level>{extra}{prop}</d:sync-collection>")


def multiget(hrefs: list[str], prop: str = ETAG_DATA) -> str:
    refs = "".join(f"<d:href>{h.replace('&', '&amp;').replace('<', '&lt;')}</d:href>" for h in hrefs)
    return f"{HEAD}<c:calendar-multiget {NS}>{prop}{refs}</c:calendar-multiget>"


WEEK = ("20260601T000000Z", "20260608T000000Z")
DAVX5 = "<d:prop><d:getetag/><d:getcontenttype/></d:prop>"
MIXED = ('<d:prop xmlns:x="urn:example:x"><x:a/><d:getcontenttype/><c:calendar-data/>'
         "<d:getetag/><d:displayname/></d:prop>")


def vcal(body: str) -> str:
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n{body}END:VCALENDAR\r\n"


def vevent(uid: str, start: str, end: str, extra: str = "", summary: str | None = None) -> str:
    return (f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:{start}\r\n"
            f"DTEND:{end}\r\nSUMMARY:{summary or uid} & <more>\r\n{extra}END:VEVENT\r\n")


# A weekly event whose occurrence in the queried week is excluded, moved the week after.
WEEKLY = vcal(vevent("weekly", "20260504T090000Z", "20260504T100000Z",
                     "RRULE:FREQ=WEEKLY;COUNT=10\r\nEXDATE:20260601T090000Z\r\n")
              + vevent("weekly", "20260609T150000Z", "20260609T160000Z",
                       "RECURRENCE-ID:20260608T090000Z\r\n", summary="moved"))
# Open-ended, from January: its first/last occurrence encloses every range.
FOREVER = vcal(vevent("forever", "20260105T120000Z", "20260105T130000Z", "RRULE:FREQ=WEEKLY\r\n"))
TODO = vcal("BEGIN:VTODO\r\nUID:todo\r\nDTSTAMP:20260101T000000Z\r\nDUE:20260603T100000Z\r\n"
            "SUMMARY:todo\r\nEND:VTODO\r\n")
LATER = vcal(vevent("later", "20270601T100000Z", "20270601T110000Z"))


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[Client]:
    call = application(database_url, tmp_path)
    for path in ("/alice/cal/", "/alice/empty/"):
        assert call("MKCALENDAR", path)[0].startswith("201")
    for number, name in enumerate(ODD_NAMES):
        text = vcal(vevent(f"uid-{number}", f"202606{number % 5 + 1:02d}T{8 + number:02d}0000Z",
                           f"202606{number % 5 + 1:02d}T{8 + number:02d}3000Z"))
        status = call("PUT", "/alice/cal/" + quote(name), text, content_type="text/calendar")[0]
        assert status.startswith("201"), (name, status)
    for name, text in (("weekly.ics", WEEKLY), ("forever.ics", FOREVER), ("todo.ics", TODO),
                       ("later.ics", LATER)):
        status = call("PUT", f"/alice/cal/{name}", text, content_type="text/calendar")[0]
        assert status.startswith("201"), (name, status)
    yield call
    dispose_shared(database_url)


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each REPORT was answered by the fast path."""
    answers: list[bool] = []
    original = report.answer

    def spy(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        answers.append(result is not None)
        return result

    monkeypatch.setattr(report, "answer", spy)
    return answers


Answer = tuple[str, dict[str, str], bytes]


def as_xml(body: bytes) -> list[Any]:
    """The sync-token and each response: href, status, propstats."""
    root = ET.fromstring(body)
    assert root.tag == f"{DAV}multistatus"
    out: list[Any] = [root.findtext(f"{DAV}sync-token")]
    for response in root.findall(f"{DAV}response"):
        propstats = [(ps.findtext(f"{DAV}status"), [(p.tag, p.text) for p in ps.find(f"{DAV}prop") or []])
                     for ps in response.findall(f"{DAV}propstat")]
        out.append((response.findtext(f"{DAV}href"), response.findtext(f"{DAV}status"), propstats))
    return out


def both(call: Client, monkeypatch: pytest.MonkeyPatch, path: str, body: str, **kwargs: Any
         ) -> tuple[Answer, Answer]:
    fast = call("REPORT", path, body, **kwargs)
    monkeypatch.setattr(Application, "fast_report", False)
    try:
        slow = call("REPORT", path, body, **kwargs)
    finally:
        monkeypatch.setattr(Application, "fast_report", True)
    return fast, slow


# A free-busy answer is stamped with the second it was made (RFC 5545 DTSTAMP):
# two answers made either side of a second's turn differ only there.
_MADE_AT = re.compile(rb"^DTSTAMP:\d{8}T\d{6}Z\r$", re.MULTILINE)


def made_at_blanked(body: bytes) -> bytes:
    return _MADE_AT.sub(b"DTSTAMP:-\r", body)


def assert_same(fast: Answer, slow: Answer) -> None:
    assert fast[0] == slow[0]
    assert fast[1] == slow[1]
    if fast[0].startswith("207"):
        assert as_xml(fast[2]) == as_xml(slow[2])
    if fast[1].get("Content-Type", "").startswith("text/calendar"):
        assert made_at_blanked(fast[2]) == made_at_blanked(slow[2])
    else:
        assert fast[2] == slow[2]


def same(call: Client, monkeypatch: pytest.MonkeyPatch, path: str, body: str, **kwargs: Any) -> Answer:
    fast, slow = both(call, monkeypatch, path, body, **kwargs)
    assert_same(fast, slow)
    return fast


def hrefs(body: bytes) -> list[str]:
    return [r[0] for r in as_xml(body)[1:]]


QUERIES = {
    "bench-week": query(*WEEK),
    "etags": query(*WEEK, prop="<d:prop><d:getetag/></d:prop>"),
    "davx5": query(*WEEK, prop=DAVX5),
    "mixed-props": query(*WEEK, prop=MIXED),
    "override-week": query("20260608T000000Z", "20260615T000000Z"),
    "first-week": query("20260504T000000Z", "20260511T000000Z"),
    "nothing": query("20250101T000000Z", "20250108T000000Z"),
    "todo": query(*WEEK, component="VTODO"),
    "no-time-range": (f'{HEAD}<c:calendar-query {NS}>{ETAG_DATA}<c:filter><c:comp-filter name="VCALENDAR">'
                      '<c:comp-filter name="VTODO"/></c:comp-filter></c:filter></c:calendar-query>'),
}


@pytest.mark.parametrize("depth", [None, "1", "0"])
@pytest.mark.parametrize("prefix", ["", "/dav"])
@pytest.mark.parametrize("body", QUERIES.values(), ids=QUERIES.keys())
def test_a_time_range_query_is_radicales_answer(client: Client, taken: list[bool],
                                                monkeypatch: pytest.MonkeyPatch, body: str,
                                                prefix: str, depth: str | None) -> None:
    fast = same(client, monkeypatch, "/alice/cal/", body, prefix=prefix, depth=depth)
    assert fast[0].startswith("207")
    assert taken == [True, False]


def test_the_query_finds_what_radicale_finds(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    def names(body: str) -> set[str]:
        return {h.rsplit("/", 1)[-1] for h in hrefs(same(client, monkeypatch, "/alice/cal/", body)[2])}

    week = names(query(*WEEK))
    assert "weekly.ics" not in week  # its occurrence there is excluded
    assert {"forever.ics", quote("a b.ics"), quote("日本.ics")} <= week
    assert "weekly.ics" in names(QUERIES["override-week"])
    assert names(QUERIES["todo"]) == {"todo.ics"}
    assert names(QUERIES["nothing"]) == set()
    # The calendar data is the stored text, escaped, its CRLF kept.
    _, _, body = client("REPORT", "/alice/cal/", QUERIES["first-week"])
    assert b"SUMMARY:weekly &amp; &lt;more&gt;\r\n" in body


SLOW_QUERIES = {
    "expand": query(*WEEK, prop='<d:prop><c:calendar-data><c:expand start="20260601T000000Z" '
                    'end="20260608T000000Z"/></c:calendar-data></d:prop>'),
    "partial-data": query(*WEEK, prop='<d:prop><c:calendar-data><c:comp name="VCALENDAR"/>'
                          "</c:calendar-data></d:prop>"),
    "no-prop": query(*WEEK, prop=""),
    "no-filter": f"{HEAD}<c:calendar-query {NS}>{ETAG_DATA}</c:calendar-query>",
    "text-match": (f'{HEAD}<c:calendar-query {NS}>{ETAG_DATA}<c:filter><c:comp-filter name="VCALENDAR">'
                   '<c:comp-filter name="VEVENT"><c:prop-filter name="SUMMARY"><c:text-match>moved'
                   "</c:text-match></c:prop-filter></c:comp-filter></c:comp-filter></c:filter>"
                   "</c:calendar-query>"),
    "bad-range": query("2026", "nonsense"),
    "free-busy": (f'{HEAD}<c:free-busy-query {NS}><c:time-range start="{WEEK[0]}" end="{WEEK[1]}"/>'
                  "</c:free-busy-query>"),
    "principal-search": f'{HEAD}<d:principal-search-property-set xmlns:d="DAV:"/>',
    "empty": "",
}


@pytest.mark.parametrize("body", SLOW_QUERIES.values(), ids=SLOW_QUERIES.keys())
def test_what_the_rows_do_not_answer_is_radicales(client: Client, taken: list[bool],
                                                  monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    fast, slow = both(client, monkeypatch, "/alice/cal/", body)
    assert_same(fast, slow)
    assert taken == [False, False]


def test_a_query_radicale_must_filter_is_radicales(client: Client, taken: list[bool],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """In 2029 the open-ended event's occurrences are not recorded: not fully matched."""
    same(client, monkeypatch, "/alice/cal/", query("20290101T000000Z", "20290108T000000Z"))
    assert taken == [False, False]


def sync_token(body: bytes) -> str:
    token = as_xml(body)[0]
    assert token
    return str(token)


@pytest.mark.parametrize("prefix", ["", "/dav"])
@pytest.mark.parametrize("prop", ["<d:prop><d:getetag/></d:prop>", DAVX5, ETAG_DATA, MIXED],
                         ids=["etag", "davx5", "data", "mixed"])
def test_sync_initial_and_after_changes_is_radicales(client: Client, taken: list[bool],
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     prop: str, prefix: str) -> None:
    first = same(client, monkeypatch, "/alice/cal/", sync(prop=prop), prefix=prefix)
    assert len(hrefs(first[2])) == len(ODD_NAMES) + 4
    token = sync_token(first[2])
    unchanged = same(client, monkeypatch, "/alice/cal/", sync(token, prop), prefix=prefix)
    assert unchanged[2].count(b"<response>") == 0
    assert client("PUT", "/alice/cal/new%20one.ics", LATER.replace("later", "new"),
                  content_type="text/calendar")[0].startswith("201")
    assert client("PUT", "/alice/cal/todo.ics", TODO.replace("SUMMARY:todo", "SUMMARY:done"),
                  content_type="text/calendar")[0].startswith("204")
    assert client("DELETE", "/alice/cal/" + quote("a b.ics"))[0].startswith("200")
    changed = same(client, monkeypatch, "/alice/cal/", sync(token, prop), prefix=prefix)
    statuses = {h.rsplit("/", 1)[-1]: s for h, s, _ in as_xml(changed[2])[1:]}
    assert statuses == {"new%20one.ics": None, "todo.ics": None, "a%20b.ics": "HTTP/1.1 404 Not Found"}
    assert sync_token(changed[2]) != token
    assert taken == [True, False] * 3


@pytest.mark.parametrize("body", [sync(), query(*WEEK), sync(prop=DAVX5)],
                         ids=["initial-sync", "week-query", "sync-davx5"])
def test_a_client_accepting_gzip_gets_radicales_answer_compressed_once(
        client: Client, taken: list[bool], monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    """Written compressed (level 1), not compressed again by Radicale:
    decompressed once, byte for byte the answer Radicale compresses itself."""
    fast, slow = both(client, monkeypatch, "/alice/cal/", body, headers={"Accept-Encoding": "gzip"})
    assert taken == [True, False]
    assert fast[0] == slow[0] and fast[0].startswith("207")
    assert fast[1]["Content-Encoding"] == slow[1]["Content-Encoding"] == "gzip"
    assert int(fast[1]["Content-Length"]) == len(fast[2])
    assert zlib.decompress(fast[2], wbits=16 + zlib.MAX_WBITS) == zlib.decompress(
        slow[2], wbits=16 + zlib.MAX_WBITS)


@pytest.mark.parametrize("body", [
    sync("http://servicehop.invalid/ns/sync/0123456789abcdef-1"), sync("nonsense"),
    sync(extra="<d:limit><d:nresults>2</d:nresults></d:limit>"),
    sync(prop='<d:prop><c:calendar-data><c:comp name="VCALENDAR"/></c:calendar-data></d:prop>'),
], ids=["other-calendar", "bad", "limit", "partial-data"])
def test_a_refused_or_limited_sync_is_radicales(client: Client, taken: list[bool],
                                                monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    fast = same(client, monkeypatch, "/alice/cal/", body)
    if "limit" not in body and "comp" not in body:
        assert fast[0].startswith("403") and b"valid-sync-token" in fast[2]
    assert taken == [False, False]


def test_a_token_of_another_calendar_is_refused(client: Client, taken: list[bool],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    token = sync_token(client("REPORT", "/alice/empty/", sync())[2])
    fast = same(client, monkeypatch, "/alice/cal/", sync(token))
    assert fast[0].startswith("403")
    assert taken == [True, False, False]


@pytest.mark.parametrize("body", [sync(), query(*WEEK), multiget(["/alice/empty/x.ics"])],
                         ids=["sync", "query", "multiget"])
def test_an_empty_calendar_is_radicales(client: Client, taken: list[bool],
                                        monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    assert same(client, monkeypatch, "/alice/empty/", body)[0].startswith("207")
    assert taken == [True, False]


@pytest.mark.parametrize("prefix", ["", "/dav"])
def test_multiget_with_missing_and_odd_hrefs_is_radicales(
    client: Client, taken: list[bool], monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    wanted = [f"{prefix}/alice/cal/{quote(n)}" for n in ODD_NAMES] + [
        f"{prefix}/alice/cal/gone.ics", f"{prefix}/alice/cal/weekly.ics",
        f"{prefix}/alice/cal/also%20gone.ics",
        f"http://localhost:5232{prefix}/alice/cal/todo.ics", f"{prefix}/alice/cal/weekly.ics"]
    fast = same(client, monkeypatch, "/alice/cal/", multiget(wanted), prefix=prefix)
    answered = as_xml(fast[2])[1:]
    assert len(answered) == len(ODD_NAMES) + 4
    assert sorted(h for h, s, _ in answered if s) == [f"{prefix}/alice/cal/also%20gone.ics",
                                                      f"{prefix}/alice/cal/gone.ics"]
    assert same(client, monkeypatch, "/alice/cal/", multiget(wanted, DAVX5), prefix=prefix)
    assert taken == [True, False] * 2


@pytest.mark.parametrize("hrefs_", [["/alice/cal/"], ["/alice/empty/x.ics"], ["/elsewhere/x.ics"],
                                    ["/alice/cal/sub/x.ics"]],
                         ids=["the-calendar", "other-calendar", "outside", "below"])
def test_multiget_of_what_is_not_a_member_is_radicales(
    client: Client, taken: list[bool], monkeypatch: pytest.MonkeyPatch, hrefs_: list[str]
) -> None:
    same(client, monkeypatch, "/alice/cal/", multiget([*hrefs_, "/alice/cal/todo.ics"]))
    assert taken == [False, False]


@pytest.mark.parametrize(("user", "path", "expected"), [
    ("bob", "/alice/cal/", "207"),  # read rights: answered, the same
    ("bob", "/alice/empty/", "403"),  # no rights
    ("carol", "/alice/cal/", "403"),  # free-busy only
    (None, "/alice/cal/", "401"),
])
@pytest.mark.parametrize("body", [query(*WEEK), sync(), multiget(["/alice/cal/todo.ics"])],
                         ids=["query", "sync", "multiget"])
def test_rights_are_radicales(client: Client, taken: list[bool], monkeypatch: pytest.MonkeyPatch,
                              user: str | None, path: str, expected: str, body: str) -> None:
    fast = same(client, monkeypatch, path, body, user=user)
    assert fast[0].startswith(expected)
    assert taken == ([True, False] if expected == "207" else [False, False][: len(taken)])


def test_a_report_on_an_item_is_radicales(client: Client, taken: list[bool],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    same(client, monkeypatch, "/alice/cal/todo.ics", query(*WEEK, component="VTODO"))
    assert taken == [False, False]


# -- over HTTP: the caldav library, and the availability view ----------------------------


@pytest.fixture
def compared(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bool, bytes]]:
    """Every REPORT answered, with Radicale's own answer compared: (fast, body)."""
    seen: list[tuple[bool, bytes]] = []

    def do_REPORT(self: Application, environ: Any, *args: Any) -> Any:  # noqa: N802
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        fast_environ = {**environ, "wsgi.input": io.BytesIO(body)}
        fast = report.answer(self, fast_environ, *args)
        slow = radicale.Application.do_REPORT(self, {**environ, "wsgi.input": io.BytesIO(body)}, *args)
        answer = fast if fast is not None else slow
        text = bytes(answer[2])
        if fast is not None and fast[1].get("Content-Encoding") == "gzip":
            # Written compressed: Radicale is told not to compress it again.
            environ["HTTP_ACCEPT_ENCODING"] = fast_environ["HTTP_ACCEPT_ENCODING"]
            text = zlib.decompress(text, wbits=16 + zlib.MAX_WBITS)
            assert {**fast[1], "Content-Encoding": None} == {**slow[1], "Content-Encoding": None}, body
        else:
            assert answer[1] == slow[1], body
        assert (answer[0], text) == slow[:1] + (slow[2],), body
        seen.append((fast is not None, text))
        return answer

    monkeypatch.setattr(Application, "do_REPORT", do_REPORT)
    return seen


def test_the_caldav_library_gets_radicales_answers(server: Server,
                                                   compared: list[tuple[bool, bytes]]) -> None:
    from datetime import UTC, datetime

    calendar = server.client("alice").principal().make_calendar(name="lib", cal_id="lib")
    for name, text in (("weekly", WEEKLY), ("forever", FOREVER), ("todo", TODO), ("later", LATER)):
        calendar.save_event(text) if name != "todo" else calendar.save_todo(text)
    start, end = datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 15, tzinfo=UTC)
    found = calendar.search(start=start, end=end, event=True)
    assert sorted(str(e.icalendar_component["UID"]) for e in found) == ["forever", "weekly"]
    # The older call, which clients written against earlier caldav releases
    # still make: the same search with its recurrences expanded. The library
    # warns that it is deprecated (to go in caldav 4.0).
    with pytest.warns(DeprecationWarning, match="date_search"):
        assert len(calendar.date_search(start, end)) == 2
    todos = calendar.search(start=start, end=end, todo=True)
    assert [str(t.icalendar_component["UID"]) for t in todos] == ["todo"]
    objects = calendar.objects_by_sync_token(load_objects=True)
    assert len(list(objects)) == 4
    calendar.save_event(vcal(vevent("added", "20260602T100000Z", "20260602T110000Z")))
    changed = calendar.objects_by_sync_token(objects.sync_token, load_objects=True)
    assert [str(o.icalendar_component["UID"]) for o in changed] == ["added"]
    assert compared and all(fast for fast, _ in compared), [b[:300] for f, b in compared if not f]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BookingWorld]:
    yield from booking_world(request.param, tmp_path_factory.mktemp(f"report-{request.param}"))


def test_the_availability_view_hides_the_readers_own_booking(world: BookingWorld, taken: list[bool],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    dept = world.department(staff=1)
    day = days_ahead(2)
    dept.open(local(day, 10), local(day, 14), rrule=None)
    alice, bob = dept.recipient(), dept.recipient()
    assert world.book(alice, dept, local(day, 11), local(day, 12)).confirmed
    assert world.book(bob, dept, local(day, 12), local(day, 13)).confirmed
    path = f"/{alice}/availability-{dept.id}/"
    every = world.db.transaction  # the view's hrefs as stored, hidden ones included
    from servicehop_caldav.store import collections as store_collections
    from servicehop_caldav.store import objects as store_objects
    with every("r") as conn:
        instance = store_collections.get_instance(conn, path.strip("/"))
        assert instance is not None
        stored = store_objects.all_hrefs(conn, instance.calendar_id)

    def send(body: str) -> tuple[requests.Response, requests.Response]:
        def one() -> requests.Response:
            return world.session(alice).request("REPORT", world.server.url + path, data=body.encode(),
                                                headers={"Content-Type": "application/xml", "Depth": "1"})

        fast = one()
        monkeypatch.setattr(Application, "fast_report", False)
        try:
            slow = one()
        finally:
            monkeypatch.setattr(Application, "fast_report", True)
        assert fast.status_code == slow.status_code == 207
        assert as_xml(fast.content) == as_xml(slow.content)
        assert fast.content == slow.content
        return fast, slow

    start = day.strftime("%Y%m%dT000000Z")
    end = days_ahead(4).strftime("%Y%m%dT000000Z")
    shown = world.get(alice, path).text.count("BEGIN:VEVENT")
    in_query = hrefs(send(query(start, end))[0].content)
    in_sync = hrefs(send(sync())[0].content)
    assert len(in_query) == len(in_sync) == shown < len(stored)
    got = as_xml(send(multiget([path + quote(h) for h in stored]))[0].content)[1:]
    assert sum(1 for _, status, _ in got if status) == len(stored) - shown  # hidden: 404
    assert taken == [True, False] * 3
