"""Concurrent writers: nothing lost, nothing 5xx, the change log complete.

Eight threads, each with its own HTTP session, PUT 25 new events each into
one calendar and, in between, update one shared event with If-Match on the
ETag they last saw (re-GET and retry on 412), adding one to a counter in its
DESCRIPTION. If-Match makes every update a compare-and-swap, so the final
counter must equal the number of updates the server accepted: one more or
one fewer means a lost update or a phantom one.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.conftest import Server, start_server
from tests.helpers.robust import (
    event,
    list_hrefs,
    mkcalendar,
    put,
    sync_collection,
    verify,
)

THREADS = 8
EVENTS_PER_THREAD = 25
UPDATE_EVERY = 5  # a shared update after every 5th new event: 5 per thread
MAX_ATTEMPTS = 1000  # of one update, before the thread gives up

COUNTER_RE = re.compile(r"^DESCRIPTION:counter=(\d+)\r?$", re.MULTILINE)


def shared_body(counter: int) -> str:
    return event("shared", summary="shared", description=f"counter={counter}")


def read_counter(text: str) -> int:
    match = COUNTER_RE.search(text)
    assert match, text
    return int(match.group(1))


@dataclass
class Outcome:
    statuses: Counter[int] = field(default_factory=Counter)
    updates: int = 0
    conflicts: int = 0
    created: list[str] = field(default_factory=list)
    error: BaseException | None = None


def writer(srv: Server, cal: str, shared: str, n: int, start: threading.Barrier, out: Outcome) -> None:
    s = srv.session("alice")
    seen: tuple[str, int] | None = None  # (ETag, counter) last seen

    def update_shared() -> None:
        nonlocal seen
        for _ in range(MAX_ATTEMPTS):
            if seen is None:
                r = s.get(shared)
                out.statuses[r.status_code] += 1
                assert r.status_code == 200, r.status_code
                seen = (r.headers["ETag"], read_counter(r.text))
            etag, counter = seen
            r = put(s, shared, shared_body(counter + 1), **{"If-Match": etag})
            out.statuses[r.status_code] += 1
            if r.status_code == 412:
                out.conflicts += 1
                seen = None
                continue
            assert r.status_code == 204, (r.status_code, r.text)
            out.updates += 1
            seen = (r.headers["ETag"], counter + 1)
            return
        raise AssertionError(f"thread {n}: no update got through in {MAX_ATTEMPTS} attempts")

    try:
        start.wait(30)
        for i in range(EVENTS_PER_THREAD):
            name = f"t{n}-{i:02d}.ics"
            r = put(s, cal + name, event(f"t{n}-{i:02d}"), **{"If-None-Match": "*"})
            out.statuses[r.status_code] += 1
            assert r.status_code == 201, (r.status_code, r.text)
            out.created.append(name)
            if i % UPDATE_EVERY == UPDATE_EVERY - 1:
                update_shared()
    except BaseException as e:  # noqa: BLE001 - reported by the test
        out.error = e


def second_url(database_url: str) -> str:
    """Another spelling of the same database: the second front end gets a
    Database (engine, pool, in-process writer lock) of its own, so only the
    database's own locking keeps the two apart, as between processes."""
    if database_url.startswith("sqlite:///"):
        folder, name = database_url.rsplit("/", 1)
        return f"{folder}/./{name}"
    return database_url + "&application_name=second_front"


@pytest.mark.parametrize("fronts", [1, 2], ids=["one-server", "two-servers"])
def test_concurrent_writers_lose_nothing(
    server: Server, fronts: int, tmp_path: Path
) -> None:
    s = server.session("alice")
    cal = server.url + "/alice/cal/"
    shared = cal + "shared.ics"
    assert mkcalendar(s, cal).status_code == 201
    assert put(s, shared, shared_body(0)).status_code == 201
    token, _ = sync_collection(s, cal)

    servers = [server]
    if fronts == 2:
        servers.append(start_server(second_url(server.database_url), tmp_path / "second"))
    try:
        start = threading.Barrier(THREADS)
        outcomes = [Outcome() for _ in range(THREADS)]
        threads = []
        for n in range(THREADS):
            srv = servers[n % len(servers)]
            args = (srv, srv.url + "/alice/cal/", srv.url + "/alice/cal/shared.ics", n)
            threads.append(threading.Thread(target=writer, args=(*args, start, outcomes[n])))
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads), "a writer thread hangs"
    finally:
        for srv in servers[1:]:
            srv.stop()
    print("412 conflicts:", sum(o.conflicts for o in outcomes))

    statuses: Counter[int] = sum((o.statuses for o in outcomes), Counter())
    errors = [o.error for o in outcomes if o.error is not None]
    assert not errors, errors
    assert not [code for code in statuses if code >= 500], statuses
    assert set(statuses) <= {200, 201, 204, 412}, statuses

    updates = sum(o.updates for o in outcomes)
    assert updates == THREADS * (EVENTS_PER_THREAD // UPDATE_EVERY)
    r = s.get(shared)
    assert r.status_code == 200
    assert read_counter(r.text) == updates, "an update was lost (or counted twice)"

    created = {f"/alice/cal/{name}" for o in outcomes for name in o.created}
    assert len(created) == THREADS * EVENTS_PER_THREAD
    members = list_hrefs(s, cal)
    assert set(members) == created | {"/alice/cal/shared.ics"}
    for href in sorted(created)[:: EVENTS_PER_THREAD]:  # a sample, one per thread
        r = s.get(server.url + href)
        assert r.status_code == 200 and f"UID:{href.rsplit('/', 1)[1][:-4]}" in r.text

    new_token, changes = sync_collection(s, cal, token)
    assert new_token != token
    assert changes == {href: 200 for href in created | {"/alice/cal/shared.ics"}}
    assert sync_collection(s, cal, new_token) == (new_token, {})
    assert verify(server.database_url)


def test_concurrent_calendar_creation(server: Server) -> None:
    """Writers racing to create calendars and events in them, per user."""
    errors: list[BaseException] = []
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def run(n: int) -> None:
        user = ("alice", "bob")[n % 2]
        s: requests.Session = server.session(user)
        try:
            start.wait(30)
            cal = f"{server.url}/{user}/c{n}/"
            codes = [mkcalendar(s, cal).status_code]
            for i in range(5):
                codes.append(put(s, f"{cal}e{i}.ics", event(f"c{n}-e{i}")).status_code)
            with lock:
                statuses.update(codes)
            assert codes == [201] * 6, codes
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, (errors, statuses)
    for user in ("alice", "bob"):
        s = server.session(user)
        home = list_hrefs(s, f"{server.url}/{user}/")
        mine = [n for n in range(THREADS) if ("alice", "bob")[n % 2] == user]
        assert set(home) == {f"/{user}/c{n}/" for n in mine}
        for n in mine:
            assert len(list_hrefs(s, f"{server.url}/{user}/c{n}/")) == 5
    assert verify(server.database_url)
