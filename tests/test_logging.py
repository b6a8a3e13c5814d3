"""Logs: one line per request, decisions with ids only, no personal data above debug.

The end-to-end tests start the real ``servicehop-caldav serve`` as a
subprocess on an instance with a department, staff, recipients and an
admin, drive a scripted set of requests (discovery, REPORT, GET, bookings
accepted, refused, moved and cancelled, a failed login, a 404, a 403, a
reverse-proxy prefix, a percent-encoded path, a health check) counting
every HTTP exchange on the client side, and read what the server wrote on
stderr. A control run at debug level must show the username and the
client address, so the scan is known to see leaks when there are some.
The unit tests pin down the path shapes, the filter and the decision lines.
"""

from __future__ import annotations

import io
import logging
import re
import signal
import subprocess
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import caldav
import pytest
import requests
from sqlalchemy import create_engine, select, text

from servicehop_caldav import logs, passwords, request_log
from servicehop_caldav.crypto import Keyring
from servicehop_caldav.db.engine import Database, dispose_shared
from servicehop_caldav.db.schema import bookings as bookings_table
from servicehop_caldav.directory import store as directory
from servicehop_caldav.instance import init_instance
from servicehop_caldav.keyfile import load_keys
from servicehop_caldav.provisioning import ensure_provisioned
from servicehop_caldav.store import audit
from servicehop_caldav.store.audit import AuditEntry
from servicehop_caldav.store.keycheck import bind_keyring
from tests.conftest import CLI, free_port, wait_for_port
from tests.helpers.booking_world import OSLO, ics_event, local

DEPT = "ost"
PASSWORD = "pw-Logging-1"
# Usernames and personal fields chosen not to occur by chance in Radicale's
# start-up lines, so that finding one anywhere is a leak.
PEOPLE = {
    "rhansen": ("recipient", "Rita Hansen", "rita.hansen@example.org", "Storgata 7, 3256 Larvik",
                "+47 912 34 567"),
    "onordmann": ("recipient", "Ola Nordmann", "ola.nordmann@example.org", "Kirkegata 3, Larvik",
                  "+47 400 11 222"),
    "ssolberg": ("staff", "Siri Solberg", "siri.solberg@example.org", None, None),
    "aadminsen": ("admin", "Anne Adminsen", "anne.adminsen@example.org", None, None),
}
SUMMARY = "Handlehjelp hos Rita"
NOTES = "Nøkkelen ligger under matta"
USER_AGENT = "LeakCheckAgent/7.7"
FORWARDED_FOR = "10.98.76.54"
RANKS = {"TRACE": 5, "DEBUG": 10, "INFO": 20, "NOTICE": 25, "WARNING": 30, "ERROR": 40,
         "CRITICAL": 50, "ALERT": 55}
HEAD = re.compile(r"\[(?P<at>[^\]]*)\] \[(?P<ident>[^\]]*)\] \[(?P<level>[A-Z]+)\] (?P<msg>.*)")
REQUEST_LINE = re.compile(
    r"(?P<method>[A-Z?]+) (?P<path>/\S*) (?P<status>\d{3}) (?P<ms>\d+\.\d) ms (?P<size>\d+) B"
)
DECISION_LINE = re.compile(
    r"booking (?P<id>request|[0-9a-f-]{36}) (?P<verb>[a-z]+) department=(?P<dept>\S+)"
    r"(?: recipient=(?P<recipient>\d+))?(?: staff=(?P<staff>\d+))?(?: reasons=(?P<reasons>\S+))?"
    r" audit=(?P<action>[a-z-]+)/(?P<outcome>[a-z]+)"
)


# -- the instance and its server ------------------------------------------------------


@dataclass
class Instance:
    home: Path
    url: str
    db: Database
    ids: dict[str, int]

    def set_conf(self, **values: str) -> None:
        """Set options of radicale.conf, by name (``level``, ``delay``)."""
        path = self.home / "radicale.conf"
        conf = path.read_text()
        for name, value in values.items():
            conf, n = re.subn(rf"(?m)^{name} = .*$", f"{name} = {value}", conf)
            assert n == 1, name
        path.write_text(conf)

    def booking_ids(self) -> dict[str, str]:
        """booking href -> booking id, from the bookings table."""
        b = bookings_table.c
        with self.db.transaction("r") as conn:
            return {r.booking_href: r.id for r in conn.execute(select(b.id, b.booking_href))}

    def audit(self) -> list[audit.AuditLine]:
        with self.db.transaction("r") as conn:
            return audit.entries(conn, DEPT)

    def set_disabled(self, username: str, disabled: bool) -> None:
        with self.db.transaction("w") as conn:
            directory.set_disabled(conn, username, disabled)


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    home = tmp_path_factory.mktemp("logging") / "instance"
    url = f"sqlite:///{home.parent / 'servicehop.db'}"
    init_instance(home, url)
    with passwords.cheap_hashes():  # cheap hashes: not what is tested here
        db = Database.shared(url)
        try:
            keyring = Keyring.from_keys(load_keys(home / "key"))
            bind_keyring(db, keyring)
            ids: dict[str, int] = {}
            with db.transaction("w") as conn:
                directory.add_department(conn, DEPT, "Avdeling Øst", "Europe/Oslo", "en")
                for username, (role, name, email, address, phone) in PEOPLE.items():
                    ids[username] = directory.add_user(conn, keyring, username, PASSWORD, name,
                                                       email, address, phone)
                    directory.add_role(conn, ids[username], DEPT, role)
            for username in PEOPLE:
                ensure_provisioned(db, username)
            inst = Instance(home, url, db, ids)
            inst.set_conf(delay="0")  # failed logins and 403s are not what is timed here
            yield inst
        finally:
            dispose_shared(url)


@dataclass
class Record:
    level: str
    ident: str
    text: str  # the message and its continuation lines (a traceback)

    @property
    def rank(self) -> int:
        return RANKS[self.level]


def parse(log: str) -> list[Record]:
    records: list[Record] = []
    for line in log.splitlines():
        match = HEAD.fullmatch(line)
        if match is not None:
            records.append(Record(match["level"], match["ident"], match["msg"]))
        elif records:
            records[-1].text += "\n" + line
        else:
            records.append(Record("INFO", "", line))  # before the handler: treated as INFO
    return records


@dataclass
class Served:
    records: list[Record]

    def at_least(self, level: str) -> list[Record]:
        return [r for r in self.records if r.rank >= RANKS[level]]

    def after_start(self) -> list[Record]:
        """The records from "Radicale server ready" on (the start-up lines
        name the listening address 127.0.0.1; no later line may)."""
        ready = next(i for i, r in enumerate(self.records) if r.text == "Radicale server ready")
        return self.records[ready + 1:]

    def requests(self, level: str = "INFO") -> list[re.Match[str]]:
        return [m for r in self.at_least(level) if (m := REQUEST_LINE.fullmatch(r.text))]

    def decisions(self) -> list[tuple[Record, re.Match[str]]]:
        return [(r, m) for r in self.records if (m := DECISION_LINE.fullmatch(r.text))]


def serve(inst: Instance, drive: Callable[[str], Any], *flags: str,
          until: Callable[[], bool] | None = None) -> tuple[Served, Any]:
    """Run ``serve`` with ``flags``, call ``drive(base_url)``, wait for
    ``until()`` (the upkeep's pass), stop the server; its stderr, parsed."""
    port = free_port()
    err_path = inst.home.parent / f"serve-{port}.err"
    with open(err_path, "w") as err:
        # stderr into a file: a debug run writes more than a pipe holds.
        proc = subprocess.Popen([*CLI, "serve", "--home", str(inst.home), "--port", str(port), *flags],
                                stdout=subprocess.DEVNULL, stderr=err, text=True)
        try:
            wait_for_port(port, lambda: None if proc.poll() is None else err_path.read_text())
            result = drive(f"http://127.0.0.1:{port}")
            deadline = time.monotonic() + 30
            while until is not None and not until():
                assert time.monotonic() < deadline, "the upkeep pass did not happen"
                time.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    assert proc.returncode == 0, err_path.read_text()[-3000:]
    return Served(parse(err_path.read_text())), result


# -- the client side --------------------------------------------------------------------


@dataclass
class Exchanges:
    """Every HTTP exchange the test makes, counted by a response hook on
    each session (so 401 challenges and redirect hops count)."""

    seen: list[tuple[str, int, str]] = field(default_factory=list)

    def hook(self, response: Any, *args: Any, **kwargs: Any) -> Any:
        self.seen.append((response.request.method, response.status_code, response.request.url))
        return response

    def session(self, user: str | None, password: str = PASSWORD) -> requests.Session:
        s = requests.Session()
        if user is not None:
            s.auth = (user, password)
        s.headers["User-Agent"] = USER_AGENT
        s.hooks["response"].append(self.hook)
        return s

    def client(self, base: str, user: str) -> Any:  # caldav.DAVClient (a variable to mypy)
        client = caldav.DAVClient(url=base + "/", username=user, password=PASSWORD,
                                  headers={"User-Agent": USER_AGENT})
        client.session.hooks["response"].append(self.hook)
        return client

    def counted(self) -> list[tuple[str, int]]:
        """(method, status) of each exchange but the health checks (DEBUG)."""
        return sorted((m, s) for m, s, url in self.seen if request_log.HEALTH_PATH not in url)


ICS = {"Content-Type": "text/calendar; charset=utf-8"}
PROPFIND_PRINCIPAL = (
    '<?xml version="1.0" encoding="utf-8"?><propfind xmlns="DAV:"><prop>'
    "<current-user-principal/></prop></propfind>"
)


def tomorrow() -> date:
    return (datetime.now(OSLO) + timedelta(days=1)).date()


@dataclass
class Scenario:
    """What the main run did, for the assertions."""

    exchanges: Exchanges
    uids: list[str]
    hrefs: list[str]
    accepted_id: str = ""
    kept_id: str = ""


def scripted_run(inst: Instance, base: str) -> Scenario:
    ex = Exchanges()
    day = tomorrow()
    rita, admin = ex.session("rhansen"), ex.session("aadminsen")
    opening_uid = f"open-{uuid.uuid4().hex}"
    opening = ics_event(opening_uid, local(day, 8), local(day, 16), summary="Open", rrule="FREQ=DAILY")
    r = admin.put(f"{base}/aadminsen/opening-{DEPT}/{opening_uid}.ics", data=opening.encode(), headers=ICS)
    assert r.status_code == 201, r.text
    uids = [opening_uid] + [f"secretuid-{uuid.uuid4().hex}" for _ in range(3)]
    booked, refused, kept = uids[1:]
    hrefs = [f"/rhansen/bookings-{DEPT}/{u}.ics" for u in uids[1:]]
    scenario = Scenario(ex, uids, hrefs)

    # Discovery: .well-known (a 301 and the PROPFIND it leads to), then the
    # caldav client (its first request has no credentials: a 401 challenge).
    r = rita.request("PROPFIND", f"{base}/.well-known/caldav", data=PROPFIND_PRINCIPAL,
                     headers={"Depth": "0"})
    assert [h.status_code for h in r.history] == [301] and r.status_code == 207
    client = ex.client(base, "rhansen")
    calendars = {str(c.url).rstrip("/").rsplit("/", 1)[-1]: c for c in client.principal().calendars()}
    bookings = calendars[f"bookings-{DEPT}"]
    assert bookings.search(start=local(day, 0), end=local(day + timedelta(days=2), 0), event=True) == []

    def put(uid: str, start: datetime, end: datetime) -> requests.Response:
        body = ics_event(uid, start, end, summary=SUMMARY, description=NOTES)
        return rita.put(f"{base}/rhansen/bookings-{DEPT}/{uid}.ics", data=body.encode(), headers=ICS)

    assert put(booked, local(day, 10), local(day, 11)).status_code == 201  # accepted
    scenario.accepted_id = inst.booking_ids()[f"{booked}.ics"]
    r = rita.get(f"{base}/rhansen/bookings-{DEPT}/{booked}.ics")
    assert r.status_code == 200 and "STATUS:CONFIRMED" in r.text
    assert put(refused, local(day, 20), local(day, 21)).status_code == 201  # outside opening
    assert put(booked, local(day, 12), local(day, 13)).status_code == 204  # moved
    assert put(kept, local(day, 14), local(day, 15)).status_code == 201  # accepted, stays
    scenario.kept_id = inst.booking_ids()[f"{kept}.ics"]
    assert rita.delete(f"{base}/rhansen/bookings-{DEPT}/{booked}.ics").status_code == 200  # cancelled
    # REPORT through the client again: the two events left.
    assert len(bookings.search(start=local(day, 0), end=local(day + timedelta(days=2), 0), event=True)) == 2

    assert ex.session("rhansen", "wrong-password").get(f"{base}/rhansen/").status_code == 401
    assert rita.get(f"{base}/rhansen/bookings-{DEPT}/no-such-{uuid.uuid4().hex}.ics").status_code == 404
    assert rita.request("PROPFIND", f"{base}/onordmann/", headers={"Depth": "0"}).status_code == 403
    # Behind a reverse proxy that keeps its prefix in the path.
    r = rita.request("PROPFIND", f"{base}/caldav/rhansen/", headers={
        "Depth": "0", "X-Script-Name": "/caldav", "X-Forwarded-For": FORWARDED_FOR})
    assert r.status_code == 207, r.status_code
    # Percent-encoded: the server decodes it to a username's path.
    assert rita.request("PROPFIND", f"{base}/%72hansen/", headers={"Depth": "0"}).status_code == 207
    ex.session(None).get(f"{base}{request_log.HEALTH_PATH}")  # whatever it answers: DEBUG
    return scenario


def book_one(base: str, day: date) -> None:
    """An opening window and one confirmed booking in it."""
    ex = Exchanges()
    uid = f"open-{uuid.uuid4().hex}"
    body = ics_event(uid, local(day, 8), local(day, 16), summary="Open", rrule="FREQ=DAILY")
    r = ex.session("aadminsen").put(f"{base}/aadminsen/opening-{DEPT}/{uid}.ics", data=body.encode(),
                                    headers=ICS)
    assert r.status_code == 201, r.text
    uid = f"secretuid-{uuid.uuid4().hex}"
    body = ics_event(uid, local(day, 14), local(day, 15), summary=SUMMARY)
    r = ex.session("rhansen").put(f"{base}/rhansen/bookings-{DEPT}/{uid}.ics", data=body.encode(),
                                  headers=ICS)
    assert r.status_code == 201, r.text


def personal_strings(inst: Instance, scenario: Scenario | None = None) -> list[str]:
    found = [s for username, fields in PEOPLE.items() for s in (username, *fields[1:]) if s]
    found += [SUMMARY, NOTES, USER_AGENT, FORWARDED_FOR, "127.0.0.1", "wrong-password", PASSWORD]
    if scenario is not None:
        found += scenario.uids + scenario.hrefs
    return [s for s in found if s not in ("recipient", "staff", "admin")]


# -- end to end ---------------------------------------------------------------------------


def test_info_log_has_one_line_per_request_and_no_personal_data(instance: Instance) -> None:
    instance.set_conf(level="warning")  # --log-level info overrides it
    served, scenario = serve(instance, lambda base: scripted_run(instance, base), "--log-level", "info")

    # One line per HTTP exchange, with its method and status.
    lines = served.requests()
    assert sorted((m["method"], int(m["status"])) for m in lines) == scenario.exchanges.counted()
    statuses = {int(m["status"]) for m in lines}
    assert {201, 204, 207, 301, 401, 403, 404} <= statuses, statuses
    shapes = {f"{m['method']} {m['path']} {m['status']}" for m in lines}
    assert f"PUT /{{user}}/bookings-{DEPT}/{{object}} 201" in shapes
    assert f"DELETE /{{user}}/bookings-{DEPT}/{{object}} 200" in shapes
    assert "GET /{user}/{collection}/{object} 404" in shapes  # unverified names stay hidden
    assert "PROPFIND /{user}/ 403" in shapes
    assert "PROPFIND /.well-known/caldav 301" in shapes
    assert "GET /{user}/ 401" in shapes
    assert not [m for m in lines if request_log.HEALTH_PATH in m["path"]]

    # Nothing personal at INFO or above (the client address after start-up).
    for record in served.at_least("INFO"):
        for secret in personal_strings(instance, scenario):
            if secret == "127.0.0.1" and record not in served.after_start():
                continue
            assert secret not in record.text, (secret, record)
    assert any("Failed login attempt from <hidden>" in r.text and r.level == "WARNING"
               for r in served.records), "the failed login stays a WARNING, without its data"

    # One decision line per audit entry, with the booking ids of the database.
    decisions = [m for _, m in served.decisions()]
    rita = str(instance.ids["rhansen"])
    assert [(m["id"], m["verb"], m["action"], m["outcome"], m["recipient"]) for m in decisions] == [
        (scenario.accepted_id, "accepted", "book", "accepted", rita),
        ("request", "refused", "book", "refused", rita),
        (scenario.accepted_id, "moved", "move", "accepted", rita),
        (scenario.kept_id, "accepted", "book", "accepted", rita),
        (scenario.accepted_id, "cancelled", "cancel", "cancelled", rita),
    ]
    assert decisions[0]["staff"] == str(instance.ids["ssolberg"])
    assert decisions[1]["reasons"] == "outside-opening" and decisions[1]["staff"] is None
    assert [(a.action, a.outcome, a.recipient) for a in instance.audit()] == [
        (m["action"], m["outcome"], "rhansen") for m in decisions
    ]
    assert scenario.kept_id in instance.booking_ids().values()
    assert all(r.level == "INFO" for r, _ in served.decisions())


def test_debug_level_shows_what_info_hides(instance: Instance) -> None:
    """The control: the same kind of requests at debug level do put the
    username and the client's address in the log - so the scan above would
    see them if the filter let them through. INFO lines stay clean."""

    def drive(base: str) -> Exchanges:
        ex = Exchanges()
        rita = ex.session("rhansen")
        assert rita.request("PROPFIND", f"{base}/rhansen/", headers={"Depth": "0"}).status_code == 207
        assert ex.session("rhansen", "wrong-password").get(f"{base}/rhansen/").status_code == 401
        return ex

    served, ex = serve(instance, drive, "--log-level", "debug")
    text = "\n".join(r.text for r in served.after_start())
    assert "rhansen" in text and "127.0.0.1" in text and USER_AGENT in text
    assert any("Failed login attempt from 127.0.0.1: 'rhansen'" in r.text for r in served.records)
    assert sorted((m["method"], int(m["status"])) for m in served.requests()) == ex.counted()
    for record in served.records:
        if record.level == "INFO":
            assert "rhansen" not in record.text and USER_AGENT not in record.text, record


def test_log_level_governs_the_upkeep_thread_too(instance: Instance) -> None:
    """The upkeep pass at start decides without a request: with the only
    employee disabled it flags a booking, with them back it confirms it
    again. At --log-level warning (over ``level = info`` in radicale.conf)
    neither the pass nor its decision is logged; at ``level = info`` alone
    the decision line comes from the upkeep thread, ids only."""
    if not instance.booking_ids():  # the main test leaves one; when run alone, book one
        serve(instance, lambda base: book_one(base, tomorrow()), "--log-level", "warning")
    [booking_id] = instance.booking_ids().values()
    instance.set_conf(level="info")

    def audited(action: str) -> Callable[[], bool]:
        count = sum(a.action == action for a in instance.audit())
        return lambda: sum(a.action == action for a in instance.audit()) > count

    instance.set_disabled("ssolberg", True)
    try:
        served, _ = serve(instance, lambda base: None, "--log-level", "warning", until=audited("flag"))
    finally:
        instance.set_disabled("ssolberg", False)
    assert [r for r in served.records if r.rank < RANKS["WARNING"]] == []

    served, _ = serve(instance, lambda base: None, until=audited("reassign"))
    found = [(r, m) for r, m in served.decisions() if m["action"] == "reassign"]
    assert len(found) == 1, served.decisions()
    record, match = found[0]
    assert record.level == "INFO" and "servicehop-upkeep" in record.ident
    assert match["id"] == booking_id and match["verb"] == "reassigned"
    assert match["staff"] == str(instance.ids["ssolberg"])
    assert any(r.text.startswith("servicehop upkeep: ") for r in served.records)
    for record in served.at_least("INFO"):
        for secret in personal_strings(instance):
            assert secret not in record.text or secret == "127.0.0.1", (secret, record)


# -- units -----------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "script", "status", "shaped"), [
    ("", "", 200, "/"),
    ("/", "", 207, "/"),
    ("/rhansen/", "", 207, "/{user}/"),
    ("/rhansen", "", 301, "/{user}"),
    ("/rhansen/bookings-ost/", "", 207, "/{user}/bookings-ost/"),
    ("/rhansen/bookings-ost/a b.ics", "", 201, "/{user}/bookings-ost/{object}"),
    ("/rhansen/bookings-ost/x.ics", "", 404, "/{user}/{collection}/{object}"),
    ("/rhansen/availability-ost/", "", 207, "/{user}/availability-ost/"),
    ("/aadminsen/opening-ost/x.ics", "", 204, "/{user}/opening-ost/{object}"),
    ("/ssolberg/assignments/", "", 200, "/{user}/assignments/"),
    ("/rhansen/Rita Hansen/", "", 207, "/{user}/{collection}/"),
    ("/rhansen/bookings-Rita Hansen/", "", 207, "/{user}/{collection}/"),
    ("/rhansen/bookings-ost/x/y/z", "", 404, "/{user}/{collection}/{object}/{part}/{part}"),
    ("/.well-known/caldav", "", 301, "/.well-known/caldav"),
    ("/.well-known/rhansen", "", 404, "/.well-known/{part}"),
    ("/.servicehop/health", "", 200, "/.servicehop/health"),
    ("/caldav/rhansen/", "/caldav", 207, "/{user}/"),
    ("/caldav/rhansen/", "/caldav/", 207, "/{user}/"),
    ("/rhansen/", "/caldav", 207, "/{user}/"),  # the proxy stripped it already
    ("//rhansen//../onordmann/./bookings-ost/", "", 207, "/{user}/bookings-ost/"),
    ("/%72hansen/", "", 207, "/{user}/"),
    ("/ritå/bookings-øst/", "", 207, "/{user}/{collection}/"),
])
def test_paths_are_logged_as_their_shape(path: str, script: str, status: int, shaped: str) -> None:
    assert request_log.shape(path, script, status) == shaped


class _Capture:
    """A handler on the root logger with the privacy filter, like serve's."""

    def __init__(self, debug: bool) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
        self.handler.addFilter(logs.PrivacyFilter(debug))
        self.handler.setLevel(logging.DEBUG if debug else logging.INFO)  # the configured level
        self.levels = {name: logging.getLogger(name).level for name in ("radicale", "servicehop_caldav")}
        self.radicale_filters = list(logging.getLogger("radicale").filters)

    def __enter__(self) -> _Capture:
        logging.getLogger().addHandler(self.handler)
        for name in self.levels:
            logging.getLogger(name).setLevel(logging.DEBUG)
        for f in self.radicale_filters:  # Radicale's traceback remover, if a test set it
            logging.getLogger("radicale").removeFilter(f)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger().removeHandler(self.handler)
        for name, level in self.levels.items():
            logging.getLogger(name).setLevel(level)
        for f in self.radicale_filters:
            logging.getLogger("radicale").addFilter(f)

    @property
    def text(self) -> str:
        return self.stream.getvalue()


def _radicale_like_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """What Radicale logs while it handles a request, with the data in it."""
    radicale = logging.getLogger("radicale")
    radicale.info("%s request for %r received from %s using %r", "PUT", environ["PATH_INFO"],
                  "192.0.2.7", USER_AGENT)
    radicale.info("Successful login: %r (%s)", "rhansen", "ok")
    radicale.log(25, "Access to %r denied for %s", "/onordmann/", "'rhansen'")
    radicale.warning("Failed login attempt from %s: %r (%s)", "192.0.2.7", "rhansen", "x")
    radicale.warning("Bad PUT request on %r (upload): %s", "/rhansen/bookings-ost/secretuid-1.ics",
                     ValueError("UID secretuid-1 of Rita Hansen"))
    radicale.warning("Request body too large: %d", 12345678)
    radicale.critical("PUT response status for '/rhansen/bookings-ost/x.ics' in 0.100 seconds: 500")
    message = "secretuid-2 Rita Hansen\nrhansen\nsecond line with rhansen"
    try:
        raise ValueError(message)  # the source line is in the traceback: no data in it
    except ValueError as e:
        radicale.error("Exception: %s", e)
        logging.error("%s", traceback.format_exc())
        radicale.error("An exception occurred during %s request on %r: %s", "PUT",
                       environ["PATH_INFO"], e, exc_info=True)
    logging.getLogger("some.library").warning("failed for %(who)s", {"who": "rhansen"})
    logging.getLogger("some.library").error(ValueError("rhansen"))
    start_response("500 Internal Server Error", [("Content-Length", "3")])
    return [b"err"]


def _call(app: Callable[..., list[bytes]], path: str = "/rhansen/bookings-ost/secretuid-1.ics",
          **extra: str) -> None:
    environ = {"REQUEST_METHOD": "PUT", "PATH_INFO": path, "REMOTE_ADDR": "192.0.2.7",
               "HTTP_USER_AGENT": USER_AGENT, **extra}
    request_log.handle(environ, lambda status, headers, exc_info=None: None, app)


def test_what_radicale_logs_in_a_request_is_hidden_above_debug() -> None:
    with _Capture(debug=False) as capture:
        _call(_radicale_like_app)
        logging.getLogger("radicale").info("Radicale server ready")  # outside a request: kept
    text = capture.text
    for secret in ("rhansen", "onordmann", "Rita Hansen", "secretuid", "192.0.2.7", USER_AGENT,
                   "second line"):
        assert secret not in text, (secret, text)
    assert "[INFO]" not in text.split("PUT /{user}")[0]  # Radicale's INFO and NOTICE lines dropped
    assert "[WARNING] Failed login attempt from <hidden>: <hidden> (<hidden>)" in text
    assert "[WARNING] Bad PUT request on <hidden> (upload): <hidden> (ValueError)" in text
    assert "[WARNING] Request body too large: 12345678" in text  # numbers stay
    assert "[CRITICAL] PUT response status for <hidden> in 0.100 seconds: 500" in text
    assert "[ERROR] Exception: <hidden> (ValueError)" in text
    # The traceback keeps its frames and the exception's type, not its message.
    assert "Traceback (most recent call last):" in text and "_radicale_like_app" in text
    assert "ValueError: <hidden>" in text
    assert "[WARNING] failed for <hidden>" in text
    assert "[ERROR] <hidden> (ValueError)" in text
    assert "[ERROR] PUT /{user}/{collection}/{object} 500" in text  # the request line: ERROR for 5xx
    assert "[INFO] Radicale server ready" in text


def test_at_debug_level_everything_stays_but_info_is_labelled_debug() -> None:
    with _Capture(debug=True) as capture:
        _call(_radicale_like_app)
    text = capture.text
    assert "[DEBUG] Successful login: 'rhansen' (ok)" in text
    assert "[DEBUG] Access to '/onordmann/' denied for 'rhansen'" in text
    assert "[WARNING] Failed login attempt from 192.0.2.7: 'rhansen' (x)" in text
    assert "secretuid-2 Rita Hansen" in text


def test_health_checks_are_logged_at_debug_and_the_scope_ends_with_the_request() -> None:
    def ok(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        assert request_log.current() is not None
        start_response("200 OK", [])
        return [b"ok"]

    with _Capture(debug=False) as capture:
        _call(ok, request_log.HEALTH_PATH)
        _call(ok, "/rhansen/")
    assert request_log.current() is None
    lines = capture.text.splitlines()
    assert len(lines) == 1 and lines[0].startswith("[INFO] PUT /{user}/ 200 "), lines
    with _Capture(debug=True) as capture:
        _call(ok, request_log.HEALTH_PATH)
    assert re.fullmatch(r"\[DEBUG\] PUT /\.servicehop/health 200 \d+\.\d ms 2 B\n", capture.text)

    def down(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("503 Service Unavailable", [])
        return [b"down"]

    # A load balancer polling a dead database: no ERROR line per poll.
    with _Capture(debug=False) as capture:
        _call(down, request_log.HEALTH_PATH)
    assert capture.text == ""


def test_tracebacks_keep_their_frames_and_types_not_their_messages() -> None:
    first = "UID secretuid-3 of rhansen\n\nrhansen\n  indented rhansen"
    second = "onordmann: no such booking"
    try:
        try:
            raise KeyError(first)
        except KeyError as e:
            raise LookupError(second) from e
    except LookupError:
        text = logs.scrub_traceback(traceback.format_exc())
    for secret in ("rhansen", "onordmann", "secretuid"):
        assert secret not in text, text
    assert text.count("Traceback (most recent call last):") == 2
    assert "The above exception was the direct cause of the following exception:" in text
    assert "KeyError: <hidden>" in text and "LookupError: <hidden>" in text
    assert "in test_tracebacks_keep_their_frames_and_types_not_their_messages" in text


def test_server_errors_before_the_application_are_hidden_too() -> None:
    """Radicale's HTTP server logs a request line it cannot parse before
    any application runs: that is request data too."""
    record = logging.LogRecord("radicale", logging.ERROR, "server.py", 1,
                               "An error occurred during request: code %d, message %s",
                               (400, "Bad request syntax ('GET /rhansen/x HTTP/1.1 junk')"), None,
                               func="log_error")
    assert logs.PrivacyFilter(debug=False).filter(record)
    assert record.getMessage() == "An error occurred during request: code 400, message <hidden>"


def test_decision_lines_are_written_when_their_transaction_commits() -> None:
    engine = create_engine("sqlite://")
    entry = AuditEntry(DEPT, "book", "accepted", 12, 0, 3600, (), 4)
    refused = AuditEntry(DEPT, "book", "refused", 12, 0, 3600, ("no-staff-free", "outside-opening"))
    with _Capture(debug=False) as capture:
        with engine.connect() as conn:
            with conn.begin():
                logs.decision(conn, "6f1c0000-0000-4000-8000-000000000001", entry)
                try:
                    with conn.begin_nested():
                        logs.decision(conn, "6f1c0000-0000-4000-8000-000000000002", entry)
                        raise RuntimeError("rolled back")
                except RuntimeError:
                    pass
                with conn.begin_nested():
                    conn.execute(text("SELECT 1"))
                    logs.decision(conn, None, refused)
                assert capture.text == ""  # not before the commit
            with pytest.raises(RuntimeError), conn.begin():
                logs.decision(conn, "6f1c0000-0000-4000-8000-000000000003", entry)
                raise RuntimeError("the whole transaction")
    assert capture.text.splitlines() == [
        "[INFO] booking 6f1c0000-0000-4000-8000-000000000001 accepted department=ost recipient=12 "
        "staff=4 audit=book/accepted",
        "[INFO] booking request refused department=ost recipient=12 "
        "reasons=no-staff-free,outside-opening audit=book/refused",
    ]
