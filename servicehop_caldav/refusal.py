"""Refusals that say why: a precondition and a sentence a person can read.

The storage raises :class:`Refusal` (a ValueError, which Radicale answers
with a bare 400); :mod:`servicehop_caldav.app` picks the same refusal up on
the request's thread and answers it properly: 403 with a DAV:error body
naming the failed precondition and the reason.
"""

from __future__ import annotations

import threading

NAMESPACE = "urn:x-servicehop:ns"

_local = threading.local()


class Refusal(ValueError):
    """A request the server will not carry out, and why."""

    def __init__(self, precondition: str, reason: str, status: int = 403) -> None:
        super().__init__(reason)
        self.precondition = precondition  # Clark notation: {namespace}name
        self.reason = reason
        self.status = status
        _local.last = self


def take() -> Refusal | None:
    """The refusal raised on this thread since the last take, if any."""
    refusal: Refusal | None = getattr(_local, "last", None)
    _local.last = None
    return refusal
