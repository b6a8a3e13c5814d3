"""A faster equivalent of ``http.client.parse_headers`` for plain header blocks.

``http.server`` reads every request's headers through
``http.client.parse_headers``, which joins the lines and hands them to the
email package's feed parser, a parser built for mail: about 0.1 ms of
every request in the server (a GET of one event costs the server about
2.5 ms). A request's header block is nearly always plain lines of the form
``Name: value``. Those are split here exactly as the feed parser splits
them under its ``compat32`` policy (the name up to the first colon; the
value without the spaces and tabs after the colon and without the line
ending) into the same :class:`http.client.HTTPMessage`.

Anything else goes to the original: a folded (continued) line, a line
that is not a header, a name outside the characters the email parser
takes as a header's, a character the feed parser could take as a line
break, a block cut off by the end of the stream, and a Content-Type whose
main type (``multipart``, ``message``) makes the feed parser read a body.
The lines are still read by ``http.client``'s own reader, so its limits
(line length, number of headers) and errors are the same.
``tests/test_http_headers.py`` holds the two to the same message on
generated blocks. :func:`install` swaps it in only where ``http.client``
has the reader it relies on.
"""

from __future__ import annotations

import email.parser
import http.client
import re
from collections.abc import Callable
from typing import Any

ORIGINAL = http.client.parse_headers
# http.client's reader of a header block's lines (private, Python >= 3.10).
_READ: Callable[[Any], list[bytes]] | None = getattr(http.client, "_read_headers", None)

# A plain header line: a name of the characters the email parser's
# headerRE takes as a header's, a colon, and a value of characters none of
# which a line splitter of str (the feed parser's) could take as a line
# break, then the line's end.
_PLAIN_LINE = re.compile(rb"([\x21-\x39\x3b-\x7e]+):([\t\x20-\x7e\x80-\x84\x86-\xff]*)\r?\n")
_END_OF_BLOCK = (b"\r\n", b"\n")
_BODY_READING_TYPES = ("multipart", "message")


def parse_headers(fp: Any, _class: type[http.client.HTTPMessage] = http.client.HTTPMessage) -> Any:
    """``http.client.parse_headers``: the header block read from ``fp`` as
    a message of ``_class``."""
    if _READ is None:
        return ORIGINAL(fp, _class)
    lines = _READ(fp)
    message = _plain_message(lines, _class)
    if message is not None:
        return message
    return _parse_lines(lines, _class)


def _plain_message(lines: list[bytes], message_class: type[http.client.HTTPMessage]) -> Any:
    """The message the feed parser makes of ``lines`` when they are plain;
    None when they are not."""
    if lines[-1] not in _END_OF_BLOCK:
        return None
    message = message_class()
    for line in lines[:-1]:
        match = _PLAIN_LINE.fullmatch(line)
        if match is None:
            return None
        name, value = match.groups()
        message.set_raw(name.decode("iso-8859-1"), value.decode("iso-8859-1").lstrip(" \t"))
    if message.get_content_maintype() in _BODY_READING_TYPES:
        return None
    message.set_payload("")
    return message


def _parse_lines(lines: list[bytes], message_class: type[http.client.HTTPMessage]) -> Any:
    """What ``http.client.parse_headers`` does with the lines it has read."""
    return email.parser.Parser(_class=message_class).parsestr(b"".join(lines).decode("iso-8859-1"))


def install() -> bool:
    """Use :func:`parse_headers` for ``http.client``'s (and so for
    ``http.server``'s requests); False, leaving the original, where
    ``http.client`` has no reader of header lines to rely on."""
    if _READ is None:
        return False
    http.client.parse_headers = parse_headers  # type: ignore[assignment]  # typeshed: overloads
    return True


def uninstall() -> None:
    http.client.parse_headers = ORIGINAL
