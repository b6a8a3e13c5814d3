"""`servicehop-caldav demo`: the demo municipality, run and used as a newcomer would.

The command runs as a subprocess on each backend; its printed logins are
used against `serve` (another subprocess) with the `caldav` library, as one
recipient, one employee and one admin. What they see is compared with the
booking rows in the database, which the command must have made through
the booking desk (confirmed, assigned, in the views).

The plan of the demo's bookings is also checked on its own, for every day
of the week the demo could run on (the end-to-end test sees only today).
"""

from __future__ import annotations

import re
import signal
import stat
import subprocess
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import caldav
import icalendar
import pytest
from sqlalchemy import select

from servicehop_caldav.db.schema import bookings as bookings_table
from servicehop_caldav.db.schema import users
from servicehop_caldav.demo import DEPARTMENTS, plan_bookings
from servicehop_caldav.directory import store as directory
from servicehop_caldav.instance import Instance
from tests.conftest import CLI, free_port, spawn_serve, wait_for_port

OSLO = ZoneInfo("Europe/Oslo")
ROW = re.compile(r"^  (admin|staff|recipient) +(\S+) +(\S+) +(.+?) +(http://\S+)  +(.*)$")
SECTION = re.compile(r"^\S.* \((\w+)\)$")


@dataclass(frozen=True)
class Login:
    username: str
    password: str
    role: str
    department: str
    url: str


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)


def parse_logins(output: str) -> dict[str, Login]:
    """The accounts the command printed, by username: each row sits under
    its department's heading "<name> (<id>)"."""
    logins: dict[str, Login] = {}
    department = None
    for line in output.splitlines():
        heading = SECTION.match(line)
        if heading:
            department = heading.group(1)
        row = ROW.match(line)
        if row:
            assert department is not None, line
            role, username, password, _name, url, _notes = row.groups()
            logins[username] = Login(username, password, role, department, url)
    return logins


def open_hours(start: datetime, end: datetime) -> bool:
    """Whether [start, end) lies in one opening window: Mon–Fri 08–16, Sat 10–14 (Oslo)."""
    start, end = start.astimezone(OSLO), end.astimezone(OSLO)
    if start.date() != end.date() and end.time() != clock(0):
        return False
    hours = {5: (clock(10), clock(14)), 6: None}.get(start.weekday(), (clock(8), clock(16)))
    return hours is not None and hours[0] <= start.time() and end.time() <= hours[1] and start < end


def utc(value: Any) -> datetime:
    value = value.dt if hasattr(value, "dt") else value
    assert isinstance(value, datetime) and value.tzinfo is not None, value
    return value.astimezone(UTC)


def events_of(calendar: caldav.Calendar) -> list[icalendar.Event]:
    return [e.icalendar_component for e in calendar.events()]


def booking_rows(home: Path) -> list[dict[str, Any]]:
    """Every booking row, with the usernames of recipient and staff."""
    staff = users.alias("staff_user")
    recipient = users.alias("recipient_user")
    b = bookings_table.c
    with Instance(home).open() as (db, _keyring), db.transaction("r") as conn:
        rows = conn.execute(
            select(b.department_id, b.status, b.start_ts, b.end_ts, b.booking_href,
                   staff.c.username.label("staff"), recipient.c.username.label("recipient"))
            .select_from(bookings_table.join(recipient, recipient.c.id == b.recipient_id)
                         .outerjoin(staff, staff.c.id == b.staff_id))
        ).mappings().all()
    return [dict(r) for r in rows]


def staff_emails(home: Path, department: str) -> dict[str, str]:
    """E-mail address (lower case) -> username of the department's staff, from the directory."""
    with Instance(home).open() as (db, keyring), db.transaction("r") as conn:
        return {m.email.lower(): m.username
                for m in directory.enabled_members(conn, keyring, department, "staff")}


def make_demo(home: Path, port: int, *extra: str) -> str:
    """Run the command; return what it printed."""
    started = time.monotonic()
    result = run_cli("demo", "--home", str(home), "--port", str(port), *extra)
    print(f"demo {' '.join(extra)}: {time.monotonic() - started:.1f} s")
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    return result.stdout


def test_demo_prints_every_login_once_with_its_own_password(tmp_path: Path) -> None:
    home = tmp_path / "inst"
    port = free_port()
    output = make_demo(home, port)
    logins = parse_logins(output)
    roles = Counter((login.department, login.role) for login in logins.values())
    assert roles == {("ost", "admin"): 1, ("ost", "staff"): 3, ("ost", "recipient"): 5,
                     ("vest", "admin"): 1, ("vest", "staff"): 3, ("vest", "recipient"): 5}
    passwords = [login.password for login in logins.values()]
    assert len(set(passwords)) == len(passwords) == 18
    assert all(len(p) >= 16 for p in passwords)
    for login in logins.values():
        assert login.url == f"http://127.0.0.1:{port}/{login.username}/"
    assert f"base URL http://127.0.0.1:{port}/" in output and f"server 127.0.0.1:{port}" in output
    assert f"servicehop-caldav serve --home {home} --host 127.0.0.1 --port {port}" in output
    accounts = home / "demo-accounts.txt"
    assert stat.S_IMODE(accounts.stat().st_mode) == 0o600
    text = accounts.read_text(encoding="utf-8")
    assert output.startswith(text) and parse_logins(text) == logins
    assert (home / "radicale.conf").is_file() and not (home / "radicale.conf.new").exists()
    assert "[departments.ost]" in (home / "servicehop.toml").read_text(encoding="utf-8")
    result = run_cli("verify", "--home", str(home))
    assert result.returncode == 0, result.stdout + result.stderr


def test_recipient_employee_and_admin_see_the_demo(database_url: str, tmp_path: Path) -> None:
    home = tmp_path / "inst"
    port = free_port()
    output = make_demo(home, port, "--database-url", database_url)
    logins = parse_logins(output)
    rows = booking_rows(home)
    assert 15 <= len(rows) <= 25, len(rows)
    assert {r["status"] for r in rows} == {"confirmed"} and all(r["staff"] for r in rows)
    by_recipient = Counter(r["recipient"] for r in rows)
    assert set(by_recipient) == {u for u, login in logins.items() if login.role == "recipient"}
    now = datetime.now(UTC)

    def client(username: str) -> caldav.DAVClient:
        return caldav.DAVClient(url=f"http://127.0.0.1:{port}/", username=username,
                                password=logins[username].password)

    def calendars(username: str) -> dict[str, caldav.Calendar]:
        principal = client(username).principal()
        return {str(c.url).rstrip("/").rsplit("/", 1)[-1]: c for c in principal.calendars()}

    proc = spawn_serve(home, port)
    try:
        wait_for_port(port, lambda: None if proc.poll() is None else str(proc.communicate()))

        # A recipient of ost (the one with the most bookings).
        recipient = max((u for u in by_recipient if logins[u].department == "ost"),
                        key=lambda u: (by_recipient[u], u))
        mine = [r for r in rows if r["recipient"] == recipient]
        cals = calendars(recipient)
        assert sorted(cals) == ["availability-ost", "bookings-ost"]
        booked = events_of(cals["bookings-ost"])
        assert sorted((utc(e["DTSTART"]), utc(e["DTEND"])) for e in booked) == sorted(
            (datetime.fromtimestamp(r["start_ts"], UTC), datetime.fromtimestamp(r["end_ts"], UTC))
            for r in mine)
        for event in booked:
            start, end = utc(event["DTSTART"]), utc(event["DTEND"])
            assert str(event["STATUS"]) == "CONFIRMED", event.to_ical()
            assert str(event["DESCRIPTION"]).startswith("Bekreftet:"), event.to_ical()
            assert now < start < now + timedelta(days=14) and open_hours(start, end), (start, end)
        free = events_of(cals["availability-ost"])
        summaries = Counter(str(e["SUMMARY"]) for e in free)
        assert summaries["Ledig"] > 0, summaries
        assert set(summaries) <= {"Ledig", "Opptatt"}, summaries
        for event in free:
            assert open_hours(utc(event["DTSTART"]), utc(event["DTEND"])), event.to_ical()

        # An employee of ost on weekdays (the one with the most visits).
        visits_of = Counter(r["staff"] for r in rows)
        employee = max((u for u, login in logins.items()
                        if login.role == "staff" and login.department == "ost"),
                       key=lambda u: (visits_of[u], u))
        theirs = [r for r in rows if r["staff"] == employee]
        assert theirs and len(theirs) < len([r for r in rows if r["department_id"] == "ost"])
        cals = calendars(employee)
        assert sorted(cals) == ["assignments"]
        visits = events_of(cals["assignments"])
        assert sorted((str(v["RELATED-TO"]), utc(v["DTSTART"]), utc(v["DTEND"])) for v in visits) == sorted(
            (r["booking_href"].removesuffix(".ics"), datetime.fromtimestamp(r["start_ts"], UTC),
             datetime.fromtimestamp(r["end_ts"], UTC)) for r in theirs)
        for visit in visits:
            assert str(visit["STATUS"]) == "CONFIRMED" and str(visit.get("LOCATION", "")), visit.to_ical()

        # The admin of ost.
        admin = next(u for u, login in logins.items() if login.role == "admin" and login.department == "ost")
        cals = calendars(admin)
        assert sorted(cals) == ["opening-ost", "overview-ost"]
        emails = staff_emails(home, "ost")
        assert len(emails) == 3
        windows = {}
        for event in events_of(cals["opening-ost"]):
            start, end = event["DTSTART"].dt, event["DTEND"].dt
            attendees = event.get("ATTENDEE")
            attendees = attendees if isinstance(attendees, list) else [attendees]
            on_duty = {emails[str(a).lower().removeprefix("mailto:")] for a in attendees}
            rule = event["RRULE"]
            windows[tuple(rule["BYDAY"])] = (start.astimezone(OSLO).time(), end.astimezone(OSLO).time(),
                                             on_duty, rule["FREQ"])
        weekday, saturday = windows[("MO", "TU", "WE", "TH", "FR")], windows[("SA",)]
        assert weekday[:2] == (clock(8), clock(16)) and saturday[:2] == (clock(10), clock(14))
        assert weekday[3] == saturday[3] == ["WEEKLY"]
        assert len(weekday[2]) == 2 and len(saturday[2]) == 1
        assert weekday[2] | saturday[2] == set(emails.values())
        overview = events_of(cals["overview-ost"])
        ost_rows = [r for r in rows if r["department_id"] == "ost"]
        assert sorted(str(e["RELATED-TO"]) for e in overview) == sorted(
            r["booking_href"].removesuffix(".ics") for r in ost_rows)
        vest = next(d for d in DEPARTMENTS if d.id == "vest")
        vest_names = [p.name for p in (vest.admin, *vest.staff, *(r.person for r in vest.recipients))]
        for event in overview:
            assert not any(name in str(event.to_ical().decode()) for name in vest_names), event.to_ical()
        # Nothing of the other department: not listed, not readable.
        other = next(u for u, login in logins.items() if login.role == "admin" and login.department == "vest")
        with pytest.raises(caldav.lib.error.DAVError):
            caldav.Calendar(client(admin), url=f"http://127.0.0.1:{port}/{other}/overview-vest/").events()
    finally:
        proc.send_signal(signal.SIGTERM)
        # Radicale waits for open connections to end; the clients' idle
        # keep-alive connections end at its 30 s socket timeout.
        proc.wait(60)
    assert proc.returncode == 0, proc.communicate()


def test_demo_refuses_an_existing_instance(tmp_path: Path) -> None:
    home = tmp_path / "inst"
    assert run_cli("init", "--home", str(home)).returncode == 0
    key = (home / "key").read_bytes()
    result = run_cli("demo", "--home", str(home))
    assert result.returncode == 1
    assert result.stderr.startswith("servicehop-caldav: error: ") and result.stderr.count("\n") == 1
    assert "already holds an instance" in result.stderr
    assert result.stdout == ""
    assert (home / "key").read_bytes() == key and not (home / "demo-accounts.txt").exists()


# Every day of two weeks, and the days around both changes of daylight saving time.
PLAN_DAYS = [date(2026, 11, 22) + timedelta(days=n) for n in range(14)] + [
    date(2026, 3, 20) + timedelta(days=n) for n in range(10)] + [
    date(2026, 10, 16) + timedelta(days=n) for n in range(10)]


@pytest.mark.parametrize("today", PLAN_DAYS, ids=str)
def test_plan_keeps_every_rule_whatever_day_it_runs(today: date) -> None:
    """Checked minute by minute against the rules, not with the planner's own checks."""
    plan = plan_bookings(today)
    assert 15 <= len(plan) <= 25
    departments = {d.id: d for d in DEPARTMENTS}
    weekly = {r.person.username: r.weekly_minutes for d in DEPARTMENTS for r in d.recipients}
    assert {b.recipient for b in plan} == set(weekly)
    busy: dict[tuple[str, datetime], int] = defaultdict(int)
    own: dict[tuple[str, datetime], int] = defaultdict(int)
    used: dict[tuple[str, tuple[int, int]], int] = defaultdict(int)
    for booking in plan:
        dept = departments[booking.department]
        assert booking.service in dict(dept.services)
        assert booking.end - booking.start == timedelta(minutes=dict(dept.services)[booking.service])
        assert 1 <= (booking.start.date() - today).days <= 13
        assert open_hours(booking.start, booking.end), booking
        minute = booking.start
        while minute < booking.end:
            busy[(booking.department, minute)] += 1
            own[(booking.recipient, minute)] += 1
            minute += timedelta(minutes=1)
        week = booking.start.astimezone(OSLO).date().isocalendar()[:2]
        used[(booking.recipient, week)] += (booking.end - booking.start) // timedelta(minutes=1)
    for (dept_id, minute), count in busy.items():
        dept = departments[dept_id]
        on_duty = dept.saturday_staff if minute.astimezone(OSLO).weekday() == 5 else dept.weekday_staff
        assert count <= len(on_duty), (dept_id, minute)
    assert max(own.values()) == 1
    for (username, _week), minutes in used.items():
        limit = weekly[username]
        assert limit is None or minutes <= limit, (username, minutes)
    assert plan == sorted(plan, key=lambda b: b.start)
    assert len({b.uid for b in plan}) == len(plan)
