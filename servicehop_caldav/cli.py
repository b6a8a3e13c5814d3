"""The `servicehop-caldav` command: set an instance up and run it.

Every command takes ``--home DIR`` (default ``$SERVICEHOP_HOME`` or
``./instance``). Errors are one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servicehop_caldav import cli_audit, cli_demo, cli_directory, cli_dump, cli_keys, logs
from servicehop_caldav.booking.config import ConfigError
from servicehop_caldav.db.engine import DatabaseError
from servicehop_caldav.directory.store import DirectoryError
from servicehop_caldav.instance import Instance, InstanceError, default_home, init_instance
from servicehop_caldav.keyfile import KeyFileError

if TYPE_CHECKING:
    from servicehop_caldav import workers

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5232


class CliError(RuntimeError):
    """An error the user can act on; printed as one line."""


def _add_home(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--home",
        type=Path,
        default=default_home(),
        help="instance directory (default: $SERVICEHOP_HOME or ./instance)",
    )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 up, not {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="servicehop-caldav", description="Booking-by-calendar CalDAV server."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_, description=help_)
        _add_home(sub)
        return sub

    init = command("init", "create an instance directory with its database and key")
    init.add_argument(
        "--database-url",
        help="SQLAlchemy URL of the database (default: SQLite file in the instance)",
    )
    init.add_argument("--user", default="demo", help="first login to create (default: demo)")
    init.add_argument("--tls", action="store_true",
                      help="serve HTTPS with a new self-signed certificate (localhost, 127.0.0.1, ::1)")
    init.add_argument("--tls-name", action="append", default=[], metavar="NAME",
                      help="with --tls: another host name or IP address for the certificate "
                      "(repeatable)")

    serve = command("serve", "run the CalDAV server on an instance")
    serve.add_argument("--host", default=DEFAULT_HOST, help=f"address (default {DEFAULT_HOST})")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default=None)
    serve.add_argument("--workers", type=_positive, default=1, metavar="N",
                       help="server processes sharing the port (default 1: one process, threads)")
    # A process of `serve --workers N`, started by it (servicehop_caldav.workers).
    serve.add_argument("--worker", help=argparse.SUPPRESS)

    verify = command("verify", "check the instance's database for errors")
    verify.add_argument("--database-url", metavar="URL",
                        help="check this database instead (a backup, say) with the instance's key")
    cli_directory.register(commands, _add_home)
    cli_keys.register(commands, _add_home)
    cli_audit.register(commands, _add_home)
    cli_demo.register(commands, _add_home)
    cli_dump.register(commands, _add_home)
    return parser


def _load_configuration(instance: Instance, overrides: dict[str, dict[str, str]]):  # noqa: ANN202
    from radicale import config as radicale_config

    instance.check()
    try:
        configuration = radicale_config.load([(str(instance.radicale_conf), False)])
        if overrides:
            configuration.update(overrides, "command line")
    except Exception as e:  # Radicale reports config errors as bare exceptions
        raise CliError(f"invalid configuration {instance.radicale_conf}: {e}") from e
    return configuration


def cmd_init(args: argparse.Namespace) -> None:
    if args.tls_name and not args.tls:
        raise CliError("--tls-name needs --tls")
    created = init_instance(args.home, args.database_url, args.user, args.tls, args.tls_name)
    home = created.instance.home
    print(f"created instance in {home}")
    print(f"  login: {created.user}  password: {created.password}")
    if created.tls_fingerprint:
        print(f"  HTTPS certificate {home / 'tls-cert.pem'} (self-signed; clients ask to trust it)")
        print(f"  its SHA-256 fingerprint: {created.tls_fingerprint}")
    print(f"  start it with: servicehop-caldav serve --home {home}")


def cmd_serve(args: argparse.Namespace) -> None:
    from servicehop_caldav import malloc, workers
    from servicehop_caldav.server import serve

    # First, before any thread (a worker of --workers N comes here too).
    malloc.tune()
    instance = Instance(args.home)
    overrides: dict[str, dict[str, str]] = {"server": {"hosts": f"{args.host}:{args.port}"}}
    if args.log_level:
        overrides["logging"] = {"level": args.log_level}
    try:
        worker = workers.WorkerSpec.parse(args.worker) if args.worker else None
    except workers.WorkersError as e:
        raise CliError(str(e)) from e
    if worker is not None:
        overrides.update(worker.overrides)
    configuration = _load_configuration(instance, overrides)
    logs.setup(configuration)
    if worker is not None or args.workers > 1:
        try:
            _serve_workers(args, instance, configuration, worker)
        except RuntimeError as e:
            raise CliError(_reason(e)) from e
        return
    _check_port_free(args.host, args.port)
    shutdown, shutdown_server_side = socket.socketpair()

    def stop(_signum: int, _frame: object) -> None:
        shutdown.close()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    scheme = "https" if configuration.get("server", "ssl") else "http"
    print(f"serving {instance.home} on {scheme}://{args.host}:{args.port}/", flush=True)
    try:
        serve(configuration, shutdown_server_side)
    except RuntimeError as e:
        raise CliError(_reason(e)) from e


def _serve_workers(args: argparse.Namespace, instance: Instance, configuration: Any,
                   worker: workers.WorkerSpec | None) -> None:
    """``serve --workers N`` (the supervisor), or one of its workers."""
    from servicehop_caldav import workers

    if worker is not None:
        workers.run_worker(worker, configuration)
        return
    workers.check_server_type(configuration)
    workers.preflight(configuration)
    sockets = workers.bind(configuration)
    scheme = "https" if configuration.get("server", "ssl") else "http"
    print(f"serving {instance.home} on {scheme}://{args.host}:{args.port}/ "
          f"with {args.workers} worker processes", flush=True)
    command = workers.worker_command(str(instance.home.absolute()), args.host, args.port,
                                     args.log_level)
    workers.Supervisor(args.workers, sockets, command).run()


def _reason(e: RuntimeError) -> str:
    """One line for a failed start: our own errors say it best; Radicale's
    wrappers ("Failed to load storage module ...") carry it as the cause."""
    if isinstance(e, (KeyFileError, DatabaseError, InstanceError)) or e.__cause__ is None:
        return str(e)
    return str(e.__cause__)


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise CliError(f"cannot listen on {host}:{port}: {e.strerror}") from e


def cmd_verify(args: argparse.Namespace) -> None:
    from radicale import storage

    # A check reads: no upkeep pass writing while it runs.
    checked = {"upkeep_interval": "-1"}
    if args.database_url:
        from servicehop_caldav.dump.backup import check_database

        Instance(args.home).check()
        check_database(args.database_url)  # an absent one would be made empty, and verify
        checked["database_url"] = args.database_url
    configuration = _load_configuration(Instance(args.home), {"storage": checked})
    try:
        storage_ = storage.load(configuration)
    except RuntimeError as e:
        raise CliError(_reason(e)) from e
    if not storage_.verify():
        raise CliError("verification found problems (see the log above)")
    print("database verified: no problems found")


COMMANDS = {"init": cmd_init, "serve": cmd_serve, "verify": cmd_verify, **cli_directory.COMMANDS,
            **cli_keys.COMMANDS, **cli_audit.COMMANDS, **cli_demo.COMMANDS,
            **cli_dump.COMMANDS}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except (CliError, InstanceError, DatabaseError, KeyFileError, DirectoryError, ConfigError,
            OSError) as e:
        print(f"servicehop-caldav: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
