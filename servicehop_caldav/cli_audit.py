"""The `audit` command: a department's booking decisions, oldest first.

::

    audit --department ID [--since YYYY-MM-DD]

One line per decision, times in the department's time zone; usernames and
reason codes only, never event text.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from servicehop_caldav.directory.store import DirectoryError, get_department
from servicehop_caldav.instance import Instance
from servicehop_caldav.store.audit import AuditLine, entries

Handler = Callable[[argparse.Namespace], None]


def register(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    add_home: Callable[[argparse.ArgumentParser], None],
) -> None:
    help_ = "print a department's booking decisions (ids and reason codes, no event text)"
    parser = commands.add_parser("audit", help=help_, description=help_)
    add_home(parser)
    parser.add_argument("--department", required=True, metavar="ID")
    parser.add_argument("--since", metavar="DATE", help="from this day on (YYYY-MM-DD, local)")


def format_line(line: AuditLine, tz: ZoneInfo) -> str:
    def local(ts: float | None, fmt: str) -> str:
        return datetime.fromtimestamp(ts, tz).strftime(fmt) if ts is not None else "-"

    interval = (
        f"{local(line.start_ts, '%Y-%m-%d %H:%M')}-{local(line.end_ts, '%H:%M')}"
        if line.start_ts is not None else "-"
    )
    return "  ".join([
        local(line.at, "%Y-%m-%d %H:%M:%S"), line.recipient or "-", interval, line.action,
        line.outcome, ",".join(line.reasons) or "-", line.staff or "-",
    ])


def cmd_audit(args: argparse.Namespace) -> None:
    with Instance(args.home).open() as (db, _keyring), db.transaction("r") as conn:
        department = get_department(conn, args.department)
        if department is None:
            raise DirectoryError(f"no department {args.department!r}")
        tz = ZoneInfo(department.timezone)
        since = None
        if args.since:
            try:
                since = datetime.strptime(args.since, "%Y-%m-%d").replace(tzinfo=tz).timestamp()
            except ValueError as e:
                raise DirectoryError(f"--since must be a date YYYY-MM-DD, not {args.since!r}") from e
        lines = entries(conn, department.id, since)
    print("time  recipient  interval  action  outcome  reasons  staff")
    for line in lines:
        print(format_line(line, tz))


COMMANDS: dict[str, Handler] = {"audit": cmd_audit}
