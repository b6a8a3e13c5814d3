"""The `demo` command: a realistic demo municipality in a new instance.

``servicehop-caldav demo --home DIR`` makes an instance like ``init`` and
fills it with the municipality of :mod:`servicehop_caldav.demo`: two
departments, their people with new passwords, opening hours and bookings
for the coming days. It prints every login with its password and the URL
to enter in a calendar app, and keeps the same text in
``DIR/demo-accounts.txt`` (mode 0600) for later. ``--host``/``--port``
only shape the printed URLs: they say where ``serve`` will listen.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], None]

# The same defaults as `serve` (cli.DEFAULT_HOST/PORT; cli imports this module).
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5232


def register(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    add_home: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add the `demo` command to the parser."""
    help_ = "create an instance holding a demo municipality with people, opening hours and bookings"
    demo = commands.add_parser("demo", help=help_, description=help_)
    add_home(demo)
    demo.add_argument(
        "--database-url",
        help="SQLAlchemy URL of the database (default: SQLite file in the instance)",
    )
    demo.add_argument("--host", default=DEFAULT_HOST,
                      help=f"address `serve` will listen on, for the printed URLs (default {DEFAULT_HOST})")
    demo.add_argument("--port", type=int, default=DEFAULT_PORT,
                      help=f"port `serve` will listen on, for the printed URLs (default {DEFAULT_PORT})")


def cmd_demo(args: argparse.Namespace) -> None:
    # Imported here: it loads Radicale, which the other commands need not.
    from servicehop_caldav.demo import accounts_text, create_demo

    started = time.monotonic()
    demo = create_demo(args.home, args.database_url, args.host, args.port)
    print(accounts_text(demo, args.host, args.port), end="")
    print(f"(made in {time.monotonic() - started:.1f} s)")


COMMANDS: dict[str, Handler] = {"demo": cmd_demo}
