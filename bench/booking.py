"""The booking path (servicehop only): a department that already holds N bookings.

Seeding, in the instance's database before the server starts (the bench
process holds the instance key, as ``servicehop-caldav user add`` does):

* department ``bk`` (Europe/Oslo, en), its admin, S staff, recipients; people
  through ``servicehop_caldav.directory.store`` and ``ensure_provisioned``
  (password hashes at the lowest Argon2id cost: logins are not what is
  measured, and every session logs in once before the clock starts);
* one opening window, every day 07:00-21:00 local, all staff on duty (no
  ATTENDEE), written into the department's opening calendar with ``put_object``;
* N confirmed bookings (default 2,000) of one hour on the hour, over the
  14-day horizon, written directly: a ``servicehop_caldav.store.bookings``
  row each (``insert_booking``), plus the recipient's event and the staff
  member's visit as calendar objects (``put_object``), so the rows point at
  real events. Each (staff, hour) holds at most one booking, so nobody
  overlaps themselves; the bookings of one hour go to different recipients.
  One hour (the race hour) is left with exactly ``race_free`` staff free;
  two hours of one day (the full hours) are booked for every staff member,
  so the availability view has busy time: the viewing recipient holds one
  booking in the first (its Busy is hidden from them as their own), none in
  the second (they see it Busy);
* the availability view: rows written directly leave it empty (the server
  keeps it inside each booking's transaction, and fills it at start only in
  a background thread), so the seeding runs the server's own upkeep pass,
  ``Desk.upkeep`` inside ``db.transaction("w")`` as the storage plugin's
  ``Upkeep.run_once`` does, before the server starts; a second pass must
  then write nothing. The view is complete before the server listens; the
  server's own start pass (background thread) then finds nothing to write,
  though it still computes every day in a write transaction (the seeding
  reports how long such a pass takes) while the first booking PUTs run.

Workloads, over HTTP as the recipients:

* booking PUT: a new recipient PUTs one visit into ``bookings-bk/`` at a free or
  full hour; the answer must be a decision: the stored event (GET, untimed)
  has STATUS CONFIRMED or CANCELLED;
* the race: 20 recipients PUT the race hour at once (a barrier); exactly
  ``race_free`` are confirmed, each with another staff member (booking rows),
  the others cancelled, no error status;
* the availability view, after the PUTs and the race, as a seeded recipient
  (the viewer): ``GET /<viewer>/availability-bk/`` (the whole 14-day view,
  one VCALENDAR) and a calendar-query REPORT with calendar-data over one
  local day (Europe/Oslo) a few days ahead. Checked untimed: every answer's
  status; the GET's events are the hrefs a PROPFIND depth 1 lists (UID = href
  without .ics) and, hour by hour, what the confirmed booking rows in the
  database say (free while some staff member is free, else Busy, except
  where the viewer's own booking is); SUMMARY Free/Busy matches the href;
  at least one Free and one Busy; the one-day query answers exactly the
  GET's events overlapping that day.
"""

from __future__ import annotations

import posixpath
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
from sqlalchemy import Connection

from bench import client
from bench.data import event_text
from bench.servers import Running
from bench.workloads import (
    CALDAV,
    ICS_HEADERS,
    PROPFIND_ETAGS,
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
# The goal: the availability view's GET p50 under 50 ms at 2,000 bookings.
AVAILABILITY_GOAL_MS = 50.0
AVAILABILITY_GOAL_BOOKINGS = 2000
FREE_SUMMARY, BUSY_SUMMARY = "Free", "Busy"  # the department's language is en
HOUR = timedelta(hours=1)


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
    race_hour: Hour = Hour(3, 10)
    # Booked for every staff member: the viewer holds one booking in the first, none in the second.
    full_hours: tuple[Hour, Hour] = (Hour(4, 9), Hour(4, 15))
    query_day: int = 4  # days after today: the one-day availability query
    # Filled in by seeding:
    today: date = field(default_factory=lambda: datetime.now(OSLO).date())
    put_hours: list[Hour] = field(default_factory=list)
    staff_names: list[str] = field(default_factory=list)
    seeded_names: list[str] = field(default_factory=list)
    put_names: list[str] = field(default_factory=list)
    race_names: list[str] = field(default_factory=list)
    seeded: int = 0
    seconds: float = 0.0
    view_before: int = 0  # events in the availability calendar before the seeding's upkeep pass
    view_events: int = 0  # ... and after it
    view_reported: int = 0  # what that Desk.upkeep call returned
    view_seconds: float = 0.0
    second_pass_events: int = 0  # must be 0: the first pass left the view current
    second_pass_seconds: float = 0.0
    confirmed_after_upkeep: int = 0  # must be ``seeded``: the pass decides nothing again

    @property
    def viewer(self) -> str:
        """The recipient whose availability view is read."""
        return self.seeded_names[0]

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
            f"in the race hour and every staff member booked in 2 hours; availability view filled "
            f"before the server started by the server's own upkeep pass run in-process (Desk.upkeep in "
            f"db.transaction('w'), as Upkeep.run_once): the view went from {self.view_before} to "
            f"{self.view_events} events in {self.view_seconds:.2f} s (Desk.upkeep returned "
            f"{self.view_reported}), a second pass wrote {self.second_pass_events} in "
            f"{self.second_pass_seconds:.2f} s; seeded in {self.seconds:.1f} s"
        )

    def _seed(self, home: Path) -> None:
        from radicale_storage_servicehop import object_of_text

        from servicehop_caldav import passwords
        from servicehop_caldav.desk.desk import Desk
        from servicehop_caldav.desk.settings import SettingsFile
        from servicehop_caldav.directory import store as directory
        from servicehop_caldav.instance import SERVICEHOP_TOML, Instance
        from servicehop_caldav.provisioning import ensure_provisioned
        from servicehop_caldav.store import bookings as store_bookings
        from servicehop_caldav.store import collections as store_collections
        from servicehop_caldav.store import objects as store_objects
        from servicehop_caldav.store import views as store_views
        from servicehop_caldav.store.bookings import BookingRow

        def view_size(conn: Connection) -> int:
            views = store_views.get_views(conn, DEPT)
            if views is None:
                return 0
            return len(store_objects.spans_in_range(conn, views.availability_calendar_id, 0, 2**62))

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

        special = {self.race_hour, *self.full_hours}
        if not special <= set(hours):
            raise ValueError(f"the race and full hours must lie in the horizon: {sorted(special, key=str)}")
        if self.staff >= self.seeded_recipients:
            raise ValueError("the bookings of one hour go to different recipients: "
                             "seed more recipients than staff")

        # Which staff member serves which hour: the race hour exactly
        # staff - race_free, the full hours every staff member; the rest drawn
        # from every other (hour, staff).
        race_taken = max(0, self.staff - self.race_free)
        others = [(h, s) for h in hours if h not in special for s in range(self.staff)]
        rng.shuffle(others)
        chosen = [(self.race_hour, s) for s in range(race_taken)]
        chosen += [(h, s) for h in self.full_hours for s in range(self.staff)]
        chosen += others[: max(0, self.bookings - len(chosen))]
        chosen.sort(key=lambda hs: (hs[0].day, hs[0].hour, hs[1]))
        self.seeded = len(chosen)
        # Hours the booking PUTs ask for: anything but the race and full hours, at least a day ahead.
        candidates = [h for h in hours if h not in special and h.day >= 2]
        self.put_hours = [rng.choice(candidates) for _ in range(self.put_recipients)]

        with passwords.cheap_hashes():  # not what is measured here
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
                        if hour == self.full_hours[0]:  # the viewer (seeded_names[0]) holds one
                            recipient = self.seeded_names[position]
                        elif hour == self.full_hours[1]:  # the viewer holds none
                            recipient = self.seeded_names[position + 1]
                        else:
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
                # The availability view, as the server's upkeep pass computes it.
                desk = Desk(SettingsFile(home / SERVICEHOP_TOML), object_of_text("servicehop"))
                with db.transaction("r") as conn:
                    self.view_before = view_size(conn)
                started = time.perf_counter()
                with db.transaction("w") as conn:
                    self.view_reported = desk.upkeep(conn)
                self.view_seconds = time.perf_counter() - started
                started = time.perf_counter()
                with db.transaction("w") as conn:
                    self.second_pass_events = desk.upkeep(conn)
                self.second_pass_seconds = time.perf_counter() - started
                with db.transaction("r") as conn:
                    self.view_events = view_size(conn)
                    self.confirmed_after_upkeep = len(store_bookings.bookings_between(
                        conn, DEPT, 0, 2**62, status="confirmed"))

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


def _book(session: client.Session, server: Running, username: str, start: datetime) -> tuple[
        float, client.Response, str]:
    uid = f"bench-{uuid.uuid4().hex[:12]}"
    path = f"/{username}/bookings-{DEPT}/{uid}.ics"
    ms, r = timed(session, "PUT", server.url + path, data=_booking_text(uid, start).encode(),
                  headers=ICS_HEADERS)
    return ms, r, path


def _decision(session: client.Session, server: Running, path: str) -> str:
    """STATUS of the stored event: the decision; anything else fails."""
    r = session.get(server.url + path, timeout=TIMEOUT)
    expect(r, 200)
    events = icalendar.Calendar.from_ical(r.text).walk("VEVENT")
    status = str(events[0].get("STATUS", "")) if events else ""
    if status not in ("CONFIRMED", "CANCELLED"):
        raise CheckFailed(f"stored booking {path} has STATUS {status or 'none'}: not a decision")
    return status


def _login(server: Running, username: str) -> client.Session:
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
    except (CheckFailed, client.RequestError) as e:
        outcome.status, outcome.detail = "fail", str(e)
        return outcome
    barrier = threading.Barrier(len(sessions) + 1)
    answers: list[tuple[str, int, str] | str] = [""] * len(sessions)

    def book(index: int) -> None:
        barrier.wait()
        try:
            _, r, path = _book(sessions[index], server, seed.race_names[index], start)
            answers[index] = (path, r.status_code, r.text[:200])
        except client.RequestError as e:
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
    except (CheckFailed, client.RequestError) as e:
        outcome.status, outcome.detail = "fail", str(e)
    for s in sessions:
        s.close()
    return outcome


# -- the availability view -------------------------------------------------------------


@dataclass(frozen=True)
class ViewEvent:
    uid: str
    summary: str
    start: datetime  # UTC
    end: datetime

    @property
    def free(self) -> bool:
        return self.summary == FREE_SUMMARY


def _view_events(text: str, what: str) -> list[ViewEvent]:
    """The VEVENTs of an availability answer; anything but timed events fails."""
    try:
        calendar = icalendar.Calendar.from_ical(text)
    except ValueError as e:
        raise CheckFailed(f"{what}: unreadable iCalendar: {e}") from e
    found = []
    for event in calendar.walk("VEVENT"):
        uid, summary = str(event.get("UID", "")), str(event.get("SUMMARY", ""))
        start, end = event.get("DTSTART"), event.get("DTEND")
        if start is None or end is None or not isinstance(start.dt, datetime) or not isinstance(
                end.dt, datetime) or start.dt.tzinfo is None or end.dt.tzinfo is None:
            raise CheckFailed(f"{what}: event {uid} has no timed DTSTART and DTEND")
        found.append(ViewEvent(uid, summary, start.dt.astimezone(UTC), end.dt.astimezone(UTC)))
    return found


def _local(moment: datetime) -> str:
    return moment.astimezone(OSLO).strftime("%Y-%m-%d %H:%M")


def _hours(moments: set[datetime]) -> str:
    ordered = sorted(moments)
    return ", ".join(_local(m) for m in ordered[:3]) + (", ..." if len(ordered) > 3 else "")


@dataclass
class ExpectedView:
    """What the viewer's view must say, hour by hour, by the confirmed booking rows."""

    days: list[date]
    free: set[datetime]  # UTC starts of the open hours with some staff member free
    busy: set[datetime]  # fully booked hours the viewer sees as Busy
    hidden: set[datetime]  # fully booked hours that are the viewer's own booking
    confirmed: int  # confirmed bookings in the view's days


def _expected_view(server: Running, seed: BookingSeed) -> ExpectedView:
    """From the database: every open hour from today to the horizon's last day
    is Busy when every staff member has a confirmed booking overlapping it,
    else Free; Busy over one of the viewer's own bookings is left out."""
    from sqlalchemy import select

    from servicehop_caldav.db.engine import Database
    from servicehop_caldav.db.schema import users
    from servicehop_caldav.store.bookings import bookings_between

    now = datetime.now(OSLO)
    first, last = now.date(), (now + timedelta(days=HORIZON_DAYS)).date()
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    slots = [datetime.combine(d, clock(h), OSLO).astimezone(UTC) for d in days for h in OPEN_HOURS]
    db = Database(server.database_url)
    try:
        with db.transaction("r") as conn:
            viewer_id = conn.execute(select(users.c.id).where(users.c.username == seed.viewer)).scalar_one()
            rows = bookings_between(conn, DEPT, int(slots[0].timestamp()),
                                    int((slots[-1] + HOUR).timestamp()), status="confirmed")
    finally:
        db.dispose()
    full: set[datetime] = set()
    own: set[datetime] = set()
    for slot in slots:
        start, end = int(slot.timestamp()), int((slot + HOUR).timestamp())
        overlapping = [r for r in rows if r.start_ts < end and r.end_ts > start]
        if len({r.staff_id for r in overlapping}) >= seed.staff:
            full.add(slot)
        if any(r.recipient_id == viewer_id and r.start_ts <= start and end <= r.end_ts for r in overlapping):
            own.add(slot)
    return ExpectedView(days, set(slots) - full, full - own, full & own, len(rows))


def _check_view(events: list[ViewEvent], expected: ExpectedView, seed: BookingSeed) -> None:
    """The view, hour by hour, is what the booking rows say (see :func:`_expected_view`)."""
    for event in events:
        kind = {FREE_SUMMARY: "free-", BUSY_SUMMARY: "busy-"}.get(event.summary)
        if kind is None:
            raise CheckFailed(f"event {event.uid}: SUMMARY {event.summary!r}, expected "
                              f"{FREE_SUMMARY!r} or {BUSY_SUMMARY!r} (department language en)")
        if not event.uid.startswith(kind):
            raise CheckFailed(f"event {event.uid}: SUMMARY {event.summary!r} but its href is not {kind}...")
    if not any(e.free for e in events):
        raise CheckFailed("the view holds no Free event")
    if all(e.free for e in events):
        raise CheckFailed("the view holds no Busy event, yet the seed booked every staff member in "
                          f"{seed.full_hours[1]} (not the viewer's)")
    covered: dict[datetime, bool] = {}
    for event in events:
        moment = event.start
        if moment.minute or moment.second or event.end.minute or event.end.second:
            raise CheckFailed(f"event {event.uid} ({_local(event.start)}-{_local(event.end)}) is not on "
                              "whole hours, though every opening and booking is")
        while moment < event.end:
            if moment in covered:
                raise CheckFailed(f"events overlap at {_local(moment)} (e.g. {event.uid})")
            covered[moment] = event.free
            moment += HOUR
    got_free = {m for m, free in covered.items() if free}
    got_busy = {m for m, free in covered.items() if not free}
    problems = []
    for what, got, want in (("Free", got_free, expected.free), ("Busy", got_busy, expected.busy)):
        if got - want:
            problems.append(f"{len(got - want)} hours {what} that should not be ({_hours(got - want)})")
        if want - got:
            problems.append(f"{len(want - got)} hours not {what} that should be ({_hours(want - got)})")
    if problems:
        raise CheckFailed(f"the view differs from the {expected.confirmed} confirmed booking rows of its "
                          f"{len(expected.days)} days: " + "; ".join(problems))


def op_availability(
    server: Running, seed: BookingSeed, budget: Budget
) -> list[Outcome]:
    """Time the viewer's 14-day availability GET and a one-day query; check each answer."""
    username = seed.viewer
    collection = f"/{username}/availability-{DEPT}/"
    url = server.url + collection
    day = seed.today + timedelta(days=seed.query_day)
    day_start = datetime.combine(day, clock(0), OSLO)
    day_end = datetime.combine(day + timedelta(days=1), clock(0), OSLO)
    outcomes = [Outcome(AVAILABILITY_GET), Outcome(AVAILABILITY_QUERY)]
    try:
        if seed.second_pass_events or seed.confirmed_after_upkeep != seed.seeded:
            raise CheckFailed(
                f"the seeding's upkeep passes: the second wrote {seed.second_pass_events} view events "
                f"(expected 0), {seed.confirmed_after_upkeep} bookings confirmed after them "
                f"(expected the {seed.seeded} seeded)")
        session = _login(server, username)
        # The reference, untimed: what PROPFIND lists, what one GET answers, what the rows say.
        r = session.request("PROPFIND", url, data=PROPFIND_ETAGS, headers={**XML_HEADERS, "Depth": "1"},
                            timeout=TIMEOUT)
        expect(r, 207)
        listed = members(parse_multistatus(r.content)[0], collection)
        if any(m.status != 200 for m in listed):
            raise CheckFailed(f"PROPFIND {collection}: a member without 200 propstat")
        hrefs = {posixpath.basename(m.path) for m in listed}
        if len(hrefs) != len(listed) or not all(h.endswith(".ics") for h in hrefs):
            raise CheckFailed(f"PROPFIND {collection}: {len(listed)} members, "
                              f"{len(hrefs)} distinct .ics hrefs")
        uids = {h.removesuffix(".ics") for h in hrefs}
        r = session.get(url, timeout=TIMEOUT)
        expect(r, 200)
        reference = _view_events(r.text, f"GET {collection}")
        if len(reference) != len(uids) or {e.uid for e in reference} != uids:
            raise CheckFailed(f"GET {collection}: {len(reference)} VEVENTs, but PROPFIND depth 1 lists "
                              f"{len(uids)} hrefs ({len({e.uid for e in reference} - uids)} UIDs not listed, "
                              f"{len(uids - {e.uid for e in reference})} hrefs not in the GET)")
        expected = _expected_view(server, seed)
        full = [h.start(seed.today).astimezone(UTC) for h in seed.full_hours]
        if full[0] not in expected.hidden or full[1] not in expected.busy:
            raise CheckFailed(f"seed: the full hours {seed.full_hours} are not (hidden, visible) Busy "
                              "for the viewer in the database")
        _check_view(reference, expected, seed)
    except (CheckFailed, client.RequestError) as e:
        for o in outcomes:
            o.status, o.detail = "fail", f"{type(e).__name__}: {e}"
        return outcomes
    signature = sorted(reference, key=lambda e: e.uid)
    in_day = {e.uid for e in reference if e.start < day_end and e.end > day_start}

    def get(_i: int) -> float:
        ms, r = timed(session, "GET", url)
        expect(r, 200)
        found = _view_events(r.text, f"GET {collection}")
        if sorted(found, key=lambda e: e.uid) != signature:
            raise CheckFailed(f"GET {collection}: {len(found)} VEVENTs, not the {len(signature)} events "
                              f"PROPFIND depth 1 listed")
        return ms

    body = calendar_query(day_start, day_end)

    def query(_i: int) -> float:
        ms, r = timed(session, "REPORT", url, data=body, headers={**XML_HEADERS, "Depth": "1"})
        expect(r, 207)
        found = members(parse_multistatus(r.content)[0], collection)
        got: set[str] = set()
        for m in found:
            stem = posixpath.basename(m.path).removesuffix(".ics")
            data = m.props.get(f"{CALDAV}calendar-data", "")
            if m.status != 200 or not data:
                raise CheckFailed(f"one-day query: {stem} answered {m.status} without calendar-data")
            if [e.uid for e in _view_events(data, f"one-day query, {stem}")] != [stem]:
                raise CheckFailed(f"one-day query: the calendar-data of {stem}.ics is not its one event")
            got.add(stem)
        if got != in_day or len(found) != len(in_day):
            raise CheckFailed(f"one-day query {day}: {len(found)} hrefs, expected the GET's "
                              f"{len(in_day)} events of that day ({len(got - in_day)} unexpected, "
                              f"{len(in_day - got)} missing)")
        return ms

    free = sum(e.free for e in reference)
    day_free = sum(e.free for e in reference if e.uid in in_day)
    outcomes = [measure(AVAILABILITY_GET, budget, get, warm_up=True),
                measure(AVAILABILITY_QUERY, budget, query, warm_up=True)]
    session.close()
    notes = [
        f"{username}'s view: {len(reference)} events over {len(expected.days)} days ({free} Free, "
        f"{len(reference) - free} Busy; {len(expected.hidden)} fully booked hour(s) hidden as their own), "
        f"= PROPFIND depth 1 hrefs and, hour by hour, the {expected.confirmed} confirmed booking rows; "
        f"view filled at seeding: {seed.view_before} -> {seed.view_events} events in "
        f"{seed.view_seconds:.2f} s, a second upkeep pass {seed.second_pass_seconds:.2f} s",
        f"{day} (Europe/Oslo): {len(in_day)} events ({day_free} Free, {len(in_day) - day_free} Busy), "
        "exactly the GET's events of that day",
    ]
    for outcome, note in zip(outcomes, notes, strict=True):
        if not outcome.failed:
            outcome.detail = f"{outcome.detail}; {note}" if outcome.detail else note
    return outcomes


def run_booking_workloads(
    server: Running, seed: BookingSeed, budget: Budget, log: Callable[[str], None],
    view_budget: Budget | None = None,
) -> dict[str, Outcome]:
    from bench.workloads import summary

    results: dict[str, Outcome] = {}
    log(f"    idle after {server.wait_idle():.1f} s")
    steps: list[Callable[[], list[Outcome]]] = [
        lambda: [op_booking_put(server, seed, budget)],
        lambda: [op_race(server, seed)],
        lambda: op_availability(server, seed, view_budget or budget),
    ]
    for run in steps:
        started = time.monotonic()
        for outcome in run():
            results[outcome.op] = outcome
            log(f"    {outcome.op:<26} {summary(outcome)}  [{time.monotonic() - started:.1f} s]")
    return results
