"""Turn calendar object text into stored bytes and back.

All object data passes through here. With a keyring installed for the
database (servicehop instances always have one) the bytes are AES-GCM
ciphertext and the row records the key id; without one (the plugin used as
a plain Radicale storage with no key file) they are UTF-8 text and the key
id is NULL. The store also counts how many objects it really decoded, so a
query that should touch few rows can be checked to touch few rows.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

from sqlalchemy import Connection, Engine, func, select

from servicehop_caldav.crypto import KeyError_, Keyring
from servicehop_caldav.db import memo
from servicehop_caldav.db.schema import key_checks

OBJECT_CONTEXT = b"calendar_objects.data"


class DecodeCounter:
    """Counts decoded objects; tests and the benchmark read it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self, n: int = 1) -> None:
        with self._lock:
            self.value += n

    def reset(self) -> int:
        with self._lock:
            value, self.value = self.value, 0
            return value


decoded = DecodeCounter()

_keyrings: weakref.WeakKeyDictionary[Engine, Keyring] = weakref.WeakKeyDictionary()


def install(engine: Engine, keyring: Keyring | None) -> None:
    """Encrypt everything written through ``engine`` with ``keyring``."""
    if keyring is None:
        _keyrings.pop(engine, None)
    else:
        _keyrings[engine] = keyring


def keyring_of(conn: Connection) -> Keyring | None:
    return _keyrings.get(conn.engine)


class StaleKeyError(KeyError_):
    """The database has a newer key than this process: the key was rotated."""


def check_current(conn: Connection, keyring: Keyring) -> None:
    """Refuse to write under a key older than the database's newest key.

    ``rotate-key`` registers its new key (a key_checks row) before it
    re-encrypts anything; a process that loaded the key file earlier would
    otherwise keep writing rows under a key the rotation is about to retire.
    Call inside the write transaction, before encrypting. Read once per
    transaction (or with the path, store.write_ahead): a rotation registers
    its key under the same write lock, so the answer cannot change while a
    write transaction runs.
    """
    newest = memo.once(conn, _NEWEST, "newest", lambda: conn.execute(NEWEST_KEY).scalar())
    if newest is not None and newest > keyring.current:
        raise StaleKeyError(
            f"the instance key was rotated (key {newest}) after this process loaded key "
            f"{keyring.current}: restart it; nothing was written"
        )


# Built once: every write asks (store.write_ahead asks it with the path).
NEWEST_KEY = select(func.max(key_checks.c.key_id).label("newest_key"))
# Memo kind: {"newest": the newest key id}, as this transaction read it.
_NEWEST = "newest_key"


def knows_newest(conn: Connection) -> bool:
    """Whether this transaction has read the newest key id already."""
    return "newest" in memo.memo(conn, _NEWEST)


def remember_newest(conn: Connection, newest: int | None) -> None:
    """Note the newest key id that a statement of this write transaction
    read after the write lock was taken: :func:`check_current` asks no more."""
    memo.memo(conn, _NEWEST)["newest"] = newest


def encode(conn: Connection, text: str) -> tuple[bytes, int | None]:
    """Bytes to store and the id of the key that encrypted them (None: clear)."""
    keyring = keyring_of(conn)
    data = text.encode("utf-8")
    if keyring is None:
        return data, None
    check_current(conn, keyring)
    return keyring.encrypt(data, OBJECT_CONTEXT)


def decode(conn: Connection, data: bytes, key_id: int | None) -> str:
    return decoder(conn)(data, key_id)


def decoder(conn: Connection) -> Callable[[bytes, int | None], str]:
    """:func:`decode` for many rows of one result: the key looked up once."""
    keyring = keyring_of(conn)

    def decode_one(data: bytes, key_id: int | None) -> str:
        decoded.add()
        if key_id is None:
            return bytes(data).decode("utf-8")
        if keyring is None:
            raise ValueError(f"object encrypted with key {key_id}, but no key file is configured")
        return keyring.decrypt(key_id, data, OBJECT_CONTEXT).decode("utf-8")

    return decode_one
