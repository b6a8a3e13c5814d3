"""Password hashes: salted scrypt (memory-hard), compared in constant time.

Format: ``scrypt$<log2 N>$<r>$<p>$<salt b64>$<hash b64>``, so the cost can
rise later without breaking stored hashes.
"""

from __future__ import annotations

import base64
import hmac
import os

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

LOG2_N = 15  # 32 MiB per hash with r = 8
R = 8
P = 1
SALT_BYTES = 16
HASH_BYTES = 32


def _kdf(salt: bytes, log2_n: int, r: int, p: int) -> Scrypt:
    return Scrypt(salt=salt, length=HASH_BYTES, n=2**log2_n, r=r, p=p)


def hash_password(password: str) -> str:
    salt = os.urandom(SALT_BYTES)
    digest = _kdf(salt, LOG2_N, R, P).derive(password.encode("utf-8"))
    b64 = base64.b64encode
    return f"scrypt${LOG2_N}${R}${P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """True if ``password`` matches ``stored``; never raises for bad input."""
    try:
        scheme, log2_n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        kdf = _kdf(base64.b64decode(salt), int(log2_n), int(r), int(p))
        kdf.verify(password.encode("utf-8"), base64.b64decode(digest))
        return True
    except (ValueError, InvalidKey):
        return False


# The hash of a random password nobody kept, made once with the cost above
# (tests/test_passwords_dummy.py checks they agree). A constant rather than
# hashed at start: hashing it costs 32 MiB for a moment, and that was the
# highest point of a server's memory at start.
_DUMMY_HASH = "scrypt$15$8$1$gXDdXxbPhvu7GVmukjHELg==$pgfxtcQm5+jF/4ZRMqOG6442rPBzE+TK0yyS39GTu3g="


def dummy_hash() -> str:
    """Verified against when the user does not exist, so an unknown user
    costs the same time as a wrong password."""
    return _DUMMY_HASH


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))
