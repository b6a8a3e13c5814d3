"""The instance key file: AES-256 keys for encryption at rest.

One key per line, ``<id>:<base64 of 32 bytes>``; the last line is the key
that encrypts new data, earlier lines still decrypt older rows until a
rotation has re-encrypted them. The file is created with mode 0600 and
never rewritten in place.
"""

from __future__ import annotations

import base64
import os
import secrets
import stat
import tempfile
from pathlib import Path

KEY_BYTES = 32


class KeyFileError(RuntimeError):
    """The key file is missing, unreadable, malformed or too open."""


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def _format(keys: dict[int, bytes]) -> str:
    return "".join(f"{key_id}:{base64.b64encode(key).decode()}\n" for key_id, key in keys.items())


def create_key_file(path: Path) -> int:
    """Write a new key file with one fresh key; return its id."""
    key_id = 1
    line = _format({key_id: new_key()})
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as e:
        raise KeyFileError(f"key file {path} already exists; not overwriting it") from e
    with os.fdopen(fd, "w") as f:
        f.write(line)
    return key_id


def load_keys(path: Path) -> dict[int, bytes]:
    """All keys by id, in file order (the last one is current)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError as e:
        raise KeyFileError(f"key file {path} is missing") from e
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"key file {path} is readable by others: chmod 600 {path}")
    keys: dict[int, bytes] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        if not raw.strip():
            continue
        try:
            key_id_text, encoded = raw.split(":", 1)
            key = base64.b64decode(encoded, validate=True)
            key_id = int(key_id_text)
        except ValueError as e:
            raise KeyFileError(f"key file {path}, line {number}: malformed") from e
        if len(key) != KEY_BYTES:
            raise KeyFileError(f"key file {path}, line {number}: not a {KEY_BYTES}-byte key")
        keys[key_id] = key
    if not keys:
        raise KeyFileError(f"key file {path} holds no key")
    return keys


def write_key_file(path: Path, keys: dict[int, bytes]) -> None:
    """Replace the key file atomically with ``keys`` (in order; the last is current).

    The keys go to a new file (mode 0600, the old file's owner when run as
    root) that is flushed to disk and then renamed over the old one: a crash
    leaves either the old file or the new one, never a torn file, and the
    new keys are on disk before any row is encrypted with them.
    """
    if not keys:
        raise ValueError("a key file needs at least one key")
    old = path.stat() if path.exists() else None
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w") as f:
            os.fchmod(fd, 0o600)
            if old is not None and os.geteuid() == 0:
                os.fchown(fd, old.st_uid, old.st_gid)
            f.write(_format(keys))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
