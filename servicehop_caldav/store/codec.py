"""Turn calendar object text into stored bytes and back.

All object data passes through here, so this is where encryption at rest
plugs in, and where the store counts how many objects it really decoded
(a query that should touch few rows can be checked to touch few rows).
"""

from __future__ import annotations

import threading


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


def encode(text: str) -> tuple[bytes, int | None]:
    """Bytes to store and the id of the key that encrypted them (None: clear)."""
    return text.encode("utf-8"), None


def decode(data: bytes, key_id: int | None) -> str:
    if key_id is not None:
        raise ValueError(f"object encrypted with key {key_id}, but no key is loaded")
    decoded.add()
    return bytes(data).decode("utf-8")
