"""The benchmark's smoke mode: every server starts, every workload answers right.

Runs ``python -m bench --smoke`` as a subprocess (stock Radicale, Xandikos if
installed, servicehop on SQLite and on PostgreSQL; calendars of 50 events, a
few repetitions, a small booking department). Its exit status is non-zero as
soon as any answer is wrong (status, count, a booking that is no decision,
capacity exceeded), so this fails then too. No timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr[-4000:]}"
    report = json.loads(out.read_text())
    assert report["failures"] == []
    operations = report["calendar"]["50"]["operations"]
    for server in ("stock", "sqlite", "postgres"):
        assert operations[server]["PUT new event"]["status"] == "ok", operations[server]
    for server in ("sqlite", "postgres"):
        race = report["booking"]["operations"][server]["20 recipients, same hour"]
        assert race["status"] == "ok" and race["errors"] == 0, race
