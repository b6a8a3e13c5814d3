"""The request path, read in the login's statement.

Every authenticated request reads its login first (the auth plugin), then
what its path names (the storage's ``discover``): on PostgreSQL two round
trips, the whole database cost of a GET. The application names the path
before Radicale runs; the login's statement then reads the path, its
parent and the parent's member too (``directory.credentials_of``), and the
storage finds them among what the transaction has read (``db.memo``).

Only requests whose later reads join the login's read transaction ask for
it (a write ends that transaction before it takes the lock, and reads
again under it). A member read this way stays encrypted until the storage
asks for it, which Radicale does only after the login and the rights have
let the request through.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import NamedTuple

from radicale import pathutils


class Wanted(NamedTuple):
    """A request path as the storage looks it up: itself, its parent and
    its last segment (the member's href if the path is an item)."""

    path: str
    parent: str
    href: str


_WANTED: ContextVar[Wanted | None] = ContextVar("servicehop_read_ahead", default=None)


def wanted_for(request_path: str) -> Wanted | None:
    """What ``discover`` will look up for ``request_path`` (the WSGI
    PATH_INFO, sanitized as Radicale does); None for the root and a home,
    which the login's statement reads anyway."""
    sane = pathutils.strip_path(pathutils.sanitize_path(request_path))
    parent, href = posixpath.split(sane)
    return Wanted(sane, parent, href) if parent else None


@contextmanager
def reading(request_path: str | None) -> Iterator[None]:
    """While the block runs, the login's statement also reads what
    ``request_path`` names (None: nothing more)."""
    token = _WANTED.set(wanted_for(request_path) if request_path is not None else None)
    try:
        yield
    finally:
        _WANTED.reset(token)


def wanted() -> Wanted | None:
    """The path the running request asked to read with its login, if any."""
    return _WANTED.get()
