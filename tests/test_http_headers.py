"""The parser of requests' headers (servicehop_caldav.http_headers) gives
what ``http.client.parse_headers`` gives, on generated header blocks odd
lines included: the same message (headers, payload, defects), the same
error, the same bytes left unread; and the server parses its requests'
headers with it."""

from __future__ import annotations

import http.client
import io
import socket
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from servicehop_caldav import http_headers
from tests.conftest import start_server

# Bytes that steer a header parser: separators, line breaks of str and of
# bytes, whitespace, and octets above ASCII (NEL among them).
VALUE_OCTETS = b" \t:;,=\"\\()\r\n\x0b\x0c\x1c\x1d\x1e\x85\x7f\x00\xe4\xffab09"
NAME_OCTETS = b"AaZz09-_!~;:\x7f\x80 \t("

names = st.one_of(
    st.sampled_from([b"Host", b"Content-Type", b"content-length", b"Authorization", b"Depth",
                     b"If-None-Match", b"X-Y", b"From"]),
    st.binary(min_size=0, max_size=8).map(lambda b: bytes(NAME_OCTETS[x % len(NAME_OCTETS)] for x in b)),
)
values = st.one_of(
    st.sampled_from([b"", b" text/calendar; charset=utf-8", b" multipart/mixed; boundary=x",
                     b" message/rfc822", b"multipart", b" Multipart/Form-Data", b"  a  ", b"\t1"]),
    st.binary(max_size=24).map(lambda b: bytes(VALUE_OCTETS[x % len(VALUE_OCTETS)] for x in b)),
)
endings = st.sampled_from([b"\r\n", b"\r\n", b"\n", b"\r\r\n"])
header_lines = st.builds(lambda n, v, e: n + b":" + v + e, names, values, endings)
odd_lines = st.sampled_from([b" folded\r\n", b"\tfolded\r\n", b"no colon\r\n", b"From someone\r\n",
                             b": no name\r\n", b"\x85x: y\r\n", b"A: b\rC: d\r\n"])
blocks = st.builds(
    lambda lines, end, rest: b"".join(lines) + end + rest,
    st.lists(st.one_of(header_lines, header_lines, header_lines, odd_lines), max_size=8),
    st.sampled_from([b"\r\n", b"\n", b""]),
    st.sampled_from([b"", b"BODY", b"\r\nmore"]),
)


def state(message: Any) -> dict[str, Any]:
    """A message's whole state: its defects as type and text, the messages
    of its payload (a multipart or message type's) as their states."""
    values = dict(vars(message))
    values["defects"] = [(type(d), str(d)) for d in values["defects"]]
    if isinstance(values["_payload"], list):
        values["_payload"] = [(type(m), state(m)) for m in values["_payload"]]
    return values


def parsed(parse: Any, block: bytes) -> tuple[Any, ...]:
    """What ``parse`` makes of ``block``: the message's state or the error,
    and the bytes left unread."""
    fp = io.BytesIO(block)
    try:
        message = parse(fp, _class=http.client.HTTPMessage)
    except Exception as e:  # noqa: BLE001 - compared as they are
        return "raised", type(e), str(e), fp.read()
    return "message", type(message), state(message), fp.read()


@settings(max_examples=4000, deadline=None)
@given(block=blocks)
def test_a_generated_header_block_parses_as_http_client_parses_it(block: bytes) -> None:
    assert parsed(http_headers.parse_headers, block) == parsed(http_headers.ORIGINAL, block)


def test_plain_blocks_take_the_fast_way_and_others_the_original() -> None:
    """The cases the fast way is for do not reach the email parser; the
    ones it leaves alone do (and still come out the same)."""
    plain = (b"Host: 127.0.0.1\r\nContent-Type: text/calendar; charset=utf-8\r\n"
             b"Content-Length: 12\r\nAuthorization: Basic YTpi\r\nX-Empty:\r\n\r\n")
    assert http_headers._plain_message(io.BytesIO(plain).readlines(), http.client.HTTPMessage) is not None
    for odd in (b"A: b\r\n folded\r\n\r\n", b"A: b\r\n", b"Content-Type: multipart/mixed\r\n\r\n",
                b"No colon\r\n\r\n", b"A: b\x85c\r\n\r\n", b"A b: c\r\n\r\n"):
        assert http_headers._plain_message(io.BytesIO(odd).readlines(), http.client.HTTPMessage) is None
        assert parsed(http_headers.parse_headers, odd) == parsed(http_headers.ORIGINAL, odd)
    message = http_headers.parse_headers(io.BytesIO(plain))
    assert message.get_all("content-type") == ["text/calendar; charset=utf-8"]
    assert message["X-Empty"] == ""
    assert message.get_payload() == ""


def test_http_client_limits_are_kept() -> None:
    too_long = b"A: " + b"x" * 70000 + b"\r\n\r\n"
    assert parsed(http_headers.parse_headers, too_long)[:2] == ("raised", http.client.LineTooLong)
    too_many = b"A: b\r\n" * 101 + b"\r\n"
    assert parsed(http_headers.parse_headers, too_many)[:2] == ("raised", http.client.HTTPException)
    assert parsed(http_headers.parse_headers, too_many) == parsed(http_headers.ORIGINAL, too_many)


def _exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def test_the_server_reads_headers_with_it_folded_or_plain(database_url: str, tmp_path: Path) -> None:
    """The server installs the parser; a request of plain headers and one
    whose credentials are folded onto a second line (read the original's
    way) both log in, and wrong credentials do not."""
    server = start_server(database_url, tmp_path)
    try:
        assert http.client.parse_headers is http_headers.parse_headers
        port = int(server.url.rsplit(":", 1)[1])
        plain = (b"PROPFIND /alice/ HTTP/1.1\r\nHost: x\r\nDepth: 0\r\n"
                 b"Authorization: Basic YWxpY2U6YWxpY2UtcHc=\r\nContent-Length: 0\r\n\r\n")
        # The credentials on a continuation line: read as the email parser
        # reads it, they are whole; a parser that dropped the line would refuse.
        folded = (b"PROPFIND /alice/ HTTP/1.1\r\nHost: x\r\nDepth: 0\r\n"
                  b"Authorization: Basic\r\n YWxpY2U6YWxpY2UtcHc=\r\nContent-Length: 0\r\n\r\n")
        assert _exchange(port, plain).startswith(b"HTTP/1.1 207")
        assert _exchange(port, folded).startswith(b"HTTP/1.1 207")
        wrong = plain.replace(b"YWxpY2U6YWxpY2UtcHc=", b"YWxpY2U6d3Jvbmc=")
        assert _exchange(port, wrong).startswith(b"HTTP/1.1 401")
    finally:
        server.stop()
