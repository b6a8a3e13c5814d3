"""Faster equivalents of three of vobject 0.9.9's hot functions.

Radicale parses every uploaded object with vobject and serializes it again
(``radicale.item.read_components``, ``radicale.app.put.prepare``): per PUT
of a plain event, warm, about 0.35 ms each. Much of that went to three
functions that work a character or an attribute at a time:

* ``ContentLine.__setattr__`` asks, for each attribute set (about 200 per
  event), whether the name is a parameter and whether the class has a
  property of that name; the answer for a class and a name never changes,
  so it is kept.
* ``stringToTextValues`` unescapes TEXT values by a state machine stepping
  through every character; here the runs between backslashes and
  separators are copied whole.
* ``foldOneLine`` folds long lines at 75 octets stepping through every
  character, and writes each short line by first failing to write it as
  bytes into a text buffer; here a line's pieces are cut whole.

Each replacement gives what the original gives, quirks included (a
trailing backslash becomes ``\\eof``; a line under 75 characters is not
folded even when it is longer than 75 octets), and hands anything outside
the cases it was written for to the original. ``tests/test_vobject_fast.py``
holds each to its original on generated input and whole calendars to the
same parse and serialization. :func:`install` replaces them only on the
vobject version they were written against.
"""

from __future__ import annotations

import functools
import importlib.metadata
import io
import logging
import re
from collections.abc import Callable
from typing import Any

import vobject.base
import vobject.icalendar
import vobject.vcard

logger = logging.getLogger(__name__)

# The vobject release whose functions these reproduce.
VOBJECT_VERSION = "0.9.9"

ORIGINAL_SETATTR = vobject.base.ContentLine.__setattr__
ORIGINAL_TEXT_VALUES = vobject.icalendar.stringToTextValues
ORIGINAL_FOLD = vobject.base.foldOneLine

# (class, attribute name) -> whether setting it is a plain object attribute.
_plain: dict[tuple[type, str], bool] = {}


def content_line_setattr(self: Any, name: str, value: Any) -> None:
    """``ContentLine.__setattr__``: ``*_param``/``*_paramlist`` names set
    parameters, a property's setter runs, anything else is an attribute."""
    key = (self.__class__, name)
    plain = _plain.get(key)
    if plain is None:
        if name.endswith("_param") or name.endswith("_paramlist"):
            ORIGINAL_SETATTR(self, name, value)  # parameters' names are the data's: not kept
            return
        plain = _plain[key] = not isinstance(getattr(self.__class__, name, None), property)
    if plain:
        object.__setattr__(self, name, value)
    else:
        ORIGINAL_SETATTR(self, name, value)


@functools.lru_cache(maxsize=16)
def _stops(separator: str) -> re.Pattern[str]:
    """Where a run of ordinary characters ends: a backslash or the separator."""
    return re.compile("[\\\\" + re.escape(separator) + "]")


def string_to_text_values(s: Any, listSeparator: Any = ",", charList: Any = None,  # noqa: N803 - vobject's names
                          strict: bool = False) -> list[str]:
    """``stringToTextValues``: a TEXT value unescaped and split at
    ``listSeparator``; an escape it does not know is kept as written."""
    if charList is None:
        charList = vobject.icalendar.escapableCharList
    if not isinstance(s, str) or not isinstance(charList, str):
        return ORIGINAL_TEXT_VALUES(s, listSeparator, charList, strict)  # type: ignore[no-any-return]
    if listSeparator is None or (isinstance(listSeparator, str) and len(listSeparator) != 1):
        separator = None  # the original compares one character to it: never equal
    elif isinstance(listSeparator, str) and listSeparator != "\\":
        separator = listSeparator
    else:
        return ORIGINAL_TEXT_VALUES(s, listSeparator, charList, strict)  # type: ignore[no-any-return]
    if "\\" not in s:
        parts = s.split(separator) if separator is not None else [s]
        if len(parts) > 1 and not parts[-1]:
            parts.pop()
        return parts
    stops = _stops(separator if separator is not None else "\\")
    results: list[str] = []
    current: list[str] = []
    at, end = 0, len(s)
    while True:
        found = stops.search(s, at)
        if found is None:
            current.append(s[at:])
            break
        stop = found.start()
        current.append(s[at:stop])
        if s[stop] == "\\":
            if stop + 1 == end:
                # The original reads the end of the string as the character
                # "eof", escaped.
                current.append("eof" if "eof" in charList else "\\eof")
                break
            char = s[stop + 1]
            if char in charList:
                current.append("\n" if char in "nN" else char)
            else:
                current.append("\\" + char)
            at = stop + 2
        else:
            results.append("".join(current))
            current = []
            at = stop + 1
    last = "".join(current)
    if last or not results:
        results.append(last)
    return results


def _octets(char: str) -> int:
    code = ord(char)
    return 1 if code < 0x80 else 2 if code < 0x800 else 3 if code < 0x10000 else 4


def fold_one_line(outbuf: Any, input: Any, lineLength: int = 75) -> None:  # noqa: A002, N803 - vobject's names
    """``foldOneLine``: one content line, folded (CRLF and a space) before
    the character that would take it past ``lineLength`` octets."""
    if type(outbuf) is not io.StringIO or not isinstance(input, str) or type(lineLength) is not int:
        ORIGINAL_FOLD(outbuf, input, lineLength)
        return
    if len(input) < lineLength:
        outbuf.write(input)
        outbuf.write("\r\n")
        return
    try:
        input.encode("utf-8")
    except UnicodeEncodeError:
        ORIGINAL_FOLD(outbuf, input, lineLength)  # raises as the original does
        return
    pieces: list[str] = []
    if input.isascii() and lineLength > 1:
        pieces.append(input[:lineLength])
        step = lineLength - 1
        pieces.extend(input[at:at + step] for at in range(lineLength, len(input), step))
    else:
        start, counter = 0, 0
        for at, char in enumerate(input):
            size = _octets(char)
            if counter + size > lineLength:
                pieces.append(input[start:at])
                start, counter = at, 1
            counter += size
        pieces.append(input[start:])
    outbuf.write("\r\n ".join(pieces))
    outbuf.write("\r\n")


_REPLACEMENTS: list[tuple[Any, str, Callable[..., Any], Callable[..., Any]]] = [
    (vobject.base.ContentLine, "__setattr__", ORIGINAL_SETATTR, content_line_setattr),
    (vobject.icalendar, "stringToTextValues", ORIGINAL_TEXT_VALUES, string_to_text_values),
    (vobject.vcard, "stringToTextValues", ORIGINAL_TEXT_VALUES, string_to_text_values),
    (vobject.base, "foldOneLine", ORIGINAL_FOLD, fold_one_line),
    (vobject.icalendar, "foldOneLine", ORIGINAL_FOLD, fold_one_line),
]


def install() -> bool:
    """Put the replacements in vobject's place (again: a no-op); False, and
    vobject left as it is, on a vobject release other than the one they
    were written for."""
    version = importlib.metadata.version("vobject")
    if version != VOBJECT_VERSION:
        logger.info("vobject %s is not %s: its own parser and serializer are used", version, VOBJECT_VERSION)
        return False
    for owner, name, original, replacement in _REPLACEMENTS:
        if getattr(owner, name) not in (original, replacement):
            logger.info("vobject's %s was replaced by someone else: left alone", name)
            continue
        setattr(owner, name, replacement)
    return True


def uninstall() -> None:
    """vobject's own functions back (for the tests' comparisons)."""
    for owner, name, original, replacement in _REPLACEMENTS:
        if getattr(owner, name) is replacement:
            setattr(owner, name, original)
