"""The benchmark's HTTP client (:mod:`bench.client`) against real HTTP servers on loopback.

The benchmark's smoke test drives it against every server under test; here
are the cases those servers do not show on demand: an answer compressed
either way, a server that closes the connection after each answer or while
it is idle, one that is not there.
"""

from __future__ import annotations

import base64
import gzip
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench import client


@dataclass
class Seen:
    """What the test server saw: one entry per request, the connection it came on."""

    requests: list[tuple[str, str, dict[str, str], bytes, int]] = field(default_factory=list)
    connections: set[int] = field(default_factory=set)  # the client's ports
    closed: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))


def _compressed(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.compress(body)
    if encoding == "deflate":
        return zlib.compress(body)
    if encoding == "raw-deflate":
        packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        return packer.compress(body) + packer.flush()
    return body


def serve(protocol: str, seen: Seen, close_after: bool = False) -> ThreadingHTTPServer:
    """A server answering every request with its path, compressed as the
    path's last segment says; ``close_after``: it closes the connection
    after each answer without saying so (as after an idle timeout)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = protocol

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            port = self.client_address[1]
            seen.connections.add(port)
            seen.requests.append((self.command, self.path, dict(self.headers), body, port))
            encoding = self.path.rsplit("/", 1)[-1]
            text = f"answer to {self.command} {self.path}: {body.decode()} ø".encode("iso-8859-1")
            payload = _compressed(text, encoding)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=iso-8859-1")
            if encoding in ("gzip", "deflate"):
                self.send_header("Content-Encoding", encoding)
            elif encoding == "raw-deflate":
                self.send_header("Content-Encoding", "deflate")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            if close_after:
                self.close_connection = True

        do_GET = do_PUT = do_PROPFIND = _answer

        def log_message(self, *_args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def shutdown_request(self, request: object) -> None:
            super().shutdown_request(request)  # type: ignore[arg-type]
            seen.closed.release()

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def seen() -> Seen:
    return Seen()


def _url(server: ThreadingHTTPServer, path: str) -> str:
    host, port = server.server_address[:2]
    return f"http://{host!s}:{port}{path}"


@pytest.fixture
def keep_alive(seen: Seen) -> Iterator[ThreadingHTTPServer]:
    server = serve("HTTP/1.1", seen)
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("encoding", ["plain", "gzip", "deflate", "raw-deflate"])
def test_answers_are_decoded(keep_alive: ThreadingHTTPServer, encoding: str) -> None:
    session = client.Session(("anna", "pass:word"))
    r = session.request("PUT", _url(keep_alive, f"/cal/{encoding}"), data="BEGIN:VCALENDAR",
                        headers={"If-None-Match": "*"})
    assert r.status_code == 200
    assert r.text == f"answer to PUT /cal/{encoding}: BEGIN:VCALENDAR ø"
    assert r.content == r.text.encode("iso-8859-1")
    assert r.request == client.SentRequest("PUT", _url(keep_alive, f"/cal/{encoding}"))
    session.close()


def test_sends_what_requests_sent(keep_alive: ThreadingHTTPServer, seen: Seen) -> None:
    session = client.Session(("anna", "pass:word"))
    session.request("PROPFIND", _url(keep_alive, "/cal/?x=1"), headers={"Depth": "1"})
    session.get(_url(keep_alive, "/cal/a.ics"))
    (method, path, headers, body, _), (get_method, _, get_headers, _, _) = seen.requests
    assert (method, path, body) == ("PROPFIND", "/cal/?x=1", b"")
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"anna:pass:word").decode()
    assert headers["Accept-Encoding"] == "gzip, deflate" and headers["Depth"] == "1"
    assert headers["Content-Length"] == "0"  # a bodiless PROPFIND, as requests sent it
    assert get_method == "GET" and "Content-Length" not in get_headers
    session.close()


def test_one_connection_for_many_requests(keep_alive: ThreadingHTTPServer, seen: Seen) -> None:
    session = client.Session()
    for n in range(5):
        assert session.get(_url(keep_alive, f"/{n}")).status_code == 200
    assert len(seen.requests) == 5 and len(seen.connections) == 1
    assert "Authorization" not in seen.requests[0][2]
    session.close()


@pytest.mark.parametrize(("protocol", "close_after"), [("HTTP/1.0", False), ("HTTP/1.1", True)])
def test_a_closed_connection_is_replaced(seen: Seen, protocol: str, close_after: bool) -> None:
    """HTTP/1.0 (stock Radicale) closes after each answer and says so; a
    server closing an idle connection does not. Each request is sent once."""
    server = serve(protocol, seen, close_after=close_after)
    try:
        session = client.Session()
        for n in range(4):
            assert session.get(_url(server, f"/{n}")).text.startswith(f"answer to GET /{n}:")
            # Closed by the server before the next request is sent.
            assert seen.closed.acquire(timeout=10)
        assert [r[1] for r in seen.requests] == ["/0", "/1", "/2", "/3"]
        assert len({r[4] for r in seen.requests}) == 4
        session.close()
    finally:
        server.shutdown()
        server.server_close()


def test_no_server_is_a_request_error(keep_alive: ThreadingHTTPServer) -> None:
    url = _url(keep_alive, "/gone")
    keep_alive.shutdown()
    keep_alive.server_close()
    refused = r"GET http://127\.0\.0\.1:\d+/gone: ConnectionRefusedError"
    with pytest.raises(client.RequestError, match=refused):
        client.Session().get(url)


def test_only_plain_http() -> None:
    with pytest.raises(client.RequestError, match="plain HTTP"):
        client.Session().get("https://127.0.0.1:1/")
