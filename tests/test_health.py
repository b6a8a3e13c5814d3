"""``GET /.servicehop/health`` (servicehop_caldav.health), on the real server.

200 with a small JSON body while the database answers, for anybody (no
login), on both backends; HEAD too; other methods 405. 503 with a fixed
reason when the database stops answering - its schema dropped under the
running server, its connections hanging (the answer still comes within
the bound), its port closed - and when the process's key or schema no
longer fit the database; 200 again once the database is back. Nothing in
any answer names a person, the database or its address.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from servicehop_caldav import health
from servicehop_caldav.db.schema import SCHEMA_VERSION
from servicehop_caldav.instance import init_instance
from tests.conftest import CLI, PG_ADMIN_URL, Server, make_database_url, start_instance_server

TIMEOUT = 30


def get(server: Server, method: str = "GET", path: str = health.PATH, **kwargs: object) -> requests.Response:
    return requests.request(method, server.url + path, timeout=TIMEOUT, **kwargs)  # type: ignore[arg-type]


def assert_says_nothing_private(r: requests.Response, *secrets: str) -> None:
    body = r.json()
    assert set(body) <= {"status", "schema", "reason", "pid"}, body
    for secret in ("demo", "postgres", "5432", "servicehop.db", "search_path", *secrets):
        assert secret not in r.text, (secret, r.text)


@pytest.fixture
def instance_server(instance_home: Path) -> Iterator[Server]:
    server = start_instance_server(instance_home)
    yield server
    server.stop()


def test_health_answers_anybody_on_a_working_instance(instance_server: Server, database_url: str) -> None:
    r = get(instance_server)
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ok", "schema": SCHEMA_VERSION, "pid": os.getpid()}
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["Cache-Control"] == "no-store"
    assert "WWW-Authenticate" not in r.headers
    assert_says_nothing_private(r, database_url)

    head = get(instance_server, "HEAD")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Length"] == str(len(r.content))
    assert head.headers["Cache-Control"] == "no-store"
    # A login is not needed, and a wrong one changes nothing.
    assert get(instance_server, auth=("demo", "wrong")).status_code == 200
    assert get(instance_server, path=health.PATH + "/").status_code == 200
    for method in ("POST", "PUT", "DELETE", "PROPFIND", "OPTIONS", "MKCOL"):
        refused = get(instance_server, method)
        assert refused.status_code == 405, (method, refused.status_code)
        assert refused.headers["Allow"] == "GET, HEAD"
    # The rest of the server still wants a login.
    assert get(instance_server, "PROPFIND", "/demo/").status_code == 401


# -- PostgreSQL stops answering ------------------------------------------------------------


def test_health_is_503_when_the_schema_is_dropped_under_the_server(tmp_path: Path) -> None:
    url, drop = make_database_url("postgres", tmp_path)
    schema = url.rsplit("%3D", 1)[1]
    server = start_instance_server(init_instance(tmp_path / "inst", url).instance.home)
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        assert get(server).status_code == 200
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        r = get(server)
        assert r.status_code == 503, r.text
        assert r.json() == {"status": "unavailable", "reason": health.NO_SCHEMA, "pid": os.getpid()}
        assert r.headers["Cache-Control"] == "no-store"
        assert_says_nothing_private(r, schema)
        assert get(server, "HEAD").status_code == 503
    finally:
        server.stop()
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))  # for drop()
        admin.dispose()
        drop()


class Relay:
    """A TCP relay in front of PostgreSQL that the test can freeze (data
    stops flowing; connections stay open) and cut (every connection closed,
    the port refuses), and open again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.frozen = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.port = 0
        self.open()

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self.port = listener.getsockname()[1]
        self._listener = listener
        self.frozen.clear()
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                self._sockets.append(client)
            if self.frozen.is_set():
                continue  # accepted, never answered
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.append(upstream)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                while self.frozen.is_set():
                    time.sleep(0.05)
                    if source.fileno() < 0:
                        return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def freeze(self) -> None:
        self.frozen.set()

    def cut(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        if self._listener is not None:
            try:
                # Wakes the thread blocked in accept(); close() alone would not.
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def test_health_is_503_in_bounded_time_when_postgres_hangs_or_goes(tmp_path: Path) -> None:
    url, drop = make_database_url("postgres", tmp_path)
    parsed = make_url(url)
    relay = Relay((parsed.host or "127.0.0.1", parsed.port or 5432))
    relayed = parsed.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
    server = start_instance_server(init_instance(tmp_path / "inst", relayed).instance.home)
    try:
        assert get(server).status_code == 200

        # Connections that hang: the answer still comes, within the bound.
        relay.freeze()
        started = time.monotonic()
        r = get(server)
        took = time.monotonic() - started
        assert r.status_code == 503, r.text
        assert r.json()["reason"] == health.TOO_SLOW
        assert health.TIMEOUT_SECONDS <= took < health.TIMEOUT_SECONDS + 2, took
        assert_says_nothing_private(r, str(relay.port))
        # The check still hanging is joined, not doubled: again within the bound.
        started = time.monotonic()
        assert get(server).status_code == 503
        assert time.monotonic() - started < health.TIMEOUT_SECONDS + 2

        # The port closed: 503 at once, saying the database does not answer.
        relay.cut()
        reasons = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            r = get(server)
            assert r.status_code == 503, r.text
            reasons.append(r.json()["reason"])
            if reasons[-1] == health.NOT_ANSWERING:
                break
        assert reasons[-1] == health.NOT_ANSWERING, reasons
        assert_says_nothing_private(r, str(relay.port))

        # Back: 200 again, no restart needed.
        relay.open()
        deadline = time.monotonic() + 20
        while (r := get(server)).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert r.status_code == 200, r.text
    finally:
        server.stop()
        relay.cut()
        drop()


# -- the process no longer fits the database -------------------------------------------------


def test_health_is_503_after_a_key_rotation_until_restarted(tmp_path: Path) -> None:
    home = init_instance(tmp_path / "inst").instance.home
    server = start_instance_server(home)
    try:
        assert get(server).status_code == 200
        rotated = subprocess.run([*CLI, "rotate-key", "--home", str(home)], capture_output=True,
                                 text=True, timeout=120)
        assert rotated.returncode == 0, rotated.stderr
        r = get(server)
        assert r.status_code == 503
        assert r.json()["reason"] == health.KEY_ROTATED
    finally:
        server.stop()
    restarted = start_instance_server(home)
    try:
        assert get(restarted).status_code == 200
    finally:
        restarted.stop()


def test_health_is_503_when_the_schema_is_not_this_version(tmp_path: Path) -> None:
    home = init_instance(tmp_path / "inst").instance.home
    server = start_instance_server(home)
    engine = create_engine(f"sqlite:///{home / 'servicehop.db'}")
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE schema_info SET version = :v"), {"v": SCHEMA_VERSION + 1})
        r = get(server)
        assert r.status_code == 503
        assert r.json()["reason"] == (f"the database has schema version {SCHEMA_VERSION + 1}, "
                                      f"this process runs version {SCHEMA_VERSION}: restart it")
    finally:
        engine.dispose()
        server.stop()
