"""Persistent connections (servicehop_caldav.keepalive), byte for byte on
a raw socket: requests one after another and pipelined on one connection,
after a body the server did not read; when the connection closes instead;
idle connections hold no place of max_connections, are closed after the
timeout and when the server stops; the same over TLS."""

from __future__ import annotations

import base64
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pytest

from servicehop_caldav import keepalive, tls
from tests.conftest import USERS, Server, start_server

CALENDAR = "/alice/cal/"
ICS = {"Content-Type": "text/calendar"}


def event(uid: str) -> bytes:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260301T090000Z\r\n"
        f"DTEND:20260301T100000Z\r\nSUMMARY:{uid}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    ).encode()


def request(method: str, path: str, body: bytes = b"", *, password: str = USERS["alice"],
            version: str = "HTTP/1.1", headers: dict[str, str] | None = None) -> bytes:
    """One request as a client writes it (Content-Length unless a header says otherwise)."""
    login = base64.b64encode(f"alice:{password}".encode()).decode()
    fields = {"Host": "127.0.0.1", "Authorization": f"Basic {login}", **(headers or {})}
    if "Transfer-Encoding" not in fields and "Content-Length" not in fields:
        fields["Content-Length"] = str(len(body))
    head = f"{method} {path} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    return head.encode() + b"\r\n" + body


@dataclass
class Answer:
    version: str
    status: int
    headers: dict[str, str]
    body: bytes


class Connection:
    """A client's connection, reading answers one after another exactly."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file: BinaryIO = sock.makefile("rb")

    def send(self, *requests: bytes) -> None:
        self.sock.sendall(b"".join(requests))

    def answer(self) -> Answer:
        line = self.file.readline()
        assert line, "the server closed the connection instead of answering"
        version, status, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while (field := self.file.readline()) not in (b"\r\n", b""):
            name, _, value = field.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        code = int(status)
        body = self.file.read(int(headers["content-length"])) if code >= 200 else b""
        return Answer(version, code, headers, body)

    def final_answer(self) -> Answer:
        """The answer after any interim (1xx) ones."""
        while (found := self.answer()).status < 200:
            pass
        return found

    def ask(self, *requests: bytes) -> list[Answer]:
        self.send(*requests)
        return [self.final_answer() for _ in requests]

    def closed_by_server(self) -> bool:
        """True once the server ended the stream (waits up to the socket's timeout)."""
        try:
            return self.file.read(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def port_of(server: Server) -> int:
    return int(server.url.rsplit(":", 1)[1])


@pytest.fixture
def connect(server: Server) -> Iterator[Callable[[], Connection]]:
    opened: list[Connection] = []

    def make() -> Connection:
        found = Connection(socket.create_connection(("127.0.0.1", port_of(server)), timeout=10))
        opened.append(found)
        return found

    session = server.session()
    assert session.request("MKCALENDAR", server.url + CALENDAR).status_code == 201
    for uid in ("first", "second"):
        assert session.put(f"{server.url}{CALENDAR}{uid}.ics", data=event(uid),
                           headers=ICS).status_code == 201
    yield make
    for each in opened:
        each.close()


def assert_kept(answer: Answer) -> None:
    assert answer.version == "HTTP/1.1"
    assert "connection" not in answer.headers, answer.headers


PROPFIND = b'<propfind xmlns="DAV:"><prop><getetag/></prop></propfind>'


def test_requests_one_after_another_share_the_connection(connect: Callable[[], Connection]) -> None:
    conn = connect()
    first = conn.ask(request("GET", CALENDAR + "first.ics"))[0]
    assert first.status == 200 and b"UID:first" in first.body
    assert_kept(first)
    # At once (the same thread answers) ...
    listing = conn.ask(request("PROPFIND", CALENDAR, PROPFIND, headers={"Depth": "1"}))[0]
    assert listing.status == 207 and b"first.ics" in listing.body and b"second.ics" in listing.body
    assert_kept(listing)
    # ... and after a pause long enough for the connection to be parked.
    time.sleep(keepalive.LINGER * 10)
    second = conn.ask(request("GET", CALENDAR + "second.ics"))[0]
    assert second.status == 200 and b"UID:second" in second.body
    assert_kept(second)


def test_pipelined_requests_are_answered_in_order(connect: Callable[[], Connection]) -> None:
    conn = connect()
    answers = conn.ask(
        request("GET", CALENDAR + "second.ics"),
        request("PUT", CALENDAR + "third.ics", event("third"), headers=ICS),
        request("GET", CALENDAR + "third.ics"),
        request("DELETE", CALENDAR + "first.ics"),
        request("GET", CALENDAR + "first.ics"),
    )
    assert [a.status for a in answers] == [200, 201, 200, 200, 404]
    assert b"UID:second" in answers[0].body and b"UID:third" in answers[2].body
    for answer in answers:
        assert_kept(answer)


def test_a_body_the_server_did_not_read_is_dropped(connect: Callable[[], Connection]) -> None:
    """A refused login is answered before the body is read; the body must
    not be taken for the next request."""
    conn = connect()
    refused, after = conn.ask(
        request("PUT", CALENDAR + "sneaky.ics", event("sneaky") + b"X" * 3000, password="wrong"),
        request("GET", CALENDAR + "first.ics"),
    )
    assert refused.status == 401
    assert_kept(refused)
    assert after.status == 200 and b"UID:first" in after.body


def test_expect_100_continue(connect: Callable[[], Connection]) -> None:
    conn = connect()
    conn.send(request("PUT", CALENDAR + "later.ics", headers={
        **ICS, "Expect": "100-continue", "Content-Length": str(len(event("later")))}))
    # The interim answer comes before the body is sent (it is not left in a buffer).
    interim = conn.answer()
    assert (interim.version, interim.status) == ("HTTP/1.1", 100)
    conn.send(event("later"))
    assert conn.final_answer().status == 201
    got = conn.ask(request("GET", CALENDAR + "later.ics"))[0]
    assert got.status == 200 and b"UID:later" in got.body


@pytest.mark.parametrize("case", [
    "http/1.0", "connection: close", "chunked body", "long unread body", "body over the limit",
])
def test_the_connection_closes_after_the_answer(connect: Callable[[], Connection], case: str) -> None:
    conn = connect()
    if case == "http/1.0":
        conn.send(request("GET", CALENDAR + "first.ics", version="HTTP/1.0"))
        expected = 200
    elif case == "connection: close":
        conn.send(request("GET", CALENDAR + "first.ics", headers={"Connection": "close"}))
        expected = 200
    elif case == "chunked body":
        # Radicale reads no chunked body: where it ends is not known here.
        conn.send(request("PROPFIND", CALENDAR, headers={"Transfer-Encoding": "chunked", "Depth": "0"}),
                  b"5\r\nhello\r\n0\r\n\r\n")
        expected = 207
    elif case == "long unread body":
        conn.send(request("PUT", CALENDAR + "x.ics", b"X" * (keepalive.DRAIN_LIMIT + 1), password="wrong"))
        expected = 401
    else:
        # The test server's max_content_length is 1,000,000; no body is sent.
        conn.send(request("PUT", CALENDAR + "x.ics", headers={"Content-Length": "2000000"}))
        expected = 413
    answer = conn.final_answer()
    assert answer.status == expected, answer
    assert answer.headers.get("connection") == "close"
    assert conn.closed_by_server()


def test_idle_connections_hold_no_place_of_max_connections(database_url: str, tmp_path: Path) -> None:
    """With one request at a time allowed, a client's open idle connection
    does not keep a second client waiting (for its timeout, 30 s)."""
    server = start_server(database_url, tmp_path / "server", {"server": {"max_connections": "1"}})
    try:
        session = server.session()
        assert session.request("MKCALENDAR", server.url + CALENDAR).status_code == 201
        first, second = (
            Connection(socket.create_connection(("127.0.0.1", port_of(server)), timeout=10))
            for _ in range(2))
        for conn in (first, second, first, second):
            answer = conn.ask(request("PROPFIND", CALENDAR, PROPFIND, headers={"Depth": "0"}))[0]
            assert answer.status == 207
            assert_kept(answer)
        first.close()
        second.close()
    finally:
        server.stop()


def test_an_idle_connection_is_closed_after_the_timeout(database_url: str, tmp_path: Path) -> None:
    server = start_server(database_url, tmp_path / "server", {"server": {"timeout": "1"}})
    try:
        conn = Connection(socket.create_connection(("127.0.0.1", port_of(server)), timeout=15))
        assert conn.ask(request("PROPFIND", "/alice/", PROPFIND, headers={"Depth": "0"}))[0].status == 207
        assert conn.closed_by_server()
        conn.close()
        # The server goes on: a new connection is answered.
        again = Connection(socket.create_connection(("127.0.0.1", port_of(server)), timeout=15))
        assert again.ask(request("PROPFIND", "/alice/", PROPFIND, headers={"Depth": "0"}))[0].status == 207
        again.close()
    finally:
        server.stop()


def test_the_server_stops_with_an_idle_connection_open(database_url: str, tmp_path: Path) -> None:
    server = start_server(database_url, tmp_path / "server")
    conn = Connection(socket.create_connection(("127.0.0.1", port_of(server)), timeout=30))
    try:
        assert conn.ask(request("PROPFIND", "/alice/", PROPFIND, headers={"Depth": "0"}))[0].status == 207
        time.sleep(keepalive.LINGER * 10)  # parked
        server.stop()
        assert not server._thread.is_alive()
        assert conn.closed_by_server()
    finally:
        conn.close()


def test_requests_share_a_tls_connection(database_url: str, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    tls.create_self_signed(cert, key, [])
    server = start_server(database_url, tmp_path / "server", {
        "server": {"ssl": "True", "certificate": str(cert), "key": str(key)}})
    try:
        context = ssl.create_default_context(cafile=str(cert))
        raw = socket.create_connection(("127.0.0.1", port_of(server)), timeout=10)
        conn = Connection(context.wrap_socket(raw, server_hostname="localhost"))
        assert conn.ask(request("MKCALENDAR", CALENDAR))[0].status == 201
        put = conn.ask(request("PUT", CALENDAR + "a.ics", event("a"), headers=ICS))
        assert put[0].status == 201
        time.sleep(keepalive.LINGER * 10)  # parked; its handshake is not done again
        answers = conn.ask(request("GET", CALENDAR + "a.ics"), request("PROPFIND", CALENDAR, PROPFIND,
                                                                       headers={"Depth": "1"}))
        assert [a.status for a in answers] == [200, 207]
        assert b"UID:a" in answers[0].body
        for answer in answers:
            assert_kept(answer)
        conn.close()
    finally:
        server.stop()


def test_an_answer_leaves_before_the_thread_waits_for_the_next_request(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Answers without a body (201, 204) too: with the wait for the next
    request longer than the client waits for an answer, every answer still
    comes (none is left in the write buffer meanwhile)."""
    monkeypatch.setattr(keepalive, "LINGER", 60.0)
    server = start_server(database_url, tmp_path / "server")
    conn = Connection(socket.create_connection(("127.0.0.1", port_of(server)), timeout=10))
    try:
        assert conn.ask(request("MKCALENDAR", CALENDAR))[0].status == 201
        put = conn.ask(request("PUT", CALENDAR + "a.ics", event("a"), headers=ICS))
        assert put[0].status == 201 and put[0].body == b""
        assert conn.ask(request("DELETE", CALENDAR + "a.ics"))[0].status == 200
        got = conn.ask(request("GET", CALENDAR + "a.ics"))[0]
        assert got.status == 404
    finally:
        conn.close()
        server.stop()


def test_the_request_body_reads_no_byte_beyond_its_length() -> None:
    import io

    stream = io.BufferedReader(io.BytesIO(b"line one\nline two\nNEXT REQUEST"))  # type: ignore[arg-type]
    body = keepalive.RequestBody(stream, len(b"line one\nline two\n"))
    assert body.readline() == b"line one\n"
    assert list(body) == [b"line two\n"]
    assert body.read() == b"" and body.remaining == 0
    assert body.drain() and stream.read() == b"NEXT REQUEST"

    unread = keepalive.RequestBody(io.BufferedReader(io.BytesIO(b"abcdefNEXT")), 6)  # type: ignore[arg-type]
    assert unread.read(2) == b"ab" and unread.remaining == 4
    assert unread.drain() and unread.remaining == 0

    short = keepalive.RequestBody(io.BufferedReader(io.BytesIO(b"abc")), 10)  # type: ignore[arg-type]
    assert short.read() == b"abc" and short.cut_short and not short.drain()

    long = keepalive.RequestBody(io.BufferedReader(io.BytesIO(b"")), keepalive.DRAIN_LIMIT + 1)  # type: ignore[arg-type]
    assert not long.drain()


def test_a_client_resetting_its_idle_connection_is_no_error(
    connect: Callable[[], Connection], server: Server, caplog: pytest.LogCaptureFixture,
) -> None:
    """Phones drop idle connections, at times with a reset: the server
    closes its end quietly and goes on."""
    import logging
    import struct

    caplog.set_level(logging.WARNING)
    for pause in (0.0, keepalive.LINGER * 10):  # while the thread waits; while parked
        conn = connect()
        assert conn.ask(request("GET", CALENDAR + "first.ics"))[0].status == 200
        time.sleep(pause)
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # a reset, not an orderly close
    time.sleep(keepalive.LINGER * 10)
    assert connect().ask(request("GET", CALENDAR + "second.ics"))[0].status == 200
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
