"""The `export`, `import` and `backup` commands: an instance's data out and back in.

::

    export --home DIR --out DIR
    import --home DIR --from EXPORT [--database-url URL]
    backup --home DIR --out FILE

`export` writes a logical dump (calendars as iCalendar streams, the
directory without password hashes, bookings and the audit log as JSON);
`import` makes a new instance from one, with new passwords; `backup` copies
a live SQLite database. See :mod:`servicehop_caldav.dump`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from servicehop_caldav.instance import Instance

Handler = Callable[[argparse.Namespace], None]


def register(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    add_home: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add `export`, `import` and `backup` (run them through ``COMMANDS``)."""

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(name, help=help_, description=help_)
        add_home(parser)
        return parser

    export = command("export", "write every calendar as an .ics file and the directory, bookings and "
                     "audit log as JSON (personal data in clear, no password hashes)")
    export.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="new directory for the export (made with mode 0700)")
    restore = command("import", "make a new instance from an export, with new passwords")
    restore.add_argument("--from", dest="source", type=Path, required=True, metavar="EXPORT",
                         help="directory written by `export`")
    restore.add_argument("--database-url", metavar="URL",
                         help="empty database for the new instance (default: SQLite file in it)")
    backup = command("backup", "copy the instance's SQLite database while the server runs")
    backup.add_argument("--out", type=Path, required=True, metavar="FILE", help="new file for the copy")


def cmd_export(args: argparse.Namespace) -> None:
    from servicehop_caldav.dump.export import export_instance

    done = export_instance(Instance(args.home), args.out)
    print(f"exported {done.calendars} calendars ({done.objects} objects), {done.users} users, "
          f"{done.bookings} bookings, {done.audit_entries} audit entries to {done.out}")
    print("  it holds names, addresses and bookings in clear: keep it as safe as the database and key")


def cmd_import(args: argparse.Namespace) -> None:
    from servicehop_caldav.dump.restore import import_instance

    done = import_instance(args.source, args.home, args.database_url)
    home = done.instance.home
    print(f"imported {done.calendars} calendars ({done.objects} objects), {len(done.passwords)} users, "
          f"{done.bookings} bookings, {done.audit_entries} audit entries into {home}")
    print("new passwords (an export holds none; give each person theirs, or set one with `user passwd`):")
    for username, password in done.passwords.items():
        print(f"{username} {password}")
    print("calendar apps sync again from the start (new sync tokens); the hrefs and etags are kept")
    print(f"start it with: servicehop-caldav serve --home {home}")


def cmd_backup(args: argparse.Namespace) -> None:
    from servicehop_caldav.dump.backup import backup_instance

    out = backup_instance(Instance(args.home), args.out)
    print(f"backed up the database to {out}")
    print("  it reads only with the instance's key file: keep a copy of the key apart from it")


COMMANDS: dict[str, Handler] = {"export": cmd_export, "import": cmd_import, "backup": cmd_backup}
