"""`export` and `import`: a busy instance out, into a new one, same answers.

The source is a real instance with a running server (the BookingWorld):
two departments (one on the waiting list, one in Norwegian with a weekly
recurring opening window), staff, recipients, admins, a disabled user,
opening windows written by the admins over HTTP and bookings over HTTP:
confirmed ones, a waiting one, a refused one (kept, explained), a cancelled
one and one flagged by a shortened window. So bookings, assignments,
overviews, availability and the audit log all hold something.

`export` runs as a subprocess while that server serves; `import` makes a
new instance from it on the *other* backend (SQLite to PostgreSQL and
PostgreSQL to SQLite), printing new passwords. Both servers then get the
same fixed set of CalDAV requests for every user who can log in, and must
answer them the same (what differs by design is left out: sync tokens and
collection etags/ctags, which carry the calendar's new random salt).

The refusals: a tampered export (one object's text changed), an export
whose rows do not fit together (found inside the write transaction), a
target database that holds data, a home that holds an instance; each
leaves nothing behind.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, func, inspect, select

from servicehop_caldav.crypto import Keyring
from servicehop_caldav.db.engine import Database
from servicehop_caldav.db.schema import bookings as bookings_table
from servicehop_caldav.db.schema import calendars, users
from servicehop_caldav.directory import store as directory
from servicehop_caldav.dump import format as fmt
from servicehop_caldav.keyfile import load_keys
from tests.conftest import CLI, Server, make_database_url, start_instance_server
from tests.helpers.booking_world import (
    PASSWORD,
    BookingWorld,
    Department,
    booking_world,
    days_ahead,
    ics_event,
    local,
)

DAV = "{DAV:}"
CALDAV = "{urn:ietf:params:xml:ns:caldav}"
XML = {"Content-Type": "application/xml; charset=utf-8"}
OTHER = {"sqlite": "postgres", "postgres": "sqlite"}


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


# -- the source instance ----------------------------------------------------------------


@dataclass
class Source:
    world: BookingWorld
    backend: str
    east: Department
    north: Department
    export: Path
    logins: list[str]  # every user who can log in
    recipients: dict[str, str]  # role in the story -> username


def _populate(world: BookingWorld) -> tuple[Department, Department, dict[str, str]]:
    day, later = days_ahead(2), days_ahead(3)
    east = world.department("waiting_list = true", staff=2)
    east.open(local(day, 10), local(day, 14), rrule=None, uid="east-day")
    east.open(local(later, 10), local(later, 14), rrule=None, uid="east-later")
    north = world.department(staff=1, language="nb")
    north.open(local(day, 8), local(day, 16), rrule="FREQ=WEEKLY;COUNT=4", uid="north-weekly")

    who = {"alice": east.recipient(weekly_minutes=600), "bob": east.recipient(),
           "carol": east.recipient(), "dave": east.recipient(),
           "erik": north.recipient(name="Ærlig Øvrebø"), "frida": east.recipient()}
    assert world.book(who["alice"], east, local(day, 10), local(day, 11), uid="alice-1").confirmed
    assert world.book(who["bob"], east, local(day, 10), local(day, 11), uid="bob-1").confirmed
    waiting = world.book(who["carol"], east, local(day, 10), local(day, 11), uid="carol-1")
    assert waiting.status == "TENTATIVE"
    refused = world.book(who["dave"], east, local(day, 20), local(day, 21), uid="dave-late")
    assert refused.status == "CANCELLED"
    cancelled = world.book(who["dave"], east, local(day, 12), local(day, 13), uid="dave-1")
    assert cancelled.confirmed
    assert world.session(who["dave"]).delete(world.server.url + cancelled.path).status_code in (200, 204)
    assert world.book(who["alice"], east, local(later, 12), local(later, 13), uid="alice-2").confirmed
    # The window shrinks under alice's second visit: flagged, not dropped.
    body = ics_event("east-later", local(later, 10), local(later, 12), summary="Open")
    r = world.put(east.admin, f"/{east.admin}/opening-{east.id}/east-later.ics", body)
    assert r.status_code in (201, 204), r.text
    assert world.book(who["erik"], north, local(day, 9), local(day, 10), uid="erik-1",
                      description="Nøkkel under matta").confirmed
    statuses = sorted(r["status"] for r in world.bookings(east))
    assert statuses == ["confirmed", "confirmed", "flagged", "waiting"], statuses
    with world.db.transaction("w") as conn:
        directory.set_password(conn, "demo", PASSWORD)
        directory.set_disabled(conn, who["frida"], True)
    world.server.passwords["demo"] = PASSWORD
    return east, north, who


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def source(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    backend = str(request.param)
    tmp = tmp_path_factory.mktemp(f"export-{backend}")
    worlds = booking_world(backend, tmp)
    world = next(worlds)
    try:
        east, north, who = _populate(world)
        out = tmp / "export"
        done = cli("export", "--home", str(world.home), "--out", str(out))  # the server keeps serving
        assert done.returncode == 0, done.stderr
        assert "to " + str(out) in done.stdout
        with world.db.transaction("r") as conn:
            logins = [p.username for p in directory.list_people(conn, world.keyring) if not p.disabled]
        yield Source(world, backend, east, north, out, logins, who)
    finally:
        worlds.close()


# -- the fixed set of queries ------------------------------------------------------------


def _request(session: requests.Session, method: str, url: str, body: str = "",
             depth: str | None = None) -> requests.Response:
    headers = dict(XML)
    if depth is not None:
        headers["Depth"] = depth
    return session.request(method, url, data=body.encode(), headers=headers, timeout=60)


PROPFIND = ('<?xml version="1.0" encoding="utf-8"?>'
            '<D:propfind xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop>'
            "<D:displayname/><D:resourcetype/><C:supported-calendar-component-set/>"
            "<D:current-user-privilege-set/><D:getlastmodified/></D:prop></D:propfind>")
SYNC = ('<?xml version="1.0" encoding="utf-8"?><D:sync-collection xmlns:D="DAV:">'
        "<D:sync-token/><D:sync-level>1</D:sync-level><D:prop><D:getetag/></D:prop>"
        "</D:sync-collection>")


def _query(start: datetime, end: datetime) -> str:
    fmt = "%Y%m%dT%H%M%SZ"
    return ('<?xml version="1.0" encoding="utf-8"?>'
            '<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
            "<D:prop><D:getetag/><C:calendar-data/></D:prop>"
            '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
            f'<C:time-range start="{start.strftime(fmt)}" end="{end.strftime(fmt)}"/>'
            "</C:comp-filter></C:comp-filter></C:filter></C:calendar-query>")


def _multistatus(r: requests.Response) -> dict[str, ET.Element]:
    assert r.status_code == 207, (r.status_code, r.text[:300])
    return {(resp.findtext(f"{DAV}href") or ""): resp
            for resp in ET.fromstring(r.content).findall(f"{DAV}response")}


def _props(response: ET.Element) -> dict[str, str]:
    """Each found property as canonical XML text (the status with it)."""
    found = {}
    for propstat in response.findall(f"{DAV}propstat"):
        status = propstat.findtext(f"{DAV}status") or ""
        for prop in propstat.find(f"{DAV}prop") or []:
            found[prop.tag] = status + ET.canonicalize(ET.tostring(prop, encoding="unicode"))
    return found


def answers(server: Server, user: str, window: tuple[datetime, datetime]) -> dict[str, Any]:
    """What ``user`` sees, request by request, Last-Modified included; sync
    tokens and collection etags/ctags are not asked for (they carry each
    calendar's new random salt)."""
    session = requests.Session()
    session.auth = (user, server.passwords[user])
    base = server.url
    seen: dict[str, Any] = {}
    home = _multistatus(_request(session, "PROPFIND", f"{base}/{user}/", PROPFIND, "1"))
    seen["home"] = {href: _props(resp) for href, resp in home.items()}
    for href, resp in sorted(home.items()):
        if resp.find(f"{DAV}propstat/{DAV}prop/{DAV}resourcetype/{CALDAV}calendar") is None:
            continue
        query = _multistatus(_request(session, "REPORT", base + href, _query(*window), "1"))
        seen[f"query {href}"] = {
            h: (r.findtext(f"{DAV}propstat/{DAV}prop/{DAV}getetag"),
                r.findtext(f"{DAV}propstat/{DAV}prop/{CALDAV}calendar-data"))
            for h, r in query.items()
        }
        listing = _multistatus(_request(session, "REPORT", base + href, SYNC, "0"))
        seen[f"sync {href}"] = {h: r.findtext(f"{DAV}propstat/{DAV}prop/{DAV}getetag")
                                for h, r in listing.items()}
        for item in sorted(listing):
            got = session.get(base + item, timeout=60)
            seen[f"GET {item}"] = (got.status_code, got.headers.get("ETag"),
                                   got.headers.get("Last-Modified"), got.text)
        whole = session.get(base + href, timeout=60)
        seen[f"GET {href}"] = (whole.status_code, whole.text)
    session.close()
    return seen


def _outputs(home: Path, source: Source) -> dict[str, str]:
    """What the directory and audit commands print about the instance."""
    printed = {}
    for dept in (source.east, source.north):
        done = cli("audit", "--home", str(home), "--department", dept.id)
        assert done.returncode == 0, done.stderr
        printed[f"audit {dept.id}"] = done.stdout
    done = cli("user", "list", "--home", str(home))
    assert done.returncode == 0, done.stderr
    printed["user list"] = done.stdout
    # A few (every user's fields are compared in-process, see _people).
    for user in (source.recipients["erik"], source.recipients["frida"], source.east.staff[0]):
        done = cli("user", "show", user, "--home", str(home))
        assert done.returncode == 0, done.stderr
        printed[f"user show {user}"] = done.stdout
    return printed


def _people(url: str, keyring: Keyring) -> list[tuple[directory.Person, float]]:
    """Every user with ids, personal fields, roles and creation time."""
    db = Database(url)
    try:
        with db.transaction("r") as conn:
            created = dict(conn.execute(select(users.c.id, users.c.created)).tuples().all())
            return [(p, created[p.id]) for p in directory.list_people(conn, keyring)]
    finally:
        db.dispose()


def _user_ids(url: str) -> list[int]:
    db = Database(url)
    try:
        with db.transaction("r") as conn:
            return sorted(conn.execute(select(users.c.id)).scalars())
    finally:
        db.dispose()


def _passwords(stdout: str) -> dict[str, str]:
    block = stdout.split("new passwords", 1)[1].split("\n", 1)[1].split("calendar apps", 1)[0]
    found = dict(line.split(" ") for line in block.strip().splitlines())
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{16}", p) for p in found.values()), found
    return found


def _import(export: Path, home: Path, url: str | None) -> subprocess.CompletedProcess[str]:
    args = ["import", "--home", str(home), "--from", str(export)]
    return cli(*args, *(["--database-url", url] if url else []))


# -- the round trip --------------------------------------------------------------------------


def test_round_trip_answers_the_same(source: Source, tmp_path: Path) -> None:
    target = OTHER[source.backend]
    url, drop = make_database_url(target, tmp_path)
    home = tmp_path / "restored"
    # SQLite: the default file in the new instance; PostgreSQL: the scratch schema.
    done = _import(source.export, home, url if target == "postgres" else None)
    assert done.returncode == 0, done.stderr
    passwords = _passwords(done.stdout)
    with source.world.db.transaction("r") as conn:
        everyone = sorted(p.username for p in directory.list_people(conn, source.world.keyring))
    assert sorted(passwords) == everyone
    assert "calendar apps sync again" in done.stdout
    restored = start_instance_server(home)
    restored.passwords = passwords
    try:
        now = datetime.now(UTC).replace(microsecond=0)
        window = (now - timedelta(days=1), now + timedelta(days=30))
        compared: list[str] = []
        for user in source.logins:
            before = answers(source.world.server, user, window)
            after = answers(restored, user, window)
            assert before.keys() == after.keys(), user
            for key in before:
                assert before[key] == after[key], (user, key)
            compared += [k for k, v in before.items() if k.startswith("GET ") and v[0] == 200]
        # Something was compared: objects of every kind of calendar.
        for kind in ("bookings-", "availability-", "assignments/", "opening-", "overview-"):
            assert sum(kind in k and k.endswith(".ics") for k in compared) >= 2, (kind, compared)
        assert any(k.endswith("/alice-1.ics") for k in compared)
        assert _people(source.world.database_url, source.world.keyring) == _people(
            restored.database_url, Keyring.from_keys(load_keys(home / "key")))
        printed = _outputs(home, source)
        assert printed == _outputs(source.world.home, source)
        assert "flag" in printed[f"audit {source.east.id}"]
        assert "Ærlig Øvrebø" in printed[f"user show {source.recipients['erik']}"]

        _desk_works_on_both(source, restored)
        _waiting_list_works_on_restored(source, restored)
        # Users came with their ids; a new one gets the next (PostgreSQL's
        # sequence was moved past them) and can log in.
        before = _user_ids(restored.database_url)
        added = subprocess.run(
            [*CLI, "user", "add", "newcomer", "--home", str(home), "--role", "recipient", "--department",
             source.east.id, "--name", "New Comer", "--email", "new@example.org", "--password-stdin"],
            input="pw-newcomer\n", capture_output=True, text=True, timeout=120)
        assert added.returncode == 0, added.stderr
        assert _user_ids(restored.database_url) == [*before, before[-1] + 1]
        r = requests.request("PROPFIND", f"{restored.url}/newcomer/", auth=("newcomer", "pw-newcomer"),
                             headers={"Depth": "1"}, timeout=60)
        assert r.status_code == 207, r.status_code
    finally:
        restored.stop()
    verified = cli("verify", "--home", str(home))
    assert verified.returncode == 0, verified.stderr
    drop()


def _desk_works_on_both(source: Source, restored: Server) -> None:
    """The same new booking on both servers: the same decision, the same employee."""
    world, east, alice = source.world, source.east, source.recipients["alice"]
    day = days_ahead(2)
    path = f"/{alice}/bookings-{east.id}/alice-3.ics"
    body = ics_event("alice-3", local(day, 11), local(day, 12), summary="Visit").encode()
    results = []
    for server in (world.server, restored):
        session = requests.Session()
        session.auth = (alice, server.passwords[alice])
        put = session.put(server.url + path, data=body, headers={"Content-Type": "text/calendar"})
        assert put.status_code == 201, put.text
        got = session.get(server.url + path)
        results.append((got.status_code, got.text))
        session.close()
    assert results[0] == results[1]
    assert "STATUS:CONFIRMED" in results[1][1]
    rows = [_booking(world.database_url, "alice-3.ics"), _booking(restored.database_url, "alice-3.ics")]
    assert rows[0] == rows[1] and rows[1][0] == "confirmed" and rows[1][1] is not None


def _booking(url: str, href: str) -> tuple[str, str | None]:
    """(status, staff username) of the booking whose event is ``href``."""
    db = Database(url)
    try:
        with db.transaction("r") as conn:
            status, staff_id = conn.execute(
                select(bookings_table.c.status, bookings_table.c.staff_id)
                .where(bookings_table.c.booking_href == href)).one()
            staff = directory.username_of(conn, staff_id) if staff_id is not None else None
    finally:
        db.dispose()
    return status, staff


def _waiting_list_works_on_restored(source: Source, restored: Server) -> None:
    """A cancellation on the restored server confirms the waiting request
    (its place in the queue, the row's creation time, came along)."""
    east, bob, carol = source.east, source.recipients["bob"], source.recipients["carol"]
    s_bob, s_carol = requests.Session(), requests.Session()
    s_bob.auth, s_carol.auth = (bob, restored.passwords[bob]), (carol, restored.passwords[carol])
    r = s_bob.delete(f"{restored.url}/{bob}/bookings-{east.id}/bob-1.ics")
    assert r.status_code in (200, 204)
    text_now = s_carol.get(f"{restored.url}/{carol}/bookings-{east.id}/carol-1.ics").text
    assert "STATUS:CONFIRMED" in text_now
    s_bob.close()
    s_carol.close()


# -- what the export holds -------------------------------------------------------------------------


def test_export_is_private_and_holds_no_password_hash(source: Source) -> None:
    with source.world.db.transaction("r") as conn:
        hashes = list(conn.execute(select(users.c.password_hash)).scalars())
    assert hashes and all(h.startswith("$argon2id$") for h in hashes)
    files = [p for p in source.export.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"export.json", "directory.json", "calendars.json", "bookings.json",
                                       "audit.json", "servicehop.toml"}
    for path in [source.export, *source.export.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
        if path.is_file():
            data = path.read_bytes()
            assert b"argon2id" not in data and b"scrypt" not in data, path
            assert not any(h.encode() in data for h in hashes), path
    people = json.loads((source.export / "directory.json").read_text())["users"]
    assert all(set(u) == {"id", "username", "disabled", "name", "email", "address", "phone", "created",
                          "roles"} for u in people)
    # Each calendar's file is an iCalendar stream named after its first mount.
    east = source.east
    stream = (source.export / "calendars" / east.admin / f"opening-{east.id}.ics").read_text()
    assert stream.count("BEGIN:VCALENDAR") == 2 and "UID:east-later" in stream


# -- refusals: nothing is left behind ----------------------------------------------------------------


def _copy(source: Source, tmp_path: Path) -> Path:
    copy = tmp_path / "export-copy"
    shutil.copytree(source.export, copy)
    return copy


def _empty_target(backend: str, tmp_path: Path) -> tuple[str, Any]:
    url, drop = make_database_url(backend, tmp_path)
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    return url, drop


def _nothing_in(url: str) -> bool:
    """No tables (PostgreSQL scratch schema) or no file (SQLite)."""
    if url.startswith("sqlite:///"):
        return not Path(url[len("sqlite:///"):]).exists()
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return inspect(conn).get_table_names() == []
    finally:
        engine.dispose()


def _one_line_error(done: subprocess.CompletedProcess[str], words: str) -> None:
    assert done.returncode == 1, done.stdout
    assert done.stderr.startswith("servicehop-caldav: error: ") and done.stderr.count("\n") == 1, done.stderr
    assert words in done.stderr, done.stderr
    assert "password" not in done.stdout


def test_import_refuses_a_changed_object(source: Source, tmp_path: Path) -> None:
    copy = _copy(source, tmp_path)
    east, alice = source.east, source.recipients["alice"]
    stream = copy / "calendars" / alice / f"bookings-{east.id}.ics"
    original = stream.read_bytes()
    stream.write_bytes(original.replace(b"UID:alice-2", b"UID:alice-9", 1))
    assert stream.read_bytes() != original
    url, drop = _empty_target(OTHER[source.backend], tmp_path)
    home = tmp_path / "new"
    done = _import(copy, home, url)
    _one_line_error(done, "does not match its etag")
    assert not home.exists() and _nothing_in(url)
    drop()


def test_import_writes_nothing_when_the_rows_do_not_fit(source: Source, tmp_path: Path) -> None:
    """A fault found only inside the write transaction (a booking of a user
    the export does not hold): rolled back, and the new files removed."""
    copy = _copy(source, tmp_path)
    document = json.loads((copy / "bookings.json").read_text())
    document["bookings"][-1]["recipient_id"] = 999_999
    (copy / "bookings.json").write_text(json.dumps(document))
    url, drop = _empty_target(OTHER[source.backend], tmp_path)
    home = tmp_path / "new"
    done = _import(copy, home, url)
    _one_line_error(done, "does not fit together")
    assert not home.exists() and _nothing_in(url)
    drop()


def test_import_refuses_a_database_holding_data(source: Source, tmp_path: Path) -> None:
    url, drop = _empty_target(source.backend, tmp_path)
    first = tmp_path / "first"
    assert cli("init", "--home", str(first), "--database-url", url).returncode == 0

    def counts() -> tuple[int, int]:
        db = Database(url)
        try:
            with db.transaction("r") as conn:
                return (conn.execute(select(func.count()).select_from(users)).scalar_one(),
                        conn.execute(select(func.count()).select_from(calendars)).scalar_one())
        finally:
            db.dispose()

    before = counts()
    home = tmp_path / "second"
    _one_line_error(_import(source.export, home, url), "already holds data")
    assert counts() == before and not home.exists()
    # Nor into a home that holds an instance, nor into one with files in it.
    _one_line_error(_import(source.export, first, None), "is not empty")
    assert cli("verify", "--home", str(first)).returncode == 0
    drop()


def test_import_refuses_what_is_not_an_export(tmp_path: Path) -> None:
    (tmp_path / "junk").mkdir()
    _one_line_error(cli("import", "--home", str(tmp_path / "h"), "--from", str(tmp_path / "junk")),
                    "is not a servicehop-caldav export")
    assert not (tmp_path / "h").exists()


def test_export_refuses_a_directory_with_files(tmp_path: Path) -> None:
    home = tmp_path / "inst"
    assert cli("init", "--home", str(home)).returncode == 0
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    _one_line_error(cli("export", "--home", str(home), "--out", str(out)), "not empty")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]



# -- the stream format, without a server ---------------------------------------------------------------


def test_streams_split_back_into_the_exact_texts() -> None:
    # Folded lines and line-breaking characters inside values are no boundary.
    one = ("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:a\r\nSUMMARY:line\u2028sep \x0c\x1c\r\n"
           " END:VCALENDAR\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    two = "begin:vcalendar\nBEGIN:VEVENT\nUID:b\nEND:VEVENT\nend:vcalendar\n"
    card = "BEGIN:VCARD\r\nFN:x\r\nEND:VCARD\r\n"
    assert all(fmt.streamable(t) for t in (one, two, card))
    assert fmt.split_stream(one + two + card) == [one, two, card]
    assert fmt.split_stream("") == []
    assert not fmt.streamable(one.rstrip("\n"))  # the next object would join its last line
    assert not fmt.streamable("\r\n" + one)
    for broken, words in ((one + "stray\r\n", "text outside an object"),
                          (one[:-15], "ends inside a VCALENDAR")):
        with pytest.raises(ValueError, match=words):
            fmt.split_stream(broken)


def test_calendar_file_names_are_plain_and_unique() -> None:
    names = fmt.FileNames()
    assert names.name("c1", ["rita/bookings-ost"], "VCALENDAR") == "calendars/rita/bookings-ost.ics"
    assert names.name("c2", ["Rita/Bookings-Ost"], "VCALENDAR") == "calendars/_other/c2.ics"  # case clash
    assert names.name("c3", ["rita/../../etc"], "VCALENDAR") == "calendars/_other/c3.ics"
    assert names.name("c4", ["a b/ü"], "VCALENDAR") == "calendars/_other/c4.ics"
    assert names.name("c5", [], "", view="availability-ost") == "calendars/_views/availability-ost.ics"
    assert names.name("c6", ["book"], "VADDRESSBOOK") == "calendars/book.vcf"
    assert names.name("c7", ["rita"], "VCALENDAR") == "calendars/rita.ics"  # beside the directory rita/
    assert names.name("c8", ["rita.ics/x"], "VCALENDAR") == "calendars/_other/c8.ics"  # file rita.ics
