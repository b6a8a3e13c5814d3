"""Password hashes: salted Argon2id (memory-hard), verified in constant time.

New hashes are Argon2id (RFC 9106) in the PHC string format
(``$argon2id$v=19$m=7168,t=5,p=1$<salt>$<hash>``). OWASP's Password Storage
Cheat Sheet gives five Argon2id settings of equal defence that trade memory
for passes, from 46 MiB and 1 pass to 7 MiB and 5; this is the last: a login
costs 7 MiB for a moment (and about as much time as the 19 MiB, 2-pass
setting), so a burst of logins does not set the server's peak memory. The
scrypt hashes of earlier versions (N=2^15, r=8: 32 MiB per check, and below
OWASP's scrypt minimum of N=2^17) are still verified
(``scrypt$<log2 N>$<r>$<p>$<salt b64>$<hash b64>``), and
:func:`needs_rehash` tells the login to replace them, and any hash of another
cost, once the password is known.
"""

from __future__ import annotations

import base64
import hmac
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

MEMORY_KIB = 7 * 1024
ITERATIONS = 5
LANES = 1
SALT_BYTES = 16
HASH_BYTES = 32

_ARGON2ID = re.compile(r"\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+\Z")


def hash_password(password: str) -> str:
    kdf = Argon2id(salt=os.urandom(SALT_BYTES), length=HASH_BYTES, iterations=ITERATIONS,
                   lanes=LANES, memory_cost=MEMORY_KIB)
    return kdf.derive_phc_encoded(password.encode("utf-8"))


def _verify_scrypt(password: bytes, stored: str) -> bool:
    scheme, log2_n, r, p, salt, digest = stored.split("$")
    if scheme != "scrypt":
        return False
    kdf = Scrypt(salt=base64.b64decode(salt), length=HASH_BYTES, n=2 ** int(log2_n), r=int(r), p=int(p))
    kdf.verify(password, base64.b64decode(digest))
    return True


def verify_password(password: str, stored: str) -> bool:
    """True if ``password`` matches ``stored``; never raises for bad input."""
    secret = password.encode("utf-8")
    try:
        if stored.startswith("$argon2id$"):
            Argon2id.verify_phc_encoded(secret, stored)
            return True
        return _verify_scrypt(secret, stored)
    except (ValueError, InvalidKey):
        return False


def needs_rehash(stored: str) -> bool:
    """True if ``stored`` is not an Argon2id hash of today's cost."""
    found = _ARGON2ID.match(stored)
    return found is None or tuple(int(g) for g in found.groups()) != (MEMORY_KIB, ITERATIONS, LANES)


@contextmanager
def cheap_hashes() -> Iterator[None]:
    """New hashes at the lowest Argon2id cost while the block runs: for tests
    and the benchmark's seeding, which are not about password hashing."""
    global MEMORY_KIB, ITERATIONS
    saved = MEMORY_KIB, ITERATIONS
    MEMORY_KIB, ITERATIONS = 8 * LANES, 1
    try:
        yield
    finally:
        MEMORY_KIB, ITERATIONS = saved


# The hash of a random password nobody kept, made once with the cost above
# (tests/test_passwords.py checks they agree). A constant rather than hashed
# at start: hashing it costs 7 MiB for a moment at start.
_DUMMY_HASH = ("$argon2id$v=19$m=7168,t=5,p=1$"
               "pcBFki8znQ9nsb3uOaIHDA$BkiiUbmUNSjrZ/zC7jWhUyxaZnukxzT0FMORUeNnzik")


def dummy_hash() -> str:
    """Verified against when the user does not exist, so an unknown user
    costs the same time as a wrong password."""
    return _DUMMY_HASH


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))
