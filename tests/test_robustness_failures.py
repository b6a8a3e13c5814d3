"""Failures in the middle of a write leave nothing half-written.

1. In process: a store function raises part-way through a request (after
   rows of that request are already written). ``ValueError`` is caught by
   Radicale inside the request's transaction (it answers 400 and commits: the
   savepoint must have undone the call); ``RuntimeError`` escapes the request
   (500: the whole transaction rolls back).
2. A real kill: a server process dies with ``os._exit`` while a whole-calendar
   PUT has written part of its rows; a fresh server on the same database
   finds nothing of that request.

After each failure: the target does not exist (or is unchanged), every table
holds exactly the rows it held before, sync-collection from an earlier token
reports no change, the ctag is unchanged, verify passes, and the server still
serves writes.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import requests

from servicehop_caldav.store import collections as store_collections
from servicehop_caldav.store import objects as store_objects
from servicehop_caldav.store import one_trip
from tests.conftest import USERS, Server, free_port, server_config, start_server, wait_for_port
from tests.helpers.robust import (
    UTC,
    XML,
    collection_state,
    db_snapshot,
    event,
    list_hrefs,
    mkcalendar,
    put,
    sync_collection,
    vcalendar,
    verify,
    vevent,
)

HELPERS = Path(__file__).parent / "helpers"


@pytest.fixture
def fast_server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    """The usual server, minus Radicale's 1 s sleep before every 5xx answer."""
    srv = start_server(database_url, tmp_path / "server", {"server": {"delay_on_error": "0"}})
    yield srv
    srv.stop()


def whole_calendar(count: int, prefix: str = "bulk") -> str:
    start = dt.datetime(2026, 4, 6, 8, 0, tzinfo=UTC)
    return vcalendar(
        *(
            vevent(f"{prefix}-{i:03d}", start + dt.timedelta(days=i % 30, hours=i % 8))
            for i in range(count)
        ),
        name="Bulk",
    )


def fail_on_call(
    monkeypatch: pytest.MonkeyPatch,
    module: Any,
    name: str,
    n: int,
    exc: type[Exception],
    after: bool = False,
) -> Callable[[], int]:
    """Make ``module.name`` raise ``exc`` on its n-th call (once the call has
    done its work when ``after``); returns a counter of the calls."""
    original = getattr(module, name)
    calls = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls != n:
            return original(*args, **kwargs)
        if after:
            original(*args, **kwargs)
        raise exc(f"injected failure in call {n} of {name}")

    monkeypatch.setattr(module, name, wrapper)
    return lambda: calls


class World:
    """alice with two calendars: cal (three events) and other (empty)."""

    def __init__(self, srv: Server) -> None:
        self.srv = srv
        self.s = srv.session("alice")
        self.home = srv.url + "/alice/"
        self.cal = self.home + "cal/"
        self.other = self.home + "other/"
        for url in (self.cal, self.other):
            assert mkcalendar(self.s, url).status_code == 201
        for i in range(3):
            assert put(self.s, f"{self.cal}e{i}.ics", event(f"e{i}")).status_code == 201

    def snapshot(self) -> dict[str, Any]:
        """Everything a client or the database can see of the current state."""
        return {
            "home": list_hrefs(self.s, self.home),
            "cal": list_hrefs(self.s, self.cal),
            "other": list_hrefs(self.s, self.other),
            "cal-state": collection_state(self.s, self.cal),
            "other-state": collection_state(self.s, self.other),
            "bodies": {h: self.s.get(self.srv.url + h).text for h in list_hrefs(self.s, self.cal)},
            "db": db_snapshot(self.srv.database_url),
        }

    def assert_unchanged(self, before: dict[str, Any]) -> None:
        after = self.snapshot()
        for key in ("home", "cal", "other", "cal-state", "other-state", "bodies"):
            assert after[key] == before[key], key
        assert after["db"] == before["db"]
        for url, key in ((self.cal, "cal-state"), (self.other, "other-state")):
            token = before[key]["sync-token"]
            assert sync_collection(self.s, url, token) == (token, {})
        assert verify(self.srv.database_url)


# The requests that fail, each a function of the World.


def single_put_new(w: World) -> requests.Response:
    return put(w.s, w.cal + "new.ics", event("new"))


def single_put_update(w: World) -> requests.Response:
    return put(w.s, w.cal + "e1.ics", event("e1", summary="changed"))


def whole_put_new(w: World) -> requests.Response:
    return put(w.s, w.home + "bulk/", whole_calendar(50))


def whole_put_replace(w: World) -> requests.Response:
    return put(w.s, w.cal, whole_calendar(50))


def move_across(w: World) -> requests.Response:
    return w.s.request("MOVE", w.cal + "e1.ics", headers={"Destination": w.other + "moved.ics"})


def move_rename(w: World) -> requests.Response:
    return w.s.request("MOVE", w.cal + "e2.ics", headers={"Destination": w.cal + "renamed.ics"})


def delete_event(w: World) -> requests.Response:
    return w.s.delete(w.cal + "e0.ics")


def delete_calendar(w: World) -> requests.Response:
    return w.s.delete(w.cal)


def proppatch(w: World) -> requests.Response:
    body = (
        '<?xml version="1.0" encoding="utf-8"?><D:propertyupdate xmlns:D="DAV:">'
        "<D:set><D:prop><D:displayname>Renamed</D:displayname></D:prop></D:set>"
        "</D:propertyupdate>"
    )
    return w.s.request("PROPPATCH", w.cal, data=body.encode(), headers=XML)


def make_calendar(w: World) -> requests.Response:
    return mkcalendar(w.s, w.home + "made/")


@dataclass(frozen=True)
class Case:
    request: Callable[[World], requests.Response]
    module: Any
    function: str
    fail_at: int  # the call that raises
    ok_status: int  # of the same request without the failure
    # path (under /alice/) -> GET status after the failure, after the retry
    paths: dict[str, tuple[int, int]] = field(default_factory=dict)
    after: bool = False  # raise once the failing call has done its work
    caught: bool = True  # Radicale answers a ValueError here itself (400)


CASES = {
    # A new row and its change: the change log write fails.
    "put-new": Case(single_put_new, store_objects, "record_change", 1, 201,
                    {"cal/new.ics": (404, 200)}),
    "put-update": Case(single_put_update, store_objects, "record_change", 1, 204),
    # 29 objects of the new calendar are written when the 30th fails.
    "whole-put-new": Case(whole_put_new, store_objects, "put_object", 30, 201,
                          {"bulk/": (404, 200), "bulk/bulk-049.ics": (404, 200)}),
    # Replacing a calendar first deletes the old one: that must come back.
    "whole-put-replace": Case(whole_put_replace, store_objects, "put_object", 30, 201,
                              {"cal/e0.ics": (200, 404), "cal/bulk-000.ics": (404, 200)}),
    # A move deletes the source (one change), then writes the target.
    "move-across": Case(move_across, store_objects, "put_object", 1, 201,
                        {"cal/e1.ics": (200, 404), "other/moved.ics": (404, 200)}),
    "move-rename": Case(move_rename, store_objects, "record_change", 2, 201,
                        {"cal/e2.ics": (200, 404), "cal/renamed.ics": (404, 200)}),
    # Radicale does not catch a ValueError of DELETE: 500 either way.
    "delete-event": Case(delete_event, store_objects, "record_change", 1, 200,
                         {"cal/e0.ics": (200, 404)}, caught=False),
    "delete-calendar": Case(delete_calendar, store_collections, "delete_instance_tree", 1, 200,
                            {"cal/e0.ics": (200, 404)}, after=True, caught=False),
    "proppatch": Case(proppatch, store_collections, "set_props", 1, 207, after=True),
    "mkcalendar": Case(make_calendar, store_collections, "create_instance", 1, 201,
                       {"made/": (404, 200)}, after=True),
}


# On PostgreSQL an object's write, its revision and its change row are one
# statement (store/one_trip.py): there is no call between them to fail, so
# the failure comes right after that statement, before the commit.
ONE_TRIP_CASES = {
    "put-new": ("put_object", 1),
    "put-update": ("put_object", 1),
    "move-rename": ("put_object", 1),
    "delete-event": ("delete_object", 1),
}


@pytest.mark.parametrize("exc", [ValueError, RuntimeError], ids=["valueerror", "runtimeerror"])
@pytest.mark.parametrize("name", list(CASES))
def test_injected_failure_leaves_nothing(
    fast_server: Server, monkeypatch: pytest.MonkeyPatch, name: str, exc: type[Exception]
) -> None:
    case = CASES[name]
    if fast_server.database_url.startswith("postgresql") and name in ONE_TRIP_CASES:
        function, fail_at = ONE_TRIP_CASES[name]
        case = replace(case, module=one_trip, function=function, fail_at=fail_at, after=True)
    w = World(fast_server)
    before = w.snapshot()

    calls = fail_on_call(monkeypatch, case.module, case.function, case.fail_at, exc, case.after)
    r = case.request(w)
    assert calls() == case.fail_at, "the injected failure was not reached"
    assert r.status_code == (400 if exc is ValueError and case.caught else 500), r.text
    monkeypatch.undo()

    for path, (status, _) in case.paths.items():
        assert w.s.get(w.home + path).status_code == status, path
    w.assert_unchanged(before)

    # The server keeps serving: the same request now succeeds and is seen.
    r = case.request(w)
    assert r.status_code == case.ok_status, r.text
    for path, (_, status) in case.paths.items():
        assert w.s.get(w.home + path).status_code == status, path
    if name == "put-update":
        assert "SUMMARY:changed" in w.s.get(w.cal + "e1.ics").text
    if name == "proppatch":
        assert collection_state(w.s, w.cal)["ctag"] != before["cal-state"]["ctag"]
    if name in ("put-new", "put-update", "move-rename", "delete-event"):
        token = before["cal-state"]["sync-token"]
        assert sync_collection(w.s, w.cal, token)[1], "the retry is missing from the change log"
    assert db_snapshot(fast_server.database_url) != before["db"]
    assert verify(fast_server.database_url)
    assert put(w.s, w.other + "after.ics", event("after")).status_code == 201


# -- a real kill --------------------------------------------------------------


def spawn_crashing_server(
    database_url: str, folder: Path, kill_after: int
) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    values = server_config(database_url, folder, port, {"server": {"delay_on_error": "0"}})
    config_file = folder / "config.json"
    config_file.write_text(json.dumps(values))
    log = folder / "crash_server.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(HELPERS / "crash_server.py"), str(config_file), str(kill_after)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        wait_for_port(
            port,
            lambda: None if proc.poll() is None else f"crash server exited early:\n{log.read_text()}",
            timeout=60,
        )
    except RuntimeError:
        proc.kill()
        raise
    return proc, f"http://127.0.0.1:{port}", log


def test_kill_mid_whole_calendar_put(backend: str, database_url: str, tmp_path: Path) -> None:
    kill_after, count = 150, 200
    proc, url, log = spawn_crashing_server(database_url, tmp_path / "crashing", kill_after)
    try:
        s = requests.Session()
        s.auth = ("alice", USERS["alice"])
        # Earlier, committed data, written by the doomed process itself.
        assert mkcalendar(s, url + "/alice/cal/").status_code == 201
        for i in range(3):
            assert put(s, f"{url}/alice/cal/e{i}.ics", event(f"e{i}")).status_code == 201
        before_state = collection_state(s, url + "/alice/cal/")
        before_members = list_hrefs(s, url + "/alice/cal/")
        before_db = db_snapshot(database_url)
        wal = Path(database_url.removeprefix("sqlite:///") + "-wal")
        wal_before = wal.stat().st_size if backend == "sqlite" else 0

        with pytest.raises(requests.exceptions.ConnectionError):
            put(s, url + "/alice/bulk/", whole_calendar(count))
        assert proc.wait(30) == 137, log.read_text()
        assert f"after object row {kill_after}" in log.read_text()
        if backend == "sqlite":
            # The dead transaction's pages reached the WAL file, uncommitted.
            assert wal.stat().st_size > wal_before
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)

    srv = start_server(database_url, tmp_path / "fresh")
    try:
        s = srv.session("alice")
        assert db_snapshot(database_url) == before_db
        assert s.get(srv.url + "/alice/bulk/").status_code == 404
        assert "/alice/bulk/" not in list_hrefs(s, srv.url + "/alice/")
        cal = srv.url + "/alice/cal/"
        assert list_hrefs(s, cal) == before_members
        assert collection_state(s, cal) == before_state
        token = before_state["sync-token"]
        assert sync_collection(s, cal, token) == (token, {})
        for i in range(3):
            r = s.get(f"{cal}e{i}.ics")
            assert r.status_code == 200 and f"UID:e{i}" in r.text
        assert verify(database_url)

        # The database takes writes again, the same PUT included.
        assert put(s, srv.url + "/alice/bulk/", whole_calendar(count)).status_code == 201
        assert len(list_hrefs(s, srv.url + "/alice/bulk/")) == count
        assert put(s, cal + "after.ics", event("after")).status_code == 201
        assert verify(database_url)
    finally:
        srv.stop()
