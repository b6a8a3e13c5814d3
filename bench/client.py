"""The benchmark's HTTP client: one persistent connection per session, on ``http.client``.

The figures are of the servers, so the client's own work belongs out of
them. ``requests`` (used until run P) prepared each request in about 1.5 ms
of the client's CPU on this machine, before the first byte was sent: that
is in every server's figure alike, nothing to stock Radicale's half-second
PUT and a third of a servicehop PUT. Here a request is the standard
library's ``HTTPConnection.request`` with the headers ``requests`` sent
(the same Basic credentials, ``Accept-Encoding: gzip, deflate`` and an
answer decoded as it decoded it), so every server answers the same
requests as before.

A session keeps its connection. A server that closes it after an answer
(stock Radicale answers HTTP/1.0) gets a new one for the next request, as
``http.client`` does by itself; so does a connection the server closed
while it was idle, found closed before a request is sent on it (as urllib3
does). A request is never sent twice.
"""

from __future__ import annotations

import base64
import http.client
import select
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from urllib.parse import urlsplit

# What requests sent with every request, but its User-Agent.
DEFAULT_HEADERS = {"User-Agent": "servicehop-bench", "Accept-Encoding": "gzip, deflate", "Accept": "*/*"}


class RequestError(Exception):
    """The request got no answer: the connection failed or the answer was not HTTP."""


@dataclass(frozen=True)
class SentRequest:
    method: str
    url: str


@dataclass
class Response:
    """A whole answer, read and decoded."""

    status_code: int
    headers: Message
    content: bytes
    request: SentRequest

    @property
    def text(self) -> str:
        charset = self.headers.get_content_charset() or "utf-8"
        return self.content.decode(charset, errors="replace")


def _decoded(body: bytes, encoding: str) -> bytes:
    """The body without its Content-Encoding (gzip or deflate, as requests decoded)."""
    encoding = encoding.strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompress(body, 16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        try:
            return zlib.decompress(body)
        except zlib.error:  # raw deflate, without the zlib header
            return zlib.decompress(body, -zlib.MAX_WBITS)
    return body


def _closed_by_peer(connection: http.client.HTTPConnection) -> bool:
    """Whether an idle connection's socket has something to read: the
    server's close (or stray bytes), so it cannot carry a request."""
    sock = connection.sock
    if sock is None:
        return False
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


@dataclass
class Session:
    """Requests to one server over one kept connection; not shared between threads."""

    auth: tuple[str, str] | None = None
    timeout: float = 900.0
    _connection: http.client.HTTPConnection | None = field(default=None, repr=False)
    _netloc: str = field(default="", repr=False)

    def request(self, method: str, url: str, data: bytes | str | None = None,
                headers: Mapping[str, str] | None = None, timeout: float | None = None) -> Response:
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        sent = {**DEFAULT_HEADERS, **self._authorization(), **(headers or {})}
        if isinstance(data, str):
            data = data.encode()
        if data is None and method not in ("GET", "HEAD"):
            sent["Content-Length"] = "0"  # as requests sent it
        try:
            connection = self._connection_to(parts.scheme, parts.netloc, timeout)
            connection.request(method, target or "/", body=data, headers=sent)
            answer = connection.getresponse()
            body = answer.read()
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise RequestError(f"{method} {url}: {type(e).__name__}: {e}") from e
        body = _decoded(body, answer.headers.get("Content-Encoding", ""))
        return Response(answer.status, answer.headers, body, SentRequest(method, url))

    def get(self, url: str, timeout: float | None = None) -> Response:
        return self.request("GET", url, timeout=timeout)

    def put(self, url: str, data: bytes, headers: Mapping[str, str] | None = None,
            timeout: float | None = None) -> Response:
        return self.request("PUT", url, data=data, headers=headers, timeout=timeout)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _authorization(self) -> dict[str, str]:
        if self.auth is None:
            return {}
        token = base64.b64encode(":".join(self.auth).encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}

    def _connection_to(self, scheme: str, netloc: str, timeout: float | None) -> http.client.HTTPConnection:
        if scheme != "http":
            raise RequestError(f"the benchmark speaks plain HTTP on loopback, not {scheme!r}")
        connection = self._connection
        if connection is not None and (netloc != self._netloc or _closed_by_peer(connection)):
            self.close()
            connection = None
        if connection is None:
            connection = http.client.HTTPConnection(netloc, timeout=timeout or self.timeout)
            self._connection, self._netloc = connection, netloc
        elif timeout is not None and connection.sock is not None:
            connection.sock.settimeout(timeout)
        return connection
