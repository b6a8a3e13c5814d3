"""A long answer's body (servicehop_caldav/answer_body.py), written in pieces.

The fast PROPFIND and REPORT tests compare whole answers with Radicale's;
here the body itself: many chunks (each compressed on its own call), text
the encoding cannot hold, and what ``finished`` tells Radicale."""

from __future__ import annotations

import gzip
from typing import Any

from servicehop_caldav import answer_body

# More pieces than one chunk holds, so the body is compressed in several calls.
PIECES = [f"<response><href>/alice/cal/event-{n:05d}.ics</href><etag>\"{n * 7919:x}\"</etag>"
          f"<data>SUMMARY:Visit {n} \u00e6\u00f8\u00e5 \u2603</data></response>\n"
          for n in range(answer_body.Body.CHUNK * 3 + 17)]


def written(encoding: str, gzip_: bool) -> answer_body.Body:
    body = answer_body.Body(encoding, gzip_)
    for piece in PIECES:
        body.write(piece)
    return body


def test_a_compressed_body_is_one_gzip_stream_of_every_piece_in_order() -> None:
    data = written("utf-8", True).getvalue()
    assert data[:2] == b"\x1f\x8b"  # a gzip member, as Radicale sends
    text = "".join(PIECES).encode("utf-8")
    assert gzip.decompress(data) == text
    assert len(data) < len(text) // 5  # it compressed


def test_an_uncompressed_body_is_the_text_encoded_as_radicale_encodes_it() -> None:
    # Characters the encoding lacks become character references, as in
    # Radicale's own answers (xmlcharrefreplace).
    data = written("latin-1", False).getvalue()
    assert data == "".join(PIECES).encode("latin-1", "xmlcharrefreplace")
    assert b"&#9731;" in data and "\u00e6".encode("latin-1") in data


def test_finished_labels_a_compressed_body_and_keeps_radicale_from_compressing_again() -> None:
    environ: dict[str, Any] = {"HTTP_ACCEPT_ENCODING": "deflate, gzip, br"}
    headers: dict[str, str] = {}
    data = answer_body.finished(environ, headers, written("utf-8", True))
    assert headers == {"Content-Encoding": "gzip"}
    assert environ["HTTP_ACCEPT_ENCODING"] == "deflate, br"
    assert gzip.decompress(data) == "".join(PIECES).encode("utf-8")


def test_finished_leaves_a_plain_body_and_the_request_as_they_are() -> None:
    environ: dict[str, Any] = {"HTTP_ACCEPT_ENCODING": "identity"}
    headers: dict[str, str] = {}
    data = answer_body.finished(environ, headers, written("utf-8", False))
    assert headers == {} and environ == {"HTTP_ACCEPT_ENCODING": "identity"}
    assert data == "".join(PIECES).encode("utf-8")
