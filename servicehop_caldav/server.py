"""Run Radicale's own HTTP server with servicehop's application."""

from __future__ import annotations

import socket

import radicale.server
from radicale import config

from servicehop_caldav.app import Application


def serve(configuration: config.Configuration, shutdown_socket: socket.socket | None = None) -> None:
    """Radicale's ``serve``, building our Application instead of its own.

    The listening socket's backlog is raised from socketserver's 5 to the
    system's maximum: Radicale accepts ``max_connections`` at a time, and a
    burst beyond backlog + that (30 phones booking the same hour) was
    dropped by the kernel before the server saw it, not queued.
    """
    radicale.server.Application = Application  # type: ignore[misc]
    radicale.server.ParallelHTTPServer.request_queue_size = socket.SOMAXCONN
    radicale.server.serve(configuration, shutdown_socket)
