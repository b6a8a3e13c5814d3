"""Encryption at rest: AES-256-GCM under the instance's keys.

Every encrypted value is ``nonce (12 bytes) || ciphertext+tag`` and its row
records the id of the key that made it. The *context* (which table and
column a value belongs to) is authenticated data: a value copied into
another column does not decrypt.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE_BYTES = 12
# Encrypted with each key into key_checks: proves a key file matches the data.
CHECK_PLAINTEXT = b"servicehop-caldav key check v1"
CHECK_CONTEXT = b"key_checks"


class KeyError_(RuntimeError):
    """Data cannot be decrypted: its key is missing or wrong."""


def _index_key(key: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"servicehop blind index v1"
    ).derive(key)


@dataclass
class Keyring:
    """The keys of an instance by id; ``current`` encrypts new data."""

    keys: dict[int, bytes]
    current: int
    _aead: dict[int, AESGCM] = field(init=False, repr=False)
    _index_key: bytes = field(init=False, repr=False)
    _index_keys: dict[int, bytes] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise ValueError(f"current key {self.current} is not among the keys")
        self._aead = {key_id: AESGCM(key) for key_id, key in self.keys.items()}
        self._index_keys = {key_id: _index_key(key) for key_id, key in self.keys.items()}
        self._index_key = self._index_keys[self.current]

    @classmethod
    def from_keys(cls, keys: dict[int, bytes]) -> Keyring:
        """Keys in file order; the last one is current."""
        return cls(dict(keys), list(keys)[-1])

    def encrypt(self, plaintext: bytes, context: bytes) -> tuple[bytes, int]:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead[self.current].encrypt(nonce, plaintext, context), self.current

    def decrypt(self, key_id: int, blob: bytes, context: bytes) -> bytes:
        aead = self._aead.get(key_id)
        if aead is None:
            raise KeyError_(f"data is encrypted with key {key_id}, which the key file does not hold")
        blob = bytes(blob)
        try:
            return aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], context)
        except InvalidTag as e:
            raise KeyError_(f"data does not decrypt with key {key_id}: wrong key or damaged data") from e

    def blind_index(self, value: str) -> str:
        """A keyed hash for equality lookups of an encrypted value."""
        return hmac.new(self._index_key, value.encode("utf-8"), hashlib.sha256).hexdigest()

    def blind_indexes(self, value: str) -> list[str]:
        """``value``'s blind index under every key, the current one first: a
        lookup that also finds rows a rotation has not re-indexed yet."""
        ordered = [self.current, *(k for k in self.keys if k != self.current)]
        data = value.encode("utf-8")
        return [hmac.new(self._index_keys[k], data, hashlib.sha256).hexdigest() for k in ordered]

    def check_value(self, key_id: int) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead[key_id].encrypt(nonce, CHECK_PLAINTEXT, CHECK_CONTEXT)

    def matches(self, key_id: int, check_value: bytes) -> bool:
        try:
            return self.decrypt(key_id, check_value, CHECK_CONTEXT) == CHECK_PLAINTEXT
        except KeyError_:
            return False
