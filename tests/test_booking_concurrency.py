"""Booking races: many recipients want the same hour at once (DESIGN.md, "Booking rules").

Decision and assignment happen in the write's own transaction, so two
simultaneous requests can never both take the last free employee - also when
several server processes share one database. Two setups, over real HTTP:

- ``sqlite-one-server``: the in-process server of the BookingWorld, on SQLite;
- ``postgres-two-processes``: two ``servicehop-caldav serve`` subprocesses on
  one PostgreSQL database (the world's own server only writes the opening
  times), the requests split between them.

Round one: 30 recipients PUT a booking for the same hour at the same moment
(threads released by one barrier, one HTTP session each) against 3 staff on
duty. Exactly 3 are confirmed, by 3 different employees with one visit each;
the other 27 get a stored, readable refusal; the audit log holds 30 decisions
whose order (writers are serialised) shows the first three accepted.

Round two: 3 confirmed recipients cancel (DELETE) while 10 refused ones book
the same hour again, all at once. However the race goes, rows, visits and
stored events agree, nobody is double-booked, confirmed rows never exceed 3,
and replaying the audit log in commit order shows no request refused while an
employee was free (no decision read a stale state).

Every request must get an HTTP answer. A request whose connection fails
before any answer (the server closed or reset it) is reported at the end of
the test, after the booking checks have run on the requests the server did
see; such a request must have left nothing behind (all or nothing).
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import icalendar
import pytest
import requests

from servicehop_caldav.store import audit
from tests.conftest import free_port, spawn_serve, wait_for_port
from tests.helpers.booking_world import (
    ICS,
    PASSWORD,
    BookingWorld,
    Department,
    booking_world,
    days_ahead,
    dump,
    event_of,
    ics_event,
    local,
)

RECIPIENTS = 30
STAFF = 3
CANCELLERS = STAFF
REBOOKERS = 10
HOUR = 10  # the hour everybody wants (local time), inside the 8-16 opening
NO_STAFF_FREE = "No member of staff is free at that time."
NOT_BOOKED = "NOT BOOKED: "
TIMEOUT = 60  # seconds, for one HTTP request and for a burst's threads


# -- servers -------------------------------------------------------------------


@dataclass
class ServeProcess:
    """A ``servicehop-caldav serve`` subprocess; its output is drained by
    threads (a full pipe would block the server) and kept for the checks."""

    process: subprocess.Popen[str]
    port: int
    output: list[str] = field(default_factory=list)
    _drains: list[threading.Thread] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_draining(self) -> None:
        for stream in (self.process.stdout, self.process.stderr):
            assert stream is not None
            t = threading.Thread(target=self._drain, args=(stream,), daemon=True)
            t.start()
            self._drains.append(t)

    def _drain(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.output.append(line.rstrip("\n"))

    def problems(self) -> list[str]:
        """Logged errors and tracebacks (the server logs at warning level)."""
        return [line for line in self.output if "ERROR" in line or "Traceback" in line]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(15)
        for t in self._drains:
            t.join(5)


def start_serve(world: BookingWorld, taken: set[int]) -> ServeProcess:
    port = free_port()
    while port in taken:
        port = free_port()
    taken.add(port)
    server = ServeProcess(spawn_serve(world.home, port), port)
    server.start_draining()

    def failure() -> str | None:
        if server.process.poll() is None:
            return None
        time.sleep(0.2)  # let the drains catch the last words
        return f"serve exited with {server.process.returncode}: " + "\n".join(server.output[-20:])

    try:
        wait_for_port(port, failure)
    except BaseException:
        server.stop()
        raise
    return server


@dataclass
class Setup:
    name: str
    world: BookingWorld
    fronts: list[str]  # base URLs the recipients' requests are split over
    processes: list[ServeProcess]

    def front(self, n: int) -> str:
        return self.fronts[n % len(self.fronts)]

    def check_logs(self) -> None:
        problems = {p.url: p.problems() for p in self.processes if p.problems()}
        assert not problems, dump(problems)


@pytest.fixture(
    scope="module", params=["sqlite", "postgres"], ids=["sqlite-one-server", "postgres-two-processes"]
)
def setup(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    backend = str(request.param)
    worlds = booking_world(backend, tmp_path_factory.mktemp(f"race-{backend}"))
    world = next(worlds)
    processes: list[ServeProcess] = []
    try:
        if backend == "sqlite":
            yield Setup("sqlite-one-server", world, [world.server.url], [])
        else:
            taken: set[int] = set()
            for _ in range(2):
                processes.append(start_serve(world, taken))
            yield Setup("postgres-two-processes", world, [p.url for p in processes], processes)
    finally:
        for p in processes:
            p.stop()
        next(worlds, None)  # the world's own teardown (server, database, hash cost)


# -- requests at the same moment ---------------------------------------------------


@dataclass
class Attempt:
    """One recipient's request in a burst, and what the server holds afterwards."""

    user: str
    front: str
    method: str
    path: str
    uid: str
    body: str | None = None
    status: int | None = None
    seconds: float | None = None
    error: str | None = None
    stored_status: int | None = None
    text: str | None = None

    def session(self) -> requests.Session:
        s = requests.Session()
        s.auth = (self.user, PASSWORD)
        return s

    @property
    def event(self) -> icalendar.Event:
        assert self.text is not None, f"{self.user}: nothing stored at {self.path}"
        return event_of(self.text)

    @property
    def event_status(self) -> str | None:
        if self.text is None:
            return None
        value = self.event.get("STATUS")
        return str(value) if value is not None else None

    def summary(self) -> dict[str, object]:
        return {"user": self.user, "front": self.front, "method": self.method, "status": self.status,
                "error": self.error, "stored": self.stored_status, "event_status": self.event_status}


def booking(user: str, dept: Department, day: date, front: str, uid: str | None = None) -> Attempt:
    uid = uid or f"race-{uuid.uuid4().hex[:10]}"
    body = ics_event(uid, local(day, HOUR), local(day, HOUR + 1), summary="Visit")
    return Attempt(user, front, "PUT", f"/{user}/bookings-{dept.id}/{uid}.ics", uid, body)


def cancellation(done: Attempt) -> Attempt:
    return Attempt(done.user, done.front, "DELETE", done.path, done.uid)


def burst(dept: Department, attempts: list[Attempt]) -> float:
    """Send all ``attempts`` at the same moment, one thread and session each;
    then GET what is stored behind each. Returns the burst's wall time."""
    sessions = {a.user: a.session() for a in attempts}
    try:
        for a in attempts:
            # Log in first (the login cache then answers at once), so the
            # burst is not spread out by password checks.
            warm = sessions[a.user].get(f"{a.front}/{a.user}/bookings-{dept.id}/", timeout=TIMEOUT)
            assert warm.status_code == 200, (a.user, warm.status_code, warm.text[:300])
        barrier = threading.Barrier(len(attempts) + 1)

        def run(a: Attempt) -> None:
            s = sessions[a.user]
            barrier.wait(TIMEOUT)
            started = time.monotonic()
            try:
                if a.method == "PUT":
                    assert a.body is not None
                    r = s.put(a.front + a.path, data=a.body.encode(), headers=ICS, timeout=TIMEOUT)
                else:
                    r = s.delete(a.front + a.path, timeout=TIMEOUT)
                a.status = r.status_code
            except Exception as e:  # noqa: BLE001 - reported by the test
                a.error = repr(e)
            a.seconds = time.monotonic() - started

        threads = [threading.Thread(target=run, args=(a,), daemon=True) for a in attempts]
        for t in threads:
            t.start()
        barrier.wait(TIMEOUT)  # everyone is waiting: go
        started = time.monotonic()
        for t in threads:
            t.join(TIMEOUT)
        wall = time.monotonic() - started
        assert not any(t.is_alive() for t in threads), "a request hangs"
        for a in attempts:
            r = sessions[a.user].get(a.front + a.path, timeout=TIMEOUT)
            a.stored_status = r.status_code
            a.text = r.text if r.status_code == 200 else None
    finally:
        for s in sessions.values():
            s.close()
    return wall


def unanswered(attempts: list[Attempt], decided: set[str]) -> list[Attempt]:
    """The requests that got no HTTP answer at all (the connection failed).
    Each must be all or nothing: decided and stored, or never seen."""
    lost = [a for a in attempts if a.error is not None]
    for a in lost:
        seen = a.user in decided
        left = a.stored_status == 200 if a.method == "PUT" else a.stored_status == 404
        assert seen == left, f"half a request: {a.summary()}, in the audit log: {seen}"
    answered_users = {a.user for a in attempts if a.error is None}
    assert answered_users <= decided | {a.user for a in attempts if a.method == "DELETE"}
    return lost


def no_answer_report(lost: list[Attempt], total: int) -> str:
    fronts = Counter(a.front for a in lost)
    return (f"{len(lost)} of {total} requests got no HTTP answer (the server closed or reset the "
            f"connection before accepting it; see the module docstring): {dict(fronts)}; "
            f"{sorted({str(a.error) for a in lost})}")


# -- what the server holds -----------------------------------------------------------


def staff_name(username: str) -> str:
    """The name BookingWorld.department gives ``s<n>-<dept>``."""
    number, dept_id = username[1:].split("-", 1)
    return f"Staff {number} {dept_id}"


def visits(setup: Setup, dept: Department) -> dict[str, list[icalendar.Component]]:
    """Each employee's visits, read by the employee through the first front."""
    out: dict[str, list[icalendar.Component]] = {}
    for n, username in enumerate(dept.staff):
        with requests.Session() as s:
            s.auth = (username, PASSWORD)
            r = s.get(f"{setup.front(n)}/{username}/assignments/", timeout=TIMEOUT)
        assert r.status_code == 200, (username, r.status_code)
        out[username] = list(icalendar.Calendar.from_ical(r.text).walk("VEVENT"))
    return out


def utc(value: Any) -> datetime:
    dt = value.dt
    assert isinstance(dt, datetime) and dt.tzinfo is not None, dt
    return dt.astimezone(UTC)


def decisions_since(world: BookingWorld, dept: Department, count: int) -> list[audit.AuditLine]:
    return world.audit(dept)[count:]


def replay(entries: list[audit.AuditLine], free: int) -> int:
    """Walk the decisions in commit order (writers are serialised, and each
    entry's time is taken inside the write lock): a booking is accepted only
    while an employee is free, refused (no-staff-free) only while none is.
    Returns how many are free at the end."""
    for n, e in enumerate(entries):
        where = f"decision {n} ({e.action}/{e.outcome} by {e.recipient}) with {free} free"
        if e.action == "cancel":
            assert e.outcome == "cancelled", where
            free += 1
        elif e.action == "book" and e.outcome == "accepted":
            assert free > 0, f"{where}: the last free employee was taken twice"
            free -= 1
        elif e.action == "book" and e.outcome == "refused":
            assert e.reasons == ("no-staff-free",), where
            assert free == 0, f"{where}: refused while an employee was free (stale read)"
        else:
            raise AssertionError(f"unexpected {where}")
    return free


def check_consistency(
    setup: Setup, dept: Department, day: date, attempts: list[Attempt]
) -> list[dict[str, object]]:
    """Rows, visits and the stored events (as GET after the burst, for every
    path in ``attempts``) agree; nobody is double-booked. Returns the rows."""
    world = setup.world
    rows = world.bookings(dept)
    start, end = local(day, HOUR), local(day, HOUR + 1)
    assert all(r["status"] == "confirmed" for r in rows), dump(rows)
    assert len(rows) <= STAFF, dump(rows)
    assert all((r["start_ts"], r["end_ts"]) == (int(start.timestamp()), int(end.timestamp())) for r in rows)
    assert len({r["staff"] for r in rows}) == len(rows), f"an employee is booked twice: {dump(rows)}"
    assert len({r["recipient"] for r in rows}) == len(rows), dump(rows)

    # Rows <-> the recipients' stored events.
    by_path = {a.path: a for a in attempts}
    confirmed = {a.path for a in by_path.values() if a.event_status == "CONFIRMED"}
    row_paths = {f"/{r['recipient']}/bookings-{dept.id}/{r['booking_href']}" for r in rows}
    assert row_paths == confirmed, dump({"rows": sorted(row_paths), "events": sorted(confirmed)})
    for r in rows:
        a = by_path[f"/{r['recipient']}/bookings-{dept.id}/{r['booking_href']}"]
        description = str(a.event.get("DESCRIPTION", ""))
        assert f"Confirmed: {staff_name(str(r['staff']))} will come." in description, description

    # Rows <-> the employees' visits: one per row, for the booking's UID,
    # at its hour; none left over from a cancelled booking.
    held = visits(setup, dept)
    for username, events in held.items():
        mine = [r for r in rows if r["staff"] == username]
        assert len(events) == len(mine), (username, len(events), dump(mine))
        spans = sorted((utc(e["DTSTART"]), utc(e["DTEND"])) for e in events)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False)), (username, spans)
        for event, row in zip(events, mine, strict=True):
            a = by_path[f"/{row['recipient']}/bookings-{dept.id}/{row['booking_href']}"]
            assert str(event["RELATED-TO"]) == a.uid, (username, str(event["RELATED-TO"]), a.uid)
            assert (utc(event["DTSTART"]), utc(event["DTEND"])) == (start, end)
    return rows


def check_refused(a: Attempt) -> None:
    """A refusal the recipient can read in their own calendar."""
    assert a.stored_status == 200, a.summary()
    assert a.event_status == "CANCELLED", (a.summary(), a.text)
    assert NO_STAFF_FREE in str(a.event.get("DESCRIPTION", "")), a.text
    assert str(a.event.get("SUMMARY", "")).startswith(NOT_BOOKED), a.text


def new_department(setup: Setup, recipients: int) -> tuple[Department, date, list[str]]:
    dept = setup.world.department(staff=STAFF)
    day = days_ahead(2)
    dept.open(local(day, 8), local(day, 16))  # no attendees: all three on duty
    return dept, day, [dept.recipient() for _ in range(recipients)]


def first_round(
    setup: Setup, dept: Department, day: date, users: list[str]
) -> tuple[list[Attempt], float]:
    attempts = [booking(u, dept, day, setup.front(n)) for n, u in enumerate(users)]
    return attempts, burst(dept, attempts)


# -- the tests ---------------------------------------------------------------------


def test_thirty_recipients_three_staff_one_hour(setup: Setup) -> None:
    dept, day, users = new_department(setup, RECIPIENTS)
    attempts, wall = first_round(setup, dept, day, users)
    print(f"{setup.name}: {RECIPIENTS} bookings at once in {wall:.2f} s")
    entries = setup.world.audit(dept)
    decided = {str(e.recipient) for e in entries}
    lost = unanswered(attempts, decided)
    seen = [a for a in attempts if a.user in decided]
    if len(setup.fronts) > 1:
        assert set(Counter(a.front for a in attempts).values()) == {RECIPIENTS // len(setup.fronts)}

    # Every answer is 201, none an error status: refusals are stored.
    statuses = Counter(a.status for a in attempts if a.error is None)
    assert set(statuses) == {201}, statuses

    # Of the requests the server saw (all 30 when none is lost), three are
    # confirmed, by three employees; the others are readable refusals.
    assert len(seen) > STAFF, no_answer_report(lost, RECIPIENTS)
    rows = check_consistency(setup, dept, day, attempts)
    assert len(rows) == STAFF, dump(rows)
    assert {r["staff"] for r in rows} == set(dept.staff), dump(rows)
    winners = {str(r["recipient"]) for r in rows}
    assert {a.user for a in attempts if a.event_status == "CONFIRMED"} == winners
    for a in seen:
        if a.user not in winners:
            check_refused(a)
    held = visits(setup, dept)
    assert {u: len(v) for u, v in held.items()} == dict.fromkeys(dept.staff, 1)

    # The audit log: one decision per request, the first three accepted.
    assert [e.action for e in entries] == ["book"] * len(seen), dump([e.__dict__ for e in entries])
    assert Counter(e.recipient for e in entries) == Counter(a.user for a in seen)
    accepted = [e for e in entries if e.outcome == "accepted"]
    refused = [e for e in entries if e.outcome == "refused"]
    assert len(accepted) == STAFF and len(refused) == len(seen) - STAFF
    assert {e.recipient for e in accepted} == winners
    assert {(e.recipient, e.staff) for e in accepted} == {(r["recipient"], r["staff"]) for r in rows}
    assert all(e.reasons == ("no-staff-free",) and e.staff is None for e in refused)
    assert replay(entries, free=STAFF) == 0
    setup.check_logs()

    # ... and all 30 were answered.
    assert not lost, no_answer_report(lost, RECIPIENTS)
    assert len(entries) == RECIPIENTS


def test_cancellations_race_rebookings(setup: Setup) -> None:
    dept, day, users = new_department(setup, CANCELLERS + REBOOKERS)
    attempts, _ = first_round(setup, dept, day, users)
    assert not [a for a in attempts if a.error or a.status != 201], [a.summary() for a in attempts]
    winners = [a for a in attempts if a.event_status == "CONFIRMED"]
    losers = [a for a in attempts if a.event_status != "CONFIRMED"]
    assert len(winners) == STAFF and len(losers) == REBOOKERS, [a.summary() for a in attempts]
    for a in losers:
        check_refused(a)
    before = len(setup.world.audit(dept))

    # The winners cancel while the others try again: half of them save their
    # refused event again with the booking as it was first sent (same href
    # and UID), half make a new event.
    cancels = [cancellation(a) for a in winners]
    rebooks = [
        booking(a.user, dept, day, a.front, uid=a.uid if n % 2 == 0 else None)
        for n, a in enumerate(losers)
    ]
    everything = cancels + rebooks
    wall = burst(dept, everything)
    print(f"{setup.name}: {CANCELLERS} cancellations and {REBOOKERS} rebookings at once in {wall:.2f} s")
    entries = decisions_since(setup.world, dept, before)
    lost = unanswered(everything, {str(e.recipient) for e in entries})

    for a in cancels:
        if a.error is None:
            assert a.status in (200, 204), a.summary()
            assert a.stored_status == 404, a.summary()
    for n, a in enumerate(rebooks):
        if a.error is None:
            assert a.status == (204 if n % 2 == 0 else 201), a.summary()

    # Whatever the order, rows, visits and events agree, and no more than
    # three bookings hold the hour.
    rows = check_consistency(setup, dept, day, everything)
    rebooked = {a.user for a in rebooks if a.event_status == "CONFIRMED"}
    kept = {a.user for a in cancels if a.event_status == "CONFIRMED"}  # a DELETE that never arrived
    assert rebooked | kept == {str(r["recipient"]) for r in rows}
    for a in rebooks:
        if a.event_status != "CONFIRMED" and a.user in {str(e.recipient) for e in entries}:
            check_refused(a)

    # The cancellations and decisions, in an order that explains them.
    cancelled = [a for a in cancels if a.stored_status == 404]
    kinds = Counter((e.action, e.outcome) for e in entries)
    decided = len([a for a in rebooks if a.user in {str(e.recipient) for e in entries}])
    assert kinds == Counter({("cancel", "cancelled"): len(cancelled), ("book", "accepted"): len(rebooked),
                             ("book", "refused"): decided - len(rebooked)}), kinds
    assert {e.recipient for e in entries if e.action == "cancel"} == {a.user for a in cancelled}
    assert replay(entries, free=0) == len(cancelled) - len(rebooked)
    print(f"{setup.name}: {len(rebooked)} of {REBOOKERS} rebookings confirmed")
    setup.check_logs()

    assert not lost, no_answer_report(lost, len(everything))
