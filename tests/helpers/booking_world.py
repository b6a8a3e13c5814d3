"""A running servicehop instance to book in, for the booking engine's end-to-end tests.

One instance (``init``) and one server per test module and backend; each test
makes its own department (its rules in servicehop.toml, which the server
reads again when it changes), its own staff, recipients and admin, and its
own opening windows, so tests share the server without sharing data.

People are added to the directory directly (as ``servicehop-caldav user add``
would); everything else goes through HTTP: the admin writes opening times
into ``opening-<dept>/`` and recipients book in ``bookings-<dept>/`` with the
``caldav`` library or raw requests.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import caldav
import icalendar
import requests
from sqlalchemy import select

from servicehop_caldav import passwords
from servicehop_caldav.crypto import Keyring
from servicehop_caldav.db.engine import Database
from servicehop_caldav.db.schema import bookings as bookings_table
from servicehop_caldav.db.schema import users
from servicehop_caldav.directory import store as directory
from servicehop_caldav.instance import init_instance
from servicehop_caldav.keyfile import load_keys
from servicehop_caldav.provisioning import ensure_provisioned
from servicehop_caldav.store import audit
from servicehop_caldav.store.keycheck import bind_keyring
from tests.conftest import CLI, Server, make_database_url, start_instance_server

OSLO = ZoneInfo("Europe/Oslo")
ICS = {"Content-Type": "text/calendar; charset=utf-8"}
PASSWORD = "pw-Booking-1"
_counter = itertools.count(1)


def ics_event(
    uid: str,
    start: datetime | date | None,
    end: datetime | date | None = None,
    *,
    duration: timedelta | None = None,
    summary: str | None = "Visit",
    description: str | None = None,
    rrule: str | None = None,
    attendees: Iterable[str] = (),
    status: str | None = None,
    extra: Sequence[tuple[str, Any]] = (),
) -> str:
    """One VEVENT in a VCALENDAR, built with icalendar (aware datetimes keep
    their zone: a ZoneInfo zone gets a TZID and a VTIMEZONE)."""
    cal = icalendar.Calendar()
    cal.add("PRODID", "-//servicehop tests//EN")
    cal.add("VERSION", "2.0")
    ev = icalendar.Event()
    ev.add("UID", uid)
    ev.add("DTSTAMP", datetime(2026, 1, 1, tzinfo=UTC))
    if start is not None:
        ev.add("DTSTART", start)
    if end is not None:
        ev.add("DTEND", end)
    if duration is not None:
        ev.add("DURATION", duration)
    if summary is not None:
        ev.add("SUMMARY", summary)
    if description is not None:
        ev.add("DESCRIPTION", description)
    if rrule is not None:
        ev.add("RRULE", icalendar.vRecur.from_ical(rrule))
    for email in attendees:
        ev.add("ATTENDEE", f"mailto:{email}")
    if status is not None:
        ev.add("STATUS", status)
    for name, value in extra:
        ev.add(name, value)
    cal.add_component(ev)
    if any(isinstance(v, datetime) and isinstance(v.tzinfo, ZoneInfo) for v in (start, end)):
        cal.add_missing_timezones()
    return cal.to_ical().decode()


def event_of(text: str) -> icalendar.Event:
    """The first VEVENT of an iCalendar text."""
    cal = icalendar.Calendar.from_ical(text)
    return next(c for c in cal.walk("VEVENT"))


def local(day: date, hour: int, minute: int = 0) -> datetime:
    """``day`` at hour:minute in Europe/Oslo."""
    return datetime.combine(day, time(hour, minute), OSLO)


def days_ahead(n: int) -> date:
    """The local date ``n`` days from today (Europe/Oslo)."""
    return (datetime.now(OSLO) + timedelta(days=n)).date()


@dataclass
class Department:
    id: str
    language: str
    staff: list[str]
    admin: str
    world: BookingWorld

    def email(self, username: str) -> str:
        return f"{username}@example.org"

    def open(
        self,
        start: datetime,
        end: datetime,
        *,
        rrule: str | None = "FREQ=DAILY",
        staff: Iterable[str] = (),
        uid: str | None = None,
        text: str | None = None,
    ) -> str:
        """Add an opening window (daily by default) through the admin's
        calendar; ``staff`` names the employees on duty (ATTENDEEs)."""
        uid = uid or f"open-{uuid.uuid4().hex[:8]}"
        body = text or ics_event(uid, start, end, summary="Open", rrule=rrule,
                                 attendees=[self.email(s) for s in staff])
        r = self.world.put(self.admin, f"/{self.admin}/opening-{self.id}/{uid}.ics", body)
        assert r.status_code in (201, 204), (r.status_code, r.text)
        return uid

    def recipient(self, weekly_minutes: int | None = None, name: str | None = None) -> str:
        """A new recipient of this department."""
        username = f"r{next(_counter)}-{self.id}"
        self.world.add_person(username, name or f"Recipient {username}",
                              [(self.id, "recipient", weekly_minutes)],
                              address=f"Gate {next(_counter)}, Larvik", phone="+47 400 00 000")
        return username


@dataclass
class Booked:
    """A PUT into a bookings calendar and what the server holds afterwards."""

    response: requests.Response
    path: str
    text: str | None  # the stored event (GET), None when nothing is stored

    @property
    def event(self) -> icalendar.Event:
        assert self.text is not None, "nothing stored"
        return event_of(self.text)

    @property
    def status(self) -> str | None:
        value = self.event.get("STATUS")
        return str(value) if value is not None else None

    @property
    def confirmed(self) -> bool:
        return self.text is not None and self.status == "CONFIRMED"

    @property
    def description(self) -> str:
        return str(self.event.get("DESCRIPTION", ""))

    @property
    def summary(self) -> str:
        return str(self.event.get("SUMMARY", ""))


@dataclass
class BookingWorld:
    server: Server
    database_url: str
    home: Path
    db: Database
    keyring: Keyring
    settings: dict[str, str] = field(default_factory=dict)
    sessions: dict[str, requests.Session] = field(default_factory=dict)

    # -- directory and rules ---------------------------------------------------

    def add_person(
        self,
        username: str,
        name: str,
        roles: Sequence[tuple[str, str, int | None]],
        address: str | None = None,
        phone: str | None = None,
    ) -> None:
        with self.db.transaction("w") as conn:
            user_id = directory.add_user(conn, self.keyring, username, PASSWORD, name,
                                         f"{username}@example.org", address, phone)
            for department, role, weekly in roles:
                directory.add_role(conn, user_id, department, role, weekly)
        ensure_provisioned(self.db, username)
        self.server.passwords[username] = PASSWORD

    def department(
        self, rules: str = "", *, staff: int = 2, language: str = "en", timezone: str = "Europe/Oslo"
    ) -> Department:
        """A new department with ``staff`` employees, an admin, and ``rules``
        (TOML lines of its [departments.<id>] table) in servicehop.toml."""
        dept_id = f"d{next(_counter)}"
        with self.db.transaction("w") as conn:
            directory.add_department(conn, dept_id, f"Department {dept_id}", timezone, language)
        self.settings[dept_id] = rules
        self._write_settings()
        admin = f"admin-{dept_id}"
        self.add_person(admin, f"Admin {dept_id}", [(dept_id, "admin", None)])
        names = []
        for number in range(1, staff + 1):
            username = f"s{number}-{dept_id}"
            self.add_person(username, f"Staff {number} {dept_id}", [(dept_id, "staff", None)])
            names.append(username)
        return Department(dept_id, language, names, admin, self)

    def set_rules(self, dept: Department, rules: str) -> None:
        """Replace the department's ``rules`` in servicehop.toml (the server
        reads the file again at its next booking)."""
        self.settings[dept.id] = rules
        self._write_settings()

    def _write_settings(self) -> None:
        lines = ['[defaults]', 'default_service = "Visit"',
                 'services = [{ name = "Visit", minutes = 60 }, { name = "Shopping", minutes = 90 }]']
        for dept_id, rules in self.settings.items():
            lines += ["", f"[departments.{dept_id}]", rules]
        (self.home / "servicehop.toml").write_text("\n".join(lines) + "\n")

    # -- HTTP --------------------------------------------------------------------

    def session(self, username: str) -> requests.Session:
        if username not in self.sessions:
            s = requests.Session()
            s.auth = (username, self.server.passwords[username])
            self.sessions[username] = s
        return self.sessions[username]

    def client(self, username: str) -> caldav.DAVClient:
        return self.server.client(username)

    def put(self, username: str, path: str, text: str, **headers: str) -> requests.Response:
        return self.session(username).put(self.server.url + path, data=text.encode(),
                                          headers={**ICS, **headers})

    def get(self, username: str, path: str) -> requests.Response:
        return self.session(username).get(self.server.url + path)

    def book(
        self,
        username: str,
        dept: Department,
        start: datetime | date | None,
        end: datetime | date | None = None,
        *,
        uid: str | None = None,
        **event: Any,
    ) -> Booked:
        """PUT a booking event (new or changed, by UID) and GET what is stored."""
        uid = uid or f"booking-{uuid.uuid4().hex[:10]}"
        path = f"/{username}/bookings-{dept.id}/{uid}.ics"
        response = self.put(username, path, ics_event(uid, start, end, **event))
        stored = self.get(username, path)
        return Booked(response, path, stored.text if stored.status_code == 200 else None)

    def assignments(self, username: str) -> list[icalendar.Event]:
        """The visits in a staff member's ``assignments/`` (GET of the collection)."""
        r = self.get(username, f"/{username}/assignments/")
        assert r.status_code == 200, r.status_code
        return list(icalendar.Calendar.from_ical(r.text).walk("VEVENT"))

    # -- the database ---------------------------------------------------------------

    def bookings(self, dept: Department) -> list[dict[str, Any]]:
        """The department's booking rows, with usernames."""
        staff = users.alias("staff_user")
        recipient = users.alias("recipient_user")
        b = bookings_table.c
        with self.db.transaction("r") as conn:
            rows = conn.execute(
                select(b.id, b.status, b.start_ts, b.end_ts, b.booking_href,
                       staff.c.username.label("staff"), recipient.c.username.label("recipient"))
                .select_from(bookings_table.join(recipient, recipient.c.id == b.recipient_id)
                             .outerjoin(staff, staff.c.id == b.staff_id))
                .where(b.department_id == dept.id).order_by(b.start_ts, b.id)
            ).mappings().all()
        return [dict(r) for r in rows]

    def audit(self, dept: Department) -> list[audit.AuditLine]:
        with self.db.transaction("r") as conn:
            return audit.entries(conn, dept.id)

    def audit_command(self, dept: Department, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, "audit", "--home", str(self.home), "--department", dept.id, *args],
                              capture_output=True, text=True, timeout=60)

    def close(self) -> None:
        for s in self.sessions.values():
            s.close()


def booking_world(backend: str, tmp: Path) -> Iterator[BookingWorld]:
    """Generator for a module-scoped fixture: the world on ``backend``."""
    url, drop = make_database_url(backend, tmp)
    home = init_instance(tmp / "instance", url).instance.home
    with passwords.cheap_hashes():  # cheap hashes: tests are not about them
        server = start_instance_server(home)
        keyring = Keyring.from_keys(load_keys(home / "key"))
        db = Database.shared(url)
        bind_keyring(db, keyring)
        world = BookingWorld(server, url, home, db, keyring)
        try:
            yield world
        finally:
            world.close()
            server.stop()
            drop()


def dump(value: Any) -> str:
    """A readable failure message."""
    return json.dumps(value, default=str, indent=1)
