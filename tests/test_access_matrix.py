"""The privacy table of DESIGN.md, cell by cell, against the real server.

An instance (``init``) on SQLite and on PostgreSQL, two departments, and a
person for every role: two recipients of east, a recipient of west, two
staff of east, the admin of east, the admin of west, a disabled recipient,
someone with roles in both departments (admin of east, staff and recipient
of west), and anonymous. Every actor sends every method to every target
(each person's collections, every home, the root, paths that do not exist),
and each answer is checked against the contract:

* a denied request gets Radicale's one "forbidden" answer (403, or 401
  without a login), the same for a path that exists and one that does not;
* no answer carries another person's name, username, e-mail address or
  event UID, except events the actor may read;
* nothing in the database changes except the actor's own permitted writes,
  which the test undoes.

The expected outcome of each cell comes from the small tables ``ROLE_TABLE``
and ``EXPECT`` below, not from the code under test.
"""

from __future__ import annotations

import json
import re
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import radicale.item as radicale_item
import requests
from radicale_storage_servicehop import new_object
from sqlalchemy import delete, select

from servicehop_caldav import passwords
from servicehop_caldav.crypto import Keyring
from servicehop_caldav.db.engine import Database
from servicehop_caldav.db.schema import calendar_instances, calendar_objects, departments, user_roles
from servicehop_caldav.directory import store as directory
from servicehop_caldav.instance import init_instance
from servicehop_caldav.keyfile import load_keys
from servicehop_caldav.provisioning import ensure_provisioned
from servicehop_caldav.store import collections as store_collections
from servicehop_caldav.store import objects as store_objects
from tests.conftest import Server, make_database_url, start_instance_server

# -- the contract ---------------------------------------------------------------

DEPARTMENTS = {"east": ("Øst hjemmetjeneste", "nb"), "west": ("West Home Care", "en")}

# role -> [(collection kind, writable)]: the table of DESIGN.md.
ROLE_TABLE: dict[str, list[tuple[str, bool]]] = {
    "recipient": [("bookings", True), ("availability", False)],
    "staff": [("assignments", False)],
    "admin": [("opening", True), ("overview", False)],
}
PER_DEPARTMENT = {"bookings", "availability", "opening", "overview"}

DISPLAYNAMES = {
    "nb": {"bookings": "Bestillinger – {}", "availability": "Ledig tid – {}",
           "assignments": "Mine oppdrag", "opening": "Åpningstider – {}", "overview": "Oversikt – {}"},
    "en": {"bookings": "Bookings – {}", "availability": "Availability – {}",
           "assignments": "My assignments", "opening": "Opening hours – {}", "overview": "Overview – {}"},
}


@dataclass(frozen=True)
class Person:
    name: str
    roles: tuple[tuple[str, str], ...]  # (department, role)
    disabled: bool = False

    @property
    def email(self) -> str:
        return self.name.lower().replace(" ", ".").replace("ø", "o") + "@example.org"


PEOPLE: dict[str, Person] = {
    "rita": Person("Rita Rekdal", (("east", "recipient"),)),
    "rolf": Person("Rolf Ruud", (("east", "recipient"),)),
    "bjorg": Person("Bjørg Berg", (("west", "recipient"),)),
    "sven": Person("Sven Sand", (("east", "staff"),)),
    "siri": Person("Siri Solberg", (("east", "staff"),)),
    "anne": Person("Anne Aas", (("east", "admin"),)),
    "bernt": Person("Bernt Brekke", (("west", "admin"),)),
    "dina": Person("Dina Dahl", (("east", "recipient"),), disabled=True),
    "mona": Person("Mona Moe", (("east", "admin"), ("west", "staff"), ("west", "recipient"))),
}
ANONYMOUS = "anonymous"
ACTORS = [*PEOPLE, ANONYMOUS]


def contract_collections(who: str | Person) -> dict[str, bool]:
    """Collection name -> writable, straight from the table."""
    person = PEOPLE[who] if isinstance(who, str) else who
    result: dict[str, bool] = {}
    for department, role in person.roles:
        for kind, writable in ROLE_TABLE[role]:
            result[f"{kind}-{department}" if kind in PER_DEPARTMENT else kind] = writable
    return result


NONE, LIST, RO, RW = "none", "list", "read-only", "read-write"
DENY = "deny"  # Radicale's one forbidden answer (401 without a valid login)

# op -> expected outcome for (NONE, LIST, RO, RW). A number is the status.
# LIST targets are the root and the actor's own home: listable, nothing more
# (the REPORTs that need a calendar answer 403 DAV:supported-report there,
# a GET of the home 403 "Directory listings are not supported").
EXPECT: dict[str, tuple[object, object, object, object]] = {
    "propfind0":      (DENY, 207, 207, 207),
    "propfind1":      (DENY, 207, 207, 207),
    "query":          (DENY, 207, 207, 207),
    "multiget":       (DENY, 403, 207, 207),
    "sync":           (DENY, 403, 207, 207),
    "freebusy":       (DENY, 403, 200, 200),
    "get":            (DENY, 403, 200, 200),
    "get-item":       (DENY, DENY, 200, 200),
    "propfind-item":  (DENY, DENY, 207, 207),
    "put-new":        (DENY, DENY, DENY, 201),
    "put-existing":   (DENY, DENY, DENY, 204),
    "put-collection": (DENY, DENY, DENY, DENY),
    "delete-item":    (DENY, DENY, DENY, 200),
    "delete":         (DENY, DENY, DENY, DENY),
    "move-out":       (DENY, DENY, DENY, 201),
    "move-in":        (DENY, DENY, DENY, 201),
    "mkcalendar":     (DENY, DENY, DENY, 409),
    "mkcalendar-new": (DENY, DENY, DENY, DENY),
    "mkcol-new":      (DENY, DENY, DENY, DENY),
    "proppatch":      (DENY, DENY, DENY, DENY),
}
LEVELS = (NONE, LIST, RO, RW)
FORBIDDEN_BODY = b"Access to the requested resource forbidden."


def level_of(actor: str, path: str) -> str:
    if actor == ANONYMOUS or PEOPLE[actor].disabled:
        return NONE
    if path in ("/", f"/{actor}/"):
        return LIST
    parts = path.strip("/").split("/")
    if len(parts) == 2 and parts[0] == actor and parts[1] in contract_collections(actor):
        return RW if contract_collections(actor)[parts[1]] else RO
    return NONE


# -- iCalendar and WebDAV bodies -----------------------------------------------


def ics(uid: str, summary: str, start: str = "20270607T100000Z", end: str = "20270607T110000Z") -> str:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//servicehop tests//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:{start}\r\nDTEND:{end}\r\n"
        f"SUMMARY:{summary}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )


NS = 'xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav" xmlns:CS="http://calendarserver.org/ns/"'
PROPFIND = (
    f'<?xml version="1.0" encoding="utf-8"?><D:propfind {NS}><D:prop><D:displayname/>'
    "<D:resourcetype/><D:getetag/><D:sync-token/><CS:getctag/><D:owner/>"
    "<D:current-user-principal/><D:current-user-privilege-set/><C:calendar-home-set/>"
    "</D:prop></D:propfind>"
)
QUERY = (
    f'<?xml version="1.0" encoding="utf-8"?><C:calendar-query {NS}><D:prop><D:getetag/>'
    '<C:calendar-data/></D:prop><C:filter><C:comp-filter name="VCALENDAR"/></C:filter>'
    "</C:calendar-query>"
)
SYNC = (
    f'<?xml version="1.0" encoding="utf-8"?><D:sync-collection {NS}><D:sync-token/>'
    "<D:sync-level>1</D:sync-level><D:prop><D:getetag/></D:prop></D:sync-collection>"
)
FREEBUSY = (
    f'<?xml version="1.0" encoding="utf-8"?><C:free-busy-query {NS}>'
    '<C:time-range start="20270101T000000Z" end="20280101T000000Z"/></C:free-busy-query>'
)
PROPPATCH = (
    f'<?xml version="1.0" encoding="utf-8"?><D:propertyupdate {NS}><D:set><D:prop>'
    "<D:displayname>Renamed</D:displayname></D:prop></D:set></D:propertyupdate>"
)
MKCALENDAR = (
    f'<?xml version="1.0" encoding="utf-8"?><C:mkcalendar {NS}><D:set><D:prop>'
    "<D:displayname>Mine</D:displayname></D:prop></D:set></C:mkcalendar>"
)


def multiget(hrefs: list[str]) -> str:
    refs = "".join(f"<D:href>{h}</D:href>" for h in hrefs)
    return (
        f'<?xml version="1.0" encoding="utf-8"?><C:calendar-multiget {NS}><D:prop><D:getetag/>'
        f"<C:calendar-data/></D:prop>{refs}</C:calendar-multiget>"
    )


XML = {"Content-Type": "application/xml; charset=utf-8"}
ICS = {"Content-Type": "text/calendar; charset=utf-8"}

# -- the world: an instance with its people and their events ---------------------


@dataclass(frozen=True)
class Seeded:
    path: str  # the item's path, e.g. /rita/bookings-east/rita-1.ics
    uid: str
    text: str
    owner: str
    readers: frozenset[str]  # who may read it (its calendar is theirs)


@dataclass
class World:
    server: Server
    url: str
    home: Path
    keyring: Keyring
    seeded: list[Seeded] = field(default_factory=list)
    sessions: dict[str, requests.Session] = field(default_factory=dict)
    _calendars: dict[str, int] = field(default_factory=dict)

    @property
    def db(self) -> Database:
        return Database.shared(self.url)

    def session(self, actor: str) -> requests.Session:
        if actor not in self.sessions:
            self.sessions[actor] = (
                requests.Session() if actor == ANONYMOUS else self.server.session(actor)
            )
        return self.sessions[actor]

    def send(self, actor: str, method: str, path: str, body: str | None = None,
             headers: dict[str, str] | None = None) -> requests.Response:
        return self.session(actor).request(
            method, self.server.url + path, data=body.encode() if body is not None else None,
            headers=headers or {}, allow_redirects=False,
        )

    def items_in(self, collection: str) -> list[tuple[str, Seeded]]:
        """(path under ``collection``, item) of the seeded items it shows: the
        opening calendar shows the same items in every admin's home."""
        if not self._calendars:
            self._calendars = {path: calendar for path, calendar, _ in self.snapshot()[0]}
        calendar = self._calendars.get(collection.strip("/"))
        return [(collection + s.path.rsplit("/", 1)[1], s) for s in self.seeded
                if calendar is not None
                and self._calendars.get(s.path.strip("/").rsplit("/", 1)[0]) == calendar]

    def calendar_of(self, collection: str) -> int | None:
        with self.db.transaction("r") as conn:
            instance = store_collections.get_instance(conn, collection.strip("/"))
        return instance.calendar_id if instance is not None else None

    def snapshot(self) -> tuple[list[tuple[str, int, str]], list[tuple[int, str, str]]]:
        """Every collection (path, calendar, properties) and object (calendar, href, etag)."""
        with self.db.transaction("r") as conn:
            i, o = calendar_instances.c, calendar_objects.c
            instances = [tuple(r) for r in conn.execute(
                select(i.path, i.calendar_id, i.props).order_by(i.path))]
            objects = [tuple(r) for r in conn.execute(
                select(o.calendar_id, o.href, o.etag).order_by(o.calendar_id, o.href))]
        return instances, objects  # type: ignore[return-value]


def put_into_view(world: World, collection: str, href: str, text: str) -> None:
    """Store an event in a read-only view directly (as the booking engine will)."""
    item = radicale_item.Item(collection_path=collection.strip("/"), text=text)
    item.prepare()
    with world.db.transaction("w") as conn:
        instance = store_collections.get_instance(conn, collection.strip("/"))
        assert instance is not None, collection
        store_objects.put_object(conn, instance.calendar_id, href, new_object(item))


def add_person(world: World, username: str, person: Person, password: str) -> None:
    with world.db.transaction("w") as conn:
        user_id = directory.add_user(conn, world.keyring, username, password, person.name,
                                     person.email)
        for department, role in person.roles:
            directory.add_role(conn, user_id, department, role)
    world.server.passwords[username] = password


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp(f"access-{request.param}")
    url, drop = make_database_url(request.param, tmp)
    home = init_instance(tmp / "instance", url).instance.home
    # No upkeep pass: the views hold events seeded as the server would write
    # them (put_into_view), and a pass once the departments exist rewrites
    # the availability views from the bookings, which on a slow machine came
    # 60 s after the start, amid the matrix (the seeded event gone: 404, and
    # "the database changed"). This test is about rights, not upkeep.
    server = start_instance_server(home, {"storage": {"upkeep_interval": "-1"}})
    keyring = Keyring.from_keys(load_keys(home / "key"))
    w = World(server, url, home, keyring)
    # Cheaper password hashes for the test people: a refused login (the
    # disabled user) costs a full password hash check on every request, and this
    # test is about rights, not hash cost. The cost is stored in each hash.
    with passwords.cheap_hashes():  # not what is measured here
        try:
            with w.db.transaction("w") as conn:
                for dept_id, (name, language) in DEPARTMENTS.items():
                    directory.add_department(conn, dept_id, name, language=language)
            for username, person in PEOPLE.items():
                add_person(w, username, person, f"pw-{username}-Å1")
                ensure_provisioned(w.db, username)
            seed(w)
            with w.db.transaction("w") as conn:
                directory.set_disabled(conn, "dina", True)
            yield w
        finally:
            for s in w.sessions.values():
                s.close()
            server.stop()
            drop()


def seed(w: World) -> None:
    """Events with their owners' names, usernames, e-mails and UIDs in them."""

    def tagged(username: str, what: str) -> tuple[str, str]:
        p = PEOPLE[username]
        uid = f"uid-{what}-{username}-7f3a"
        return uid, ics(uid, f"{what} of {p.name} ({username}, {p.email})")

    def put(username: str, collection: str, what: str, readers: set[str]) -> None:
        uid, text = tagged(username, what)
        path = f"/{username}/{collection}/{uid}.ics"
        r = w.send(username, "PUT", path, text, ICS)
        assert r.status_code == 201, (path, r.status_code, r.text)
        w.seeded.append(Seeded(path, uid, text, username, frozenset(readers)))

    # Opening times first: a booking PUT again later is decided again, and
    # must meet the same opening times to be stored the same.
    put("anne", "opening-east", "opening", {"anne", "mona"})
    put("mona", "opening-east", "opening", {"anne", "mona"})
    put("bernt", "opening-west", "opening", {"bernt"})
    for username in ("rita", "rolf", "dina"):
        put(username, "bookings-east", "booking", {username})
    put("bjorg", "bookings-west", "booking", {"bjorg"})
    put("mona", "bookings-west", "booking", {"mona"})
    # Read-only views, written as the server would. A department's overview
    # is one calendar in each of its admins' homes (its admins read the same
    # events); availability is one calendar of anonymous events for all its
    # recipients: its seed names nobody (owner "": the server; what the
    # server itself writes there is scanned in tests/test_views_e2e.py).
    for home, collection, readers in [
        ("rita", "availability-east", {"rita", "rolf", "dina"}),
        ("bjorg", "availability-west", {"bjorg", "mona"}),
    ]:
        uid = f"uid-{collection}-7f3a"
        text = ics(uid, "Busy")
        put_into_view(w, f"/{home}/{collection}/", f"{uid}.ics", text)
        w.seeded.append(Seeded(f"/{home}/{collection}/{uid}.ics", uid, text, "", frozenset(readers)))
    for username, collection, readers in [
        ("sven", "assignments", {"sven"}), ("siri", "assignments", {"siri"}),
        ("mona", "assignments", {"mona"}), ("anne", "overview-east", {"anne", "mona"}),
        ("mona", "overview-east", {"anne", "mona"}), ("bernt", "overview-west", {"bernt"}),
    ]:
        uid, text = tagged(username, collection.split("-")[0])
        put_into_view(w, f"/{username}/{collection}/", f"{uid}.ics", text)
        w.seeded.append(Seeded(f"/{username}/{collection}/{uid}.ics", uid, text, username,
                               frozenset(readers)))


def tokens_of(username: str, world: World) -> set[str]:
    uids = {s.uid for s in world.seeded if s.owner == username}
    if username not in PEOPLE:  # the server's own events
        return uids
    p = PEOPLE[username]
    return {username, p.name, p.email} | uids


def forbidden_tokens(world: World, actor: str) -> dict[str, str]:
    """token -> whose, for every token the actor must never see."""
    visible = tokens_of(actor, world) if actor in PEOPLE else set()
    for s in world.seeded:
        if actor in s.readers:
            visible |= tokens_of(s.owner, world) if s.owner != actor else set()
    result = {}
    for username in PEOPLE:
        for token in tokens_of(username, world) - visible:
            result[token] = username
    return result


def leaks(response: requests.Response, forbidden: dict[str, str]) -> list[str]:
    text = "\n".join(f"{k}: {v}" for k, v in response.headers.items()) + "\n" + response.text
    found = []
    for token, whose in forbidden.items():
        pattern = rf"\b{re.escape(token)}\b" if token in PEOPLE else re.escape(token)
        if re.search(pattern, text, flags=0 if token in PEOPLE else re.IGNORECASE):
            found.append(f"{token!r} of {whose}")
    return found


# -- targets and operations -------------------------------------------------------


def targets() -> list[str]:
    paths = ["/"]
    for username in PEOPLE:
        paths.append(f"/{username}/")
        paths += [f"/{username}/{name}/" for name in contract_collections(username)]
    # Paths that do not exist: answered like the ones that do.
    paths += ["/ghost/", "/ghost/bookings-east/", "/rita/bookings-west/", "/rita/nothing/",
              "/anne/bookings-east/", "/demo/"]
    return paths


@dataclass
class Call:
    method: str
    path: str
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Cell:
    call: Call
    setup: list[Call] = field(default_factory=list)  # by the actor, only when allowed
    cleanup: list[Call] = field(default_factory=list)


def own_rw(actor: str) -> str | None:
    if actor == ANONYMOUS:
        return None
    names = [n for n, w in contract_collections(actor).items() if w]
    return f"/{actor}/{names[0]}/" if names else None


def make_cell(world: World, actor: str, target: str, op: str, allowed: bool) -> Cell:
    items = world.items_in(target) if target.count("/") == 3 else []
    item = items[0][0] if items else target + "no-such.ics"
    tag = actor
    if op in ("propfind0", "propfind1"):
        return Cell(Call("PROPFIND", target, PROPFIND, {**XML, "Depth": op[-1]}))
    if op == "query":
        return Cell(Call("REPORT", target, QUERY, {**XML, "Depth": "1"}))
    if op == "multiget":
        return Cell(Call("REPORT", target, multiget([item, target + "absent.ics"]),
                         {**XML, "Depth": "1"}))
    if op == "sync":
        return Cell(Call("REPORT", target, SYNC, XML))
    if op == "freebusy":
        return Cell(Call("REPORT", target, FREEBUSY, {**XML, "Depth": "1"}))
    if op == "get":
        return Cell(Call("GET", target))
    if op == "get-item":
        return Cell(Call("GET", item))
    if op == "propfind-item":
        return Cell(Call("PROPFIND", item, PROPFIND, {**XML, "Depth": "0"}))
    if op == "put-new":
        path = target + f"new-{tag}.ics"
        return Cell(Call("PUT", path, ics(f"new-{tag}", "new"), {**ICS, "If-None-Match": "*"}),
                    cleanup=[Call("DELETE", path)])
    if op == "put-existing":
        text = items[0][1].text if items else ics("existing", "existing")
        return Cell(Call("PUT", item, text, ICS))
    if op == "put-collection":
        return Cell(Call("PUT", target, ics(f"whole-{tag}", "whole"), ICS))
    if op == "delete-item":
        if allowed:
            path = target + f"del-{tag}.ics"
            return Cell(Call("DELETE", path), setup=[Call("PUT", path, ics(f"del-{tag}", "d"), ICS)])
        return Cell(Call("DELETE", item))
    if op == "delete":
        return Cell(Call("DELETE", target))
    if op == "move-out":
        dest = (own_rw(actor) or f"/{actor}/") + f"moved-{tag}.ics"
        if allowed:
            source = target + f"mv-{tag}.ics"
            return Cell(Call("MOVE", source, headers={"Destination": world.server.url + dest}),
                        setup=[Call("PUT", source, ics(f"mv-{tag}", "mv"), ICS)],
                        cleanup=[Call("DELETE", dest), Call("DELETE", source)])
        return Cell(Call("MOVE", item, headers={"Destination": world.server.url + dest}))
    if op == "move-in":
        mine = own_rw(actor)
        source = (mine or f"/{actor}/") + f"src-{tag}.ics"
        dest = target + f"in-{tag}.ics"
        # The source exists for every cell of an actor with a writable calendar.
        setup = [Call("PUT", source, ics(f"src-{tag}", "src"), ICS)] if mine else []
        return Cell(Call("MOVE", source, headers={"Destination": world.server.url + dest}),
                    setup=setup, cleanup=[Call("DELETE", dest), Call("DELETE", source)])
    if op == "mkcalendar":
        return Cell(Call("MKCALENDAR", target, MKCALENDAR, XML))
    if op == "mkcalendar-new":
        return Cell(Call("MKCALENDAR", target + f"made-{tag}/", MKCALENDAR, XML))
    if op == "mkcol-new":
        return Cell(Call("MKCOL", target + f"col-{tag}/"))
    if op == "proppatch":
        return Cell(Call("PROPPATCH", target, PROPPATCH, XML))
    raise AssertionError(op)


def expected(actor: str, target: str, op: str) -> object:
    outcome = EXPECT[op][LEVELS.index(level_of(actor, target))]
    if op in ("move-out", "move-in") and outcome == 201:
        # A booking never leaves its bookings calendar (403 with a reason).
        own = own_rw(actor)
        if own != target and any("/bookings-" in path for path in (own or "", target)):
            return 403
    if op == "get" and target == "/" and (actor == ANONYMOUS or outcome != DENY):
        return 302  # Radicale redirects "/" to its web page, before any rights check
    return outcome


# -- the matrix -----------------------------------------------------------------


@pytest.mark.parametrize("actor", ACTORS)
def test_access_matrix(world: World, actor: str) -> None:
    forbidden = forbidden_tokens(world, actor)
    writer = own_rw(actor) if actor in PEOPLE and not PEOPLE[actor].disabled else None
    before = world.snapshot()
    failures: list[str] = []
    denied_shape: tuple[int, bytes, list[tuple[str, str]]] | None = None
    cells = 0
    for target in targets():
        for op in EXPECT:
            outcome = expected(actor, target, op)
            allowed = outcome != DENY and level_of(actor, target) == RW
            cell = make_cell(world, actor, target, op, allowed)
            # The actor's own helper requests (making an item to move or delete).
            for call in cell.setup if (allowed or (op == "move-in" and writer)) else []:
                r = world.send(actor, call.method, call.path, call.body, call.headers)
                assert r.status_code in (201, 204), (actor, call, r.status_code)
            r = world.send(actor, cell.call.method, cell.call.path, cell.call.body, cell.call.headers)
            cells += 1
            where = f"{actor} {op} {cell.call.method} {cell.call.path}"
            if outcome == DENY:
                status = 401 if level_of(actor, "/") == NONE else 403
                headers = sorted((k, v) for k, v in r.headers.items() if k.lower() != "date")
                shape = (r.status_code, r.content, headers)
                if r.status_code != status or r.content != FORBIDDEN_BODY:
                    failures.append(f"{where}: expected {status} forbidden, got {r.status_code} "
                                    f"{r.text[:120]!r}")
                elif denied_shape is None:
                    denied_shape = shape
                elif shape != denied_shape:
                    failures.append(f"{where}: a refusal that differs from the others: {shape}")
            elif r.status_code != outcome:
                failures.append(f"{where}: expected {outcome}, got {r.status_code} {r.text[:160]!r}")
            found = leaks(r, forbidden)
            if found:
                failures.append(f"{where}: answer ({r.status_code}) shows {', '.join(found)}")
            for call in cell.cleanup if (allowed or op == "move-in") and actor in PEOPLE else []:
                world.send(actor, call.method, call.path, call.body, call.headers)
    assert cells == len(targets()) * len(EXPECT)
    assert not failures, f"{len(failures)} of {cells} cells wrong:\n" + "\n".join(failures[:40])
    assert world.snapshot() == before, "the database changed"


# -- the rest of the contract ----------------------------------------------------


def propfind(world: World, actor: str, path: str, depth: str = "0") -> ET.Element:
    r = world.send(actor, "PROPFIND", path, PROPFIND, {**XML, "Depth": depth})
    assert r.status_code == 207, (path, r.status_code, r.text)
    return ET.fromstring(r.content)


def responses(root: ET.Element) -> dict[str, ET.Element]:
    return {r.findtext("{DAV:}href") or "": r for r in root.iter("{DAV:}response")}


def privileges(response: ET.Element) -> set[str]:
    return {p.tag.split("}")[1] for priv in response.iter("{DAV:}privilege") for p in priv}


def test_listing_shows_only_own(world: World) -> None:
    for actor in ("rita", "mona", "sven"):
        listed = set(responses(propfind(world, actor, "/", "1")))
        assert listed == {"/", f"/{actor}/"}, listed
        in_home = set(responses(propfind(world, actor, f"/{actor}/", "1")))
        assert in_home == {f"/{actor}/"} | {f"/{actor}/{n}/" for n in contract_collections(actor)}


def test_read_only_collections_advertise_read_only_privileges(world: World) -> None:
    for actor in ("rita", "sven", "anne", "mona"):
        for name, writable in contract_collections(actor).items():
            path = f"/{actor}/{name}/"
            got = privileges(responses(propfind(world, actor, path))[path])
            if writable:
                assert {"read", "write-content"} <= got, (path, got)
                # PROPPATCH is refused (it could change the resource type or
                # the component set), and the privilege set says so.
                assert "write-properties" not in got, (path, got)
            else:
                assert got == {"read", "read-free-busy"}, (path, got)
        # The events inside read-only views are read-only too.
        for name, writable in contract_collections(actor).items():
            if writable:
                continue
            path = f"/{actor}/{name}/"
            for href, response in responses(propfind(world, actor, path, "1")).items():
                if href != path:
                    assert privileges(response) == {"read"}, (href, privileges(response))


def test_admins_share_one_opening_calendar(world: World) -> None:
    def token(actor: str) -> str:
        path = f"/{actor}/opening-east/"
        return responses(propfind(world, actor, path))[path].findtext(".//{DAV:}sync-token") or ""

    assert world.calendar_of("/anne/opening-east/") == world.calendar_of("/mona/opening-east/")
    old = token("mona")
    assert old == token("anne")
    text = ics("shared-window-1", "Åpent")
    r = world.send("anne", "PUT", "/anne/opening-east/shared-window-1.ics", text, ICS)
    assert r.status_code == 201
    try:
        got = world.send("mona", "GET", "/mona/opening-east/shared-window-1.ics")
        assert got.status_code == 200 and "UID:shared-window-1" in got.text
        assert token("anne") == token("mona") != old
        body = SYNC.replace("<D:sync-token/>", f"<D:sync-token>{old}</D:sync-token>")
        r = world.send("mona", "REPORT", "/mona/opening-east/", body, XML)
        assert r.status_code == 207
        assert set(responses(ET.fromstring(r.content))) == {"/mona/opening-east/shared-window-1.ics"}
        # ... and the admin of another department sees none of it.
        assert world.send("bernt", "GET", "/anne/opening-east/shared-window-1.ics").status_code == 403
    finally:
        assert world.send("mona", "DELETE", "/mona/opening-east/shared-window-1.ics").status_code == 200
    assert world.send("anne", "GET", "/anne/opening-east/shared-window-1.ics").status_code == 404


def test_multiget_of_anothers_hrefs_reveals_nothing(world: World) -> None:
    theirs = next(s for s in world.seeded if s.owner == "rolf" and "bookings" in s.path)
    mine = next(s for s in world.seeded if s.owner == "rita" and "bookings" in s.path)
    other_mount = "/rolf/bookings-east/" + mine.path.rsplit("/", 1)[1]
    absent = "/rolf/bookings-east/absent.ics"
    r = world.send("rita", "REPORT", "/rita/bookings-east/",
                   multiget([theirs.path, other_mount, absent, mine.path]), {**XML, "Depth": "1"})
    assert r.status_code == 207
    by_href = responses(ET.fromstring(r.content))

    def shape(href: str) -> str:
        return ET.tostring(by_href[href]).decode().replace(href, "HREF")

    # Another person's existing event answers exactly like a missing one:
    # a bare 404 for the href the client sent, no properties, no data.
    assert shape(theirs.path) == shape(absent) == shape(other_mount)
    assert "404" in (by_href[absent].findtext("{DAV:}status") or "")
    assert by_href[absent].find("{DAV:}propstat") is None
    rest = r.text.replace(theirs.path, "")
    assert mine.uid in r.text
    for token in tokens_of("rolf", world) - {"rolf"}:
        assert token not in rest, token


def test_provisioning_before_first_login_with_display_names(world: World) -> None:
    tone = Person("Tone Tveit", (("east", "staff"), ("west", "admin"), ("west", "recipient")))
    add_person(world, "tone", tone, "pw-tone")
    # Before any login: provisioning alone makes the home and collections.
    ensure_provisioned(world.db, "tone")
    with world.db.transaction("r") as conn:
        home = store_collections.get_instance(conn, "tone")
        children = {i.path: i for i in store_collections.child_instances(conn, "tone")}
        west = directory.get_department(conn, "west")
    assert home is not None
    assert set(children) == {f"tone/{n}" for n in contract_collections(tone)}
    assert west is not None and west.opening_calendar_id is not None
    assert children["tone/opening-west"].calendar_id == west.opening_calendar_id
    assert world.calendar_of("/bernt/opening-west/") == west.opening_calendar_id
    names = {}
    for path, instance in children.items():
        props = json.loads(instance.props_json)
        assert props["tag"] == "VCALENDAR"
        assert props["C:supported-calendar-component-set"] == "VEVENT"
        names[path.split("/")[1]] = props["D:displayname"]
    west_name = DEPARTMENTS["west"][0]
    assert names == {
        "assignments": DISPLAYNAMES["nb"]["assignments"],  # staff of east (nb)
        "opening-west": DISPLAYNAMES["en"]["opening"].format(west_name),
        "overview-west": DISPLAYNAMES["en"]["overview"].format(west_name),
        "bookings-west": DISPLAYNAMES["en"]["bookings"].format(west_name),
        "availability-west": DISPLAYNAMES["en"]["availability"].format(west_name),
    }
    assert names["opening-west"] == "Opening hours – West Home Care"
    # Idempotent and cheap: a second call reads, never writes.
    modes: list[str] = []
    db = world.db
    original = db.transaction

    def recording(mode: str = "r"):  # type: ignore[no-untyped-def]
        modes.append(mode)
        return original(mode)

    db.transaction = recording  # type: ignore[method-assign]
    try:
        ensure_provisioned(db, "tone")
    finally:
        del db.transaction
    assert modes == ["r"]
    # What the client sees at its first login: the same, in nb for east.
    in_home = responses(propfind(world, "rita", "/rita/", "1"))
    shown = {h: r.findtext(".//{DAV:}displayname") for h, r in in_home.items()}
    assert shown["/rita/bookings-east/"] == "Bestillinger – Øst hjemmetjeneste"
    assert shown["/rita/availability-east/"] == "Ledig tid – Øst hjemmetjeneste"
    in_home = responses(propfind(world, "tone", "/tone/", "1"))
    assert in_home["/tone/opening-west/"].findtext(".//{DAV:}displayname") == (
        "Opening hours – West Home Care")


def test_racing_provisioning_mounts_one_opening_calendar(world: World) -> None:
    """Two admins of a new department provisioned at once, through two
    Database objects (as two server processes would): one calendar."""
    with world.db.transaction("w") as conn:
        directory.add_department(conn, "north", "North", language="en")
    admins = {f"adm{i}": Person(f"Admin Number{i}", (("north", "admin"),)) for i in range(4)}
    for username, person in admins.items():
        add_person(world, username, person, "pw")
    databases = [Database(world.url) for _ in admins]
    barrier = threading.Barrier(len(admins))
    errors: list[BaseException] = []

    def run(db: Database, username: str) -> None:
        try:
            barrier.wait()
            ensure_provisioned(db, username)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(db, u)) for db, u in zip(databases, admins, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for db in databases:
        db.dispose()
    assert not errors, errors
    with world.db.transaction("r") as conn:
        north = directory.get_department(conn, "north")
        mounted = {u: store_collections.get_instance(conn, f"{u}/opening-north") for u in admins}
    assert north is not None and north.opening_calendar_id is not None
    assert {m.calendar_id for m in mounted.values() if m is not None} == {north.opening_calendar_id}
    assert all(m is not None for m in mounted.values())


def _wait_for(check: Callable[[], bool], seconds: float = 3.0) -> float:
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < seconds, "not within the time limit"
        time.sleep(0.05)
    return time.monotonic() - start


def test_role_changes_take_effect_within_a_second(world: World) -> None:
    person = Person("Ulla Ulven", (("east", "recipient"),))
    add_person(world, "ulla", person, "pw-ulla")
    ensure_provisioned(world.db, "ulla")
    assert world.send("ulla", "PROPFIND", "/ulla/bookings-east/", PROPFIND,
                      XML).status_code == 207
    assert world.send("ulla", "PROPFIND", "/ulla/assignments/", PROPFIND, XML).status_code == 403
    # A new role: its collection is there and reachable within a second.
    with world.db.transaction("w") as conn:
        user_id = directory.user_id_of(conn, "ulla")
        assert user_id is not None
        directory.add_role(conn, user_id, "east", "staff")
    ensure_provisioned(world.db, "ulla")
    _wait_for(lambda: world.send("ulla", "PROPFIND", "/ulla/assignments/", PROPFIND,
                                 XML).status_code == 207, 1.5)
    # A role taken away: gone from reach (and from the listing) within a second.
    with world.db.transaction("w") as conn:
        conn.execute(delete(user_roles).where(user_roles.c.user_id == user_id,
                                              user_roles.c.role == "recipient"))
    _wait_for(lambda: world.send("ulla", "GET", "/ulla/bookings-east/").status_code == 403, 1.5)
    listed = set(responses(propfind(world, "ulla", "/ulla/", "1")))
    assert listed == {"/ulla/", "/ulla/assignments/"}
    # Disabled: nothing at all, at once (the login itself is refused).
    with world.db.transaction("w") as conn:
        directory.set_disabled(conn, "ulla", True)
    assert world.send("ulla", "PROPFIND", "/ulla/", PROPFIND, XML).status_code == 401


def test_departments_table_remembers_opening_calendars(world: World) -> None:
    with world.db.transaction("r") as conn:
        rows = dict(conn.execute(select(departments.c.id, departments.c.opening_calendar_id)).all())
    assert rows["east"] == world.calendar_of("/anne/opening-east/")
    assert rows["west"] == world.calendar_of("/bernt/opening-west/")


def test_display_names_follow_the_department(world: World) -> None:
    with world.db.transaction("w") as conn:
        directory.add_department(conn, "south", "Sør", language="nb")
    add_person(world, "pia", Person("Pia Pedersen", (("south", "recipient"),)), "pw-pia")
    ensure_provisioned(world.db, "pia")

    def names() -> dict[str, str]:
        with world.db.transaction("r") as conn:
            return {i.path: json.loads(i.props_json)["D:displayname"]
                    for i in store_collections.child_instances(conn, "pia")}

    assert names() == {"pia/bookings-south": "Bestillinger – Sør",
                       "pia/availability-south": "Ledig tid – Sør"}
    with world.db.transaction("w") as conn:
        conn.execute(departments.update().where(departments.c.id == "south")
                     .values(name="South", language="en"))
    ensure_provisioned(world.db, "pia")
    assert names() == {"pia/bookings-south": "Bookings – South",
                       "pia/availability-south": "Availability – South"}


def test_rights_letters(world: World) -> None:
    """The rights plugin's answers, path by path (Radicale sanitizes paths first)."""
    import radicale_rights_servicehop
    from radicale import config as radicale_config

    configuration = radicale_config.load([(str(world.home / "radicale.conf"), False)])
    rights = radicale_rights_servicehop.Rights(configuration)
    rw, ro = radicale_rights_servicehop.READ_WRITE, radicale_rights_servicehop.READ_ONLY
    assert set(rw) == set("rwdlotm") and ro == "r"
    cases = {
        ("rita", "/"): "R",
        ("rita", "/rita/"): "R",
        ("rita", "/rita/bookings-east/"): rw,
        ("rita", "/rita/availability-east/"): ro,
        ("rita", "/rita/bookings-east/x.ics"): "",  # items: the collection's letters apply
        ("rita", "/rita/assignments/"): "",
        ("rita", "/rita/bookings-west/"): "",
        ("rita", "/rolf/"): "",
        ("rita", "/rolf/bookings-east/"): "",
        ("rita", "/Rita/bookings-east/"): "",
        ("mona", "/mona/opening-east/"): rw,
        ("mona", "/mona/assignments/"): ro,
        ("mona", "/mona/bookings-west/"): rw,
        ("dina", "/"): "",  # disabled
        ("dina", "/dina/bookings-east/"): "",
        ("nobody", "/"): "",  # not in the directory
        ("", "/"): "",  # anonymous
    }
    for (user, path), letters in cases.items():
        assert set(rights.authorization(user, set(), path)) == set(letters), (user, path)
    # A collection the role names but that does not exist is not granted:
    # no MKCALENDAR can make it with a client's properties.
    with world.db.transaction("w") as conn:
        user_id = directory.user_id_of(conn, "rolf")
        assert user_id is not None
        directory.add_role(conn, user_id, "west", "recipient")
    try:
        assert radicale_rights_servicehop.read_grants(world.db, "rolf") == radicale_rights_servicehop.Grants(
            {"bookings-east": rw, "availability-east": ro})
    finally:
        with world.db.transaction("w") as conn:
            conn.execute(delete(user_roles).where(user_roles.c.user_id == user_id,
                                                  user_roles.c.department_id == "west"))
