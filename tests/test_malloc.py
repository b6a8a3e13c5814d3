"""glibc malloc settings of a server process (servicehop_caldav.malloc).

Run in fresh interpreters: mallopt acts on the whole process, and glibc
reads its environment variables at start."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# Frees a 16 MiB block (which raises glibc's own mmap threshold to 16 MiB),
# then holds and frees 48 blocks of 256 KiB with a small block kept between
# each (so a heap cannot shrink back): prints what tune() applied and how
# much the resident set grew for good.
_PROBE = r"""
import json, sys
from servicehop_caldav import malloc
applied = malloc.tune() if sys.argv[1] == "tune" else []
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
big = bytearray(16 << 20); big[::4096] = b"x" * len(big[::4096]); del big
before = rss()
blocks, kept = [], []
for i in range(48):
    block = bytearray(256 << 10); block[::4096] = b"x" * len(block[::4096])
    blocks.append(block); kept.append(bytearray(200))
del blocks
print(json.dumps({"applied": applied, "kept_kib": rss() - before}))
"""


def _probe(mode: str, **env: str) -> dict[str, object]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    environment.update(env)
    done = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True,
                          env=environment, timeout=60, check=True)
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_large_blocks_go_back_to_the_system_after_tune() -> None:
    untuned, tuned = _probe("leave"), _probe("tune")
    assert tuned["applied"] == ["MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"]
    assert isinstance(untuned["kept_kib"], int) and isinstance(tuned["kept_kib"], int)
    assert untuned["kept_kib"] > 8 * 1024, untuned  # glibc's moving threshold kept them
    assert tuned["kept_kib"] < 2 * 1024, tuned


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_an_operators_settings_win() -> None:
    result = _probe("tune", MALLOC_ARENA_MAX="4", MALLOC_MMAP_THRESHOLD_="33554432")
    assert result["applied"] == ["MALLOC_TRIM_THRESHOLD_"]
