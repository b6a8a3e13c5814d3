"""PROPFIND Depth 1 of a calendar's members from the index
(:mod:`servicehop_caldav.propfind`): the same answer as Radicale's own.

Every request is sent twice to the same application, once with the fast
path and once with it switched off (``Application.fast_propfind``), and the
two answers must be the same: status, headers, and the multistatus, both
byte for byte and compared as XML (hrefs, properties and statuses per href)
so a failure says what differs. Each test also says whether the fast path
answered, so a fallback cannot pass for a fast answer.
"""

from __future__ import annotations

import base64
import io
import sys
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
import requests
from radicale import config as radicale_config
from radicale_storage_servicehop import object_of_text

from servicehop_caldav import propfind
from servicehop_caldav.app import Application
from servicehop_caldav.db.engine import Database, dispose_shared
from servicehop_caldav.store import collections as store_collections
from servicehop_caldav.store import objects as store_objects
from tests.conftest import USERS, server_config
from tests.helpers.booking_world import BookingWorld, booking_world, days_ahead, local

DAV = "{DAV:}"
XML = {"Content-Type": "application/xml; charset=utf-8"}

ETAGS = ('<?xml version="1.0" encoding="utf-8"?>'
         '<d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>')
# DAVx5 lists a calendar with getetag and getcontenttype (and schedule-tag,
# which Radicale does not have: a 404 propstat).
DAVX5 = ('<?xml version="1.0" encoding="utf-8"?>'
         '<d:propfind xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">'
         "<d:prop><d:getetag/><d:getcontenttype/><c:schedule-tag/></d:prop></d:propfind>")
# The caldav library: children() asks for displayname and resourcetype.
CALDAV_CHILDREN = ('<?xml version="1.0" encoding="utf-8"?>'
                   '<propfind xmlns="DAV:"><prop><displayname/><resourcetype/></prop></propfind>')
MIXED = ('<?xml version="1.0" encoding="utf-8"?>'
         '<d:propfind xmlns:d="DAV:" xmlns:x="urn:example:x" xmlns:y="urn:example:y"><d:prop>'
         "<y:b/><d:getlastmodified/><d:resourcetype/><x:a/><d:getetag/><d:owner/>"
         "<d:current-user-principal/><d:current-user-privilege-set/><d:getctag/>"
         "<d:principal-collection-set/><d:supported-report-set/><d:getcontenttype/>"
         "</d:prop></d:propfind>")
FAST_BODIES = {"etags": ETAGS, "davx5": DAVX5, "caldav-children": CALDAV_CHILDREN, "mixed": MIXED}
# Radicale's, always: what the index does not answer or a request that is not a prop list.
SLOW_BODIES = {
    "allprop": '<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:allprop/></d:propfind>',
    "propname": '<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:propname/></d:propfind>',
    "contentlength": ('<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:getetag/>'
                      "<d:getcontentlength/></d:prop></d:propfind>"),
    "empty": "",
}

# Names that need percent-encoding in an href, and some that do not.
ODD_NAMES = ["a b.ics", "ünï-cødé.ics", "x&y<z>.ics", "plus+at@semi;eq=.ics", "per%cent.ics",
             "paren()[]!$.ics", "tilde~.ics", "日本.ics", "plain.ics"]

SEEDED_NAMES = ["quote'dq\"star*.ics", "comma,question?.ics"]

RIGHTS = """\
[owner]
user: .+
collection: {user}(/.*)?
permissions: RrWw

[bob-reads-alice]
user: bob
collection: alice/cal
permissions: r

[carol-free-busy]
user: carol
collection: alice/cal
permissions: f

[root]
user: .+
collection:
permissions: R
"""


def event(uid: str, component: str = "VEVENT", hour: int = 10) -> str:
    times = (f"DTSTART:20260601T{hour:02d}0000Z\r\nDTEND:20260601T{hour:02d}3000Z\r\n"
             if component == "VEVENT" else f"DUE:20260601T{hour:02d}0000Z\r\n")
    return (f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:{component}\r\n"
            f"UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\n{times}SUMMARY:{uid}\r\n"
            f"END:{component}\r\nEND:VCALENDAR\r\n")


class Client:
    """WSGI calls straight into one Application; paths as a client sends
    them (percent-encoded), PATH_INFO decoded as Radicale's server does."""

    def __init__(self, app: Application) -> None:
        self.app = app

    def __call__(self, method: str, path: str, body: str = "", user: str | None = "alice",
                 depth: str | None = None, prefix: str = "",
                 content_type: str = "application/xml",
                 headers: dict[str, str] | None = None) -> tuple[str, dict[str, str], bytes]:
        data = body.encode()
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method, "PATH_INFO": unquote(path), "SCRIPT_NAME": prefix,
            "CONTENT_LENGTH": str(len(data)), "CONTENT_TYPE": content_type,
            "wsgi.input": io.BytesIO(data), "REMOTE_ADDR": "127.0.0.1", "SERVER_NAME": "localhost",
            "SERVER_PORT": "5232", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
        }
        if depth is not None:
            environ["HTTP_DEPTH"] = depth
        for name, value in (headers or {}).items():
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        if prefix:
            environ["HTTP_X_SCRIPT_NAME"] = prefix
        if user is not None:
            token = base64.b64encode(f"{user}:{USERS[user]}".encode()).decode()
            environ["HTTP_AUTHORIZATION"] = f"Basic {token}"
        started: list[tuple[str, dict[str, str]]] = []
        answer = b"".join(self.app(environ, lambda s, h, e=None: started.append((s, dict(h)))))
        return started[0][0], started[0][1], answer


def application(database_url: str, tmp_path: Path) -> Client:
    """A Client of an Application on ``database_url`` with the :data:`RIGHTS`
    and no upkeep pass (the tests' own calls are all it does)."""
    rights = tmp_path / "rights"
    rights.write_text(RIGHTS)
    configuration = radicale_config.load()
    values = server_config(database_url, tmp_path / "server", 5232, {
        "rights": {"type": "from_file", "file": str(rights)},
        "storage": {"upkeep_interval": "-1"},
    })
    configuration.update(values, "test", privileged=True)
    return Client(Application(configuration))


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[Client]:
    call = application(database_url, tmp_path)
    for path in ("/alice/cal/", "/alice/empty/"):
        status, _, _ = call("MKCALENDAR", path)
        assert status.startswith("201"), status
    status, _, _ = call("MKCOL", "/alice/book/", (
        '<?xml version="1.0"?><d:mkcol xmlns:d="DAV:" xmlns:cr="urn:ietf:params:xml:ns:carddav">'
        "<d:set><d:prop><d:resourcetype><d:collection/><cr:addressbook/></d:resourcetype>"
        "</d:prop></d:set></d:mkcol>"))
    assert status.startswith("201"), status
    for number, name in enumerate(ODD_NAMES):
        status, _, _ = call("PUT", "/alice/cal/" + quote(name), event(f"uid-{number}", hour=8 + number),
                            content_type="text/calendar")
        assert status.startswith("201"), (name, status)
    status, _, _ = call("PUT", "/alice/cal/todo.ics", event("a-todo", "VTODO"),
                        content_type="text/calendar")
    assert status.startswith("201"), status
    # Names no request path may hold (Radicale's blacklist), written as an
    # import or the benchmark's seeding writes them: listed all the same.
    make = object_of_text("alice/cal")
    with Database.shared(database_url).transaction("w") as conn:
        instance = store_collections.get_instance(conn, "alice/cal")
        assert instance is not None
        for name in SEEDED_NAMES:
            store_objects.put_object(conn, instance.calendar_id, name, make(event(name)))
    yield call
    dispose_shared(database_url)


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each PROPFIND was answered by the fast path."""
    answers: list[bool] = []
    original = propfind.answer

    def spy(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        answers.append(result is not None)
        return result

    monkeypatch.setattr(propfind, "answer", spy)
    return answers


def as_xml(body: bytes) -> list[tuple[str, list[tuple[str, list[tuple[str, str, list[str]]]]]]]:
    """Each response's href with its propstats: status, and each property
    (tag, text, child tags)."""
    root = ET.fromstring(body)
    assert root.tag == f"{DAV}multistatus"
    out = []
    for response in root.findall(f"{DAV}response"):
        propstats = []
        for propstat in response.findall(f"{DAV}propstat"):
            prop = propstat.find(f"{DAV}prop")
            assert prop is not None
            propstats.append((propstat.findtext(f"{DAV}status") or "", [
                (p.tag, p.text or "", [c.tag + ":" + (c.text or "") for c in p]) for p in prop
            ]))
        out.append((response.findtext(f"{DAV}href") or "", propstats))
    return out


def both(call: Client, monkeypatch: pytest.MonkeyPatch, *args: Any, **kwargs: Any
         ) -> tuple[tuple[str, dict[str, str], bytes], tuple[str, dict[str, str], bytes]]:
    """The fast path's answer and Radicale's own, to the same request."""
    fast = call("PROPFIND", *args, **kwargs)
    monkeypatch.setattr(Application, "fast_propfind", False)
    try:
        slow = call("PROPFIND", *args, **kwargs)
    finally:
        monkeypatch.setattr(Application, "fast_propfind", True)
    return fast, slow


def assert_same(fast: tuple[str, dict[str, str], bytes], slow: tuple[str, dict[str, str], bytes]) -> None:
    assert fast[0] == slow[0]
    assert fast[1] == slow[1]
    if fast[0].startswith("207"):
        assert as_xml(fast[2]) == as_xml(slow[2])
    assert fast[2] == slow[2]


@pytest.mark.parametrize("prefix", ["", "/dav"])
@pytest.mark.parametrize("body", FAST_BODIES.values(), ids=FAST_BODIES.keys())
@pytest.mark.parametrize("path", ["/alice/cal/", "/alice/empty/"])
def test_the_members_answer_is_radicales(client: Client, taken: list[bool], monkeypatch: pytest.MonkeyPatch,
                                         body: str, prefix: str, path: str) -> None:
    fast, slow = both(client, monkeypatch, path, body, depth="1", prefix=prefix)
    assert fast[0].startswith("207")
    assert_same(fast, slow)
    assert taken == [True, False]
    if path == "/alice/cal/":
        hrefs = [href for href, _ in as_xml(fast[2])]
        assert hrefs[0] == prefix + path
        assert sorted(unquote(h.removeprefix(prefix + path)) for h in hrefs[1:]) == sorted(
            [*ODD_NAMES, *SEEDED_NAMES, "todo.ics"])


@pytest.mark.parametrize("path", ["/alice/cal/", "/alice/empty/"])
def test_a_client_accepting_gzip_gets_radicales_answer_compressed_once(
        client: Client, taken: list[bool], monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    """The members' answer is compressed as it is written (level 1), and
    Radicale does not compress it again: decompressed once, it is byte for
    byte Radicale's answer, which Radicale compresses itself."""
    gzip = {"Accept-Encoding": "deflate, gzip"}
    fast, slow = both(client, monkeypatch, path, ETAGS, depth="1", headers=gzip)
    assert taken == [True, False]
    assert fast[0] == slow[0] and fast[0].startswith("207")
    assert fast[1]["Content-Encoding"] == slow[1]["Content-Encoding"] == "gzip"
    assert int(fast[1]["Content-Length"]) == len(fast[2])
    without = {k: v for k, v in fast[1].items() if k != "Content-Length"}
    assert without == {k: v for k, v in slow[1].items() if k != "Content-Length"}
    assert zlib.decompress(fast[2], wbits=16 + zlib.MAX_WBITS) == zlib.decompress(
        slow[2], wbits=16 + zlib.MAX_WBITS)


def test_a_todo_and_an_event_have_their_own_content_types(client: Client, taken: list[bool]) -> None:
    _, _, body = client("PROPFIND", "/alice/cal/", DAVX5, depth="1")
    types = {href.rsplit("/", 1)[-1]: dict((tag, text) for tag, text, _ in stats[0][1])
             for href, stats in as_xml(body)[1:]}
    assert types["todo.ics"][f"{DAV}getcontenttype"] == "text/calendar;charset=utf-8;component=VTODO"
    assert types["plain.ics"][f"{DAV}getcontenttype"] == "text/calendar;charset=utf-8;component=VEVENT"
    assert len({t[f"{DAV}getetag"] for t in types.values()}) == len(ODD_NAMES) + len(SEEDED_NAMES) + 1
    assert taken == [True]


def test_a_changed_event_is_listed_with_its_new_etag(client: Client, taken: list[bool]) -> None:
    def etags() -> dict[str, str]:
        _, _, body = client("PROPFIND", "/alice/cal/", ETAGS, depth="1")
        return {href: stats[0][1][0][1] for href, stats in as_xml(body)[1:]}

    before = etags()
    status, headers, _ = client("PUT", "/alice/cal/plain.ics", event("uid-8", hour=20),
                                content_type="text/calendar")
    assert status.startswith("204")
    after = etags()
    assert set(after) == set(before)
    assert [h for h in after if after[h] != before[h]] == ["/alice/cal/plain.ics"]
    assert after["/alice/cal/plain.ics"] == headers["ETag"]
    status, _, _ = client("DELETE", "/alice/cal/todo.ics")
    assert status.startswith("200")
    assert set(etags()) == set(before) - {"/alice/cal/todo.ics"}


@pytest.mark.parametrize("body", SLOW_BODIES.values(), ids=SLOW_BODIES.keys())
def test_what_the_index_does_not_answer_is_radicales(client: Client, taken: list[bool],
                                                     monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    fast, slow = both(client, monkeypatch, "/alice/cal/", body, depth="1")
    assert fast[0].startswith("207")
    assert_same(fast, slow)
    assert taken == [False, False]


@pytest.mark.parametrize(("path", "depth"), [
    ("/alice/cal/", "0"), ("/alice/cal/", "infinity"), ("/alice/cal/plain.ics", "1"),
    ("/alice/", "1"), ("/alice/book/", "1"), ("/", "1"), ("/alice/missing/", "1"),
])
def test_other_targets_and_depths_are_radicales(
    client: Client, taken: list[bool], monkeypatch: pytest.MonkeyPatch, path: str, depth: str
) -> None:
    fast, slow = both(client, monkeypatch, path, ETAGS, depth=depth)
    assert_same(fast, slow)
    assert taken == [False, False]


def test_a_reader_with_read_rights_gets_the_same_answer(client: Client, taken: list[bool],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    fast, slow = both(client, monkeypatch, "/alice/cal/", MIXED, depth="1", user="bob")
    assert fast[0].startswith("207")
    assert_same(fast, slow)
    assert taken == [True, False]


@pytest.mark.parametrize(("user", "path"), [
    ("bob", "/alice/empty/"),  # no rights at all
    ("carol", "/alice/cal/"),  # free-busy only: Radicale refuses Depth 1
    (None, "/alice/cal/"),  # not logged in
])
def test_a_refusal_is_radicales(client: Client, taken: list[bool], monkeypatch: pytest.MonkeyPatch,
                                user: str | None, path: str) -> None:
    fast, slow = both(client, monkeypatch, path, ETAGS, depth="1", user=user)
    assert fast[0][:3] in ("403", "401"), fast[0]
    assert_same(fast, slow)
    assert not any(taken)


def test_a_body_radicale_cannot_read_is_its_answer(client: Client, taken: list[bool],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    fast, slow = both(client, monkeypatch, "/alice/cal/", "<d:propfind xmlns:d='DAV:'><d:prop>",
                      depth="1")
    assert fast[0].startswith("400")
    assert_same(fast, slow)
    assert taken == [False, False]


# -- the servicehop calendars over HTTP: opening, bookings, availability ---------------------


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BookingWorld]:
    yield from booking_world(request.param, tmp_path_factory.mktemp(f"propfind-{request.param}"))


def http_both(world: BookingWorld, monkeypatch: pytest.MonkeyPatch, user: str, path: str,
              body: str) -> tuple[requests.Response, requests.Response]:
    def send() -> requests.Response:
        return world.session(user).request("PROPFIND", world.server.url + path, data=body.encode(),
                                           headers={**XML, "Depth": "1"})

    fast = send()
    monkeypatch.setattr(Application, "fast_propfind", False)
    try:
        slow = send()
    finally:
        monkeypatch.setattr(Application, "fast_propfind", True)
    return fast, slow


def test_servicehop_calendars_answer_as_radicale(world: BookingWorld, taken: list[bool],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    dept = world.department(staff=1)
    day = days_ahead(2)
    dept.open(local(day, 10), local(day, 14), rrule=None)
    alice = dept.recipient()
    assert world.book(alice, dept, local(day, 11), local(day, 12)).confirmed
    checks = [
        (dept.admin, f"/{dept.admin}/opening-{dept.id}/", True),
        (alice, f"/{alice}/bookings-{dept.id}/", True),
        # Each reader's own busy time is left out of their view: Radicale's.
        (alice, f"/{alice}/availability-{dept.id}/", False),
        (alice, f"/{dept.admin}/opening-{dept.id}/", False),  # not hers: refused
    ]
    for user, path, fast_expected in checks:
        taken.clear()
        fast, slow = http_both(world, monkeypatch, user, path, DAVX5)
        assert fast.status_code == slow.status_code
        if fast.status_code == 207:
            assert as_xml(fast.content) == as_xml(slow.content)
        assert fast.content == slow.content, path
        assert taken == [fast_expected, False], path
    # The view lists what GET of it shows: free time and the others' busy time.
    fast, _ = http_both(world, monkeypatch, alice, f"/{alice}/availability-{dept.id}/", ETAGS)
    listed = {href.rsplit("/", 1)[-1] for href, _ in as_xml(fast.content)[1:]}
    shown = world.get(alice, f"/{alice}/availability-{dept.id}/").text.count("BEGIN:VEVENT")
    assert len(listed) == shown == 2


def test_a_calendar_holding_a_collection_is_radicales(client: Client, taken: list[bool],
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      database_url: str) -> None:
    """Radicale lists collections inside after the items; the index listing
    has only the items, so such a calendar is Radicale's to answer."""
    with Database.shared(database_url).transaction("w") as conn:
        store_collections.create_instance(conn, "alice/cal/inner", {})
    fast, slow = both(client, monkeypatch, "/alice/cal/", ETAGS, depth="1")
    assert_same(fast, slow)
    assert as_xml(fast[2])[-1][0] == "/alice/cal/inner/"
    assert taken == [False, False]
