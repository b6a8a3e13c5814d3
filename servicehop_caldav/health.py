"""``GET /.servicehop/health``: can this process serve? For load balancers.

No login: a load balancer has none, and the answer carries nothing to
protect. No username can take the path (usernames are slugs that start with
a letter or digit: ``directory.store.check_slug``), and the application
answers it before Radicale's authentication, rights and storage see the
request.

200 ``{"status": "ok", "schema": 5, "pid": 1234}`` when a read transaction
on the database answers within ``TIMEOUT_SECONDS``, the schema is the
version this code runs, and the process's key still fits the database:
its newest key is the database's newest (after ``rotate-key`` registers a
new key, a process started before refuses every write until restarted:
it must leave the pool) and the key checks the database holds for the
keys it has match. 503 ``{"status": "unavailable", "reason": "...",
"pid": 1234}`` otherwise; the reasons are fixed sentences, never a driver's
message (those name hosts, users and SQL). ``pid`` tells the processes of
``serve --workers N`` apart. ``Cache-Control: no-store``; HEAD answers the
same without the body; every other method gets 405.

A load balancer must get an answer in time, whatever the database does:
the check runs in a thread of its own and the request waits at most
``TIMEOUT_SECONDS`` for it (a connection attempt to a host that does not
answer, a full pool, a lock); PostgreSQL also cancels the statements after
``STATEMENT_TIMEOUT_MS``. At most one check per database runs at a time: a
request that comes while one is under way waits for that one, so a hung
database never piles up threads.
"""

from __future__ import annotations

import json
import os
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from servicehop_caldav import request_log
from servicehop_caldav.db.engine import Database
from servicehop_caldav.db.schema import SCHEMA_VERSION, key_checks, schema_info
from servicehop_caldav.store import codec

PATH = request_log.HEALTH_PATH
TIMEOUT_SECONDS = 2.0
STATEMENT_TIMEOUT_MS = 1500

NO_DATABASE = "this server has no servicehop storage"
NOT_ANSWERING = "the database does not answer"
TOO_SLOW = f"the database did not answer within {TIMEOUT_SECONDS:g} s"
NO_SCHEMA = "the database holds no servicehop schema"
UNREADABLE = "the database cannot be read"
KEY_ROTATED = "the instance key was rotated after this process started: restart it"
KEY_MISMATCH = "the key file of this process does not match the database"
KEY_MISSING = "the database holds encrypted data and this process has no key"

Response = tuple[str, list[tuple[str, str]], list[bytes]]


@dataclass(frozen=True)
class Result:
    ok: bool
    reason: str | None = None
    schema: int | None = None


def requested(environ: Any) -> bool:
    """Is this request for the health path?"""
    return environ.get("PATH_INFO", "") in (PATH, PATH + "/")


def answer(environ: Any, db: Database | None) -> Response:
    """The whole answer to a request for the health path (Radicale's
    ``_handle_request`` shape: status line, headers, body parts; HEAD's
    body is dropped by Radicale's ``__call__``)."""
    method = str(environ.get("REQUEST_METHOD", "")).upper()
    if method not in ("GET", "HEAD"):
        return _response("405 Method Not Allowed", {"status": "method not allowed"},
                         [("Allow", "GET, HEAD")])
    result = _probe(db).result(db, TIMEOUT_SECONDS) if db is not None else Result(False, NO_DATABASE)
    body: dict[str, Any] = {"status": "ok" if result.ok else "unavailable"}
    if result.ok:
        body["schema"] = result.schema
    else:
        body["reason"] = result.reason
    body["pid"] = os.getpid()
    return _response("200 OK" if result.ok else "503 Service Unavailable", body)


def _response(status: str, body: dict[str, Any], extra: list[tuple[str, str]] = []) -> Response:  # noqa: B006
    data = json.dumps(body).encode()
    headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store"),
               ("Content-Length", str(len(data))), *extra]
    return status, headers, [data]


def check(db: Database) -> Result:
    """The check itself, without a deadline: one read transaction."""
    try:
        with db.transaction("r") as conn:
            if db.backend == "postgresql":
                conn.execute(text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))
            version = conn.execute(select(schema_info.c.version)).scalar_one_or_none()
            checks = {row.key_id: bytes(row.check_value) for row in conn.execute(select(key_checks))}
            keyring = codec.keyring_of(conn)
    except (OperationalError, InterfaceError, PoolTimeoutError):
        return Result(False, NOT_ANSWERING)
    except ProgrammingError:  # no such table: an empty or another database
        return Result(False, NO_SCHEMA)
    except (DBAPIError, OSError):
        return Result(False, UNREADABLE)
    if version is None:
        return Result(False, NO_SCHEMA)
    if version != SCHEMA_VERSION:
        return Result(False, f"the database has schema version {version}, this process runs "
                             f"version {SCHEMA_VERSION}: restart it")
    if keyring is None:
        return Result(False, KEY_MISSING) if checks else Result(True, schema=version)
    if checks and max(checks) > keyring.current:
        return Result(False, KEY_ROTATED)
    if keyring.current not in checks or any(
        key_id in keyring.keys and not keyring.matches(key_id, value)
        for key_id, value in checks.items()
    ):
        return Result(False, KEY_MISMATCH)
    return Result(True, schema=version)


@dataclass
class _Run:
    done: threading.Event = field(default_factory=threading.Event)
    result: Result | None = None


class _Probe:
    """Runs :func:`check` for one database, one run at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: _Run | None = None

    def result(self, db: Database, timeout: float) -> Result:
        with self._lock:
            run = self._running
            if run is None:
                run = self._running = _Run()
                threading.Thread(target=self._work, args=(run, db), name="servicehop-health",
                                 daemon=True).start()
        if run.done.wait(timeout) and run.result is not None:
            return run.result
        return Result(False, TOO_SLOW)

    def _work(self, run: _Run, db: Database) -> None:
        try:
            run.result = check(db)
        except Exception:  # noqa: BLE001 - whatever it is, the answer is 503
            run.result = Result(False, UNREADABLE)
        finally:
            with self._lock:
                if self._running is run:
                    self._running = None
            run.done.set()


# id(database) -> the database (weakly: a closed one may go) and its probe.
_probes: dict[int, tuple[weakref.ref[Database], _Probe]] = {}
_probes_lock = threading.Lock()


def _probe(db: Database) -> _Probe:
    with _probes_lock:
        found = _probes.get(id(db))
        if found is None or found[0]() is not db:
            for key in [k for k, (ref, _) in _probes.items() if ref() is None]:
                del _probes[key]
            found = _probes[id(db)] = (weakref.ref(db), _Probe())
        return found[1]
