"""The dummy hash an unknown user is checked against costs what a real one does."""

from __future__ import annotations

import pytest

from servicehop_caldav import passwords
from servicehop_caldav.server import limit_malloc_arenas


def test_dummy_hash_has_the_current_cost() -> None:
    scheme, log2_n, r, p, salt, digest = passwords.dummy_hash().split("$")
    assert (scheme, int(log2_n), int(r), int(p)) == ("scrypt", passwords.LOG2_N, passwords.R, passwords.P)
    real = passwords.hash_password("x").split("$")
    assert len(salt) == len(real[4]) and len(digest) == len(real[5])
    assert not passwords.verify_password("", passwords.dummy_hash())


def test_an_operators_arena_limit_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False
