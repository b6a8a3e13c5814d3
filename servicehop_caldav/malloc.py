"""glibc malloc settings for a server process, set before it starts threads.

Radicale serves each connection in a thread of its own. Left alone, glibc

- gives threads arenas of their own (up to 8 per core), each keeping what
  was freed in it: with 8 concurrent writers the process held 12 MiB more
  afterwards, and a 10,000-item sync peaked 3 MiB higher, than with 2
  arenas (the threads mostly wait on the database lock and the GIL, so
  fewer arenas cost no throughput);
- raises its mmap threshold to the largest block freed so far (up to
  32 MiB): after one login's password hash (7 MiB) or one large answer,
  every later buffer below that size comes from the heap and stays in the
  process after it is freed. At 10,000 events that kept the process 13 MiB
  larger by the end of the benchmark (90 against 77 MiB). Fixed thresholds
  send large blocks to mmap and give them back when freed.

An operator's ``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_`` or
``MALLOC_TRIM_THRESHOLD_`` (read by glibc at start) wins over each setting.
"""

from __future__ import annotations

import ctypes
import os
import sys

ARENAS = 2
MMAP_THRESHOLD = 128 * 1024  # glibc's initial value, kept fixed
TRIM_THRESHOLD = 128 * 1024

# glibc's malloc.h: option, the environment variable that sets it instead, value.
_SETTINGS = (
    (-8, "MALLOC_ARENA_MAX", ARENAS),  # M_ARENA_MAX
    (-3, "MALLOC_MMAP_THRESHOLD_", MMAP_THRESHOLD),  # M_MMAP_THRESHOLD
    (-1, "MALLOC_TRIM_THRESHOLD_", TRIM_THRESHOLD),  # M_TRIM_THRESHOLD
)


def tune() -> list[str]:
    """Apply the settings the environment does not give; the names of those
    applied (none elsewhere than Linux, or without ``mallopt``)."""
    if not sys.platform.startswith("linux"):
        return []
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return []
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return [name for option, name, value in _SETTINGS
            if not os.environ.get(name) and mallopt(option, value)]
