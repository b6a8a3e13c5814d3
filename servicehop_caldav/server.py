"""Run Radicale's own HTTP server with servicehop's application."""

from __future__ import annotations

import socket

import radicale.server
from radicale import config

from servicehop_caldav.app import Application


def serve(configuration: config.Configuration, shutdown_socket: socket.socket | None = None) -> None:
    """Radicale's ``serve``, building our Application instead of its own."""
    radicale.server.Application = Application  # type: ignore[misc]
    radicale.server.serve(configuration, shutdown_socket)
