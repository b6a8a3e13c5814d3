"""Benchmark servicehop against stock Radicale and Xandikos on loopback.

Usage::

    .venv/bin/python -m bench [--sizes 1000,10000] [--servers stock,xandikos,sqlite,postgres]
                              [--json OUT] [--smoke] [--reps N] [--budget SECONDS] ...

For each calendar size, every server is started as a subprocess with fresh
data holding a calendar of that many events (~10 % weekly recurring); the same
workloads run against them over persistent HTTP connections, each operation
on every server in turn, round after round (the machine's pace drifts within
a run more than many differences measured); every answer is checked, and each
server's peak RSS is read before it stops. Then, for servicehop only,
the booking path runs against a fresh instance whose department already holds
2,000 bookings (booking PUT, 20 recipients racing for one hour, and a
recipient's availability view: the 14-day GET and a one-day query, beside the
goal of a GET p50 under 50 ms at 2,000 bookings). Prints one table per size and
one for the booking path (each calendar figure with its ratio to stock Radicale
measured in the same run) and writes JSON with every sample.

Exit status: 0 when every check passed, 1 when any failed (the cell shows
FAIL, the reason is printed below the tables), 2 when the run itself could not
be carried out, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: python bench/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import booking, pace, report, servers, workloads  # noqa: E402
from bench.data import QUERY_END, QUERY_START, expected_hrefs_between, make_calendar  # noqa: E402
from bench.workloads import Budget, Outcome  # noqa: E402

ALL_SERVERS = ("stock", "xandikos", "sqlite", "postgres")
DEFAULT_PG_URL = os.environ.get("SERVICEHOP_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", help="calendar sizes, comma-separated (default 1000,10000; smoke 50)")
    p.add_argument("--servers", default=",".join(ALL_SERVERS),
                   help="servers to run, comma-separated, of %(default)s")
    p.add_argument("--json", type=Path, metavar="OUT", help="write every result to OUT as JSON")
    p.add_argument("--smoke", action="store_true",
                   help="a check in seconds: size 50, a few repetitions, small booking world; "
                   "Xandikos only if installed")
    p.add_argument("--reps", type=int, help="repetitions per timed operation (default 20; smoke 3)")
    p.add_argument("--min-reps", type=int, help="repetitions done even past the budget (default 5; smoke 2)")
    p.add_argument("--budget", type=float,
                   help="seconds per operation after which a slow server stops repeating "
                   "(default 20; smoke 5)")
    p.add_argument("--writers", type=int, default=8, help="concurrent writers (default %(default)s)")
    p.add_argument("--writer-events", type=int, help="events each writer PUTs (default 25; smoke 3)")
    p.add_argument("--bookings", type=int, help="bookings the department holds (default 2000; smoke 100)")
    p.add_argument("--get-reps", type=int,
                   help="repetitions of the GET of one event (default 200; smoke 3): a few "
                   "milliseconds each, so 20 of them are at the mercy of one hiccup of the machine")
    p.add_argument("--view-reps", type=int,
                   help="repetitions of the availability GET and one-day query (default 50; smoke 3)")
    p.add_argument("--staff", type=int, help="staff of the booking department (default 15; smoke 4)")
    p.add_argument("--no-booking", action="store_true", help="skip the booking path")
    p.add_argument("--booking-only", action="store_true",
                   help="only the booking path (no calendar sizes; servicehop only does anything)")
    p.add_argument("--postgres-url", default=DEFAULT_PG_URL,
                   help="PostgreSQL URL a schema is made in (default $SERVICEHOP_TEST_PG or %(default)s)")
    p.add_argument("--seed", type=int, default=1, help="random seed of the data and the choices")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, data)")
    args = p.parse_args(argv)
    if args.booking_only and (args.no_booking or args.sizes):
        p.error("--booking-only goes with neither --no-booking nor --sizes")
    smoke = args.smoke
    args.sizes = [int(s) for s in (args.sizes or ("50" if smoke else "1000,10000")).split(",") if s.strip()]
    if args.booking_only:
        args.sizes = []
    args.reps = args.reps or (3 if smoke else 20)
    args.min_reps = args.min_reps or (2 if smoke else 5)
    args.budget = args.budget or (5.0 if smoke else 20.0)
    args.writer_events = args.writer_events or (3 if smoke else 25)
    args.bookings = args.bookings if args.bookings is not None else (100 if smoke else 2000)
    args.view_reps = args.view_reps or (3 if smoke else 50)
    args.get_reps = args.get_reps or (3 if smoke else 200)
    args.staff = args.staff or (4 if smoke else 15)
    names = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = [s for s in names if s not in ALL_SERVERS]
    if unknown:
        p.error(f"unknown server(s) {', '.join(unknown)}: choose from {', '.join(ALL_SERVERS)}")
    args.servers = [s for s in ALL_SERVERS if s in names]
    return args


def _raise_interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _failed_everywhere(ops: Sequence[str], why: str) -> dict[str, Outcome]:
    return {op: Outcome(op, status="fail", detail=why) for op in ops}


def _interleaved_get(alive: dict[str, workloads.Target], phase: dict[str, Any], budget: Budget) -> None:
    """The GET of one event, every live server's in turn (each idle first)."""
    if not alive:
        return
    for target in alive.values():
        target.server.wait_idle()
    started = time.monotonic()
    outcomes = workloads.interleaved(
        workloads.GET, {name: workloads.get_step(target) for name, target in alive.items()}, budget)
    log(f"  {workloads.GET}, interleaved  [{time.monotonic() - started:.1f} s]")
    for name, outcome in outcomes.items():
        phase["results"][name][workloads.GET] = outcome
        log(f"    {servers.SERVER_LABELS[name]:<24} {workloads.summary(outcome)}")


def _stop(target: workloads.Target, folder: Path) -> None:
    """Stop a server (reporting it if it died) and remove its data."""
    running = target.server
    if running.process.poll() is not None:
        log(f"    {running.label} died:\n{running.log_tail()}")
    target.session.close()
    running.stop()
    shutil.rmtree(folder / running.name, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    started = time.monotonic()
    skipped: dict[str, str] = {}
    chosen = list(args.servers)
    if "xandikos" in chosen and not servers.xandikos_installed():
        if not args.smoke:
            log("error: xandikos is not installed: pip install -e '.[bench]' "
                "(or leave it out with --servers)")
            return 2
        chosen.remove("xandikos")
        skipped["xandikos"] = "not installed"
        log("note: xandikos is not installed; left out of the smoke run")
    budget = Budget(args.reps, args.budget, args.min_reps)
    root = Path(tempfile.mkdtemp(prefix="servicehop-bench-"))
    calendar: dict[int, dict[str, Any]] = {}
    booking_results: dict[str, dict[str, Outcome]] = {}
    booking_memory: dict[str, dict[str, int]] = {}
    booking_note = ""
    paces: list[pace.Pace] = []
    try:
        for size in args.sizes:
            paces.append(pace.measure(root, f"before {size:,} events"))
            log(f"   {paces[-1].describe()}")
            events = make_calendar(size, args.seed)
            week = expected_hrefs_between(events, QUERY_START, QUERY_END)
            log(f"== calendar of {size} events ({sum(e.rrule is not None for e in events)} recurring; "
                f"{len(week)} in the query week)")
            phase: dict[str, Any] = {"expected_week_events": len(week), "results": {}, "memory": {},
                                     "seeding": {}}
            calendar[size] = phase
            prepare: servers.Prepare | None = None
            # Every server of the size is up at once: each operation is timed on all of
            # them in turn (workloads.interleaved), and they stay up for the GET.
            alive: dict[str, workloads.Target] = {}
            try:
                for name in chosen:
                    log(f"  {servers.SERVER_LABELS[name]}")
                    folder = root / f"size-{size}"
                    folder.mkdir(exist_ok=True)
                    t0 = time.monotonic()
                    try:
                        if name in servers.SERVICEHOP:
                            prepare = prepare or servers.seed_servicehop_calendar(events)
                            running = servers.start_servicehop(folder, name, args.postgres_url, prepare)
                        else:
                            running = servers.start(name, folder, events, args.postgres_url)
                    except Exception as e:  # noqa: BLE001 - reported as a failure of every operation
                        log(f"    did not start: {type(e).__name__}: {e}")
                        phase["results"][name] = _failed_everywhere(workloads.CALENDAR_OPERATIONS, str(e))
                        continue
                    log(f"    seeded and started in {time.monotonic() - t0:.1f} s")
                    phase["seeding"][name] = running.seeding
                    target = workloads.Target(running, events, week, len(events),
                                              random.Random(f"{args.seed}-{size}"))
                    alive[name] = target
                    try:
                        seconds = workloads.warm_up(target)
                        log(f"    warm-up PROPFIND {seconds:.1f} s, then idle after "
                            f"{running.wait_idle():.1f} s")
                    except Exception as e:  # noqa: BLE001 - reported as a failure of every operation
                        log(f"    warm-up failed: {type(e).__name__}: {e}")
                        phase["results"][name] = _failed_everywhere(
                            workloads.CALENDAR_OPERATIONS, f"{type(e).__name__}: {e}")
                        _stop(alive.pop(name), folder)
                if alive:
                    for target in alive.values():
                        target.server.wait_idle()
                    try:
                        for name, outcomes in workloads.run_calendar_workloads(
                                alive, budget, args.writers, args.writer_events, log).items():
                            phase["results"][name] = outcomes
                    except Exception as e:  # noqa: BLE001 - reported as a failure of every operation
                        log(f"    aborted: {type(e).__name__}: {e}")
                        for name in list(alive):
                            phase["results"][name] = _failed_everywhere(
                                workloads.CALENDAR_OPERATIONS, f"{type(e).__name__}: {e}")
                            _stop(alive.pop(name), root / f"size-{size}")
                _interleaved_get(alive, phase, Budget(args.get_reps, budget.seconds, budget.min_reps))
                for name, target in alive.items():
                    phase["memory"][name] = target.server.memory_kib()
            finally:
                # Every server is stopped (its scratch schema dropped) even if one stop fails.
                with contextlib.ExitStack() as stops:
                    for target in alive.values():
                        stops.callback(_stop, target, root / f"size-{size}")

        if not args.no_booking:
            paces.append(pace.measure(root, "before the booking path"))
            log(f"   {paces[-1].describe()}")
            booking_note = _booking_phase(args, chosen, root, budget, booking_results, booking_memory)
        paces.append(pace.measure(root, "end"))
        log(f"   {paces[-1].describe()}")
    except KeyboardInterrupt:
        log("\ninterrupted; servers stopped")
        return 130
    finally:
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    text, failures = _tables(args, chosen, calendar, booking_results, booking_memory, booking_note, paces)
    elapsed = time.monotonic() - started
    print(text)
    print(f"\n(run took {elapsed:.0f} s)")
    if args.json:
        _write_json(args, chosen, skipped, calendar, booking_results, booking_memory, booking_note,
                    paces, text, failures, elapsed)
        print(f"results written to {args.json}")
    return 1 if failures else 0


def _booking_phase(
    args: argparse.Namespace, chosen: Sequence[str], root: Path, budget: Budget,
    results: dict[str, dict[str, Outcome]], memory: dict[str, dict[str, int]],
) -> str:
    note = ""
    for name in chosen:
        if name not in servers.SERVICEHOP:
            results[name] = {op: Outcome(op, status="n/a") for op in booking.BOOKING_OPERATIONS}
            continue
        log(f"== booking path: {servers.SERVER_LABELS[name]}")
        seed = booking.BookingSeed(
            bookings=args.bookings, staff=args.staff, seeded_recipients=10 if args.smoke else 50,
            put_recipients=args.reps, seed=args.seed,
        )
        t0 = time.monotonic()
        try:
            running = servers.start_servicehop(root, name, args.postgres_url, seed, tag="-booking")
        except Exception as e:  # noqa: BLE001 - reported as a failure of every operation
            log(f"    did not start: {type(e).__name__}: {e}")
            results[name] = _failed_everywhere(booking.BOOKING_OPERATIONS, str(e))
            continue
        log(f"    seeded and started in {time.monotonic() - t0:.1f} s: {seed.note()}")
        note = seed.note()
        try:
            try:
                view_budget = Budget(args.view_reps, budget.seconds, budget.min_reps)
                results[name] = booking.run_booking_workloads(running, seed, budget, log, view_budget)
            except Exception as e:  # noqa: BLE001 - reported as a failure of every booking operation
                log(f"    aborted: {type(e).__name__}: {e}")
                results[name] = _failed_everywhere(booking.BOOKING_OPERATIONS, f"{type(e).__name__}: {e}")
            memory[name] = running.memory_kib()
        finally:
            running.stop()
    return note


def _calendar_rows(writers: int) -> list[tuple[str, str, str]]:
    w = workloads
    rows: list[tuple[str, str, str]] = []
    for op in (w.PUT, w.PUT_BACK_TO_BACK, w.QUERY, w.MULTIGET, w.SYNC_CHANGE, w.SYNC_INITIAL, w.PROPFIND,
               w.GET):
        rows += [(f"{op} p50", op, "p50"), (f"{op} p95", op, "p95")]
    rows += [(f"{writers} concurrent writers", w.WRITERS, "rate"),
             (f"{writers} writers: errors", w.WRITERS, "errors")]
    return rows


CONDITIONS = [
    "  every server a subprocess on 127.0.0.1, fresh data each, all of one size up at once; persistent "
    "connections (bench.client.Session), one untimed PROPFIND before timing, then a wait until the server "
    "is idle (under 5 % of a core for 0.5 s: start-up work such as servicehop's first upkeep pass "
    "done); reads get one untimed warm-up",
    "  each timed operation runs on every server in turn, round after round, the order rotating, each "
    "server time-boxed on its own, so each server's figures share the seconds of its peers' (the "
    "machine's pace drifts more within a run than many of the differences measured); the concurrent "
    "writers run on one server after another; the GET of one event is timed last (each server idle first)",
    "  so each timed request comes after a peer's work (the CPU's caches cold to this server); the "
    "'PUT new event, 2nd of 2' row times the second of two PUTs sent back to back (warm)",
    "  client: the standard library's http.client, one connection per session, the headers requests sent "
    "(Accept-Encoding gzip, deflate; Basic credentials); requests, used up to run P, spent about 1.5 ms "
    "of the client's CPU on each request before sending it, in every server's figure alike",
    "  connections: every client keeps its connection open; stock Radicale's server "
    "answers HTTP/1.0 and closes each one after one answer (so its client connects anew for each request), "
    "Xandikos and servicehop keep them open",
    "  auth: stock Radicale htpasswd (plain), Xandikos none (single user), servicehop its Argon2id logins "
    "with cache_logins (each session logs in before the clock starts)",
    "  durability as shipped: stock Radicale fsyncs each write (filesystem_fsync), Xandikos/dulwich "
    "does not fsync objects, servicehop SQLite is WAL with synchronous=NORMAL, PostgreSQL fsyncs commits",
    "  servicehop's generic workloads use the demo admin's opening-demo/ calendar (a plain read-write "
    "calendar; no booking decision), its data encrypted at rest (AES-GCM) as in production",
]

BOOKING_ROWS = [
    (f"{booking.BOOKING_PUT} p50", booking.BOOKING_PUT, "p50"),
    (f"{booking.BOOKING_PUT} p95", booking.BOOKING_PUT, "p95"),
    (booking.BOOKING_RACE, booking.BOOKING_RACE, "rate"),
    (f"{booking.BOOKING_RACE}: errors", booking.BOOKING_RACE, "errors"),
    (f"{booking.AVAILABILITY_GET} p50 (goal < {booking.AVAILABILITY_GOAL_MS:g} ms)",
     booking.AVAILABILITY_GET, "p50"),
    (f"{booking.AVAILABILITY_GET} p95", booking.AVAILABILITY_GET, "p95"),
    (f"{booking.AVAILABILITY_QUERY} p50", booking.AVAILABILITY_QUERY, "p50"),
    (f"{booking.AVAILABILITY_QUERY} p95", booking.AVAILABILITY_QUERY, "p95"),
]


def _availability_goal(
    args: argparse.Namespace, booking_results: dict[str, dict[str, Outcome]]
) -> dict[str, Any]:
    """The issue's goal, availability GET p50 < 50 ms at 2,000 bookings, per
    servicehop server: met, not met, or not judged (failed, or another size)."""
    judged = args.bookings == booking.AVAILABILITY_GOAL_BOOKINGS
    per_server: dict[str, Any] = {}
    for name, ops in booking_results.items():
        if name not in servers.SERVICEHOP:
            continue
        outcome = ops.get(booking.AVAILABILITY_GET)
        p50 = outcome.percentile(50) if outcome is not None and outcome.status == "ok" else None
        per_server[name] = {
            "p50_ms": p50,
            "met": (p50 < booking.AVAILABILITY_GOAL_MS) if p50 is not None and judged else None,
        }
    return {
        "operation": booking.AVAILABILITY_GET, "goal_p50_ms": booking.AVAILABILITY_GOAL_MS,
        "goal_bookings": booking.AVAILABILITY_GOAL_BOOKINGS, "bookings": args.bookings,
        "judged": judged, "servers": per_server,
    }


def _goal_line(goal: dict[str, Any]) -> str:
    figures = []
    for name, result in goal["servers"].items():
        p50 = result["p50_ms"]
        if p50 is None:
            figures.append(f"{servers.SERVER_LABELS[name]} no figure")
            continue
        verdict = ("met" if result["met"] else "not met") if goal["judged"] else "not judged"
        figures.append(f"{servers.SERVER_LABELS[name]} {report.milliseconds(p50)} ({verdict})")
    line = (f"Goal: {goal['operation']} p50 < {goal['goal_p50_ms']:g} ms at {goal['goal_bookings']:,} "
            f"bookings: " + (", ".join(figures) or "no servicehop server ran"))
    if not goal["judged"]:
        line += f" - this run held {goal['bookings']:,} bookings, so the goal is not judged"
    return line


def _tables(
    args: argparse.Namespace, chosen: Sequence[str], calendar: dict[int, dict[str, Any]],
    booking_results: dict[str, dict[str, Outcome]], booking_memory: dict[str, dict[str, int]],
    booking_note: str, paces: Sequence[pace.Pace],
) -> tuple[str, list[str]]:
    labels = servers.SERVER_LABELS
    parts = ["", "Ratios: this server's figure / stock Radicale's, same operation, same run "
             "(latency: below 1 is faster; writers/s: above 1 is faster)."]
    failures: list[str] = []
    for size, phase in calendar.items():
        parts.append("")
        parts.append(report.table(
            f"Calendar of {size:,} events ({phase['expected_week_events']} in the queried week)",
            chosen, labels, _calendar_rows(args.writers), phase["results"], phase["memory"]))
        for name, ops in phase["results"].items():
            failures += [f"{size} events, {labels[name]}, {op}: {o.detail}"
                         for op, o in ops.items() if o.failed]
    if booking_results:
        parts.append("")
        parts.append(report.table(
            "Booking path (servicehop only; stock Radicale and Xandikos have no booking: n/a)",
            chosen, labels, BOOKING_ROWS, booking_results, booking_memory, with_ratio=False))
        parts.append(_goal_line(_availability_goal(args, booking_results)))
        if booking_note:
            parts.append(f"Seeding: {booking_note}")
        if calendar:
            first = min(calendar)
            stock = calendar[first]["results"].get("stock", {}).get(workloads.PUT)
            if stock is not None and stock.status == "ok":
                parts.append(f"(for scale: stock Radicale's plain PUT into {first:,} events, p50 "
                             f"{report.milliseconds(stock.percentile(50) or 0)})")
        for name, ops in booking_results.items():
            failures += [f"booking, {labels[name]}, {op}: {o.detail}" for op, o in ops.items() if o.failed]
            for op, o in ops.items():
                if o.status in ("ok", "not built") and o.detail:
                    parts.append(f"  {labels[name]}, {op}: {o.detail}")
    notes = []
    for size, phase in calendar.items():
        for name, ops in phase["results"].items():
            for op, o in ops.items():
                if o.status == "ok" and o.detail.startswith("time-boxed"):
                    notes.append(f"  {size} events, {labels[name]}, {op}: {o.detail}")
        for name, how in phase["seeding"].items():
            notes.append(f"  seeding {labels[name]} ({size}): {how}")
    parts += ["", "Conditions:", *CONDITIONS]
    if paces:
        parts += ["", pace.line(list(paces))]
    if notes:
        parts += ["", "Notes:", *dict.fromkeys(notes)]
    if failures:
        parts += ["", f"FAILED CHECKS ({len(failures)}):", *(f"  {f}" for f in failures)]
    else:
        parts += ["", "All checks passed."]
    return "\n".join(parts), failures


def _write_json(
    args: argparse.Namespace, chosen: Sequence[str], skipped: dict[str, str],
    calendar: dict[int, dict[str, Any]], booking_results: dict[str, dict[str, Outcome]],
    booking_memory: dict[str, dict[str, int]], booking_note: str, paces: Sequence[pace.Pace], text: str,
    failures: list[str], elapsed: float,
) -> None:
    document = {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(elapsed, 1),
        "environment": servers.environment_note(),
        "pace": [p.as_json() for p in paces],
        "arguments": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "servers": {name: servers.SERVER_LABELS[name] for name in chosen},
        "skipped": skipped,
        "baseline": report.BASELINE,
        "calendar": {
            str(size): {
                "expected_week_events": phase["expected_week_events"],
                "seeding": phase["seeding"],
                "memory_kib": phase["memory"],
                "operations": {name: {op: o.as_json() for op, o in ops.items()}
                               for name, ops in phase["results"].items()},
            }
            for size, phase in calendar.items()
        },
        "booking": {
            "seeding": booking_note,
            "goal": _availability_goal(args, booking_results),
            "memory_kib": booking_memory,
            "operations": {name: {op: o.as_json() for op, o in ops.items()}
                           for name, ops in booking_results.items()},
        },
        "failures": failures,
        "table": text,
    }
    args.json.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    sys.exit(main())
