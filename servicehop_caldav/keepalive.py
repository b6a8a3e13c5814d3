"""Persistent HTTP/1.1 connections for Radicale's threaded server.

Radicale's own server answers in HTTP/1.0 and closes the connection after
every answer, so each request of a client's sync (a PROPFIND, a REPORT, a
multiget, a PUT) pays for a new TCP connection, over HTTPS a new TLS
handshake, and on the server a new thread and a socket pair. Here the
connection stays open for the client's next request (RFC 9112 §9.3):

* Answers are HTTP/1.1 and framed by their Content-Length; an answer
  without one closes the connection after it, as do a request of HTTP/1.0
  and one that asks to (``Connection: close``, echoed).
* The next request must start where this one's body ends. A body the
  application did not read (a refusal before the body: a failed login, an
  over-long request) is read off and dropped when it is short
  (:data:`DRAIN_LIMIT`); otherwise, and for a body of unknown length
  (``Transfer-Encoding``, which Radicale does not read), the answer says
  ``Connection: close`` and the connection ends.
* A request that comes on the connection within :data:`LINGER` of the
  answer is answered by the same thread, while the server has room.
* Otherwise, between requests a connection holds no thread and no place of
  ``[server] max_connections`` (which counts requests in progress): it is
  parked in an epoll set (:class:`Parking`). Radicale's main loop watches
  the listening socket through a stand-in whose file descriptor is that
  epoll set's (:class:`_Listening`), so it wakes for a new connection or
  for the next request of a parked one, and takes either as it takes a new
  connection: a request never waits for another client's idle connection.
* A parked connection is closed after ``[server] timeout`` seconds without
  a request, and the oldest one when more than :data:`MAX_PARKED` are
  parked.
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import threading
import time
import weakref
import wsgiref.headers
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, BinaryIO, cast

import radicale.server

from servicehop_caldav.request_threads import RequestThreads

logger = logging.getLogger(__name__)

# Radicale's classes as imported (servicehop_caldav.server swaps in its own).
_RADICALE_HTTP_SERVER = radicale.server.ParallelHTTPServer
_RADICALE_HTTPS_SERVER = radicale.server.ParallelHTTPSServer

# The longest unread request body read off to keep the connection.
DRAIN_LIMIT = 64 * 1024
# Idle connections one server keeps at most (file descriptors are finite).
MAX_PARKED = 256
# How long a request's thread waits for the client's next request before it
# parks the connection, and how often it looks whether the server is full.
# A client on the same host or network (a reverse proxy's pooled
# connections, a desktop client) sends its next request within a few
# milliseconds; parking and waking the connection costs a socket pair, a
# turn of the main loop and the hand-over to a waiting thread (a GET after
# 30 ms took 0.55 ms longer than one after 5 ms when a thread was started
# for it; about 0.2 ms of that was starting the thread).
LINGER = 0.02
LINGER_SLICE = 0.005


class RequestBody:
    """``wsgi.input`` of one request: its body and not a byte beyond it,
    so what the application leaves unread is known and can be dropped."""

    def __init__(self, stream: BinaryIO, length: int) -> None:
        self._stream = stream
        self.remaining = length
        # The client closed before its body was all sent.
        self.cut_short = False

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0 or size > self.remaining:
            size = self.remaining
        return self._took(self._stream.read(size) if size else b"", size)

    def readline(self, size: int | None = -1) -> bytes:
        if size is None or size < 0 or size > self.remaining:
            size = self.remaining
        return self._took(self._stream.readline(size) if size else b"", None)

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line

    def _took(self, data: bytes, wanted: int | None) -> bytes:
        self.remaining -= len(data)
        if (wanted is not None and len(data) < wanted) or (wanted is None and not data and self.remaining):
            self.cut_short = True
            self.remaining = 0
        return data

    def drain(self) -> bool:
        """Read off what is left of the body, if it is short; True when the
        connection is at the start of the next request."""
        if self.cut_short or self.remaining > DRAIN_LIMIT:
            return False
        while self.remaining and not self.cut_short:
            self.read(min(self.remaining, 16 * 1024))
        return not self.cut_short


def _content_length(headers: Any) -> int | None:
    """The request body's length, or None when it cannot be known (a
    Transfer-Encoding, a malformed or repeated Content-Length)."""
    if headers.get("Transfer-Encoding") is not None:
        return None
    values = headers.get_all("Content-Length") or []
    if not values:
        return 0
    if len(values) > 1 or not values[0].strip().isdigit():
        return None
    return int(values[0])


class ServerHandler(radicale.server.ServerHandler):
    """Answers in HTTP/1.1; says ``Connection: close`` when the connection
    will not carry another request."""

    http_version = "1.1"
    request_handler: RequestHandler

    def cleanup_headers(self) -> None:
        super().cleanup_headers()
        handler = self.request_handler
        headers = cast(wsgiref.headers.Headers, self.headers)  # type: ignore[attr-defined]
        if "Content-Length" not in headers or not handler.body_can_be_passed():
            handler.close_connection = True
        if handler.close_connection:
            headers["Connection"] = "close"


class RequestHandler(radicale.server.RequestHandler):
    """Radicale's request handler, answering requests until the connection
    is to close or no request is waiting on it; then the server parks it."""

    protocol_version = "HTTP/1.1"
    # The answer's last segment must not wait for the client's delayed ACK.
    disable_nagle_algorithm = True
    # Headers and a short body leave in one segment (wsgiref flushes after
    # each piece of the body, never between the headers and the body).
    wbufsize = -1
    server: PersistentConnections
    body: RequestBody | None = None

    def handle(self) -> None:
        self.close_connection = True
        try:
            self.handle_one_request()
            while not self.close_connection and self._request_waiting():
                self.handle_one_request()
        except BaseException:
            self.close_connection = True
            raise

    def handle_one_request(self) -> None:
        """Radicale's ``handle`` (one request, its ServerHandler), reading
        the body through a :class:`RequestBody`."""
        self.body = None
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline = ""
                self.request_version = ""
                self.command = ""
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            # parse_request may have written "100 Continue" into the buffer.
            self.wfile.flush()
        except OSError as e:
            # A timeout, or a client that went away from its open connection
            # (a reset, a TLS stream cut off): no request, nothing to log.
            logger.debug("connection closed while waiting for a request: %s", type(e).__name__)
            self.close_connection = True
            return
        if self.request_version != "HTTP/1.1":
            self.close_connection = True
        length = _content_length(self.headers)
        if length is None:
            self.close_connection = True
        self.body = body = RequestBody(cast(BinaryIO, self.rfile), length or 0)
        handler = ServerHandler(cast(BinaryIO, body), cast(BinaryIO, self.wfile), self.get_stderr(),
                                self.get_environ())
        handler.request_handler = self
        handler.run(cast(Any, self.server.get_app()))
        try:
            # wsgiref flushes after each piece of a body; an answer without
            # one (201, 204) would wait in the buffer while the thread lingers.
            self.wfile.flush()
            if not self.close_connection and not body.drain():
                self.close_connection = True
        except OSError:
            self.close_connection = True  # the client is gone

    def body_can_be_passed(self) -> bool:
        """Whether the next request can be found after this one's body."""
        body = self.body
        return body is None or (not body.cut_short and body.remaining <= DRAIN_LIMIT)

    def _request_waiting(self) -> bool:
        """Whether the client's next request is here or comes within
        :data:`LINGER` while the server has room for more requests: then it
        is answered on this thread, without parking the connection."""
        deadline = time.monotonic() + LINGER
        poller: select.poll | None = None
        while True:
            if self._request_buffered():
                return True
            left = deadline - time.monotonic()
            if self.close_connection or left <= 0 or self.server.full():
                return False
            if poller is None:
                poller = select.poll()
                poller.register(self.connection, select.POLLIN)
            if poller.poll(min(left, LINGER_SLICE) * 1000) and not self._request_buffered():
                # Readable and nothing to read: the end of the stream (or,
                # over TLS, a record that is no request); the parking sees.
                return False

    def _request_buffered(self) -> bool:
        """Whether a byte of the next request can be read without waiting."""
        connection = self.connection
        timeout = connection.gettimeout()
        connection.setblocking(False)
        try:
            return bool(self.rfile.peek(1))  # type: ignore[attr-defined]
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False
        except OSError:
            self.close_connection = True
            return False
        finally:
            connection.settimeout(timeout)

    def finish(self) -> None:
        if not self.close_connection:
            try:
                self.wfile.flush()
            except OSError:
                self.close_connection = True
        super().finish()
        if not self.close_connection:
            self.server.keep_open(self.request)


@dataclass
class _Parked:
    connection: socket.socket
    address: Any
    since: float


class Parking:
    """Idle connections between requests, and the listening socket, in one
    epoll set; a sweeper thread closes those idle too long."""

    def __init__(self, listening: socket.socket, idle_seconds: float, limit: int = MAX_PARKED) -> None:
        self.idle_seconds = idle_seconds
        self.limit = limit
        self.epoll = select.epoll()
        self.epoll.register(listening.fileno(), select.EPOLLIN)
        self._parked: dict[int, _Parked] = {}  # by file descriptor, oldest first
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._sweeper = threading.Thread(target=self._sweep_loop, name="servicehop-keepalive", daemon=True)
        self._sweeper.start()

    def park(self, connection: socket.socket, address: Any) -> None:
        with self._lock:
            if self._closed.is_set():
                _close(connection)
                return
            fd = connection.fileno()
            self._parked[fd] = _Parked(connection, address, time.monotonic())
            self.epoll.register(fd, select.EPOLLIN | select.EPOLLRDHUP)
            while len(self._parked) > self.limit:
                self._drop(next(iter(self._parked)))

    def take(self) -> tuple[socket.socket, Any] | None:
        """A parked connection whose next request has come, if any."""
        with self._lock:
            for fd, _events in self.epoll.poll(0):
                if fd in self._parked:
                    parked = self._parked.pop(fd)
                    self.epoll.unregister(fd)
                    return parked.connection, parked.address
        return None

    def sweep(self) -> None:
        """Close the connections idle longer than ``idle_seconds``."""
        deadline = time.monotonic() - self.idle_seconds
        with self._lock:
            for fd in [fd for fd, p in self._parked.items() if p.since <= deadline]:
                self._drop(fd)

    def close(self) -> None:
        with self._lock:
            self._closed.set()
            for fd in list(self._parked):
                self._drop(fd)
            self.epoll.close()

    def _drop(self, fd: int) -> None:
        parked = self._parked.pop(fd)
        self.epoll.unregister(fd)
        _close(parked.connection)

    def _sweep_loop(self) -> None:
        interval = min(max(self.idle_seconds / 4, 0.1), 5.0)
        while not self._closed.wait(interval):
            self.sweep()


def _close(connection: socket.socket) -> None:
    """socketserver's shutdown_request: end the stream, then close."""
    try:
        connection.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    connection.close()


class _Listening:
    """The listening socket as Radicale's main loop sees it: its file
    descriptor is the parking's epoll set, readable when a connection waits
    to be accepted or a parked one has its next request; everything else
    is the listening socket's."""

    def __init__(self, listening: socket.socket, parking: Parking) -> None:
        self._socket = listening
        self._parking = parking

    def fileno(self) -> int:
        return self._parking.epoll.fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._socket, name)


class PersistentConnections(_RADICALE_HTTP_SERVER):
    """Radicale's server keeping connections open between requests (mixed
    in before Radicale's HTTP and HTTPS servers). Each connection it takes,
    new or woken from the parking, is served on a thread that waits for the
    next one afterwards (:mod:`servicehop_caldav.request_threads`), not on
    a thread started for it."""

    _parking: Parking
    _kept: set[socket.socket]
    _resumed: weakref.WeakSet[socket.socket]
    _request_threads: RequestThreads | None = None

    def server_activate(self) -> None:
        super().server_activate()
        listening = self.socket
        # Woken by the epoll set, the main loop may find the connection it
        # was woken for taken (by another worker process, or swept): accept
        # must then fail at once instead of waiting.
        listening.setblocking(False)
        self._kept = set()
        self._resumed = weakref.WeakSet()
        self._max_connections = int(self.configuration.get("server", "max_connections"))
        self._parking = Parking(listening, float(self.configuration.get("server", "timeout")))
        self.socket = _Listening(listening, self._parking)  # type: ignore[assignment]
        self._request_threads = RequestThreads(f"servicehop-request:{self.server_address[1]}")

    def process_request(self, request: Any, client_address: Any) -> None:
        """ThreadingMixIn's, on a waiting thread when there is one."""
        threads = self._request_threads
        if threads is None:  # not activated
            super().process_request(request, client_address)
            return
        threads.run(lambda: self.process_request_thread(request, client_address))

    def get_request(self) -> Any:
        resumed = self._parking.take()
        if resumed is None:
            return super().get_request()
        # What Radicale's get_request does after accept: a socket pair
        # whose closing tells the main loop the request is done.
        connection, address = resumed
        self._resumed.add(connection)
        worker_socket, worker_socket_out = socket.socketpair()
        self.worker_sockets.add(worker_socket_out)
        return connection, (address, worker_socket)

    def full(self) -> bool:
        """Whether ``max_connections`` requests are in progress (a request's
        thread that waits for the client's next request counts): a thread
        then parks its idle connection at once, giving its place up."""
        return 0 < self._max_connections <= len(self.worker_sockets)

    def resumed(self, connection: socket.socket) -> bool:
        """Whether ``connection`` was parked before this request (its TLS
        handshake is done)."""
        return connection in self._resumed

    def keep_open(self, connection: socket.socket) -> None:
        """Called by the request handler: park, do not close, when done."""
        self._kept.add(connection)

    def shutdown_request(self, request: Any) -> None:
        if request in self._kept:
            self._kept.discard(request)
            self._resumed.discard(request)
            try:
                address = request.getpeername()
            except OSError:
                _close(request)
                return
            self._parking.park(request, address)
            return
        super().shutdown_request(request)

    def server_close(self) -> None:
        # Also called when binding failed, before there is a parking.
        parking: Parking | None = getattr(self, "_parking", None)
        if parking is not None:
            parking.close()
        if self._request_threads is not None:
            self._request_threads.close()
        super().server_close()


class PersistentTLSConnections(_RADICALE_HTTPS_SERVER, PersistentConnections):
    """The same over TLS: a parked connection's handshake is done; its next
    request goes straight to the handler."""

    def finish_request_locked(self, request: Any, client_address: Any) -> None:
        if self.resumed(request):
            _RADICALE_HTTP_SERVER.finish_request_locked(self, request, client_address)
            return
        super().finish_request_locked(request, client_address)
