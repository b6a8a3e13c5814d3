"""The export's layout on disk, and the two kinds of file in it.

::

    OUT/                      mode 0700; every file 0600 (personal data in clear)
      export.json             format and version, when, from which schema, counts
      servicehop.toml         the instance's booking rules, copied as they were
      directory.json          departments, users (no password hashes), roles,
                              the departments' view calendars
      calendars.json          every calendar: its mounts (path, parent, props)
                              and its objects (href, UID, etag, index values)
                              in the order of its file
      calendars/<path>.ics    each calendar's objects as an iCalendar stream
                              (RFC 5545 3.4: one VCALENDAR per stored object,
                              verbatim), named after its first mount
      bookings.json           the booking rows
      audit.json              the audit log

Every JSON file names the format and its version, so an import refuses a
file it does not understand instead of guessing. Calendars are named in
the JSON files by an export-local id ("c1", "c2", ...): the database ids do
not survive an import, the references do. User ids and booking ids are kept
as they are (the audit log and the booking rows refer to them).

Objects go into the stream byte for byte, so each one's etag (the SHA-256
of its text) checks it on the way back in, and the restored rows have the
same hrefs, UIDs and etags: clients that knew the old server see the same
resources.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from servicehop_caldav.instance import InstanceError

FORMAT = "servicehop-caldav export"
VERSION = 1

EXPORT_JSON = "export.json"
SETTINGS = "servicehop.toml"
DIRECTORY_JSON = "directory.json"
CALENDARS_JSON = "calendars.json"
BOOKINGS_JSON = "bookings.json"
AUDIT_JSON = "audit.json"
CALENDARS_DIR = "calendars"

# The top-level components a stored object can be (calendars and, for the
# plain storage plugin, address books).
_TOP = ("VCALENDAR", "VCARD")
# A path segment that is a plain file name everywhere; anything else (or a
# clash) names the file after the calendar's export-local id instead.
_SAFE_SEGMENT = re.compile(r"[A-Za-z0-9_@+-][A-Za-z0-9._@+-]{0,199}\Z")


class DumpError(InstanceError):
    """An export, import or backup that cannot be done, and why (the command
    prints it as one line; an import that fails has written nothing)."""


# -- files ------------------------------------------------------------------------


def make_private_dir(path: Path) -> None:
    """A new directory only its owner can enter (the umask cannot widen it)."""
    path.mkdir(mode=0o700)
    os.chmod(path, 0o700)


def make_private_dirs(root: Path, path: Path) -> None:
    """``path`` and its missing parents below ``root``, each mode 0700."""
    for part in reversed([path, *path.parents]):
        if part.is_relative_to(root) and part != root and not part.is_dir():
            make_private_dir(part)


def write_private(path: Path, data: bytes) -> None:
    """A new file, mode 0600, flushed to disk; refuses to replace one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(root: Path, name: str, body: dict[str, Any]) -> None:
    document = {"format": FORMAT, "version": VERSION, **body}
    text = json.dumps(document, indent=1, ensure_ascii=False) + "\n"
    write_private(root / name, text.encode("utf-8"))


def read_json(root: Path, name: str) -> dict[str, Any]:
    """One JSON file of an export, after checking it is one this version reads."""
    path = root / name
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise DumpError(f"{root} is not a servicehop-caldav export: {name} is missing") from e
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DumpError(f"cannot read {path}: {e}") from e
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise DumpError(f"{path} is not part of a servicehop-caldav export")
    if document.get("version") != VERSION:
        raise DumpError(
            f"{path} has export format version {document.get('version')!r}; "
            f"this servicehop-caldav reads version {VERSION}"
        )
    return document


# -- iCalendar streams -----------------------------------------------------------------


def _lines(text: str) -> Iterable[str]:
    """The lines of ``text`` with their endings. Only LF ends a line: the
    other characters str.splitlines() breaks at may sit inside values."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


def split_stream(text: str) -> list[str]:
    """The objects of an iCalendar (or vCard) stream, each exactly as it
    stands in the text, from its BEGIN line to its END line with its line
    ending. Text-level: nothing is parsed or serialised again. Anything
    between or after the objects is an error (an export holds nothing else)."""
    objects: list[str] = []
    current: list[str] = []
    name: str | None = None
    for number, line in enumerate(_lines(text), 1):
        # Only trailing blanks go: a line that starts with one continues the
        # line before it (RFC 5545 folding), whatever it says.
        bare = line.rstrip("\r\n").rstrip(" \t").upper()
        if name is None:
            component = bare[len("BEGIN:"):] if bare.startswith("BEGIN:") else None
            if component not in _TOP:
                raise ValueError(f"line {number}: text outside an object ({line[:40]!r})")
            name = component
        current.append(line)
        if bare == f"END:{name}":
            objects.append("".join(current))
            current, name = [], None
    if name is not None:
        raise ValueError(f"the stream ends inside a {name} (no END:{name})")
    return objects


def streamable(text: str) -> bool:
    """Whether a stored object survives the stream exactly: one object on
    lines of its own, ending with a line break (a concatenation of such
    texts splits back into the same texts)."""
    try:
        return text.endswith("\n") and split_stream(text) == [text]
    except ValueError:
        return False


# -- file names -----------------------------------------------------------------------


class FileNames:
    """Unique file names for the calendars under ``calendars/``: the first
    mount path when every segment is a plain file name, else the
    export-local id. Compared without case, so the export unpacks the same
    on a case-insensitive file system."""

    def __init__(self) -> None:
        self._files: set[str] = set()
        self._dirs: set[str] = set()

    def name(self, local_id: str, paths: list[str], tag: str, view: str | None = None) -> str:
        suffix = ".vcf" if tag == "VADDRESSBOOK" else ".ics"
        candidates = []
        if paths:
            segments = paths[0].split("/")
            if all(_SAFE_SEGMENT.match(s) for s in segments):
                candidates.append("/".join(segments) + suffix)
        elif view is not None:  # a department's view calendar nobody has mounted yet
            candidates.append(f"_views/{view}{suffix}")
        candidates.append(f"_other/{local_id}{suffix}")
        for candidate in candidates:
            if self._free(candidate):
                self._take(candidate)
                return f"{CALENDARS_DIR}/{candidate}"
        raise DumpError(f"no free file name for calendar {local_id}")  # ids are unique: never

    def _free(self, name: str) -> bool:
        key = name.lower()
        parents = _parents(key)
        return (key not in self._files and key not in self._dirs
                and not any(p in self._files for p in parents))

    def _take(self, name: str) -> None:
        key = name.lower()
        self._files.add(key)
        self._dirs.update(_parents(key))


def _parents(name: str) -> list[str]:
    parts = name.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]
