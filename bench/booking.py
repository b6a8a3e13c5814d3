"""The booking path (servicehop only): a department that already holds N bookings.

Seeding, in the instance's database before the server starts (the bench
process holds the instance key, as ``servicehop-caldav user add`` does):

* department ``bk`` (Europe/Oslo, en), its admin, S staff, recipients; people
  through ``servicehop_caldav.directory.store`` and ``ensure_provisioned``
  (password hashes at scrypt N=2^10 instead of 2^15: logins are not what is
  measured, and every session logs in once before the clock starts);
* one opening window, every day 07:00-21:00 local, all staff on duty (no
  ATTENDEE), written into the department's opening calendar with ``put_object``;
* N confirmed bookings (default 2,000) of one hour on the hour, over the
  14-day horizon, written directly: a ``servicehop_caldav.store.bookings``
  row each (``insert_booking``), plus the recipient's event and the staff
  member's visit as calendar objects (``put_object``), so the rows point at
  real events. Each (staff, hour) holds at most one booking, so nobody
  overlaps themselves; the bookings of one hour go to different recipients.
  One hour (the race hour) is left with exactly ``race_free`` staff free.

Workloads, over HTTP as the recipients:

* booking PUT: a new recipient PUTs one visit into ``bookings-bk/`` at a free or
  full hour; the answer must be a decision: the stored event (GET, untimed)
  has STATUS CONFIRMED or CANCELLED;
* the race: 20 recipients PUT the race hour at once (a barrier); exactly
  ``race_free`` are confirmed, each with another staff member (booking rows),
  the others cancelled, no error status;
* the availability view (``GET /<recipient>/availability-bk/`` and a one-day
  time-range query): timed when the view answers events, else "not built".
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar
import requests

from bench.data import event_text
from bench.servers import Running
from bench.workloads import (
    CALDAV,
    ICS_HEADERS,
    TIMEOUT,
    XML_HEADERS,
    Budget,
    CheckFailed,
    Outcome,
    calendar_query,
    expect,
    measure,
    members,
    parse_multistatus,
    timed,
)

DEPT = "bk"
OSLO = ZoneInfo("Europe/Oslo")
PASSWORD = "bench-Booking-1"
OPEN_HOURS = range(7, 21)  # visits may start 07:00 .. 20:00, one hour each
HORIZON_DAYS = 14

BOOKING_PUT = "booking PUT"
BOOKING_RACE = "20 recipients, same hour"
AVAILABILITY_GET = "availability GET 14 days"
AVAILABILITY_QUERY = "availability 1-day query"
BOOKING_OPERATIONS = (BOOKING_PUT, BOOKING_RACE, AVAILABILITY_GET, AVAILABILITY_QUERY)


@dataclass(frozen=True)
class Hour:
    """One bookable hour: (day offset from today, local start hour)."""

    day: int
    hour: int

    def start(self, today: date) -> datetime:
        return datetime.combine(today + timedelta(days=self.day), clock(self.hour), OSLO)


@dataclass
class BookingSeed:
    """Seeds department ``bk`` (a :data:`bench.servers.Prepare`); keeps what the workloads need."""

    bookings: int
    staff: int
    seeded_recipients: int
    put_recipients: int
    race_recipients: int = 20
    race_free: int = 3
    seed: int = 1
    # Filled in by seeding:
    today: date = field(default_factory=lambda: datetime.now(OSLO).date())
    race_hour: Hour = Hour(3, 10)
    put_hours: list[Hour] = field(default_factory=list)
    staff_names: list[str] = field(default_factory=list)
    seeded_names: list[str] = field(default_factory=list)
    put_names: list[str] = field(default_factory=list)
    race_names: list[str] = field(default_factory=list)
    seeded: int = 0
    seconds: float = 0.0

    def __call__(self, home: Path, _database_url: str) -> str:
        started = time.monotonic()
        self._seed(home)
        self.seconds = time.monotonic() - started
        return self.note()

    def note(self) -> str:
        return (
            f"department {DEPT}: {self.staff} staff on duty 07-21 daily, {self.seeded} confirmed bookings "
            f"seeded directly into the database over the 14-day horizon (insert_booking rows + the "
            f"recipients' events and the staff's visits via put_object), {self.race_free} staff left free "
            f"in the race hour; seeded in {self.seconds:.1f} s"
        )

    def _seed(self, home: Path) -> None:
        from radicale_storage_servicehop import object_of_text

        from servicehop_caldav import passwords
        from servicehop_caldav.directory import store as directory
        from servicehop_caldav.instance import Instance
        from servicehop_caldav.provisioning import ensure_provisioned
        from servicehop_caldav.store import bookings as store_bookings
        from servicehop_caldav.store import collections as store_collections
        from servicehop_caldav.store import objects as store_objects
        from servicehop_caldav.store.bookings import BookingRow

        rng = random.Random(f"booking-{self.seed}")
        now = datetime.now(OSLO)
        self.today = now.date()
        latest = now + timedelta(days=HORIZON_DAYS)
        hours = [Hour(d, h) for d in range(1, HORIZON_DAYS + 1) for h in OPEN_HOURS
                 if Hour(d, h).start(self.today) <= latest]
        self.staff_names = [f"bk-s{n:02d}" for n in range(1, self.staff + 1)]
        self.seeded_names = [f"bk-r{n:03d}" for n in range(1, self.seeded_recipients + 1)]
        self.put_names = [f"bk-p{n:02d}" for n in range(1, self.put_recipients + 1)]
        self.race_names = [f"bk-c{n:02d}" for n in range(1, self.race_recipients + 1)]
        admin = "bk-admin"

        # Which staff member serves which hour: the race hour exactly
        # staff - race_free; the rest drawn from every other (hour, staff).
        race_taken = max(0, self.staff - self.race_free)
        others = [(h, s) for h in hours if h != self.race_hour for s in range(self.staff)]
        rng.shuffle(others)
        chosen = [(self.race_hour, s) for s in range(race_taken)]
        chosen += others[: max(0, self.bookings - len(chosen))]
        chosen.sort(key=lambda hs: (hs[0].day, hs[0].hour, hs[1]))
        self.seeded = len(chosen)
        # Hours the booking PUTs ask for: anything but the race hour, at least a day ahead.
        candidates = [h for h in hours if h != self.race_hour and h.day >= 2]
        self.put_hours = [rng.choice(candidates) for _ in range(self.put_recipients)]

        log2_n, passwords.LOG2_N = passwords.LOG2_N, 10
        try:
            with Instance(home).open() as (db, keyring):
                people: list[tuple[str, str]] = [(admin, "admin")]
                people += [(s, "staff") for s in self.staff_names]
                people += [(r, "recipient") for r in self.seeded_names + self.put_names + self.race_names]
                ids: dict[str, int] = {}
                with db.transaction("w") as conn:
                    directory.add_department(conn, DEPT, "Bench department", "Europe/Oslo", "en")
                    for number, (username, role) in enumerate(people):
                        ids[username] = directory.add_user(
                            conn, keyring, username, PASSWORD, f"Person {username}",
                            f"{username}@example.org", f"Gate {number}, Larvik", "+47 400 00 000",
                        )
                        directory.add_role(conn, ids[username], DEPT, role)
                for username, _role in people:
                    ensure_provisioned(db, username)
                with db.transaction("w") as conn:
                    department = directory.get_department(conn, DEPT)
                    assert department is not None and department.opening_calendar_id is not None
                    opening_path = f"{admin}/opening-{DEPT}"
                    store_objects.put_object(
                        conn, department.opening_calendar_id, "bench-open.ics",
                        object_of_text(opening_path)(self._opening_text()),
                    )
                    calendars: dict[str, int] = {}
                    for username in self.seeded_names:
                        instance = store_collections.get_instance(conn, f"{username}/bookings-{DEPT}")
                        assert instance is not None
                        calendars[username] = instance.calendar_id
                    for username in self.staff_names:
                        instance = store_collections.get_instance(conn, f"{username}/assignments")
                        assert instance is not None
                        calendars[username] = instance.calendar_id
                    in_hour: dict[Hour, int] = {}
                    for number, (hour, staff_index) in enumerate(chosen):
                        position = in_hour.get(hour, 0)
                        in_hour[hour] = position + 1
                        slot = hours.index(hour) if hour in hours else 0
                        recipient = self.seeded_names[(slot * 7 + position) % len(self.seeded_names)]
                        staff_name = self.staff_names[staff_index]
                        start = hour.start(self.today).astimezone(UTC)
                        end = start + timedelta(hours=1)
                        href = f"seed-{number:05d}.ics"
                        booked = event_text(f"seed-{number:05d}@bench", start, end, "Visit",
                                            status="CONFIRMED",
                                            description=f"Confirmed: Person {staff_name} will come.")
                        visit = event_text(f"visit-{number:05d}@bench", start, end,
                                           f"Visit: Person {recipient}", status="CONFIRMED",
                                           description=f"Gate, Larvik. Booking {href}")
                        store_objects.put_object(conn, calendars[recipient], href,
                                                 object_of_text(f"{recipient}/bookings-{DEPT}")(booked))
                        store_objects.put_object(conn, calendars[staff_name], href,
                                                 object_of_text(f"{staff_name}/assignments")(visit))
                        store_bookings.insert_booking(conn, BookingRow(
                            id=str(uuid.uuid4()), department_id=DEPT, recipient_id=ids[recipient],
                            staff_id=ids[staff_name], start_ts=int(start.timestamp()),
                            end_ts=int(end.timestamp()), status="confirmed",
                            booking_calendar_id=calendars[recipient], booking_href=href,
                            assignment_calendar_id=calendars[staff_name], assignment_href=href,
                        ))
        finally:
            passwords.LOG2_N = log2_n

    def _opening_text(self) -> str:
        calendar = icalendar.Calendar()
        calendar.add("PRODID", "-//servicehop-caldav bench//EN")
        calendar.add("VERSION", "2.0")
        event = icalendar.Event()
        event.add("UID", "bench-open@servicehop.invalid")
        event.add("DTSTAMP", datetime(2026, 1, 1, tzinfo=UTC))
        first = self.today - timedelta(days=1)
        event.add("DTSTART", datetime.combine(first, clock(OPEN_HOURS.start), OSLO))
        event.add("DTEND", datetime.combine(first, clock(OPEN_HOURS.stop), OSLO))
        event.add("SUMMARY", "Open")
        event.add("RRULE", icalendar.vRecur.from_ical("FREQ=DAILY"))
        calendar.add_component(event)
        calendar.add_missing_timezones()
        return calendar.to_ical().decode()


# -- the workloads --------------------------------------------------------------------


def _booking_text(uid: str, start: datetime) -> str:
    return event_text(uid, start, start + timedelta(hours=1), "Visit",
                      description="Please ring twice.")


def _book(session: requests.Session, server: Running, username: str, start: datetime) -> tuple[
        float, requests.Response, str]:
    uid = f"bench-{uuid.uuid4().hex[:12]}"
    path = f"/{username}/bookings-{DEPT}/{uid}.ics"
    ms, r = timed(session, "PUT", server.url + path, data=_booking_text(uid, start).encode(),
                  headers=ICS_HEADERS)
    return ms, r, path


def _decision(session: requests.Session, server: Running, path: str) -> str:
    """STATUS of the stored event: the decision; anything else fails."""
    r = session.get(server.url + path, timeout=TIMEOUT)
    expect(r, 200)
    events = icalendar.Calendar.from_ical(r.text).walk("VEVENT")
    status = str(events[0].get("STATUS", "")) if events else ""
    if status not in ("CONFIRMED", "CANCELLED"):
        raise CheckFailed(f"stored booking {path} has STATUS {status or 'none'}: not a decision")
    return status


def _login(server: Running, username: str) -> requests.Session:
    session = server.session((username, PASSWORD))
    r = session.request("PROPFIND", f"{server.url}/{username}/bookings-{DEPT}/",
                        headers={**XML_HEADERS, "Depth": "0"}, timeout=TIMEOUT)
    expect(r, 207)
    return session


def op_booking_put(server: Running, seed: BookingSeed, budget: Budget) -> Outcome:
    sessions = {name: _login(server, name) for name in seed.put_names[: budget.reps]}
    decisions = {"CONFIRMED": 0, "CANCELLED": 0}

    def step(i: int) -> float:
        username = seed.put_names[i % len(seed.put_names)]
        start = seed.put_hours[i % len(seed.put_hours)].start(seed.today)
        ms, r, path = _book(sessions[username], server, username, start)
        expect(r, 201, 204)
        decisions[_decision(sessions[username], server, path)] += 1
        return ms

    reps = Budget(min(budget.reps, len(sessions)), budget.seconds, budget.min_reps)
    outcome = measure(BOOKING_PUT, reps, step)
    note = (f"{seed.seeded} bookings held; {decisions['CONFIRMED']} confirmed, "
            f"{decisions['CANCELLED']} cancelled")
    outcome.detail = f"{outcome.detail}; {note}" if outcome.detail else note
    for s in sessions.values():
        s.close()
    return outcome


def _race_rows(server: Running, start: datetime, usernames: list[str]) -> list[tuple[str, int | None, str]]:
    """(recipient, staff id, status) of the booking rows at ``start`` of these recipients."""
    from sqlalchemy import select

    from servicehop_caldav.db.engine import Database
    from servicehop_caldav.db.schema import bookings, users

    db = Database(server.database_url)
    try:
        with db.transaction("r") as conn:
            rows = conn.execute(
                select(users.c.username, bookings.c.staff_id, bookings.c.status)
                .join(users, users.c.id == bookings.c.recipient_id)
                .where(bookings.c.start_ts == int(start.timestamp()), users.c.username.in_(usernames))
            ).all()
            return [(r.username, r.staff_id, r.status) for r in rows]
    finally:
        db.dispose()


def _staff_free(server: Running, seed: BookingSeed, start: datetime) -> int:
    from servicehop_caldav.db.engine import Database
    from servicehop_caldav.store.bookings import bookings_between

    db = Database(server.database_url)
    try:
        with db.transaction("r") as conn:
            ts = int(start.timestamp())
            busy = {b.staff_id for b in bookings_between(conn, DEPT, ts, ts + 3600, status="confirmed")}
    finally:
        db.dispose()
    return seed.staff - len(busy)


def op_race(server: Running, seed: BookingSeed) -> Outcome:
    outcome = Outcome(BOOKING_RACE, unit="decisions/s")
    start = seed.race_hour.start(seed.today)
    try:
        sessions = [_login(server, name) for name in seed.race_names]
        free = _staff_free(server, seed, start)
    except (CheckFailed, requests.RequestException) as e:
        outcome.status, outcome.detail = "fail", str(e)
        return outcome
    barrier = threading.Barrier(len(sessions) + 1)
    answers: list[tuple[str, int, str] | str] = [""] * len(sessions)

    def book(index: int) -> None:
        barrier.wait()
        try:
            _, r, path = _book(sessions[index], server, seed.race_names[index], start)
            answers[index] = (path, r.status_code, r.text[:200])
        except requests.RequestException as e:
            answers[index] = f"{type(e).__name__}: {e}"

    threads = [threading.Thread(target=book, args=(i,), daemon=True) for i in range(len(sessions))]
    for t in threads:
        t.start()
    started = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    outcome.rate = len(sessions) / wall
    outcome.samples_ms = [wall * 1000]
    problems = [a if isinstance(a, str) else f"status {a[1]}: {a[2]!r}" for a in answers
                if isinstance(a, str) or a[1] not in (201, 204)]
    outcome.errors = len(problems)
    confirmed = 0
    try:
        if problems:
            raise CheckFailed(f"{len(problems)} errors, e.g. {problems[0]}")
        for index, answer in enumerate(answers):
            assert not isinstance(answer, str)
            confirmed += _decision(sessions[index], server, answer[0]) == "CONFIRMED"
        rows = [r for r in _race_rows(server, start, seed.race_names) if r[2] == "confirmed"]
        staff = {r[1] for r in rows}
        outcome.detail = (f"{len(sessions)} requests in {wall:.2f} s; {free} staff free: "
                          f"{confirmed} confirmed events, {len(rows)} confirmed rows, {len(staff)} staff")
        if not (confirmed == len(rows) == len(staff) == free):
            raise CheckFailed(f"capacity broken: {outcome.detail}")
    except (CheckFailed, requests.RequestException) as e:
        outcome.status, outcome.detail = "fail", str(e)
    for s in sessions:
        s.close()
    return outcome


def op_availability(server: Running, seed: BookingSeed, budget: Budget) -> list[Outcome]:
    """Time the availability view when it exists; "not built" while it answers no event."""
    username = seed.put_names[0]
    path = f"{server.url}/{username}/availability-{DEPT}/"
    outcomes = [Outcome(AVAILABILITY_GET), Outcome(AVAILABILITY_QUERY)]
    try:
        session = _login(server, username)
        probe = session.get(path, timeout=TIMEOUT)
    except (CheckFailed, requests.RequestException) as e:
        for o in outcomes:
            o.status, o.detail = "fail", str(e)
        return outcomes
    if probe.status_code >= 500:
        for o in outcomes:
            o.status, o.detail = "fail", f"GET availability-{DEPT}/ answered {probe.status_code}"
        return outcomes
    if probe.status_code != 200 or "BEGIN:VEVENT" not in probe.text:
        for o in outcomes:
            o.status = "not built"
            o.detail = (f"GET /<recipient>/availability-{DEPT}/ answered {probe.status_code} with no event: "
                        "the availability view is not built yet")
        return outcomes

    def get(_i: int) -> float:
        ms, r = timed(session, "GET", path)
        expect(r, 200)
        if "BEGIN:VEVENT" not in r.text:
            raise CheckFailed("the availability calendar holds no event")
        return ms

    day = seed.put_hours[0].start(seed.today).replace(hour=0)
    body = calendar_query(day, day + timedelta(days=1))

    def query(_i: int) -> float:
        ms, r = timed(session, "REPORT", path, data=body, headers={**XML_HEADERS, "Depth": "1"})
        expect(r, 207)
        found = members(parse_multistatus(r.content)[0], f"/{username}/availability-{DEPT}/")
        if any(f"{CALDAV}calendar-data" not in m.props for m in found if m.status == 200):
            raise CheckFailed("availability query: a response without calendar-data")
        return ms

    outcomes = [measure(AVAILABILITY_GET, budget, get, warm_up=True),
                measure(AVAILABILITY_QUERY, budget, query, warm_up=True)]
    session.close()
    return outcomes


def run_booking_workloads(
    server: Running, seed: BookingSeed, budget: Budget, log: Callable[[str], None]
) -> dict[str, Outcome]:
    from bench.workloads import summary

    results: dict[str, Outcome] = {}
    steps: list[Callable[[], list[Outcome]]] = [
        lambda: [op_booking_put(server, seed, budget)],
        lambda: [op_race(server, seed)],
        lambda: op_availability(server, seed, budget),
    ]
    for run in steps:
        started = time.monotonic()
        for outcome in run():
            results[outcome.op] = outcome
            log(f"    {outcome.op:<26} {summary(outcome)}  [{time.monotonic() - started:.1f} s]")
    return results
