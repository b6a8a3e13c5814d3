"""Request threads kept between requests (servicehop_caldav.request_threads):
a finished job's thread runs the next one; jobs in progress at once each
have a thread; idle threads end, and after a burst the ones a trickle of
jobs does not need end too; nothing of one job's context reaches the
next; no job is lost or run twice when threads give up waiting as jobs
arrive; close() ends the waiting threads. Over HTTP: a parked connection's
next request, and a new connection's, run on the thread that waits."""

from __future__ import annotations

import contextvars
import random
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from servicehop_caldav import keepalive
from servicehop_caldav.request_threads import RequestThreads
from tests.conftest import start_server
from tests.test_keepalive import CALENDAR, PROPFIND, Connection, event, port_of, request


def named(prefix: str) -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith(prefix + "-")}


def wait_until(check: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()


def run_and_wait(threads: RequestThreads) -> int:
    """Run a job, wait for it to end; the ident of the thread that ran it."""
    done = threading.Event()
    ran_on: list[int] = []

    def job() -> None:
        ran_on.append(threading.get_ident())
        done.set()

    threads.run(job)
    assert done.wait(5)
    return ran_on[0]


def test_a_finished_job_s_thread_runs_the_next_one() -> None:
    threads = RequestThreads("t-next")
    try:
        first = run_and_wait(threads)
        # Give the thread the moment to start waiting for the next job.
        assert wait_until(lambda: threads.waiting() == 1)
        assert run_and_wait(threads) == first
        assert run_and_wait(threads) == first
        assert len(named("t-next")) == 1
    finally:
        threads.close()


def test_jobs_in_progress_at_once_each_have_a_thread() -> None:
    """Jobs that wait for each other all run (none waits for a thread), and
    a second such round runs on the same threads."""
    threads = RequestThreads("t-many")
    try:
        idents: list[set[int]] = []
        for _round in range(2):
            barrier = threading.Barrier(6)
            seen: set[int] = set()

            def job(seen: set[int] = seen, barrier: threading.Barrier = barrier) -> None:
                seen.add(threading.get_ident())
                barrier.wait(5)

            for _ in range(5):
                threads.run(job)
            barrier.wait(5)  # breaks (BrokenBarrierError) unless all five run at once
            idents.append(seen)
            assert wait_until(lambda: threads.waiting() == 5)
        assert len(idents[0]) == 5 and idents[1] == idents[0]
        assert len(named("t-many")) == 5
    finally:
        threads.close()


def test_a_thread_idle_longer_than_its_idle_seconds_ends() -> None:
    threads = RequestThreads("t-idle", idle_seconds=0.1)
    try:
        run_and_wait(threads)
        assert len(named("t-idle")) == 1
        assert wait_until(lambda: not named("t-idle"))
        assert threads.waiting() == 0
        # The next job gets a thread of its own again, which ends the same way.
        run_and_wait(threads)
        assert wait_until(lambda: not named("t-idle"))
    finally:
        threads.close()


def test_after_a_burst_a_trickle_of_jobs_keeps_one_thread_and_the_others_end() -> None:
    """The thread that began to wait last is handed the next job: jobs one at
    a time after a burst of three all run on one thread, and the two threads
    the burst needed end once idle, though jobs keep coming."""
    threads = RequestThreads("t-trickle", idle_seconds=0.5)
    try:
        barrier = threading.Barrier(4)

        def burst() -> None:
            barrier.wait(5)

        for _ in range(3):
            threads.run(burst)
        barrier.wait(5)  # all three ran at once, on three threads
        assert wait_until(lambda: threads.waiting() == 3)
        last = threads._waiters[-1]  # the thread that began to wait last
        ran_on: set[int] = set()
        deadline = time.monotonic() + 1.5  # three idle periods
        while time.monotonic() < deadline:
            ran_on.add(run_and_wait(threads))
            # Its thread waits again (a job's end is seen before its thread
            # is back): the next job is handed to the one that waited least.
            assert wait_until(lambda: threads._waiters[-1:] == [last])
            time.sleep(0.02)
        assert len(ran_on) == 1
        assert wait_until(lambda: {t.ident for t in named("t-trickle")} == ran_on)
    finally:
        threads.close()


def test_nothing_a_job_sets_in_its_context_reaches_the_next() -> None:
    variable: contextvars.ContextVar[str] = contextvars.ContextVar("variable", default="unset")
    threads = RequestThreads("t-context")
    seen: list[str] = []
    try:
        for value in ("first", "second"):
            done = threading.Event()

            def job(value: str = value, done: threading.Event = done) -> None:
                seen.append(variable.get())
                variable.set(value)
                done.set()

            threads.run(job)
            assert done.wait(5)
            assert wait_until(lambda: threads.waiting() == 1)
        assert seen == ["unset", "unset"]
        assert len(named("t-context")) == 1  # the same thread ran both
    finally:
        threads.close()


def test_no_job_is_lost_or_run_twice_while_threads_give_up_waiting() -> None:
    """Threads that wait a millisecond give up as jobs keep coming: the
    hand-over and the giving up cross each other many times."""
    threads = RequestThreads("t-race", idle_seconds=0.001)
    runs = [0] * 3000
    lock = threading.Lock()

    def job(n: int) -> None:
        with lock:
            runs[n] += 1

    rng = random.Random(5)
    try:
        for n in range(len(runs)):
            threads.run(lambda n=n: job(n))  # type: ignore[misc]
            if rng.random() < 0.3:
                time.sleep(rng.choice((0.0, 0.0005, 0.001, 0.002)))
        assert wait_until(lambda: sum(runs) == len(runs), 30), sum(runs)
        assert set(runs) == {1}
        assert wait_until(lambda: not named("t-race"))
        assert threads.waiting() == 0
    finally:
        threads.close()


def test_close_ends_the_waiting_threads() -> None:
    threads = RequestThreads("t-close")
    run_and_wait(threads)
    run_and_wait(threads)
    assert wait_until(lambda: threads.waiting() == 1)
    threads.close()
    assert wait_until(lambda: not named("t-close"))
    # A job after close still runs, on a thread that ends with it.
    run_and_wait(threads)
    assert wait_until(lambda: not named("t-close"))


def test_requests_after_a_pause_run_on_the_thread_that_waits(database_url: str, tmp_path: Path) -> None:
    """A parked connection's next request, and a new connection's, are
    answered by the thread that answered before (no thread is started for
    them); when the server stops, its waiting threads end."""
    server = start_server(database_url, tmp_path / "server")
    prefix = f"servicehop-request:{port_of(server)}"
    try:
        session = server.session()
        assert session.request("MKCALENDAR", server.url + CALENDAR).status_code == 201
        assert session.put(f"{server.url}{CALENDAR}a.ics", data=event("a"),
                           headers={"Content-Type": "text/calendar"}).status_code == 201
        session.close()
        pause = keepalive.LINGER * 10  # a connection is parked (or gone), its thread free
        time.sleep(pause)
        conn = Connection(socket.create_connection(("127.0.0.1", port_of(server)), timeout=10))
        answers = []
        waiting: list[set[threading.Thread]] = []
        for n in range(4):
            if n == 2:  # a new connection, the first one closed
                conn.close()
                time.sleep(pause)  # the server has seen it close
                conn = Connection(socket.create_connection(("127.0.0.1", port_of(server)), timeout=10))
            answers.append(conn.ask(request("GET", CALENDAR + "a.ics"))[0].status)
            listing = request("PROPFIND", CALENDAR, PROPFIND, headers={"Depth": "1"})
            answers.append(conn.ask(listing)[0].status)
            time.sleep(pause)
            waiting.append(named(prefix))
        conn.close()
        assert answers == [200, 207] * 4
        assert waiting[0], "no thread waits for the next request"
        assert all(found == waiting[0] for found in waiting), waiting
    finally:
        server.stop()
    assert wait_until(lambda: not named(prefix))


@pytest.mark.parametrize("backend", ["sqlite"])
def test_eight_connections_requests_at_once_are_answered_and_their_threads_kept(
    database_url: str, tmp_path: Path
) -> None:
    """Eight connections' requests sent at once are all answered; the
    threads that answered them wait, and answer the next round."""
    server = start_server(database_url, tmp_path / "server")
    prefix = f"servicehop-request:{port_of(server)}"
    try:
        session = server.session()
        assert session.request("MKCALENDAR", server.url + CALENDAR).status_code == 201
        conns = [Connection(socket.create_connection(("127.0.0.1", port_of(server)), timeout=10))
                 for _ in range(8)]
        for round_ in range(2):
            for conn in conns:
                conn.send(request("PROPFIND", CALENDAR, PROPFIND, headers={"Depth": "1"}))
            assert [conn.final_answer().status for conn in conns] == [207] * 8
            time.sleep(keepalive.LINGER * 10)
            if round_ == 0:
                first = named(prefix)
                assert 1 <= len(first) <= 9
        assert named(prefix) == first
        for conn in conns:
            conn.close()
    finally:
        server.stop()
