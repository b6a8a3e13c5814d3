"""A realistic demo municipality, so a newcomer has a working service shop in one command.

*Fjordvik kommune* (fictional) runs home services from two departments,
Hjemmetjenesten Øst and Hjemmetjenesten Vest (Norwegian, Europe/Oslo). Each
has its service catalogue (in servicehop.toml), an admin, three staff and
five recipients with weekly entitlements. The opening hours are two weekly
events in each department's opening calendar: Monday–Friday 08–16 with two
staff on duty and Saturday 10–14 with the third, named as ATTENDEEs.

The people are plain data below; :func:`plan_bookings` turns the
recipients' wishes into bookings for the coming days that every rule
accepts, whatever day the demo runs; :func:`create_demo` makes the
instance and seeds it.

Seeding goes through the server's own write path, not around it: the
opening events and the bookings are uploaded into the collections by
Radicale's storage, loaded with the instance's configuration, one write
transaction each, as a PUT from a calendar app would be. So the desk
decides each booking, assigns the staff member, writes the visit into
their ``assignments/``, the overview and the availability, exactly as it
will for the bookings made later from phones. Each booking is then checked
to have come out confirmed; anything else stops the demo with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar
import radicale.item as radicale_item
from radicale import config as radicale_config
from radicale import storage as radicale_storage
from radicale_storage_servicehop import Collection, Storage, Upkeep

from servicehop_caldav.crypto import Keyring
from servicehop_caldav.db.engine import Database, dispose_shared
from servicehop_caldav.db.schema import BOOKING_STATUSES
from servicehop_caldav.directory import store as directory
from servicehop_caldav.instance import Draft, InstanceError, _template, new_instance, new_password
from servicehop_caldav.keyfile import load_keys
from servicehop_caldav.provisioning import ensure_provisioned
from servicehop_caldav.store import bookings as store_bookings

MUNICIPALITY = "Fjordvik kommune"
TIMEZONE = "Europe/Oslo"
OSLO = ZoneInfo(TIMEZONE)
LANGUAGE = "nb"
ACCOUNTS_FILE = "demo-accounts.txt"

# Opening hours, local time: Monday–Friday and Saturday.
WEEKDAY_HOURS = (time(8), time(16))
SATURDAY_HOURS = (time(10), time(14))
# Bookings are planned from tomorrow to this many days ahead: the first
# opening of tomorrow is hours away whatever the time now (minimum notice
# 1 h), and the last closing is before now + 14 days (the horizon).
LAST_DAY = 13


class DemoError(InstanceError):
    """The demo municipality did not come out as planned (a booking refused)."""


@dataclass(frozen=True)
class Person:
    username: str
    name: str
    email: str
    address: str | None = None
    phone: str | None = None


@dataclass(frozen=True)
class Wish:
    """A visit a recipient wants: which service, on which open day (the
    n-th weekday, or the n-th Saturday, from tomorrow), at what local time,
    and a note for the staff member."""

    service: str
    day: int
    start: time
    saturday: bool = False
    note: str | None = None


@dataclass(frozen=True)
class Recipient:
    person: Person
    weekly_minutes: int | None  # None: unlimited
    wishes: tuple[Wish, ...]


@dataclass(frozen=True)
class Department:
    id: str
    name: str
    services: tuple[tuple[str, int], ...]  # (name, minutes)
    default_service: str
    admin: Person
    weekday_staff: tuple[Person, ...]
    saturday_staff: tuple[Person, ...]
    recipients: tuple[Recipient, ...]

    @property
    def staff(self) -> tuple[Person, ...]:
        return self.weekday_staff + self.saturday_staff

    def minutes(self, service: str) -> int:
        return dict(self.services)[service]


def _employee(username: str, name: str, number: int) -> Person:
    first, last = name.lower().replace("ø", "o").replace("å", "a").replace("æ", "ae").split()
    return Person(username, name, f"{first}.{last}@fjordvik.example.org",
                  phone=f"+47 000 00 {number:03d}")


def _recipient(username: str, name: str, address: str, number: int, weekly: int | None,
               *wishes: Wish) -> Recipient:
    email = f"{username}@example.org"
    return Recipient(Person(username, name, email, f"{address}, Fjordvik", f"+47 000 01 {number:03d}"),
                     weekly, wishes)


def _w(service: str, day: int, hour: int, minute: int = 0, note: str | None = None) -> Wish:
    return Wish(service, day, time(hour, minute), note=note)


def _sat(service: str, hour: int, minute: int = 0, note: str | None = None) -> Wish:
    return Wish(service, 0, time(hour, minute), saturday=True, note=note)


# Some visits overlap on purpose: where both weekday staff are out, the
# others' availability shows busy time.
DEPARTMENTS: tuple[Department, ...] = (
    Department(
        id="ost",
        name="Hjemmetjenesten Øst",
        services=(("Praktisk bistand", 60), ("Handlehjelp", 90), ("Personlig assistanse", 60),
                  ("Følge til lege", 120)),
        default_service="Praktisk bistand",
        admin=_employee("hege", "Hege Johansen", 1),
        weekday_staff=(_employee("ingrid", "Ingrid Bakken", 2), _employee("lars", "Lars Haugen", 3)),
        saturday_staff=(_employee("silje", "Silje Moen", 4),),
        recipients=(
            _recipient("astrid", "Astrid Solheim", "Bakkeveien 3", 1, 180,
                       _w("Handlehjelp", 0, 8, 30, note="Handlelisten ligger på kjøkkenbenken."),
                       _w("Praktisk bistand", 2, 13)),
            _recipient("bjorn", "Bjørn Eriksen", "Strandgata 17", 2, None,
                       _w("Personlig assistanse", 0, 8), _w("Personlig assistanse", 3, 8),
                       _sat("Praktisk bistand", 10, note="Ring på to ganger.")),
            _recipient("ellen", "Ellen Kristiansen", "Furulia 8B", 3, 120,
                       _w("Praktisk bistand", 1, 9),
                       _w("Følge til lege", 4, 12, note="Legetime kl. 12.30 på helsesenteret.")),
            _recipient("per", "Per Olsen", "Kirkegata 5", 4, 240,
                       _w("Handlehjelp", 1, 14), _sat("Handlehjelp", 12)),
            _recipient("randi", "Randi Halvorsen", "Solbakken 21", 5, 150,
                       _w("Praktisk bistand", 0, 11),
                       _w("Personlig assistanse", 2, 13, note="Nøkkel i nøkkelboksen ved døren.")),
        ),
    ),
    Department(
        id="vest",
        name="Hjemmetjenesten Vest",
        services=(("Praktisk bistand", 60), ("Handlehjelp", 60), ("Personlig assistanse", 45),
                  ("Tilsynsbesøk", 30)),
        default_service="Praktisk bistand",
        admin=_employee("terje", "Terje Dahl", 5),
        weekday_staff=(_employee("kristin", "Kristin Berg", 6), _employee("magnus", "Magnus Lie", 7)),
        saturday_staff=(_employee("nora", "Nora Strand", 8),),
        recipients=(
            _recipient("arne", "Arne Pedersen", "Havnegata 2", 6, 120,
                       _w("Handlehjelp", 0, 8, 30), _w("Tilsynsbesøk", 3, 15)),
            _recipient("gunn", "Gunn Karlsen", "Lyngveien 11", 7, None,
                       _w("Personlig assistanse", 0, 8), _w("Personlig assistanse", 2, 8, 30),
                       _sat("Praktisk bistand", 11)),
            _recipient("odd", "Odd Nilsen", "Møllebakken 4", 8, 180,
                       _w("Praktisk bistand", 1, 12, note="Støvsugeren står i gangen."),
                       _sat("Handlehjelp", 13)),
            _recipient("solveig", "Solveig Larsen", "Granstien 6", 9, 90,
                       _w("Tilsynsbesøk", 1, 9), _w("Personlig assistanse", 3, 14)),
            _recipient("tor", "Tor Andersen", "Vestre vei 30", 10, 240,
                       _w("Handlehjelp", 0, 10, 30), _w("Praktisk bistand", 2, 13, note="Hunden er snill.")),
        ),
    ),
)


def people() -> Iterable[tuple[Person, str, Department, int | None]]:
    """Every person with their role, department and weekly minutes, in the
    order they are listed: per department the admin, staff, recipients."""
    for dept in DEPARTMENTS:
        yield dept.admin, "admin", dept, None
        for person in dept.staff:
            yield person, "staff", dept, None
        for recipient in dept.recipients:
            yield recipient.person, "recipient", dept, recipient.weekly_minutes


# -- servicehop.toml -------------------------------------------------------------


def settings_toml() -> str:
    """servicehop.toml: the template's defaults and each department's catalogue."""
    lines = [_template("servicehop.toml").rstrip(), "", f"# The departments of {MUNICIPALITY} "
             "(servicehop-caldav demo)."]
    for dept in DEPARTMENTS:
        services = ",\n".join(f'    {{ name = "{name}", minutes = {minutes} }}'
                              for name, minutes in dept.services)
        lines += ["", f"[departments.{dept.id}]  # {dept.name}",
                  f'default_service = "{dept.default_service}"', f"services = [\n{services},\n]"]
    return "\n".join(lines) + "\n"


# -- the plan ------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedBooking:
    department: str
    recipient: str
    service: str
    start: datetime  # aware, Europe/Oslo
    end: datetime
    note: str | None

    @property
    def uid(self) -> str:
        return f"demo-{self.recipient}-{self.start:%Y%m%dT%H%M}@servicehop"

    @property
    def href(self) -> str:
        return f"{self.uid}.ics"


def opening_hours(day: date) -> tuple[datetime, datetime] | None:
    """The department's opening window on ``day`` (local), None on Sunday."""
    hours = {5: SATURDAY_HOURS, 6: None}.get(day.weekday(), WEEKDAY_HOURS)
    if hours is None:
        return None
    return datetime.combine(day, hours[0], OSLO), datetime.combine(day, hours[1], OSLO)


def _overlap(a: PlannedBooking, start: datetime, end: datetime) -> bool:
    return a.start < end and start < a.end


def _fits(dept: Department, recipient: Recipient, planned: list[PlannedBooking],
          start: datetime, end: datetime) -> bool:
    """Whether the desk will accept this visit after ``planned``: inside the
    day's window, the recipient free that day and within their week's
    entitlement, and at every moment fewer visits than staff on duty."""
    window = opening_hours(start.date())
    if window is None or not (window[0] <= start and end <= window[1]):
        return False
    own = [b for b in planned if b.recipient == recipient.person.username]
    if any(b.start.date() == start.date() for b in own):
        return False
    if recipient.weekly_minutes is not None:
        week = start.date().isocalendar()[:2]
        used = sum((b.end - b.start) // timedelta(minutes=1) for b in own
                   if b.start.date().isocalendar()[:2] == week)
        if used + (end - start) // timedelta(minutes=1) > recipient.weekly_minutes:
            return False
    on_duty = len(dept.saturday_staff if start.weekday() == 5 else dept.weekday_staff)
    others = [b for b in planned if _overlap(b, start, end)]
    moments = [start] + [b.start for b in others if b.start > start]
    return all(sum(b.start <= m < b.end for b in others) < on_duty for m in moments)


def plan_bookings(today: date) -> list[PlannedBooking]:
    """The demo's bookings, from tomorrow to ``LAST_DAY`` days ahead, by start.

    Each wish goes to its day, or the first open day after it where it
    fits (wrapping round); a wish that fits nowhere is left out. Uploaded
    in this order (by start), every visit finds a free employee however the
    desk assigns the earlier ones: whoever is free when a visit starts stays
    free to its end, as nothing later is booked yet."""
    days = [today + timedelta(days=n) for n in range(1, LAST_DAY + 1)]
    weekdays = [d for d in days if d.weekday() < 5]
    saturdays = [d for d in days if d.weekday() == 5]
    plan: list[PlannedBooking] = []
    for dept in DEPARTMENTS:
        planned: list[PlannedBooking] = []
        for recipient in dept.recipients:
            for wish in recipient.wishes:
                pool = saturdays if wish.saturday else weekdays
                first = wish.day % len(pool)
                for k in range(len(pool)):
                    start = datetime.combine(pool[(first + k) % len(pool)], wish.start, OSLO)
                    end = start + timedelta(minutes=dept.minutes(wish.service))
                    if _fits(dept, recipient, planned, start, end):
                        planned.append(PlannedBooking(dept.id, recipient.person.username,
                                                      wish.service, start, end, wish.note))
                        break
        plan += planned
    return sorted(plan, key=lambda b: (b.start, b.department, b.recipient))


# -- iCalendar -------------------------------------------------------------------


def _calendar(event: icalendar.Event) -> str:
    cal = icalendar.Calendar()
    cal.add("PRODID", "-//servicehop-caldav//demo//NB")
    cal.add("VERSION", "2.0")
    cal.add_component(event)
    cal.add_missing_timezones()
    return str(cal.to_ical().decode())


def _event(uid: str, summary: str, start: datetime, end: datetime) -> icalendar.Event:
    event = icalendar.Event()
    event.add("UID", uid)
    event.add("DTSTAMP", datetime.now(UTC).replace(microsecond=0))
    event.add("DTSTART", start)
    event.add("DTEND", end)
    event.add("SUMMARY", summary)
    return event


def opening_events(dept: Department, today: date) -> list[tuple[str, str]]:
    """(href, iCalendar text) of the department's two weekly opening windows,
    each naming the staff on duty as ATTENDEEs (matched by e-mail)."""
    monday = today - timedelta(days=today.weekday())
    saturday = today - timedelta(days=(today.weekday() - 5) % 7)
    windows = (
        (f"apent-hverdager-{dept.id}", "Åpent mandag–fredag", monday, WEEKDAY_HOURS,
         "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", dept.weekday_staff),
        (f"apent-lordag-{dept.id}", "Åpent lørdag", saturday, SATURDAY_HOURS,
         "FREQ=WEEKLY;BYDAY=SA", dept.saturday_staff),
    )
    found = []
    for uid, summary, first_day, (opens, closes), rule, staff in windows:
        event = _event(uid, summary, datetime.combine(first_day, opens, OSLO),
                       datetime.combine(first_day, closes, OSLO))
        event.add("RRULE", icalendar.vRecur.from_ical(rule))
        for person in staff:
            event.add("ATTENDEE", f"mailto:{person.email}",
                      parameters={"CN": person.name, "ROLE": "REQ-PARTICIPANT"})
        found.append((f"{uid}.ics", _calendar(event)))
    return found


def booking_event(booking: PlannedBooking) -> str:
    """The event a recipient's calendar app would PUT for ``booking``."""
    event = _event(booking.uid, booking.service, booking.start, booking.end)
    if booking.note:
        event.add("DESCRIPTION", booking.note)
    return _calendar(event)


# -- the instance ------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    username: str
    password: str
    role: str
    department: str
    name: str
    remark: str  # on duty when (staff), entitlement and bookings (recipients)


@dataclass(frozen=True)
class Demo:
    home: Path
    database_url: str
    accounts: tuple[Account, ...]
    bookings: tuple[PlannedBooking, ...]


def _hours(minutes: int | None) -> str:
    if minutes is None:
        return "unlimited"
    return f"{minutes // 60} h {minutes % 60} min/week" if minutes % 60 else f"{minutes // 60} h/week"


def _accounts(passwords: Mapping[str, str], plan: list[PlannedBooking]) -> tuple[Account, ...]:
    found = []
    for person, role, dept, weekly in people():
        if role == "staff":
            remark = "Sat 10–14" if person in dept.saturday_staff else "Mon–Fri 08–16"
        elif role == "recipient":
            count = sum(b.recipient == person.username for b in plan)
            remark = f"{_hours(weekly)}, {count} booking{'s' * (count != 1)}"
        else:
            remark = "opening hours, overview"
        found.append(Account(person.username, passwords[person.username], role, dept.id,
                             person.name, remark))
    return tuple(found)


def create_demo(home: Path, database_url: str | None = None, host: str = "127.0.0.1",
                port: int = 5232) -> Demo:
    """A new instance in ``home`` holding the demo municipality, its people
    with new passwords (also in ``home/demo-accounts.txt``, mode 0600) and
    bookings for the coming days; ``host``/``port`` only shape the URLs in
    that file. The instance exists (radicale.conf) only once all is seeded."""
    passwords = {person.username: new_password() for person, *_ in people()}
    today = datetime.now(OSLO).date()
    plan = plan_bookings(today)
    with new_instance(home, database_url, settings=settings_toml()) as draft:
        _seed(draft, passwords, today, plan)
        demo = Demo(draft.home, draft.database_url, _accounts(passwords, plan), tuple(plan))
        _write_private(draft.home / ACCOUNTS_FILE, accounts_text(demo, host, port))
    return demo


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also if it was there already
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def _seed(draft: Draft, passwords: Mapping[str, str], today: date,
          plan: list[PlannedBooking]) -> None:
    """The directory, the opening hours and the bookings, through Radicale's
    storage with the instance's configuration (no upkeep thread: the pass
    runs here, once, so nothing outlives the command)."""
    configuration = radicale_config.load([(str(draft.pending_conf), False)])
    configuration.update({"storage": {"upkeep_interval": "-1"}}, "servicehop-caldav demo")
    keyring = Keyring.from_keys(load_keys(draft.key_file))
    try:
        storage = radicale_storage.load(configuration)
        if not isinstance(storage, Storage):
            raise DemoError(f"{draft.pending_conf} names another storage than servicehop's")
        db = storage.db
        with db.transaction("w") as conn:
            for dept in DEPARTMENTS:
                directory.add_department(conn, dept.id, dept.name, TIMEZONE, LANGUAGE)
            for person, role, dept, weekly in people():
                user_id = directory.add_user(conn, keyring, person.username,
                                             passwords[person.username], person.name,
                                             person.email, person.address, person.phone)
                directory.add_role(conn, user_id, dept.id, role, weekly)
        for person, *_ in people():
            ensure_provisioned(db, person.username)
        uploader = _Uploader(storage, configuration.get("server", "max_vevent_rrule_occurrence"))
        for dept in DEPARTMENTS:
            for href, text in opening_events(dept, today):
                uploader.put(dept.admin.username, f"/{dept.admin.username}/opening-{dept.id}/",
                             href, text)
        stored: dict[PlannedBooking, str] = {}
        for booking in plan:
            stored[booking] = uploader.put(
                booking.recipient, f"/{booking.recipient}/bookings-{booking.department}/",
                booking.href, booking_event(booking))
        Upkeep(db, storage.desk, -1).run_once()
        _check_confirmed(db, plan, stored)
    finally:
        dispose_shared(draft.database_url)


class _Uploader:
    """A PUT of one event as Radicale handles it, minus HTTP: the text read
    and checked like a request body, then uploaded into the collection in
    one write transaction, where the storage plugin hands bookings to the
    desk and tells it about opening changes."""

    def __init__(self, storage: Storage, max_occurrences: int) -> None:
        self._storage = storage
        self._max_occurrences = max_occurrences

    def put(self, user: str, collection_path: str, href: str, text: str) -> str:
        """Upload; return the text the server stored."""
        vobject_items = radicale_item.read_components(text)
        radicale_item.check_and_sanitize_items(vobject_items, self._max_occurrences, tag="VCALENDAR")
        with self._storage.acquire_lock("w", user):
            found = list(self._storage.discover(collection_path))
            collection = found[0] if found else None
            if not isinstance(collection, Collection) or not collection.tag:
                raise DemoError(f"no calendar {collection_path} to seed")
            item = radicale_item.Item(collection_path=collection.path, vobject_item=vobject_items[0])
            item.prepare()
            uploaded, _ = collection.upload(href, item)
            return uploaded.serialize()


def _check_confirmed(db: Database, plan: list[PlannedBooking],
                     stored: Mapping[PlannedBooking, str]) -> None:
    """Every planned booking is a confirmed booking row with an employee at
    the planned times; otherwise the demo is wrong, and says why."""
    rows: dict[tuple[str | None, str], store_bookings.BookingRow] = {}
    with db.transaction("r") as conn:
        for dept in DEPARTMENTS:
            for row in store_bookings.find_bookings(conn, dept.id, BOOKING_STATUSES):
                rows[(directory.username_of(conn, row.recipient_id), row.booking_href)] = row
    for booking in plan:
        found = rows.pop((booking.recipient, booking.href), None)
        if (found is None or found.status != "confirmed" or found.staff_id is None
                or found.start_ts != int(booking.start.timestamp())
                or found.end_ts != int(booking.end.timestamp())):
            reason = _first_description_line(stored.get(booking, ""))
            raise DemoError(
                f"the demo booking {booking.service!r} of {booking.recipient} at "
                f"{booking.start:%Y-%m-%d %H:%M} was not confirmed"
                + (f": {reason}" if reason else f" (booking row: {found})")
            )
    if rows:
        raise DemoError(f"{len(rows)} booking(s) that the demo did not plan")


def _first_description_line(text: str) -> str:
    """The reason the desk wrote first into a refused event's DESCRIPTION."""
    try:
        event = next(iter(icalendar.Calendar.from_ical(text).walk("VEVENT")))
    except (ValueError, StopIteration):
        return ""
    lines = str(event.get("DESCRIPTION", "")).splitlines()
    return lines[0] if lines else ""


# -- what the command prints -------------------------------------------------------


def accounts_text(demo: Demo, host: str, port: int) -> str:
    """Every account with its password and the URLs to enter in iOS, DAVx5
    and Thunderbird; also how to start the server."""
    base = f"http://{host}:{port}/"
    first, last = demo.bookings[0].start.date(), demo.bookings[-1].start.date()
    serve = f"servicehop-caldav serve --home {demo.home}"
    if (host, port) != ("127.0.0.1", 5232):
        serve += f" --host {host} --port {port}"
    lines = [
        f"{MUNICIPALITY}: a demo service shop in {demo.home}",
        f"  {len(DEPARTMENTS)} departments ({TIMEZONE}), open Mon–Fri 08–16 and Sat 10–14;",
        f"  {len(demo.bookings)} bookings confirmed from {first:%a %d %b} to {last:%a %d %b}.",
        "",
        f"Start the server:  {serve}",
        "",
        "Then add a CalDAV account in a calendar app with a login below:",
        f"  DAVx5 (Android):  Login with URL and user name; base URL {base}",
        f"  Thunderbird:      New Calendar > On the Network; location {base}",
        "  iOS / macOS:      Settings > Calendar > Accounts > Add Account > Other >",
        f"                    Add CalDAV Account; server {host}:{port}, then Continue without",
        f"                    SSL (or Advanced Settings: Use SSL off, port {port})",
        f"  Other clients:    the calendar home of each login below ({base}<username>/)",
    ]
    if host in ("127.0.0.1", "localhost", "::1"):
        lines += [f"  ({host} is this machine only; for phones, give `demo` and `serve`",
                  "  --host with this machine's address on your network)"]
    elif host in ("0.0.0.0", "::"):
        lines += [f"  ({host} listens on every address of this machine: enter one of them instead)"]
    width = max(len("username"), *(len(a.username) for a in demo.accounts))
    pw_width = max(len("password"), *(len(a.password) for a in demo.accounts))
    name_width = max(len("name"), *(len(a.name) for a in demo.accounts))
    names = {d.id: d.name for d in DEPARTMENTS}
    for dept_id in names:
        lines += ["", f"{names[dept_id]} ({dept_id})",
                  f"  {'role':<10} {'username':<{width}}  {'password':<{pw_width}}  "
                  f"{'name':<{name_width}}  {'calendar home':<{len(base) + width + 1}}  notes"]
        for a in demo.accounts:
            if a.department == dept_id:
                home = f"{base}{a.username}/"
                lines.append(f"  {a.role:<10} {a.username:<{width}}  {a.password:<{pw_width}}  "
                             f"{a.name:<{name_width}}  {home:<{len(base) + width + 1}}  {a.remark}")
    lines += ["", "Recipients book by adding an event to their \"Bestillinger\" calendar inside "
              "the free time", "their \"Ledig tid\" calendar shows; staff see their visits in "
              "\"Mine oppdrag\"; admins", "edit \"Åpningstider\" and watch \"Oversikt\".",
              f"These logins are also in {demo.home / ACCOUNTS_FILE} (readable by you only)."]
    return "\n".join(lines) + "\n"
