"""The benchmark's record of the machine's pace (bench/pace.py).

No timing is asserted: what is checked is that each figure is the median of
its samples, that the durable write is a real ``fdatasync`` of the run's
folder that leaves nothing behind, and that the CPU task does its work."""

from __future__ import annotations

import os
from pathlib import Path

import icalendar
import pytest

from bench import pace


def test_median_ms_is_the_median_of_the_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    # perf_counter read before and after each run: runs of 5, 1 and 2 ms (mean 2.67).
    clock = iter([0.0, 0.005, 1.0, 1.001, 2.0, 2.002])
    monkeypatch.setattr(pace.time, "perf_counter", lambda: next(clock))
    calls: list[int] = []
    assert pace.median_ms(lambda: calls.append(1), 3) == pytest.approx(2.0)
    assert len(calls) == 3


def test_fsync_writes_and_syncs_in_the_folder_and_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(pace.os, "fdatasync", fdatasync)
    figure = pace.fsync_ms(tmp_path, samples=7)
    assert figure > 0
    assert synced == [str(tmp_path / "pace.fsync")] * 8  # the first write untimed, then 7
    assert list(tmp_path.iterdir()) == []


def test_fsync_in_a_missing_folder_fails_rather_than_measuring_elsewhere(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        pace.fsync_ms(tmp_path / "gone", samples=1)


def test_the_cpu_task_parses_and_serialises_each_round(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed = []
    real = icalendar.Calendar.from_ical

    def from_ical(text: str) -> icalendar.Calendar:
        parsed.append(text)
        return real(text)

    monkeypatch.setattr(pace.icalendar.Calendar, "from_ical", from_ical)
    pace.cpu_task(4)
    assert parsed == [pace.EVENT] * 4


def test_measure_names_the_moment_and_reports_both_figures(tmp_path: Path) -> None:
    measured = pace.measure(tmp_path, "before 1,000 events", cpu_samples=2, fsync_samples=2)
    assert measured.when == "before 1,000 events"
    assert measured.cpu_ms > 0 and measured.fsync_ms > 0
    assert measured.as_json() == {"when": "before 1,000 events", "cpu_ms": measured.cpu_ms,
                                  "fsync_ms": measured.fsync_ms, "cpu_samples": 2, "fsync_samples": 2}
    line = pace.line([measured])
    assert line.startswith("Machine pace") and measured.describe() in line
    # The line names the runs measured, not the module's defaults (9 and 50).
    assert "median of 2; an 8 kB" in line and "median of 2; both" in line


def test_the_line_names_differing_sample_counts_as_a_range() -> None:
    paces = [pace.Pace("before", 10.0, 0.1, cpu_samples=3, fsync_samples=50),
             pace.Pace("end", 11.0, 0.2, cpu_samples=9, fsync_samples=50)]
    head = pace.line(paces).split("):")[0]
    assert "median of 3 to 9;" in head and "median of 50;" in head
