"""Request threads that wait for the next connection instead of ending.

Radicale's server (``socketserver.ThreadingMixIn``) starts a thread for
every connection it takes, and with persistent connections
(:mod:`servicehop_caldav.keepalive`) for every request that wakes a parked
one: every request a client sends after a pause, such as a phone's next
sync or booking. Starting a thread took 230 microseconds from ``start()``
to the thread running, handing a job to a thread that waits for one 45
(this machine, median of 300, each after 10 ms idle; measured with the
shared queue used first: the locks below measured 57 to 79, the queue 38
to 84, in later alternating runs, the machine busier). Here a request's
thread, when its connection is done or parked, waits up to
:data:`IDLE_SECONDS` for the server's next one; a new thread starts only
when none is waiting, so every request in progress has a thread, and
after a burst the threads it needed end one by one once none has been
needed for :data:`IDLE_SECONDS`.

Each job runs in a new, empty ``contextvars.Context``, as it would on a new
thread: nothing a request sets in a context variable reaches the next one.

Each waiting thread waits on a lock of its own, which a job's hand-over
releases; the thread that waited least is handed the next job, so after a
burst the threads it no longer needs are the ones whose waits run out.
(A shared ``queue.SimpleQueue`` read with a timeout was used first: on
CPython 3.11 a thread's ``get(timeout=0.001)`` was seen to stay blocked for
seconds with the queue empty, among threads giving up and taking jobs as
3,000 jobs came, so an idle thread did not end.)
"""

from __future__ import annotations

import contextvars
import itertools
import threading
from collections.abc import Callable

# How long a thread waits for another request before it ends.
IDLE_SECONDS = 60.0

Job = Callable[[], None]


class _Waiter:
    """A waiting thread's hand-over point: ``wake`` is held until a job (or
    None, to end) is put in ``job`` and it is released."""

    __slots__ = ("job", "wake")

    def __init__(self) -> None:
        self.job: Job | None = None
        self.wake = threading.Lock()
        self.wake.acquire()


class RequestThreads:
    """Runs each job on a waiting thread, or on a new one when none waits."""

    def __init__(self, name: str = "servicehop-request", idle_seconds: float = IDLE_SECONDS) -> None:
        self._name = name
        self._idle_seconds = idle_seconds
        self._lock = threading.Lock()
        # The threads waiting for a job, the one that began to wait last at
        # the end. A waiter leaves the list only under the lock: taken by
        # run() or close() (which then wake it) or, its wait over, by itself.
        self._waiters: list[_Waiter] = []
        self._closed = False
        self._numbers = itertools.count(1)

    def waiting(self) -> int:
        """How many threads wait for a job now."""
        with self._lock:
            return len(self._waiters)

    def run(self, job: Job) -> None:
        """Run ``job`` on a thread of its own (a waiting one if there is one)."""
        with self._lock:
            if self._waiters and not self._closed:
                waiter = self._waiters.pop()
                waiter.job = job
                waiter.wake.release()
                return
            number = next(self._numbers)
        threading.Thread(target=self._serve, args=(job,), name=f"{self._name}-{number}",
                         daemon=True).start()

    def close(self) -> None:
        """Let the waiting threads end; jobs already handed over still run.
        Later jobs each get a thread that ends with them."""
        with self._lock:
            self._closed = True
            leaving, self._waiters = self._waiters, []
        for waiter in leaving:
            waiter.wake.release()  # its job is None: it ends

    def _serve(self, job: Job | None) -> None:
        waiter = _Waiter()
        while job is not None:
            contextvars.Context().run(job)
            job = None  # not kept alive while waiting
            job = self._next(waiter)

    def _next(self, waiter: _Waiter) -> Job | None:
        """The next job, or None when the thread is to end."""
        with self._lock:
            if self._closed:
                return None
            self._waiters.append(waiter)
        if not waiter.wake.acquire(timeout=self._idle_seconds):
            with self._lock:
                if waiter in self._waiters:  # nobody took it: it ends
                    self._waiters.remove(waiter)
                    return None
            # run() or close() took it as the wait ran out: its release has
            # come (run) or is on its way (close).
            waiter.wake.acquire()
        job, waiter.job = waiter.job, None
        return job
