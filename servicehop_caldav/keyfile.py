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
from pathlib import Path

KEY_BYTES = 32


class KeyFileError(RuntimeError):
    """The key file is missing, unreadable, malformed or too open."""


def create_key_file(path: Path) -> int:
    """Write a new key file with one fresh key; return its id."""
    key_id = 1
    line = f"{key_id}:{base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}\n"
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
