"""Whether the storage stored something other than what the client sent.

RFC 4791 §5.3.4: the PUT response must then carry no ETag, so the client
fetches the server's version (DAVx5, iOS, Thunderbird and Evolution do).
The storage marks it on the request's thread; :mod:`servicehop_caldav.app`
takes the mark and drops the ETag Radicale always adds.
"""

from __future__ import annotations

import threading

_local = threading.local()


def mark() -> None:
    _local.rewritten = True


def take() -> bool:
    """Whether the storage marked a rewrite on this thread since the last take."""
    rewritten = bool(getattr(_local, "rewritten", False))
    _local.rewritten = False
    return rewritten
