"""The servers under test, each a subprocess on its own loopback port with fresh data.

* ``stock``    - Radicale 3.9, ``multifilesystem`` storage, htpasswd (plain) auth,
  ``owner_only`` rights: ``python -m radicale --config FILE`` (as
  scripts/conformance.py starts it). Seeded by writing the ``.ics`` files and
  ``.Radicale.props`` into its collection folder.
* ``xandikos`` - ``python -m xandikos serve --defaults`` (no auth: Xandikos
  serves one user). Seeded by writing the files into the calendar's Git work
  tree and committing them in one commit (dulwich), as Xandikos' own
  ``import_one`` would one by one.
* ``sqlite``, ``postgres`` - servicehop: ``servicehop-caldav init`` (SQLite file
  in the instance, or a fresh PostgreSQL schema dropped afterwards), then
  ``python -m servicehop_caldav.cli serve``. Seeded in one transaction with
  ``servicehop_caldav.store.objects.put_object`` and the storage plugin's own
  row values (``object_of_text``), into the ``opening-demo/`` calendar of the
  ``demo`` admin that ``init`` creates (read-write, any VEVENT; no booking
  decision happens there).

Every server's peak resident set (``VmHWM`` of /proc/<pid>/status) is read
before it is stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from bench import client
from bench.data import Event

STOCK_USER, STOCK_PASSWORD = "bench", "bench-pw"
SERVER_LABELS = {
    "stock": "stock Radicale",
    "xandikos": "Xandikos",
    "sqlite": "servicehop SQLite",
    "postgres": "servicehop PostgreSQL",
}
SERVICEHOP = ("sqlite", "postgres")
SERVICEHOP_CALENDAR = "demo/opening-demo"


class RunError(Exception):
    """The run could not be carried out (a server did not start, no PostgreSQL, ...)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def xandikos_installed() -> bool:
    try:
        import xandikos  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class Running:
    """A server process under test and how to reach its calendar."""

    name: str
    url: str  # http://127.0.0.1:PORT
    calendar: str  # the benchmark calendar's path, "/.../"
    auth: tuple[str, str] | None
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes] = field(repr=False)
    seeding: str = ""
    home: Path | None = None  # servicehop: the instance directory
    database_url: str = ""  # servicehop: its database
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return SERVER_LABELS[self.name]

    def session(self, auth: tuple[str, str] | None = None) -> client.Session:
        return client.Session(auth or self.auth)

    def memory_kib(self) -> dict[str, int]:
        """VmHWM (peak) and VmRSS of the server process, in KiB."""
        values: dict[str, int] = {}
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                key, _, rest = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    values[key] = int(rest.split()[0])
        return values

    def cpu_seconds(self) -> float:
        """User and system CPU time the server process has used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_idle(self, quiet: float = 0.5, share: float = 0.05, timeout: float = 120.0) -> float:
        """Wait until the server used under ``share`` of a core over ``quiet``
        seconds: its start-up work done (servicehop's first upkeep pass
        expands the opening calendar of the horizon in the background), so
        the timings are of its steady state. Returns the seconds waited."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            self.check_alive()
            before = self.cpu_seconds()
            time.sleep(quiet)
            if self.cpu_seconds() - before < share * quiet:
                break
        return time.monotonic() - started

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RunError(f"{self.label} exited with {self.process.returncode}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        self.log_file.flush()
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(15)
        self.log_file.close()
        while self.cleanups:
            self.cleanups.pop()()


def _spawn(
    name: str, folder: Path, command: Callable[[int], Sequence[str]], timeout: float = 60
) -> tuple[subprocess.Popen[bytes], int, Path, IO[bytes]]:
    """Start ``command(port)`` and wait until it listens; a free port can be
    taken before the server binds it, so try three ports."""
    log_path = folder / f"{name}.log"
    last = ""
    for _attempt in range(3):
        port = free_port()
        log_file = open(log_path, "ab")  # noqa: SIM115 - closed by Running.stop
        process = subprocess.Popen(
            list(command(port)), stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            cwd=folder,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return process, port, log_path, log_file
            except OSError:
                time.sleep(0.05)
        if process.poll() is None:
            process.kill()
        process.wait(10)
        log_file.close()
        last = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
    raise RunError(f"{SERVER_LABELS[name]} did not start:\n{last}")


# -- stock Radicale ----------------------------------------------------------------


def start_stock(root: Path, events: Sequence[Event]) -> Running:
    folder = root / "stock"
    folder.mkdir(parents=True)
    (folder / "users").write_text(f"{STOCK_USER}:{STOCK_PASSWORD}\n")
    calendar = folder / "collections" / "collection-root" / STOCK_USER / "cal"
    calendar.mkdir(parents=True)
    props = {"tag": "VCALENDAR", "C:supported-calendar-component-set": "VEVENT", "D:displayname": "bench"}
    (calendar / ".Radicale.props").write_text(json.dumps(props))
    for event in events:
        (calendar / event.href).write_text(event.text, newline="")

    def command(port: int) -> list[str]:
        config = folder / "radicale.conf"
        config.write_text(
            "\n".join([
                "[server]", f"hosts = 127.0.0.1:{port}", "",
                "[auth]", "type = htpasswd", f"htpasswd_filename = {folder / 'users'}",
                "htpasswd_encryption = plain", "delay = 0", "",
                "[rights]", "type = owner_only", "",
                "[storage]", "type = multifilesystem", f"filesystem_folder = {folder / 'collections'}", "",
                "[web]", "type = none", "",
                "[logging]", "level = warning", "mask_passwords = True", "",
            ])
        )
        return [sys.executable, "-m", "radicale", "--config", str(config)]

    process, port, log_path, log_file = _spawn("stock", folder, command)
    return Running(
        "stock", f"http://127.0.0.1:{port}", f"/{STOCK_USER}/cal/", (STOCK_USER, STOCK_PASSWORD),
        process, log_path, log_file,
        seeding="files written into the collection folder (.ics + .Radicale.props); "
        "item cache warmed by one untimed PROPFIND",
    )


# -- Xandikos ----------------------------------------------------------------------

XANDIKOS_PRINCIPAL = "/user/"
XANDIKOS_CALENDAR = "/user/calendars/calendar/"


def start_xandikos(root: Path, events: Sequence[Event]) -> Running:
    import dulwich.repo
    from xandikos.web import SingleUserFilesystemBackend

    folder = root / "xandikos"
    data = folder / "data"
    data.mkdir(parents=True)
    backend = SingleUserFilesystemBackend(str(data))
    backend._mark_as_principal(XANDIKOS_PRINCIPAL)
    backend.create_principal(XANDIKOS_PRINCIPAL, create_defaults=True)
    work_tree = data / XANDIKOS_CALENDAR.strip("/")
    for event in events:
        (work_tree / event.href).write_text(event.text, newline="")
    repo = dulwich.repo.Repo(str(work_tree))
    try:
        tree = repo.get_worktree()
        tree.stage([event.href for event in events])
        tree.commit(message=b"benchmark seed")
    finally:
        repo.close()

    def command(port: int) -> list[str]:
        return [sys.executable, "-m", "xandikos", "serve", "-d", str(data), "-p", str(port),
                "-l", "127.0.0.1", "--defaults", "--no-detect-systemd"]

    process, port, log_path, log_file = _spawn("xandikos", folder, command)
    return Running(
        "xandikos", f"http://127.0.0.1:{port}", XANDIKOS_CALENDAR, None, process, log_path, log_file,
        seeding="files written into the calendar's Git work tree and committed in one commit (dulwich)",
    )


# -- servicehop ----------------------------------------------------------------------


Prepare = Callable[[Path, str], str]
"""Seeds a servicehop instance (home, database URL) before it is served; says how."""


def seed_servicehop_calendar(events: Sequence[Event]) -> Prepare:
    """Writes ``events`` into demo's ``opening-demo/`` with ``put_object``, one transaction."""
    from radicale_storage_servicehop import object_of_text

    make = object_of_text(SERVICEHOP_CALENDAR)
    rows = [(event.href, make(event.text)) for event in events]

    def prepare(home: Path, _database_url: str) -> str:
        from servicehop_caldav.instance import Instance
        from servicehop_caldav.store import collections as store_collections
        from servicehop_caldav.store import objects as store_objects

        with Instance(home).open() as (db, _keyring), db.transaction("w") as conn:
            instance = store_collections.get_instance(conn, SERVICEHOP_CALENDAR)
            if instance is None:
                raise RunError(f"init made no {SERVICEHOP_CALENDAR}/")
            for href, row in rows:
                store_objects.put_object(conn, instance.calendar_id, href, row)
        return ("rows written with servicehop_caldav.store.objects.put_object in one transaction "
                "(row values from the storage plugin's object_of_text, encrypted as over HTTP)")

    return prepare


def start_servicehop(
    root: Path, backend: str, pg_url: str, prepare: Prepare, tag: str = ""
) -> Running:
    """A fresh instance (``init``) on ``backend``, seeded by ``prepare``, then served."""
    from servicehop_caldav.db.scratch import scratch_schema
    from servicehop_caldav.instance import init_instance

    folder = root / f"{backend}{tag}"
    folder.mkdir(parents=True)
    home = folder / "instance"
    with contextlib.ExitStack() as stack:
        if backend == "postgres":
            database_url = stack.enter_context(scratch_schema(pg_url, "bench_"))
        else:
            database_url = f"sqlite:///{home / 'servicehop.db'}"
        created = init_instance(home, database_url)
        seeding = prepare(home, database_url)

        def command(port: int) -> list[str]:
            return [sys.executable, "-m", "servicehop_caldav.cli", "serve", "--home", str(home),
                    "--port", str(port), "--log-level", "warning"]

        process, port, log_path, log_file = _spawn(backend, folder, command)
        # From here the schema is dropped when the server has stopped.
        running = Running(
            backend, f"http://127.0.0.1:{port}", f"/{SERVICEHOP_CALENDAR}/", (created.user, created.password),
            process, log_path, log_file, seeding=seeding, home=home, database_url=database_url,
        )
        running.cleanups.append(stack.pop_all().close)
        return running
    raise AssertionError("unreachable")  # pragma: no cover - the with block returns


def start(name: str, root: Path, events: Sequence[Event], pg_url: str) -> Running:
    """Start server ``name`` with a calendar holding ``events``."""
    if name == "stock":
        return start_stock(root, events)
    if name == "xandikos":
        return start_xandikos(root, events)
    if name in SERVICEHOP:
        return start_servicehop(root, name, pg_url, seed_servicehop_calendar(events))
    raise ValueError(f"unknown server {name!r}")


def environment_note() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0], "cpus": str(os.cpu_count())}
    for dist in ("radicale", "xandikos", "servicehop-caldav", "SQLAlchemy", "psycopg",
                 "recurring-ical-events", "isal"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out
