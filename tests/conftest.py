"""Fixtures: the real Radicale server with our storage, on loopback, per test.

Every server test runs twice, on SQLite and on PostgreSQL
(127.0.0.1:5432, user postgres, database test). PostgreSQL tests get a
schema of their own, dropped afterwards. A missing PostgreSQL fails the
tests: it never skips them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import caldav
import pytest
import requests
from radicale import config as radicale_config
from sqlalchemy import create_engine, text

from servicehop_caldav.db.engine import Database, dispose_shared
from servicehop_caldav.db.migrate import ensure_schema
from servicehop_caldav.server import serve

PG_ADMIN_URL = os.environ.get(
    "SERVICEHOP_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
USERS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}


CLI = [sys.executable, "-m", "servicehop_caldav.cli"]


def spawn_serve(home: Path, port: int) -> subprocess.Popen[str]:
    """`servicehop-caldav serve` on ``home`` as a subprocess, output piped."""
    return subprocess.Popen(
        [*CLI, "serve", "--home", str(home), "--port", str(port), "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for_port(port: int, failure: Callable[[], str | None], timeout: float = 30) -> None:
    """Wait until a server listens on 127.0.0.1:``port``; raise at once with
    ``failure()``'s message when that reports the server has died."""
    deadline = time.monotonic() + timeout
    while True:
        problem = failure()
        if problem is not None:
            raise RuntimeError(problem)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on port {port} after {timeout:g} s") from None
            time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running server: its URL, its database URL and its data folder."""

    url: str
    database_url: str
    folder: Path
    _shutdown: socket.socket
    _thread: threading.Thread
    # Logins of this server; instance servers get theirs from the tests.
    passwords: dict[str, str] = field(default_factory=lambda: dict(USERS))

    def session(self, user: str = "alice") -> requests.Session:
        s = requests.Session()
        s.auth = (user, self.passwords[user])
        return s

    def client(self, user: str = "alice") -> caldav.DAVClient:
        return caldav.DAVClient(url=self.url + "/", username=user, password=self.passwords[user])

    def stop(self) -> None:
        self._shutdown.close()
        self._thread.join(30)
        dispose_shared(self.database_url)


def make_database_url(backend: str, tmp_path: Path) -> tuple[str, Any]:
    """A fresh, empty database of ``backend`` and a function that drops it."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'servicehop.db'}", lambda: None
    schema = "t_" + uuid.uuid4().hex[:12]
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as e:  # noqa: BLE001 - any failure to reach PostgreSQL
        pytest.fail(f"PostgreSQL is required at {PG_ADMIN_URL}: {e}")

    def drop() -> None:
        dispose_shared(url)
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    url = f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
    return url, drop


def server_config(
    database_url: str, folder: Path, port: int, extra: dict[str, dict[str, str]] | None = None
) -> dict[str, dict[str, str]]:
    """Radicale configuration of a test server (htpasswd users, owner_only)."""
    folder.mkdir(parents=True, exist_ok=True)
    htpasswd = folder / "users"
    htpasswd.write_text("".join(f"{u}:{p}\n" for u, p in USERS.items()))
    values: dict[str, dict[str, str]] = {
        "server": {"hosts": f"127.0.0.1:{port}", "max_content_length": "1000000"},
        "auth": {
            "type": "htpasswd",
            "htpasswd_filename": str(htpasswd),
            "htpasswd_encryption": "plain",
            "delay": "0",
        },
        "rights": {"type": "owner_only"},
        "storage": {
            "type": "radicale_storage_servicehop",
            "database_url": database_url,
            "filesystem_folder": str(folder / "collections"),
        },
        "logging": {"level": "warning", "mask_passwords": "True"},
    }
    for section, options in (extra or {}).items():
        values.setdefault(section, {}).update(options)
    return values


def start_server(
    database_url: str, folder: Path, extra: dict[str, dict[str, str]] | None = None
) -> Server:
    """A generic Radicale with our storage (htpasswd users, owner_only, no key)."""
    port = free_port()
    configuration = radicale_config.load()
    configuration.update(server_config(database_url, folder, port, extra), "test", privileged=True)
    return _run(configuration, port, database_url, folder)


def start_instance_server(
    home: Path, extra: dict[str, dict[str, str]] | None = None
) -> Server:
    """A servicehop instance made by ``init`` (its own radicale.conf), on a free port."""
    port = free_port()
    configuration = radicale_config.load([(str(home / "radicale.conf"), False)])
    values: dict[str, dict[str, str]] = {
        "server": {"hosts": f"127.0.0.1:{port}"},
        "auth": {"delay": "0"},
        "logging": {"level": "warning"},
    }
    for section, options in (extra or {}).items():
        values.setdefault(section, {}).update(options)
    configuration.update(values, "test")
    database_url = configuration.get("storage", "database_url")
    return _run(configuration, port, database_url, home)


def _run(configuration: Any, port: int, database_url: str, folder: Path) -> Server:
    shutdown_ours, shutdown_theirs = socket.socketpair()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            serve(configuration, shutdown_theirs)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_for_port(port, lambda: f"server failed to start: {errors[0]}" if errors else None)
    return Server(f"http://127.0.0.1:{port}", database_url, folder, shutdown_ours, thread)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    url, drop = make_database_url(backend, tmp_path)
    yield url
    drop()


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """The process's Database of a fresh database, with the schema."""
    database = Database.shared(database_url)
    ensure_schema(database)
    yield database
    dispose_shared(database_url)


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    srv = start_server(database_url, tmp_path / "server")
    yield srv
    srv.stop()


@pytest.fixture
def instance_home(database_url: str, tmp_path: Path) -> Path:
    """A fresh instance directory (``init``) on the backend under test."""
    from servicehop_caldav.instance import init_instance

    return init_instance(tmp_path / "instance", database_url).instance.home
