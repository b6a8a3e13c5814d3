#!/usr/bin/env python3
"""CalDAV conformance of our SQL storage against stock Radicale.

Starts, each as a subprocess (``python -m radicale --config FILE``) on its own
free loopback port with fresh temporary data:

* ``stock``    - Radicale with ``[storage] type = multifilesystem`` (the baseline)
* ``sqlite``   - Radicale with ``radicale_storage_servicehop`` on SQLite
* ``postgres`` - the same on PostgreSQL, in a schema made for this run and
  dropped afterwards (only with ``--postgres``)

All of them get the same htpasswd user, ``[auth] delay = 0`` and
``[rights] type = owner_only``. ``caldav-server-tester`` is then run against
each in exactly the same way, and the features it observed on our storage are
compared with the ones it observed on stock Radicale.

How the tester is run: ``caldav-server-tester --caldav-url URL
--caldav-username U --caldav-password P --format hints``. An explicit URL makes
the caldav library ignore every configuration file and ``CALDAV_*`` variable
(it still runs with those variables removed, HOME pointed at the run's temporary
folder and that folder as working directory, so nothing on the machine leaks
in). The ``json`` and ``yaml`` formats are compacted: sibling sub-features are
folded into their parent and every feature equal to caldav's default is left
out, so a feature observed as ``full`` cannot be told apart from one that was
never probed (a check that crashed). ``hints`` prints every observed feature
uncompacted, as a Python dict literal, which is read with ``ast.literal_eval``
(literals only, nothing is executed). The ``--report`` file is JSON.

Exit status: 0 when our storage is nowhere worse than stock Radicale, 1 when it
is worse in at least one feature (or, with ``--strict``, differs in any way),
2 when the run itself failed (a server did not start, the tester crashed on
stock Radicale, PostgreSQL is unreachable, ...).

Usage::

    .venv/bin/python scripts/conformance.py [--postgres] [--report FILE]
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servicehop_caldav.db.engine import DatabaseError
from servicehop_caldav.db.scratch import scratch_schema

USER = "tester"
PASSWORD = "tester-pw"
BASELINE = "stock"
DEFAULT_PG_URL = os.environ.get("SERVICEHOP_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

# Support levels of caldav's FeatureSet, best first. "unknown" is what the tester
# records when a check raised, so it ranks below every real answer; "missing"
# is a feature observed on one server and absent from the other's report.
SUPPORT_RANK = {
    "full": 7,
    "quirk": 6,
    "fragile": 5,
    "ungraceful": 4,
    "unsupported": 3,
    "broken": 2,
    "unknown": 1,
    "missing": 0,
}


class RunError(Exception):
    """The run could not be carried out (as opposed to: a feature is worse)."""


# -- servers ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerSpec:
    name: str
    label: str
    storage: dict[str, str]


@dataclass
class RunningServer:
    spec: ServerSpec
    url: str
    folder: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    log_file: Any = field(repr=False)

    def log_tail(self, lines: int = 30) -> str:
        self.log_file.flush()
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log_file.close()


def radicale_config(port: int, folder: Path, storage: dict[str, str]) -> str:
    """The same configuration for every server but for its storage section."""
    sections: dict[str, dict[str, str]] = {
        "server": {"hosts": f"127.0.0.1:{port}"},
        "auth": {
            "type": "htpasswd",
            "htpasswd_filename": str(folder / "users"),
            "htpasswd_encryption": "plain",
            "delay": "0",
        },
        "rights": {"type": "owner_only"},
        "storage": {"filesystem_folder": str(folder / "collections"), **storage},
        "logging": {"level": "warning", "mask_passwords": "True"},
    }
    out = []
    for section, options in sections.items():
        out.append(f"[{section}]")
        # Radicale reads it with RawConfigParser: no "%" interpolation.
        out += [f"{k} = {v}" for k, v in options.items()]
        out.append("")
    return "\n".join(out)


def start_server(spec: ServerSpec, root: Path, timeout: float = 30) -> RunningServer:
    folder = root / spec.name
    folder.mkdir(parents=True)
    (folder / "users").write_text(f"{USER}:{PASSWORD}\n")
    last_error = ""
    for _attempt in range(3):  # a free port can be taken before the server binds it
        port = free_port()
        config_path = folder / "radicale.conf"
        config_path.write_text(radicale_config(port, folder, spec.storage))
        log_path = folder / "server.log"
        log_file = open(log_path, "ab")  # closed in RunningServer.stop
        process = subprocess.Popen(
            [sys.executable, "-m", "radicale", "--config", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=folder,
        )
        server = RunningServer(spec, f"http://127.0.0.1:{port}/", folder, log_path, process, log_file)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return server
            except OSError:
                time.sleep(0.05)
        last_error = server.log_tail()
        server.stop()
    raise RunError(f"{spec.label} did not start:\n{last_error}")


# -- the tester ---------------------------------------------------------------


@dataclass
class TesterResult:
    exit_code: int
    seconds: float
    features: dict[str, dict[str, Any]]
    stderr_tail: str
    error: str = ""


def tester_command() -> list[str]:
    exe = Path(sys.executable).with_name("caldav-server-tester")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("caldav-server-tester")
    if found:
        return [found]
    raise RunError("caldav-server-tester is not installed (pip install caldav-server-tester)")


def run_tester(server: RunningServer, root: Path, timeout: float) -> TesterResult:
    home = root / "tester-home"
    home.mkdir(exist_ok=True)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("CALDAV_", "CALENDARING_", "PYTHON_CALDAV_"))
    }
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), PYTHONUNBUFFERED="1")
    command = [
        *tester_command(),
        "--caldav-url",
        server.url,
        "--caldav-username",
        USER,
        "--caldav-password",
        PASSWORD,
        "--format",
        "hints",
    ]
    started = time.monotonic()
    try:
        done = subprocess.run(
            command,
            cwd=home,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        stderr = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else ""
        return TesterResult(-1, time.monotonic() - started, {}, tail(stderr), "timed out")
    seconds = time.monotonic() - started
    (server.folder / "tester.stdout").write_text(done.stdout)
    (server.folder / "tester.stderr").write_text(done.stderr)
    features: dict[str, dict[str, Any]] = {}
    error = ""
    start = done.stdout.find("{")
    if start < 0:
        error = "no report on stdout"
    else:
        try:
            parsed = ast.literal_eval(done.stdout[start:].strip())
            if not isinstance(parsed, dict):
                raise ValueError("the report is not a dict")
            features = {str(k): dict(v) for k, v in parsed.items()}
        except (ValueError, SyntaxError, TypeError) as e:
            error = f"unreadable report: {e}"
    if done.returncode and not error:
        error = f"exited with {done.returncode}"
    return TesterResult(done.returncode, seconds, features, tail(done.stderr), error)


def tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.splitlines()[-lines:])


# -- comparison ---------------------------------------------------------------


def level(info: dict[str, Any] | None) -> str | None:
    """The support level of an observation, or None for a valued observation."""
    if info is None:
        return "missing"
    if "support" in info:
        return str(info["support"])
    return None


def details(info: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (info or {}).items() if k != "support"}


def compare(base: dict[str, dict[str, Any]], ours: dict[str, dict[str, Any]]) -> dict[str, Any]:
    result: dict[str, list[dict[str, Any]]] = {
        "worse": [],
        "better": [],
        "equal": [],
        "different": [],  # differs, but has no support level to rank
    }
    for feature in sorted(set(base) | set(ours)):
        b, o = base.get(feature), ours.get(feature)
        lb, lo = level(b), level(o)
        entry: dict[str, Any] = {"feature": feature, "stock": b, "ours": o}
        if b is None:
            # observed on ours only: nothing on stock to rank it against
            result["different"].append(entry)
        elif lb is not None and lo is not None:
            entry["stock_level"], entry["ours_level"] = lb, lo
            rb, ro = SUPPORT_RANK.get(lb, 1), SUPPORT_RANK.get(lo, 1)
            if ro < rb:
                result["worse"].append(entry)
            elif ro > rb:
                result["better"].append(entry)
            else:
                entry["details_differ"] = details(b) != details(o)
                result["equal"].append(entry)
        elif o is None and lb is None:
            # a valued observation (e.g. {'value': False}) present on stock only
            entry["stock_level"], entry["ours_level"] = "value", "missing"
            result["worse"].append(entry)
        elif b == o:
            result["equal"].append(entry)
        else:
            result["different"].append(entry)
    return result


def short(info: dict[str, Any] | None) -> str:
    if info is None:
        return "(absent)"
    lvl = level(info)
    rest = details(info)
    text = lvl if lvl is not None else ""
    if rest:
        text += (" " if text else "") + json.dumps(rest, ensure_ascii=False)
    return text


def print_comparison(label: str, base_label: str, diff: dict[str, Any]) -> None:
    width = shutil.get_terminal_size((100, 20)).columns
    total = sum(len(v) for v in diff.values())
    print(f"\n=== {label}  vs  {base_label}  ({total} features) ===")
    for kind, title in (
        ("worse", "WORSE than stock"),
        ("better", "BETTER than stock"),
        ("different", "DIFFERENT (no support level to rank)"),
    ):
        entries = diff[kind]
        print(f"{title}: {len(entries)}")
        for e in entries:
            print(f"  {e['feature']}")
            for who in ("stock", "ours"):
                line = f"{who:>5}: {short(e[who])}"
                print(textwrap.fill(line, width, initial_indent="    ", subsequent_indent="           "))
    equal = diff["equal"]
    print(f"EQUAL: {len(equal)}")
    by_level: dict[str, list[str]] = {}
    for e in equal:
        key = e.get("stock_level") or "value"
        by_level.setdefault(key, []).append(e["feature"])
    for lvl in sorted(by_level, key=lambda x: -SUPPORT_RANK.get(x, -1)):
        names = by_level[lvl]
        print(
            textwrap.fill(
                ", ".join(names),
                width,
                initial_indent=f"  [{lvl}, {len(names)}] ",
                break_on_hyphens=False,
                subsequent_indent="      ",
            )
        )
    noted = [e for e in equal if e.get("details_differ")]
    if noted:
        print("  same level, different details:")
        for e in noted:
            print(f"    {e['feature']}")
            for who in ("stock", "ours"):
                line = f"{who:>5}: {short(e[who])}"
                print(textwrap.fill(line, width, initial_indent="      ", subsequent_indent="             "))


# -- main ---------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Compare caldav-server-tester results of our SQL storage with stock Radicale.",
    )
    p.add_argument("--postgres", action="store_true", help="also test our storage on PostgreSQL")
    p.add_argument(
        "--postgres-url",
        default=DEFAULT_PG_URL,
        help="PostgreSQL URL a schema is created in (default: %(default)s, or $SERVICEHOP_TEST_PG)",
    )
    p.add_argument("--no-sqlite", action="store_true", help="skip our storage on SQLite")
    p.add_argument("--report", type=Path, help="write the results and the diff to FILE as JSON")
    p.add_argument(
        "--strict",
        action="store_true",
        help="fail on any difference, not only on a worse support level",
    )
    p.add_argument("--timeout", type=float, default=900, help="seconds per tester run (default: %(default)s)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (for debugging)")
    return p.parse_args(argv)


def _raise_interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.no_sqlite and not args.postgres:
        print("nothing to compare: --no-sqlite without --postgres", file=sys.stderr)
        return 2
    # SIGTERM (CI cancelling the job) unwinds like Ctrl-C, through the cleanups;
    # SIGINT too, even where it was inherited ignored (a background job).
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="servicehop-conformance-"))
    servers: list[RunningServer] = []
    try:
        with contextlib.ExitStack() as stack:
            # Unwound last in, first out: the servers stop before the schema they
            # use is dropped (a server's open transaction would block DROP SCHEMA).
            db_url = (stack.enter_context(scratch_schema(args.postgres_url, "conformance_"))
                      if args.postgres else "")
            stack.callback(lambda: [s.stop() for s in reversed(servers)])
            specs = [ServerSpec(BASELINE, "stock Radicale (multifilesystem)", {"type": "multifilesystem"})]
            if not args.no_sqlite:
                specs.append(
                    ServerSpec(
                        "sqlite",
                        "servicehop on SQLite",
                        {
                            "type": "radicale_storage_servicehop",
                            "database_url": f"sqlite:///{root / 'sqlite' / 'servicehop.db'}",
                        },
                    )
                )
            if args.postgres:
                specs.append(
                    ServerSpec(
                        "postgres",
                        "servicehop on PostgreSQL",
                        {"type": "radicale_storage_servicehop", "database_url": db_url},
                    )
                )
            for spec in specs:
                servers.append(start_server(spec, root))
                print(f"started {spec.label} at {servers[-1].url}", flush=True)

            results: dict[str, TesterResult] = {}
            for server in servers:
                print(f"running caldav-server-tester against {server.spec.label} ...", flush=True)
                res = run_tester(server, root, args.timeout)
                results[server.spec.name] = res
                status = f"{len(res.features)} features in {res.seconds:.1f}s"
                if res.error:
                    status += f" - {res.error}"
                print(f"  {status}", flush=True)
                if res.error:
                    print(textwrap.indent(res.stderr_tail, "    | "), file=sys.stderr)
                if server.process.poll() is not None:
                    raise RunError(f"{server.spec.label} died during the run:\n{server.log_tail()}")
            server_logs = {s.spec.name: s.log_tail(200) for s in servers}

        base = results[BASELINE]
        if base.error or not base.features:
            raise RunError(f"the tester failed on stock Radicale ({base.error}); nothing to compare")
        spec_by_name = {s.name: s for s in specs}
        failed = False
        comparisons: dict[str, Any] = {}
        summaries = []
        for name, res in results.items():
            if name == BASELINE:
                continue
            diff = compare(base.features, res.features)
            comparisons[name] = diff
            print_comparison(spec_by_name[name].label, spec_by_name[BASELINE].label, diff)
            bad = bool(diff["worse"]) or bool(res.error)
            if args.strict:
                bad = (
                    bad
                    or bool(diff["better"] or diff["different"])
                    or any(e.get("details_differ") for e in diff["equal"])
                )
            failed = failed or bad
            summaries.append(
                f"SUMMARY {name}: {len(diff['worse'])} worse, {len(diff['better'])} better, "
                f"{len(diff['equal'])} equal, {len(diff['different'])} different (unranked) "
                f"of {sum(len(v) for v in diff.values())} features"
                + (f"; tester: {res.error}" if res.error else "")
                + (" - FAIL" if bad else " - OK")
            )
        elapsed = time.monotonic() - started
        print()
        for line in summaries:
            print(line)
        print(f"(run took {elapsed:.1f}s)")

        if args.report:
            report = {
                "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "seconds": round(elapsed, 1),
                "versions": versions(),
                "tester_command": "caldav-server-tester --caldav-url URL --caldav-username "
                f"{USER} --caldav-password *** --format hints",
                "baseline": BASELINE,
                "results": {
                    name: {
                        "label": spec_by_name[name].label,
                        "storage_type": spec_by_name[name].storage["type"],
                        "exit_code": r.exit_code,
                        "seconds": round(r.seconds, 1),
                        "error": r.error,
                        "stderr_tail": r.stderr_tail,
                        "server_log_tail": server_logs.get(name, ""),
                        "features": r.features,
                    }
                    for name, r in results.items()
                },
                "diff": comparisons,
                "failed": failed,
            }
            args.report.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
            print(f"report written to {args.report}")
        return 1 if failed else 0
    except (RunError, DatabaseError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; servers stopped", file=sys.stderr)
        return 130
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("radicale", "caldav", "caldav-server-tester", "servicehop-caldav", "SQLAlchemy"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


if __name__ == "__main__":
    sys.exit(main())
