"""Password hashes: Argon2id at today's cost, older scrypt hashes still
verified and marked for replacement, and the dummy hash an unknown user is
checked against costs what a real one does."""

from __future__ import annotations

import base64
import os

import pytest
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from servicehop_caldav import passwords


def scrypt_hash(password: str, log2_n: int = 10) -> str:
    """A hash as versions before Argon2id wrote it (their format, cheap N)."""
    salt = os.urandom(16)
    digest = Scrypt(salt=salt, length=32, n=2**log2_n, r=8, p=1).derive(password.encode())
    b64 = base64.b64encode
    return f"scrypt${log2_n}$8$1${b64(salt).decode()}${b64(digest).decode()}"


def test_new_hashes_are_argon2id_at_an_owasp_setting() -> None:
    stored = passwords.hash_password("Kåre-pw 1")
    assert stored.startswith("$argon2id$v=19$m=7168,t=5,p=1$")
    assert passwords.verify_password("Kåre-pw 1", stored)
    assert not passwords.verify_password("Kåre-pw 2", stored)
    assert not passwords.verify_password("", stored)
    assert stored != passwords.hash_password("Kåre-pw 1")  # salted
    assert not passwords.needs_rehash(stored)


def test_scrypt_hashes_of_earlier_versions_verify_and_need_a_rehash() -> None:
    stored = scrypt_hash("gammelt passord")
    assert passwords.verify_password("gammelt passord", stored)
    assert not passwords.verify_password("gammelt passord ", stored)
    assert passwords.needs_rehash(stored)


def test_cheap_hashes_are_cheap_only_inside_the_block_and_need_a_rehash() -> None:
    with passwords.cheap_hashes():
        cheap = passwords.hash_password("x")
        assert not passwords.needs_rehash(cheap)
    assert cheap.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert passwords.verify_password("x", cheap)
    assert passwords.needs_rehash(cheap)
    assert passwords.hash_password("x").startswith("$argon2id$v=19$m=7168,t=5,p=1$")


@pytest.mark.parametrize("stored", [
    "", "garbage", "scrypt$x$8$1$AA==$AA==", "scrypt$10$8$1$!!$AA==", "$argon2id$v=19$m=8,t=1,p=1$AA$",
    "$argon2id$v=18$m=19456,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "$argon2i$v=19$m=19456,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
])
def test_unreadable_stored_hashes_refuse_without_raising(stored: str) -> None:
    assert passwords.verify_password("x", stored) is False
    assert passwords.needs_rehash(stored)


def test_dummy_hash_has_the_current_cost() -> None:
    dummy = passwords.dummy_hash().split("$")
    real = passwords.hash_password("x").split("$")
    assert dummy[:4] == real[:4]  # "", scheme, version, cost
    assert [len(part) for part in dummy] == [len(part) for part in real]
    assert not passwords.needs_rehash(passwords.dummy_hash())
    assert not passwords.verify_password("", passwords.dummy_hash())

