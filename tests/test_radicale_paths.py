"""Radicale's path sanitizers, cached (servicehop_caldav.radicale_paths),
answer what the originals answer, refuse what they refuse, and do the work
once per path."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from radicale import pathutils

from servicehop_caldav import radicale_paths

SEGMENTS = st.sampled_from(["", ".", "..", "a", "b c", "ø", "x.ics", "..x", "~", "\\", "a\\b", "%2e%2e"])
PATHS = st.builds(lambda lead, parts, trail: lead + "/".join(parts) + trail,
                  st.sampled_from(["", "/", "//"]), st.lists(SEGMENTS, max_size=6),
                  st.sampled_from(["", "/", "//"]))


@pytest.fixture
def installed() -> Iterator[None]:
    radicale_paths.install()
    try:
        yield
    finally:
        radicale_paths.uninstall()


def _strip(strip: object, path: str) -> str | type[AssertionError]:
    try:
        return strip(path)  # type: ignore[operator, no-any-return]
    except AssertionError:
        return AssertionError


@given(PATHS)
def test_cached_functions_answer_as_radicale_does(path: str) -> None:
    radicale_paths.install()
    try:
        for _ in range(2):  # the second answer is the cache's
            assert pathutils.sanitize_path(path) == radicale_paths.ORIGINAL_SANITIZE(path)
            assert _strip(pathutils.strip_path, path) == _strip(radicale_paths.ORIGINAL_STRIP, path)
            sane = pathutils.sanitize_path(path)
            assert pathutils.strip_path(sane) == radicale_paths.ORIGINAL_STRIP(sane)
    finally:
        radicale_paths.uninstall()


def test_a_path_is_sanitized_once(installed: None, monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[str] = []  # the segments Radicale's sanitize_path checks: its work
    safe = pathutils.is_safe_path_component

    def counting(part: str) -> bool:
        checked.append(part)
        return safe(part)

    monkeypatch.setattr(pathutils, "is_safe_path_component", counting)
    for _ in range(5):
        assert pathutils.sanitize_path("/gunn/../gunn/bookings-vest/y.ics") == "/gunn/bookings-vest/y.ics"
        # Radicale's strip_path sanitizes its input again, in its assertion: the cache answers.
        assert pathutils.strip_path("/gunn/bookings-vest/y.ics") == "gunn/bookings-vest/y.ics"
    assert checked == ["", "gunn", "bookings-vest", "y.ics"] * 2


def test_an_unsanitized_path_is_refused_every_time(installed: None) -> None:
    for _ in range(3):
        with pytest.raises(AssertionError):
            pathutils.strip_path("/a/../b")


def test_install_twice_wraps_once_and_uninstall_restores(installed: None) -> None:
    cached = pathutils.sanitize_path
    radicale_paths.install()
    assert pathutils.sanitize_path is cached
    radicale_paths.uninstall()
    assert pathutils.sanitize_path is radicale_paths.ORIGINAL_SANITIZE
    assert pathutils.strip_path is radicale_paths.ORIGINAL_STRIP
