"""The benchmark's smoke mode: every server starts, every workload answers right.

Runs ``python -m bench --smoke`` as a subprocess (stock Radicale, Xandikos if
installed, servicehop on SQLite and on PostgreSQL; calendars of 50 events, a
few repetitions, a small booking department with its availability view). Its
exit status is non-zero as soon as any answer is wrong (status, count, a
booking that is no decision, capacity exceeded, an availability view that
differs from PROPFIND, from the booking rows or from its one-day query), so
this fails then too. No timing is asserted.
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
        warm = operations[server]["PUT new event, 2nd of 2"]
        assert warm["status"] == "ok" and warm["n"] >= 2, warm
    booking = report["booking"]["operations"]
    for server in ("sqlite", "postgres"):
        race = booking[server]["20 recipients, same hour"]
        assert race["status"] == "ok" and race["errors"] == 0, race
        # The availability view: timed, and every answer checked (the run fails otherwise).
        for op in ("availability GET 14 days", "availability 1-day query"):
            outcome = booking[server][op]
            assert outcome["status"] == "ok" and outcome["n"] >= 2, outcome
            assert outcome["p50_ms"] is not None and outcome["p95_ms"] is not None, outcome
        view = booking[server]["availability GET 14 days"]["detail"]
        assert "= PROPFIND depth 1 hrefs" in view and "Busy" in view, view
        assert "exactly the GET's events" in booking[server]["availability 1-day query"]["detail"]
    for op in ("availability GET 14 days", "availability 1-day query"):
        assert booking["stock"][op]["status"] == "n/a"
    goal = report["booking"]["goal"]
    assert goal["goal_p50_ms"] == 50 and goal["goal_bookings"] == 2000
    assert goal["judged"] is False  # smoke holds 100 bookings
    assert set(goal["servers"]) == {"sqlite", "postgres"}
    assert all(g["p50_ms"] is not None and g["met"] is None for g in goal["servers"].values()), goal
    assert "availability GET 14 days p50 (goal < 50 ms)" in report["table"]
    # The machine's pace, before each phase and at the end, in the JSON and the table.
    assert [p["when"] for p in report["pace"]] == ["before 50 events", "before the booking path", "end"]
    assert all(p["cpu_ms"] > 0 and p["fsync_ms"] > 0 for p in report["pace"]), report["pace"]
    assert "Machine pace" in report["table"] and "end: CPU task" in report["table"]
