"""Several server processes on one database (README, "Deployment").

Two ``servicehop-caldav serve`` processes on one PostgreSQL database, made
with ``init --database-url`` (the command), with the requests split between
them:

- the same hour booked by many recipients at once, half through each
  process: exactly as many confirmed as staff, the others refused, nobody
  double-booked (rows, stored events, the staff's calendars);
- a booking through one process is seen by the other at once, no sleep:
  the recipient's event, the availability, overview and assignments
  calendars, with the same sync token and the same changed hrefs from both;
  both ways round;
- a cancellation through one frees the time for a booking through the other.

``serve --workers 2`` (the supervisor): two workers answer on one port
(the health endpoint names each one's pid), bookings work through it, a
worker killed with SIGKILL is replaced and service goes on, SIGTERM stops
every worker and exits 0; a killed supervisor leaves no worker behind;
each worker speaks HTTPS on a --tls instance; workers that fail at start
stop it with one line and exit status 1, as does a busy port.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import caldav
import icalendar
import pytest
import requests

from servicehop_caldav import passwords
from servicehop_caldav.crypto import Keyring
from servicehop_caldav.db.engine import Database
from servicehop_caldav.db.schema import SCHEMA_VERSION
from servicehop_caldav.health import PATH as HEALTH
from servicehop_caldav.keyfile import load_keys
from servicehop_caldav.store.keycheck import bind_keyring
from tests.conftest import CLI, free_port, make_database_url, wait_for_port
from tests.helpers.booking_world import (
    ICS,
    PASSWORD,
    BookingWorld,
    Department,
    days_ahead,
    dump,
    event_of,
    ics_event,
    local,
)
from tests.test_booking_concurrency import (
    STAFF,
    ServeProcess,
    Setup,
    booking,
    burst,
    check_consistency,
    check_refused,
    start_serve,
)

DAV = "{DAV:}"
XML = {"Content-Type": "application/xml; charset=utf-8"}
TIMEOUT = 60


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], input=stdin, capture_output=True, text=True, timeout=120)


# -- two `serve` processes on one PostgreSQL ----------------------------------------------


@dataclass
class Front:
    """What BookingWorld needs of a server: the URL it writes opening
    times through (process A) and the logins."""

    url: str
    passwords: dict[str, str] = field(default_factory=dict)

    def client(self, user: str) -> caldav.DAVClient:
        return caldav.DAVClient(url=self.url + "/", username=user, password=self.passwords[user])


@dataclass
class Pair:
    world: BookingWorld
    a: ServeProcess
    b: ServeProcess

    def check_logs(self) -> None:
        problems = {p.url: p.problems() for p in (self.a, self.b) if p.problems()}
        assert not problems, dump(problems)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("two-processes")
    url, drop = make_database_url("postgres", tmp)
    home = tmp / "instance"
    made = run_cli("init", "--home", str(home), "--database-url", url)
    assert made.returncode == 0, made.stderr
    with passwords.cheap_hashes():  # cheap hashes for the people added here
        keyring = Keyring.from_keys(load_keys(home / "key"))
        db = Database.shared(url)
        bind_keyring(db, keyring)
        world = BookingWorld(Front(""), url, home, db, keyring)  # type: ignore[arg-type]
        processes: list[ServeProcess] = []
        try:
            taken: set[int] = set()
            processes += [start_serve(world, taken), start_serve(world, taken)]
            world.server.url = processes[0].url
            yield Pair(world, *processes)
        finally:
            for p in processes:
                p.stop()
            world.close()
            drop()


def request(world: BookingWorld, user: str, base: str, method: str, path: str,
            body: str | None = None, **headers: str) -> requests.Response:
    return world.session(user).request(method, base + path, data=body.encode() if body else None,
                                       headers=headers, timeout=TIMEOUT)


def sync(world: BookingWorld, user: str, base: str, path: str, token: str = "") -> tuple[str, dict[str, int]]:
    """sync-collection on one process: the new token and {href: status}."""
    body = (f'<?xml version="1.0" encoding="utf-8"?><D:sync-collection xmlns:D="DAV:">'
            f"<D:sync-token>{token}</D:sync-token><D:sync-level>1</D:sync-level>"
            "<D:prop><D:getetag/></D:prop></D:sync-collection>")
    r = request(world, user, base, "REPORT", path, body, Depth="0", **XML)
    assert r.status_code == 207, (r.status_code, r.text[:300])
    root = ET.fromstring(r.content)
    changed: dict[str, int] = {}
    for response in root.findall(f"{DAV}response"):
        href = (response.findtext(f"{DAV}href") or "").rsplit("/", 1)[-1]
        status = response.findtext(f"{DAV}status") or response.findtext(f"{DAV}propstat/{DAV}status") or ""
        changed[href] = int(status.split()[1])
    return root.findtext(f"{DAV}sync-token") or "", changed


def events(world: BookingWorld, user: str, base: str, path: str) -> list[icalendar.Component]:
    r = request(world, user, base, "GET", path)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    return list(icalendar.Calendar.from_ical(r.text).walk("VEVENT"))


def put_booking(world: BookingWorld, user: str, base: str, dept: Department, day: date, hour: int,
                uid: str | None = None) -> tuple[str, str]:
    uid = uid or f"b-{uuid.uuid4().hex[:10]}"
    path = f"/{user}/bookings-{dept.id}/{uid}.ics"
    r = request(world, user, base, "PUT", path, ics_event(uid, local(day, hour), local(day, hour + 1)), **ICS)
    assert r.status_code in (201, 204), (r.status_code, r.text[:300])
    return uid, path


def stored_status(world: BookingWorld, user: str, base: str, path: str) -> str:
    r = request(world, user, base, "GET", path)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    return str(event_of(r.text).get("STATUS"))


def test_the_same_hour_booked_through_both_processes(pair: Pair) -> None:
    world = pair.world
    dept = world.department(staff=STAFF)
    day = days_ahead(2)
    dept.open(local(day, 8), local(day, 16))
    setup = Setup("postgres-two-processes", world, [pair.a.url, pair.b.url], [pair.a, pair.b])
    users = [dept.recipient() for _ in range(16)]
    attempts = [booking(u, dept, day, setup.front(n)) for n, u in enumerate(users)]
    assert Counter(a.front for a in attempts) == {pair.a.url: 8, pair.b.url: 8}

    burst(dept, attempts)

    assert [a.summary() for a in attempts if a.error or a.status != 201] == []
    rows = check_consistency(setup, dept, day, attempts)  # nobody double-booked
    assert len(rows) == STAFF and {r["staff"] for r in rows} == set(dept.staff), dump(rows)
    winners = {str(r["recipient"]) for r in rows}
    assert {a.user for a in attempts if a.event_status == "CONFIRMED"} == winners
    for a in attempts:
        if a.user not in winners:
            check_refused(a)
    pair.check_logs()


def test_each_process_sees_the_others_writes_at_once(pair: Pair) -> None:
    world = pair.world
    # One employee: a booking turns its hour Busy in the availability.
    dept = world.department(staff=1)
    staff = dept.staff[0]
    day = days_ahead(3)
    dept.open(local(day, 8), local(day, 16))
    viewer = dept.recipient()  # watches the availability
    views = [(viewer, f"/{viewer}/availability-{dept.id}/"),
             (dept.admin, f"/{dept.admin}/overview-{dept.id}/"), (staff, f"/{staff}/assignments/")]
    for writer, reader, hour in ((pair.a, pair.b, 9), (pair.b, pair.a, 12)):
        booker = dept.recipient()
        before = {path: sync(world, user, reader.url, path)[0] for user, path in views}

        uid, path = put_booking(world, booker, writer.url, dept, day, hour)

        # At once, on the other process: the event as decided ...
        assert stored_status(world, booker, reader.url, path) == "CONFIRMED"
        # ... every view changed, with the same new token and the same
        # changed hrefs from both processes ...
        for user, view in views:
            token, changed = sync(world, user, reader.url, view, before[view])
            assert token != before[view] and changed, (view, token, changed)
            assert (token, changed) == sync(world, user, writer.url, view, before[view]), view
        # ... the hour Busy, the booking in the overview and in the employee's calendar.
        busy = [e for e in events(world, viewer, reader.url, f"/{viewer}/availability-{dept.id}/")
                if str(e["SUMMARY"]) == "Busy"]
        assert sorted(e.decoded("DTSTART") for e in busy) == [local(day, h) for h in (9, 12) if h <= hour]
        overview = events(world, dept.admin, reader.url, f"/{dept.admin}/overview-{dept.id}/")
        assert local(day, hour) in [e.decoded("DTSTART") for e in overview]
        visits = events(world, staff, reader.url, f"/{staff}/assignments/")
        assert uid in [str(e["RELATED-TO"]) for e in visits]
    pair.check_logs()


def test_a_cancellation_through_one_frees_the_time_for_the_other(pair: Pair) -> None:
    world = pair.world
    dept = world.department(staff=1)
    day = days_ahead(2)
    dept.open(local(day, 8), local(day, 16))
    first, second = dept.recipient(), dept.recipient()
    _, first_path = put_booking(world, first, pair.a.url, dept, day, 11)
    assert stored_status(world, first, pair.a.url, first_path) == "CONFIRMED"
    second_uid, second_path = put_booking(world, second, pair.a.url, dept, day, 11)
    assert stored_status(world, second, pair.a.url, second_path) == "CANCELLED"  # full

    r = request(world, first, pair.b.url, "DELETE", first_path)
    assert r.status_code in (200, 204), r.status_code
    put_booking(world, second, pair.a.url, dept, day, 11, uid=second_uid)

    assert stored_status(world, second, pair.a.url, second_path) == "CONFIRMED"
    rows = world.bookings(dept)
    assert [(r["recipient"], r["status"]) for r in rows] == [(second, "confirmed")], dump(rows)
    visits = events(world, dept.staff[0], pair.b.url, f"/{dept.staff[0]}/assignments/")
    assert [str(e["RELATED-TO"]) for e in visits] == [second_uid]
    pair.check_logs()


# -- serve --workers N ---------------------------------------------------------------------


@dataclass
class Supervised:
    """A ``serve --workers N`` subprocess, its output drained and kept."""

    process: subprocess.Popen[str]
    port: int
    drained: ServeProcess

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def health(self) -> requests.Response:
        # A fresh connection each time (no session): any worker may take it.
        return requests.get(self.url + HEALTH, timeout=TIMEOUT)

    def pids_answering(self, want: int, seconds: float = 30) -> set[int]:
        """Health answers until ``want`` different pids have answered."""
        seen: set[int] = set()
        deadline = time.monotonic() + seconds
        while len(seen) < want and time.monotonic() < deadline:
            r = self.health()
            assert r.status_code == 200, (r.status_code, r.text)
            body = r.json()
            assert body["status"] == "ok" and body["schema"] == SCHEMA_VERSION, body
            seen.add(int(body["pid"]))
        return seen

    def workers(self) -> set[int]:
        return children(self.process.pid)

    def output(self) -> str:
        return "\n".join(self.drained.output)


def start_workers(home: Path, count: int) -> Supervised:
    port = free_port()
    process = subprocess.Popen(
        [*CLI, "serve", "--home", str(home), "--port", str(port), "--workers", str(count),
         "--log-level", "info"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    drained = ServeProcess(process, port)
    drained.start_draining()
    supervised = Supervised(process, port, drained)

    def failure() -> str | None:
        return None if process.poll() is None else f"serve exited with {process.returncode}"

    try:
        wait_for_port(port, failure)
    except BaseException:
        drained.stop()
        raise
    return supervised


def children(pid: int) -> set[int]:
    """The live processes whose parent is ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[1] == pid and stat[0] != "Z":
                found.add(int(entry.name))
    return found


def _stat(pid: int) -> tuple[str, int] | None:
    """State and parent pid of a process; None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, ppid = text.rsplit(")", 1)[1].split()[:2]
    return state, int(ppid)


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def wait_until(condition: object, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def add_people(home: Path) -> None:
    """A department with an employee, a recipient and demo as its admin,
    through the command."""
    def cli(*args: str, stdin: str | None = None) -> None:
        result = run_cli(*args, "--home", str(home), stdin=stdin)
        assert result.returncode == 0, (args, result.stderr)

    cli("department", "add", "east", "--name", "East", "--language", "en")
    cli("user", "add", "demo", "--role", "admin", "--department", "east")
    cli("user", "add", "siri", "--role", "staff", "--department", "east", "--name", "Siri Solberg",
        "--email", "siri@example.org", "--password-stdin", stdin=PASSWORD + "\n")
    for user in ("rita", "ola"):
        cli("user", "add", user, "--role", "recipient", "--department", "east", "--name", user.title(),
            "--email", f"{user}@example.org", "--password-stdin", stdin=PASSWORD + "\n")


def book_through(base: str, user: str, day: date, hour: int) -> str:
    uid = f"w-{uuid.uuid4().hex[:10]}"
    path = f"{base}/{user}/bookings-east/{uid}.ics"
    with requests.Session() as s:
        s.auth = (user, PASSWORD)
        r = s.put(path, data=ics_event(uid, local(day, hour), local(day, hour + 1)).encode(),
                  headers=ICS, timeout=TIMEOUT)
        assert r.status_code == 201, (r.status_code, r.text[:300])
        got = s.get(path, timeout=TIMEOUT)
    assert got.status_code == 200, got.status_code
    return str(event_of(got.text).get("STATUS"))


def test_serve_workers_on_postgres(tmp_path: Path) -> None:
    url, drop = make_database_url("postgres", tmp_path)
    home = tmp_path / "inst"
    try:
        made = run_cli("init", "--home", str(home), "--database-url", url)
        assert made.returncode == 0, made.stderr
        password = made.stdout.split("password: ")[1].split()[0]
        add_people(home)
        server = start_workers(home, 2)
        try:
            # Two processes answer on the one port: the supervisor's two children.
            pids = server.pids_answering(2)
            assert len(pids) == 2 and pids == server.workers(), (pids, server.workers(), server.output())

            day = days_ahead(2)
            with requests.Session() as admin:
                admin.auth = ("demo", password)
                opening = ics_event("open-1", local(day, 8), local(day, 16), summary="Open")
                r = admin.put(f"{server.url}/demo/opening-east/open-1.ics", data=opening.encode(),
                              headers=ICS, timeout=TIMEOUT)
                assert r.status_code == 201, (r.status_code, r.text[:300])
            assert book_through(server.url, "rita", day, 9) == "CONFIRMED"
            assert book_through(server.url, "ola", day, 9) == "CANCELLED"  # one employee

            # A worker killed outright is replaced; service goes on.
            victim = sorted(pids)[0]
            os.kill(victim, signal.SIGKILL)
            assert wait_until(lambda: victim not in server.workers() and len(server.workers()) == 2), \
                server.output()
            replacement = server.workers() - pids
            assert len(replacement) == 1, (server.workers(), pids)
            assert replacement <= server.pids_answering(2), server.output()
            assert book_through(server.url, "ola", day, 11) == "CONFIRMED"
            everyone = pids | replacement
        finally:
            server.process.send_signal(signal.SIGTERM)
            code = server.process.wait(60)
            server.drained.stop()
        # SIGTERM: every worker stopped, exit status 0.
        assert code == 0, server.output()
        assert not [pid for pid in everyone if alive(pid)]
        output = server.output()
        assert "with 2 worker processes" in output
        assert f"(pid {victim}) killed by SIGKILL; starting another" in output
        assert "Traceback" not in output, output
    finally:
        drop()


def test_workers_on_sqlite_stop_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    home = tmp_path / "inst"
    assert run_cli("init", "--home", str(home)).returncode == 0
    server = start_workers(home, 2)
    try:
        pids = server.pids_answering(2)
        assert pids == server.workers(), (pids, server.output())
        server.process.kill()  # no chance to stop them: they notice by themselves
        server.process.wait(30)
        assert wait_until(lambda: not any(alive(pid) for pid in pids)), [pid for pid in pids if alive(pid)]
    finally:
        server.drained.stop()
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_workers_serve_https(tmp_path: Path) -> None:
    """Each worker wraps the socket it was handed in its own TLS context."""
    home = tmp_path / "inst"
    assert run_cli("init", "--home", str(home), "--tls").returncode == 0
    server = start_workers(home, 2)
    try:
        url = f"https://127.0.0.1:{server.port}{HEALTH}"
        seen = set()
        deadline = time.monotonic() + 30
        while len(seen) < 2 and time.monotonic() < deadline:
            r = requests.get(url, verify=str(home / "tls-cert.pem"), timeout=TIMEOUT)
            assert r.status_code == 200 and r.json()["status"] == "ok", r.text
            seen.add(r.json()["pid"])
        assert seen == server.workers(), (seen, server.output())
        with pytest.raises(requests.exceptions.ConnectionError):
            server.health()  # plain HTTP
    finally:
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(60) == 0
        server.drained.stop()


def test_workers_that_fail_at_start_stop_it_with_one_line(tmp_path: Path) -> None:
    home = tmp_path / "inst"
    assert run_cli("init", "--home", str(home), "--tls").returncode == 0
    (home / "tls-cert.pem").unlink()  # read by each worker when it binds its TLS socket
    started = time.monotonic()
    result = run_cli("serve", "--home", str(home), "--port", str(free_port()), "--workers", "2",
                     "--log-level", "warning")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("servicehop-caldav: error: worker ") and "failed to start 3 times in a row" in last
    assert "tls-cert.pem" in result.stderr and "Traceback" not in result.stderr
    assert time.monotonic() - started < 60


def test_workers_refuse_a_busy_port_in_one_line(tmp_path: Path) -> None:
    home = tmp_path / "inst"
    assert run_cli("init", "--home", str(home)).returncode == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--home", str(home), "--port", str(port), "--workers", "2")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"servicehop-caldav: error: cannot listen on 127.0.0.1:{port}: Address already in use")
    assert run_cli("serve", "--home", str(home), "--workers", "0").returncode == 2

