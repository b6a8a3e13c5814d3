"""servicehop.toml is read again when it changes; a broken edit keeps the last good rules."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from servicehop_caldav.booking.config import ConfigError
from servicehop_caldav.desk.settings import SettingsFile


def write(path: Path, text: str, bump: int) -> None:
    path.write_text(text)
    # A distinct mtime even on file systems with coarse timestamps.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump * 1_000_000_000))


def test_changes_are_picked_up_and_broken_edits_keep_the_last_good_rules(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "servicehop.toml"
    write(path, "[defaults]\nhorizon_days = 10\n", 0)
    settings = SettingsFile(path)
    assert settings.current().defaults.horizon_days == 10
    write(path, "[defaults]\nhorizon_days = 20\n", 1)
    assert settings.current().defaults.horizon_days == 20
    with caplog.at_level(logging.ERROR):
        write(path, "[defaults]\nhorizon_days = 'x'\n", 2)
        assert settings.current().defaults.horizon_days == 20
    assert "horizon_days must be a whole number" in caplog.text
    path.unlink()  # a vanished file keeps the rules too
    assert settings.current().defaults.horizon_days == 20


def test_a_broken_file_stops_the_start(tmp_path: Path) -> None:
    path = tmp_path / "servicehop.toml"
    path.write_text("[nonsense]\n")
    with pytest.raises(ConfigError, match="unknown table"):
        SettingsFile(path)


def test_no_file_means_the_design_defaults() -> None:
    assert SettingsFile(None).current().defaults.horizon_days == 14
