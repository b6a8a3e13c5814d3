"""Run Radicale's own HTTP server with servicehop's application.

The server keeps each client's connection open between its requests
(:mod:`servicehop_caldav.keepalive`); once :func:`serve` has run, every
server the process builds is ours.

One process (``serve``) binds its own sockets, as Radicale does. A worker
of ``serve --workers N`` (:mod:`servicehop_caldav.workers`) is handed the
listening sockets its supervisor bound, and Radicale's server loop runs on
those instead: every worker accepts from the same kernel queue, so a
connection waits for whichever worker is free, and a worker that dies
loses nothing that was queued (the supervisor still holds the sockets).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Iterable
from typing import Any

import radicale.server
from radicale import config

from servicehop_caldav import http_headers, keepalive, radicale_paths, vobject_fast
from servicehop_caldav.app import Application


def listening_key(family: int, address: Any) -> tuple[int, str, int]:
    """How a listening socket is matched to the address Radicale wants to
    bind: family, host as getaddrinfo spells it, port."""
    return family, str(address[0]), int(address[1])


class _Inherited:
    """The sockets a worker was handed, taken one by one by the servers
    Radicale builds; ``listening`` is called once the first one is up."""

    def __init__(self, sockets: Iterable[socket.socket], listening: Callable[[], None] | None) -> None:
        self.sockets = {listening_key(s.family, s.getsockname()): s for s in sockets}
        self.listening = listening

    def take(self, family: int, address: Any) -> socket.socket:
        found = self.sockets.pop(listening_key(family, address), None)
        if found is None:
            # Radicale logs this and goes on with the other addresses.
            raise OSError(errno.EADDRNOTAVAIL, "the supervisor holds no socket for this address")
        # Every worker waits on the same socket: the one that loses the race
        # for a connection must not block in accept().
        found.setblocking(False)
        return found

    def activated(self) -> None:
        callback, self.listening = self.listening, None
        if callback is not None:
            callback()


class _HTTPServer(keepalive.PersistentConnections):
    """Radicale's HTTP server with persistent connections
    (:mod:`servicehop_caldav.keepalive`), taking a handed-down socket where
    it would bind one when ``inherited`` is set (by :func:`serve` in a
    worker process)."""

    inherited: _Inherited | None = None
    # socketserver's backlog is 5 (see serve).
    request_queue_size = socket.SOMAXCONN

    def server_bind(self) -> None:
        if self.inherited is None:
            super().server_bind()
            return
        taken = self.inherited.take(self.address_family, self.server_address)
        self.socket.close()
        self.socket = taken
        self.server_address = taken.getsockname()
        # What HTTPServer.server_bind and WSGIServer.server_bind do after
        # their bind (the socket is bound already, and V6ONLY was set by the
        # supervisor: it cannot change after bind).
        host, port = self.server_address[:2]
        self.server_name = socket.getfqdn(str(host))
        self.server_port = port
        self.setup_environ()

    def server_activate(self) -> None:
        super().server_activate()
        if self.inherited is not None:
            self.inherited.activated()


class _HTTPSServer(keepalive.PersistentTLSConnections, _HTTPServer):
    """MRO: ParallelHTTPSServer.server_bind (the TLS wrapping) calls ours
    (bind, or take the socket) through super(), and wraps the socket."""


def serve(
    configuration: config.Configuration,
    shutdown_socket: socket.socket | None = None,
    *,
    sockets: Iterable[socket.socket] | None = None,
    listening: Callable[[], None] | None = None,
) -> None:
    """Radicale's ``serve``, building our Application, our servers and our
    request handler (persistent connections) instead of its own.

    The listening socket's backlog is raised from socketserver's 5 to the
    system's maximum: Radicale accepts ``max_connections`` at a time, and a
    burst beyond backlog + that (30 phones booking the same hour) was
    dropped by the kernel before the server saw it, not queued.

    ``sockets`` (a worker of ``serve --workers N``): listen on these, bound
    by the supervisor, instead of binding; ``listening`` is called once the
    first of them is in service (the worker's "ready"). One such call per
    process.

    vobject's slowest functions and the parser of requests' headers are
    replaced by equivalents first, and Radicale's path sanitizers cached
    (:mod:`servicehop_caldav.vobject_fast`,
    :mod:`servicehop_caldav.http_headers`,
    :mod:`servicehop_caldav.radicale_paths`).
    """
    vobject_fast.install()
    http_headers.install()
    radicale_paths.install()
    radicale.server.Application = Application  # type: ignore[misc]
    radicale.server.ParallelHTTPServer = _HTTPServer  # type: ignore[misc]
    radicale.server.ParallelHTTPSServer = _HTTPSServer  # type: ignore[misc]
    radicale.server.RequestHandler = keepalive.RequestHandler  # type: ignore[misc]
    if sockets is None:
        radicale.server.serve(configuration, shutdown_socket)
        return
    _HTTPServer.inherited = _Inherited(sockets, listening)
    try:
        radicale.server.serve(configuration, shutdown_socket)
    finally:
        _HTTPServer.inherited = None
