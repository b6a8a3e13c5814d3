"""Pooled PostgreSQL connections the server closed are replaced unseen.

The engine does not ping the database before each request (a round trip
each); it looks at the idle connection's socket instead
(:func:`servicehop_caldav.db.engine.peer_closed`). A backend terminated
under the running server, as a database restart or an administrator's
``pg_terminate_backend`` does, must cost no failed request.
"""

from __future__ import annotations

import socket
from contextlib import ExitStack
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, text

from servicehop_caldav.db.engine import Database, peer_closed
from servicehop_caldav.instance import init_instance
from tests.conftest import PG_ADMIN_URL, make_database_url, start_instance_server


def test_peer_closed_sees_data_and_end_of_file_without_blocking() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        assert not peer_closed(ours.fileno())
        theirs.sendall(b"E")  # what a server sends before it goes: readable
        assert peer_closed(ours.fileno())
        ours.recv(1)
        assert not peer_closed(ours.fileno())
        theirs.close()
        assert peer_closed(ours.fileno())


@pytest.mark.postgres
def test_requests_after_the_pools_backends_were_terminated_all_succeed(tmp_path: Path) -> None:
    url, drop = make_database_url("postgres", tmp_path)
    created = init_instance(tmp_path / "instance", url)
    server = start_instance_server(created.instance.home)
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        session = requests.Session()
        session.auth = (created.user, created.password)
        home = f"{server.url}/{created.user}/"

        def propfind() -> int:
            return session.request("PROPFIND", home, headers={"Depth": "1"}, timeout=30).status_code

        assert propfind() == 207
        # The server's own pool (one Database per URL and process): open
        # several connections at once, note their backends, give them back.
        db = Database.shared(url)
        with ExitStack() as stack:
            conns = [stack.enter_context(db.engine.connect()) for _ in range(3)]
            pids = [c.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() for c in conns]
            for c in conns:
                c.rollback()
        with admin.connect() as conn:
            for pid in pids:
                assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()
            conn.execute(text("SELECT pg_sleep(0.2)"))  # the notices reach the sockets
        assert [propfind() for _ in range(6)] == [207] * 6
        health = requests.get(f"{server.url}/.servicehop/health", timeout=30)
        assert health.status_code == 200, health.text
    finally:
        admin.dispose()
        server.stop()
        drop()
