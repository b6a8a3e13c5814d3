"""The key commands of `servicehop-caldav`.

::

    rotate-key [--batch-size N]

Stop the server first (see README, "Encryption at rest"). A rotation that
was interrupted is finished by running the command again.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from servicehop_caldav.crypto import KeyError_
from servicehop_caldav.db.engine import DatabaseError
from servicehop_caldav.instance import Instance
from servicehop_caldav.rotation import BATCH_SIZE, rotate

Handler = Callable[[argparse.Namespace], None]


def register(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    add_home: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add the `rotate-key` command (run it through ``COMMANDS``)."""
    help_ = (
        "make a new instance key and re-encrypt all data under it (stop the server first; "
        "run again to finish an interrupted rotation)"
    )
    parser = commands.add_parser("rotate-key", help=help_, description=help_)
    add_home(parser)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=BATCH_SIZE,
        metavar="N",
        help=f"rows re-encrypted per transaction (default {BATCH_SIZE})",
    )


def cmd_rotate_key(args: argparse.Namespace) -> None:
    url, key_file = Instance(args.home).storage_settings()
    if args.batch_size < 1:
        raise DatabaseError("--batch-size must be at least 1")
    try:
        done = rotate(url, Path(key_file), args.batch_size)
    except KeyError_ as e:
        raise DatabaseError(f"rotation stopped, nothing of this batch written: {e}") from e
    if done.continued:
        print(f"finished the interrupted rotation to key {done.key_id}")
    else:
        print(f"new key {done.key_id}")
    for table, rows in done.reencrypted.items():
        print(f"  {table}: {rows} row(s) re-encrypted")
    if done.retired:
        print(f"  retired key(s) {', '.join(map(str, done.retired))}: "
              f"{key_file} now holds key {done.key_id} only")
    print(f"back up {key_file} now: the old key no longer reads this data")


COMMANDS: dict[str, Handler] = {"rotate-key": cmd_rotate_key}
