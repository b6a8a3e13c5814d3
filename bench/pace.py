"""The machine's pace at one moment: a fixed piece of CPU work and a durable 8 kB write.

Every ratio of the benchmark is taken against stock Radicale in the same
run, so it holds whatever the machine's pace; the booking goals are in
milliseconds, so they move with it. On these shared machines the pace moved
by about half as much again between one half hour and the next (every
server slower alike), and a run's absolute figures can only be read beside
the pace it ran at. This module times, before each phase and at the end of
a run, the same two things every time:

* ``cpu_ms``: one iCalendar event parsed and serialised again with
  icalendar, :data:`CPU_ROUNDS` times (interpreted Python, the kind of work
  each server does for a request), the median of :data:`CPU_SAMPLES` runs;
* ``fsync_ms``: an 8 kB write and ``fdatasync`` in the run's own folder
  (the disk stock Radicale fsyncs to and PostgreSQL commits on), the median
  of :data:`FSYNC_SAMPLES`.

Measured in the benchmark's own process with every server idle.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import icalendar

CPU_ROUNDS = 25
CPU_SAMPLES = 9
FSYNC_SAMPLES = 50
BLOCK = 8192

EVENT = "\r\n".join((
    "BEGIN:VCALENDAR",
    "VERSION:2.0",
    "PRODID:-//servicehop-caldav bench//pace//EN",
    "BEGIN:VEVENT",
    "UID:pace@servicehop.invalid",
    "DTSTAMP:20260101T000000Z",
    "DTSTART;TZID=Europe/Oslo:20260105T090000",
    "DTEND;TZID=Europe/Oslo:20260105T100000",
    "SUMMARY:Visit",
    "DESCRIPTION:Please ring twice. The door code is 1234\\, the lift is on the left.",
    "LOCATION:Gate 12\\, Larvik",
    "RRULE:FREQ=WEEKLY;COUNT=10",
    "STATUS:CONFIRMED",
    "END:VEVENT",
    "END:VCALENDAR",
    "",
))


@dataclass(frozen=True)
class Pace:
    """The two timings at one point of a run (milliseconds)."""

    when: str
    cpu_ms: float
    fsync_ms: float
    # How many runs each median is of: the report names them.
    cpu_samples: int = CPU_SAMPLES
    fsync_samples: int = FSYNC_SAMPLES

    def as_json(self) -> dict[str, float | str]:
        return asdict(self)

    def describe(self) -> str:
        return f"{self.when}: CPU task {self.cpu_ms:.2f} ms, 8 kB fdatasync {self.fsync_ms:.3f} ms"


def cpu_task(rounds: int = CPU_ROUNDS) -> None:
    """The fixed CPU work: :data:`EVENT` parsed and serialised ``rounds`` times."""
    for _ in range(rounds):
        serialised = icalendar.Calendar.from_ical(EVENT).to_ical()
        if b"UID:pace@servicehop.invalid" not in serialised:  # never: the work must not be skipped
            raise AssertionError("the pace task's event did not come back")


def median_ms(work: Callable[[], None], samples: int) -> float:
    """Median wall time of ``samples`` runs of ``work``, in milliseconds."""
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def fsync_ms(folder: Path, samples: int = FSYNC_SAMPLES) -> float:
    """Median time of an 8 kB write and ``fdatasync`` to a file in ``folder``."""
    path = folder / "pace.fsync"
    block = os.urandom(BLOCK)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        def write() -> None:
            os.pwrite(fd, block, 0)
            os.fdatasync(fd)

        write()  # the file's first block allocated before timing
        return median_ms(write, samples)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)


def measure(folder: Path, when: str, cpu_samples: int = CPU_SAMPLES,
            fsync_samples: int = FSYNC_SAMPLES) -> Pace:
    """The pace now; ``when`` names the point of the run."""
    cpu_task(1)  # icalendar's first-call work out of the timing
    return Pace(when, round(median_ms(cpu_task, cpu_samples), 3), round(fsync_ms(folder, fsync_samples), 4),
                cpu_samples, fsync_samples)


def line(paces: list[Pace]) -> str:
    """The report's line: each timing of the run in order, with the number
    of runs each median is of (as measured, not the defaults)."""
    return ("Machine pace (a fixed iCalendar parse-and-serialise task, median of "
            f"{_counts(p.cpu_samples for p in paces)}; an 8 kB write and fdatasync in the run's folder, "
            f"median of {_counts(p.fsync_samples for p in paces)}; both in this process, the servers idle): "
            + "; ".join(p.describe() for p in paces))


def _counts(samples: Iterable[int]) -> str:
    """``9``, or ``2 to 9`` when the paces of one run were not all alike."""
    found = sorted(set(samples))
    if not found:
        return "no runs"
    return str(found[0]) if len(found) == 1 else f"{found[0]} to {found[-1]}"
