"""``serve --workers N``: a supervisor and N server processes on one database.

Why processes: a booking decision is Python work (tens of milliseconds), and
one process runs Python on one core at a time however many threads it has.
Several processes share the load; the database keeps them consistent
(writers serialise through PostgreSQL's advisory lock or SQLite's write
lock, readers read committed data at the start of each request, and every
cache a process keeps is keyed by what it reads from the database).

How:

- The supervisor (the process ``serve`` started as) loads the configuration,
  opens the storage once (the key check and the schema upgrade happen here,
  once, with the same one-line errors as a single ``serve``), closes it,
  and binds the listening sockets the way Radicale would (every address of
  ``[server] hosts``; IPv6 sockets IPv6-only).
- It starts each worker as a fresh interpreter (``serve --worker SPEC``,
  never a fork: no engine, pool or lock crosses a process boundary) and
  hands it the listening sockets. Every worker waits on the same sockets,
  so a connection goes to whichever worker accepts first - a worker busy
  with ``max_connections`` requests stops accepting, the others take the
  queue - and connections queued while a worker dies stay queued for the
  others. (SO_REUSEPORT would give each worker its own queue, chosen by a
  hash: a busy worker would still get its share, and a dying worker's
  queue would be reset.)
- Each worker has a link to the supervisor (a socket pair). It says
  "ready" on it once Radicale listens; it stops (finishing the requests
  under way) when the link closes - when the supervisor stops it, and also
  when the supervisor dies, so a killed supervisor leaves no workers.
- SIGTERM or SIGINT to the supervisor stops every worker, then it exits 0.
  A worker that exits otherwise is logged and started again after
  ``RESTART_DELAY``; a worker that fails ``START_FAILURES`` times in a row
  before it is ready (bad configuration, database down, certificate
  unreadable...) stops everything with a one-line error and exit status 1.
- Only worker 0 runs the storage's upkeep pass (the others run it with
  ``upkeep_interval = -1``): one pass per interval is all the database
  needs, and N of them would take the write lock N times.
"""

from __future__ import annotations

import errno
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from radicale import config
from radicale.log import logger

RESTART_DELAY = 1.0  # seconds before a worker that exited is started again
START_FAILURES = 3  # failed starts in a row of one worker before giving up
STOP_SECONDS = 30.0  # how long stopping workers may finish their requests
READY = b"r"


class WorkersError(RuntimeError):
    """The workers cannot be run; one line for the user."""


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker is told on its command line (``--worker``):
    its number, the file descriptor of its link to the supervisor and
    those of the listening sockets."""

    index: int
    link: int
    sockets: tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.index}:{self.link}:{','.join(map(str, self.sockets))}"

    @classmethod
    def parse(cls, text: str) -> WorkerSpec:
        try:
            index, link, fds = text.split(":")
            return cls(int(index), int(link), tuple(int(fd) for fd in fds.split(",") if fd))
        except ValueError:
            raise WorkersError(f"invalid --worker {text!r} (it is for serve --workers)") from None

    @property
    def overrides(self) -> dict[str, dict[str, str]]:
        """Configuration of this worker on top of the instance's."""
        return {} if self.index == 0 else {"storage": {"upkeep_interval": "-1"}}


# -- the supervisor ------------------------------------------------------------


def check_server_type(configuration: config.Configuration) -> None:
    server_type = configuration.get("server", "type")
    if server_type != "builtin":
        raise WorkersError(f"serve --workers needs [server] type = builtin, not {server_type!r}")


def preflight(configuration: config.Configuration) -> None:
    """Open the storage once and close it: a missing or wrong key file, a
    database that does not answer or bad booking rules stop the start here
    with their own message, and the schema is upgraded once, before any
    worker starts. Raises what ``storage.load`` raises."""
    from radicale import storage
    from radicale_storage_servicehop import database_url_of

    from servicehop_caldav.db.engine import dispose_shared

    checking = configuration.copy()
    checking.update({"storage": {"upkeep_interval": "-1"}}, "serve --workers")
    try:
        storage.load(checking)
    finally:
        dispose_shared(database_url_of(checking))


def bind(configuration: config.Configuration) -> list[socket.socket]:
    """Listening sockets on every address of ``[server] hosts``, as
    Radicale's own server binds them (one per address getaddrinfo gives,
    IPv6 ones IPv6-only, SO_REUSEADDR). An address in use stops the start;
    an address this host cannot have (say ::1 without IPv6) is skipped with
    a warning, as Radicale does."""
    sockets: dict[tuple[int, str, int], socket.socket] = {}
    problems: list[str] = []
    try:
        for host, port in configuration.get("server", "hosts"):
            try:
                infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            except OSError as e:
                problems.append(f"cannot resolve {host}: {e.strerror}")
                continue
            for family, kind, proto, _flags, address in infos:
                key = (family, str(address[0]), int(address[1]))
                if key in sockets:
                    continue
                s = socket.socket(family, kind, proto)
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    if family == socket.AF_INET6:
                        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    s.bind(address)
                    s.listen(socket.SOMAXCONN)
                except OSError as e:
                    s.close()
                    message = f"cannot listen on {host}:{port}: {e.strerror}"
                    if e.errno in (errno.EADDRINUSE, errno.EACCES):
                        raise WorkersError(message) from None
                    logger.warning("%s (address %s skipped)", message, address[0])
                    problems.append(message)
                    continue
                sockets[key] = s
        if not sockets:
            raise WorkersError(problems[-1] if problems else "no address to listen on")
    except BaseException:
        for s in sockets.values():
            s.close()
        raise
    return list(sockets.values())


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes]
    link: socket.socket
    ready: bool = False
    link_open: bool = True


@dataclass
class Supervisor:
    """Runs ``count`` workers until SIGTERM/SIGINT (see the module docstring).

    ``command`` is the worker's command line without ``--worker``."""

    count: int
    sockets: Sequence[socket.socket]
    command: Sequence[str]
    workers: dict[int, _Worker] = field(default_factory=dict)
    failures: dict[int, int] = field(default_factory=dict)
    restarts: dict[int, float] = field(default_factory=dict)  # index -> when
    stopping: bool = False

    def run(self) -> None:
        wake_r, wake_w = socket.socketpair()
        wake_w.setblocking(False)

        def stop(_signum: int, _frame: Any) -> None:
            self.stopping = True
            try:
                wake_w.send(b"x")
            except OSError:
                pass

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for index in range(self.count):
                self._start(index)
            while not self.stopping:
                self._step(wake_r)
        finally:
            try:
                self._stop_all()
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
                wake_r.close()
                wake_w.close()

    def _start(self, index: int) -> None:
        ours, theirs = socket.socketpair()
        spec = WorkerSpec(index, theirs.fileno(), tuple(s.fileno() for s in self.sockets))
        try:
            process = subprocess.Popen(
                [*self.command, "--worker", str(spec)],
                pass_fds=(theirs.fileno(), *spec.sockets),
                stdin=subprocess.DEVNULL,
                # Its own session: a Ctrl-C in the terminal reaches the
                # supervisor only, which then stops the workers in order.
                start_new_session=True,
            )
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        self.workers[index] = _Worker(index, process, ours)
        logger.info("worker %d started (pid %d)", index, process.pid)

    def _step(self, wake: socket.socket) -> None:
        now = time.monotonic()
        timeout = min([0.5, *(max(0.0, when - now) for when in self.restarts.values())])
        links = {w.link: w for w in self.workers.values() if w.link_open}
        readable, _, _ = select.select([wake, *links], [], [], timeout)
        if wake in readable:
            wake.recv(64)
        if self.stopping:
            return
        for s in readable:
            worker = links.get(s)
            if worker is None:
                continue
            try:
                data = s.recv(64)
            except OSError:
                data = b""
            if not data:
                worker.link_open = False  # it is going; poll() says when
            elif READY in data and not worker.ready:
                worker.ready = True
                self.failures[worker.index] = 0
                logger.info("worker %d ready (pid %d)", worker.index, worker.process.pid)
        for worker in list(self.workers.values()):
            code = worker.process.poll()
            if code is not None:
                self._exited(worker, code)
        now = time.monotonic()
        for index, when in list(self.restarts.items()):
            if when <= now:
                del self.restarts[index]
                self._start(index)

    def _exited(self, worker: _Worker, code: int) -> None:
        del self.workers[worker.index]
        worker.link.close()
        how = _describe(code)
        if not worker.ready:
            failures = self.failures.get(worker.index, 0) + 1
            self.failures[worker.index] = failures
            if failures >= START_FAILURES:
                raise WorkersError(
                    f"worker {worker.index} failed to start {failures} times in a row "
                    f"(last: {how}); stopping: see the errors above"
                )
            logger.error("worker %d (pid %d) failed to start (%s); trying again in %g s",
                         worker.index, worker.process.pid, how, RESTART_DELAY)
        else:
            logger.error("worker %d (pid %d) %s; starting another in %g s",
                         worker.index, worker.process.pid, how, RESTART_DELAY)
        self.restarts[worker.index] = time.monotonic() + RESTART_DELAY

    def _stop_all(self) -> None:
        """Close every link (each worker finishes its requests and exits),
        wait up to STOP_SECONDS, kill what is left; close the sockets."""
        self.restarts.clear()
        for worker in self.workers.values():
            worker.link.close()
        deadline = time.monotonic() + STOP_SECONDS
        for worker in self.workers.values():
            try:
                worker.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.error("worker %d (pid %d) did not stop within %g s: killed",
                             worker.index, worker.process.pid, STOP_SECONDS)
                worker.process.kill()
                worker.process.wait()
        self.workers.clear()
        for s in self.sockets:
            s.close()
        logger.info("all workers stopped")


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


def worker_command(home: str, host: str, port: int, log_level: str | None) -> list[str]:
    """``serve`` for one worker, in a fresh interpreter of this Python."""
    command = [sys.executable, "-m", "servicehop_caldav.cli", "serve", "--home", home,
               "--host", host, "--port", str(port)]
    if log_level:
        command += ["--log-level", log_level]
    return command


# -- a worker ------------------------------------------------------------------


def run_worker(spec: WorkerSpec, configuration: config.Configuration) -> None:
    """Serve on the supervisor's sockets until the link closes or a signal
    comes. Raises what Radicale's serve raises (the caller reports it)."""
    from servicehop_caldav.server import serve

    link = socket.socket(fileno=spec.link)
    sockets = [socket.socket(fileno=fd) for fd in spec.sockets]
    shutdown, shutdown_server_side = socket.socketpair()

    def stop(_signum: int, _frame: object) -> None:
        shutdown.close()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def watch() -> None:
        # The supervisor never writes: recv returns b"" when it closes the
        # link or dies.
        try:
            while link.recv(64):
                pass
        except OSError:
            pass
        shutdown.close()

    def ready() -> None:
        try:
            link.sendall(READY)
        except OSError:
            pass  # the supervisor is gone; watch() stops us

    threading.Thread(target=watch, name="servicehop-supervisor-link", daemon=True).start()
    try:
        serve(configuration, shutdown_server_side, sockets=sockets, listening=ready)
    finally:
        for s in sockets:
            s.close()
