"""`backup` while the server writes, and the PostgreSQL way (pg_dump).

A real `serve` process takes a steady write load (threads PUTting events
over HTTP, each acknowledged PUT remembered) while `backup` runs as its own
process, three times. Each copy must open, pass `verify --database-url`
with the instance's key, and hold every event acknowledged before that
backup started; the load must see no error, the server must have kept
answering during the backups, and the live database must still verify.

On PostgreSQL `backup` refuses with a pointer to pg_dump; the README's
pg_dump/pg_restore way is run too (on a scratch schema) and the restored
database verifies.
"""

from __future__ import annotations

import re
import signal
import sqlite3
import stat
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, text

from tests.conftest import CLI, PG_ADMIN_URL, free_port, make_database_url, spawn_serve, wait_for_port

OPENING = "/demo/opening-demo/"  # init's first user administers the demo department
THREADS = 4


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def init(home: Path, *extra: str) -> str:
    done = cli("init", "--home", str(home), *extra)
    assert done.returncode == 0, done.stderr
    match = re.search(r"login: demo\s+password: (\S+)", done.stdout)
    assert match, done.stdout
    return match.group(1)


def event(uid: str, year: int) -> bytes:
    # Years ahead, beyond every horizon: the opening calendar takes it
    # without deciding bookings or recomputing availability.
    return (f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//backup test//EN\r\nBEGIN:VEVENT\r\n"
            f"UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:{year}0301T100000Z\r\n"
            f"DTEND:{year}0301T110000Z\r\nSUMMARY:Load {uid}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n").encode()


@dataclass
class Load:
    """Threads PUTting new events until stopped; what was acknowledged, when."""

    url: str
    password: str
    acknowledged: list[tuple[float, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for number in range(THREADS):
            thread = threading.Thread(target=self._run, args=(number,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _run(self, number: int) -> None:
        session = requests.Session()
        session.auth = ("demo", self.password)
        n = 0
        while not self._stop.is_set():
            n += 1
            href = f"load-{number}-{n}-{uuid.uuid4().hex[:6]}.ics"
            try:
                r = session.put(self.url + OPENING + href, data=event(href[:-4], 2031 + n % 5),
                                headers={"Content-Type": "text/calendar"}, timeout=60)
            except requests.RequestException as e:
                self.errors.append(f"{href}: {e}")
                continue
            if r.status_code in (201, 204):
                with self._lock:
                    self.acknowledged.append((time.monotonic(), href))
            else:
                self.errors.append(f"{href}: HTTP {r.status_code}")
        session.close()

    def before(self, moment: float) -> set[str]:
        with self._lock:
            return {href for at, href in self.acknowledged if at < moment}

    def between(self, start: float, end: float) -> int:
        with self._lock:
            return sum(start <= at < end for at, _ in self.acknowledged)

    def wait_for(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acknowledged) < count:
            assert not self.errors, self.errors[:3]
            assert time.monotonic() < deadline, f"only {len(self.acknowledged)} PUTs acknowledged"
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(90)


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[tuple[Path, Load]]:
    """A SQLite instance served by a `serve` process, with a load on it."""
    home = tmp_path / "inst"
    password = init(home)
    port = free_port()
    proc = spawn_serve(home, port)
    load = Load(f"http://127.0.0.1:{port}", password)
    try:
        wait_for_port(port, lambda: None if proc.poll() is None else proc.communicate()[1])
        load.start()
        yield home, load
    finally:
        load.stop()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)


def opening_hrefs(database: Path) -> set[str]:
    """The hrefs of the demo opening calendar, read with plain sqlite3 (clear index columns)."""
    conn = sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT o.href FROM calendar_objects o JOIN calendar_instances i "
            "ON i.calendar_id = o.calendar_id WHERE i.path = 'demo/opening-demo'").fetchall()
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
    return {href for (href,) in rows}


def test_backup_during_a_write_load_is_consistent(serving: tuple[Path, Load], tmp_path: Path) -> None:
    home, load = serving
    backups = []
    for number in range(3):
        load.wait_for(20 * (number + 1))
        started = time.monotonic()
        acknowledged = load.before(started)
        out = tmp_path / f"backup-{number}.db"
        done = cli("backup", "--home", str(home), "--out", str(out))
        ended = time.monotonic()
        assert done.returncode == 0, done.stderr
        assert str(out) in done.stdout and "key" in done.stdout
        # The server kept serving while the command ran.
        assert load.between(started, ended) > 0
        backups.append((out, acknowledged))
    load.wait_for(len(load.acknowledged) + 10)
    load.stop()
    assert not load.errors, load.errors[:5]

    for out, acknowledged in backups:
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
        held = opening_hrefs(out)
        assert acknowledged <= held, sorted(acknowledged - held)[:5]
        verified = cli("verify", "--home", str(home), "--database-url", f"sqlite:///{out}")
        assert verified.returncode == 0, verified.stderr
        assert "no problems found" in verified.stdout
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]
    assert len(opening_hrefs(backups[-1][0])) < len(load.acknowledged)  # a snapshot, not the end
    live = cli("verify", "--home", str(home))
    assert live.returncode == 0, live.stderr


def test_backup_never_replaces_a_file(tmp_path: Path) -> None:
    home = tmp_path / "inst"
    init(home)
    out = tmp_path / "backup.db"
    out.write_text("earlier backup")
    done = cli("backup", "--home", str(home), "--out", str(out))
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "already exists" in done.stderr and out.read_text() == "earlier backup"
    missing = cli("verify", "--home", str(home), "--database-url", f"sqlite:///{tmp_path / 'none.db'}")
    assert missing.returncode == 1 and "no database at" in missing.stderr
    assert not (tmp_path / "none.db").exists()  # not made empty (an empty database verifies)


def test_postgres_backup_points_to_pg_dump_whose_copy_verifies(tmp_path: Path) -> None:
    url, drop = make_database_url("postgres", tmp_path)
    home = tmp_path / "inst"
    password = init(home, "--database-url", url)
    done = cli("backup", "--home", str(home), "--out", str(tmp_path / "b.db"))
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "pg_dump" in done.stderr and "README" in done.stderr
    assert not (tmp_path / "b.db").exists()

    # The README's way, on this test's schema: pg_dump while the server writes,
    # then the schema gone and restored by pg_restore; it verifies.
    schema = re.search(r"search_path%3D(\w+)", url)
    assert schema is not None
    libpq = PG_ADMIN_URL.replace("+psycopg", "")
    dump = tmp_path / "servicehop.dump"
    port = free_port()
    proc = spawn_serve(home, port)
    load = Load(f"http://127.0.0.1:{port}", password)
    try:
        wait_for_port(port, lambda: None if proc.poll() is None else proc.communicate()[1])
        load.start()
        load.wait_for(20)
        acknowledged = load.before(time.monotonic())
        dumped = subprocess.run(["pg_dump", "--format=custom", f"--schema={schema.group(1)}",
                                 f"--file={dump}", libpq], capture_output=True, text=True, timeout=120)
        assert dumped.returncode == 0, dumped.stderr
        load.wait_for(len(load.acknowledged) + 5)
    finally:
        load.stop()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert not load.errors, load.errors[:5]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema.group(1)}" CASCADE'))
        restored = subprocess.run(["pg_restore", "--no-owner", f"--dbname={libpq}", str(dump)],
                                  capture_output=True, text=True, timeout=120)
        assert restored.returncode == 0, restored.stderr
        with admin.connect() as conn:
            held = set(conn.execute(text(
                f'SELECT o.href FROM "{schema.group(1)}".calendar_objects o '
                f'JOIN "{schema.group(1)}".calendar_instances i ON i.calendar_id = o.calendar_id '
                "WHERE i.path = 'demo/opening-demo'")).scalars())
    finally:
        admin.dispose()
    assert acknowledged <= held
    verified = cli("verify", "--home", str(home))
    assert verified.returncode == 0, verified.stderr
    drop()
