"""The directory commands of `servicehop-caldav`: departments and people.

::

    department add ID --name NAME [--timezone TZ] [--language nb|en]
    department list
    user add USERNAME --role ROLE --department ID [--name NAME --email EMAIL ...]
    user passwd USERNAME [--password-stdin]
    user disable USERNAME | user enable USERNAME
    user list [--department ID] | user show USERNAME

Passwords are never taken from the command line: they are prompted for
twice, or read as one line from standard input with ``--password-stdin``.
``user add`` for an existing username adds the role (one person can hold
roles in several departments) and asks for no password. After every change
of users or roles the user's calendars are provisioned, so they are there
before the first login.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable

from servicehop_caldav.db.schema import ROLES
from servicehop_caldav.directory import store as directory
from servicehop_caldav.directory.store import DirectoryError
from servicehop_caldav.instance import Instance
from servicehop_caldav.provisioning import ensure_provisioned

Handler = Callable[[argparse.Namespace], None]


def register(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    add_home: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add the `department` and `user` commands (run them through ``COMMANDS``).

    ``add_home`` adds the ``--home`` option to a parser (each leaf command
    gets its own, so it may come anywhere on the line).
    """

    def group(name: str, help_: str) -> argparse._SubParsersAction:  # type: ignore[type-arg]
        parser = commands.add_parser(name, help=help_, description=help_)
        return parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    def leaf(actions: argparse._SubParsersAction, name: str, help_: str,  # type: ignore[type-arg]
             handler: Handler) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = actions.add_parser(name, help=help_, description=help_)
        add_home(parser)
        parser.set_defaults(handler=handler)
        return parser

    departments = group("department", "manage departments")
    add = leaf(departments, "add", "add a department", cmd_department_add)
    add.add_argument("id", metavar="ID", help="department id (used in calendar names)")
    add.add_argument("--name", required=True, help="display name")
    add.add_argument("--timezone", default="Europe/Oslo", help="time zone (default Europe/Oslo)")
    add.add_argument("--language", default="nb", help="nb or en (default nb)")
    leaf(departments, "list", "list the departments", cmd_department_list)

    users = group("user", "manage people and their roles")
    add = leaf(users, "add", "add a user, or a role to an existing user", cmd_user_add)
    add.add_argument("username", metavar="USERNAME")
    add.add_argument("--role", required=True, help=f"one of {', '.join(ROLES)}")
    add.add_argument("--department", required=True, metavar="ID")
    add.add_argument("--name", help="full name (needed for a new user)")
    add.add_argument("--email", help="e-mail address (needed for a new user)")
    add.add_argument("--address", help="address (recipients)")
    add.add_argument("--phone", help="phone number")
    add.add_argument("--weekly-minutes", metavar="N",
                     help="weekly entitlement in minutes (recipients; default unlimited)")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password as one line from standard input")
    passwd = leaf(users, "passwd", "set a user's password", cmd_user_passwd)
    passwd.add_argument("username", metavar="USERNAME")
    passwd.add_argument("--password-stdin", action="store_true",
                        help="read the password as one line from standard input")
    leaf(users, "disable", "refuse a user's logins", cmd_user_disable).add_argument(
        "username", metavar="USERNAME")
    leaf(users, "enable", "allow a disabled user's logins again", cmd_user_enable).add_argument(
        "username", metavar="USERNAME")
    listing = leaf(users, "list", "list users", cmd_user_list)
    listing.add_argument("--department", metavar="ID", help="only users with a role there")
    leaf(users, "show", "show one user", cmd_user_show).add_argument(
        "username", metavar="USERNAME")


def _dispatch(args: argparse.Namespace) -> None:
    args.handler(args)


COMMANDS: dict[str, Handler] = {"department": _dispatch, "user": _dispatch}


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


# -- departments ----------------------------------------------------------------


def cmd_department_add(args: argparse.Namespace) -> None:
    with Instance(args.home).open() as (db, _keyring):
        with db.transaction("w") as conn:
            dept = directory.add_department(conn, args.id, args.name, args.timezone, args.language)
    print(f"added department {dept.id} ({dept.name}, {dept.timezone}, {dept.language})")


def cmd_department_list(args: argparse.Namespace) -> None:
    with Instance(args.home).open() as (db, _keyring):
        with db.transaction("r") as conn:
            found = directory.list_departments(conn)
    _table(("ID", "NAME", "TIME ZONE", "LANGUAGE"),
           [(d.id, d.name, d.timezone, d.language) for d in found])


# -- users ----------------------------------------------------------------------


def _read_password(args: argparse.Namespace) -> str:
    """One line from stdin (--password-stdin), or asked twice at the terminal."""
    if args.password_stdin:
        raw = sys.stdin.buffer.readline()
        try:
            password = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as e:
            raise DirectoryError("the password on standard input is not UTF-8") from e
    else:
        try:
            password = getpass.getpass(f"New password for {args.username}: ")
            again = getpass.getpass("Again: ")
        except EOFError as e:
            print(file=sys.stderr)  # end the prompt's line
            raise DirectoryError("no password given (use --password-stdin to pipe one)") from e
        if password != again:
            raise DirectoryError("the two passwords differ; nothing changed")
    if not password:
        raise DirectoryError("the password must not be empty")
    return password


def _weekly_minutes(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        minutes = int(value)
    except ValueError:
        minutes = -1
    if minutes < 0:
        raise DirectoryError(f"--weekly-minutes must be a whole number of minutes >= 0, not {value!r}")
    return minutes


def cmd_user_add(args: argparse.Namespace) -> None:
    directory.check_slug("username", args.username)
    if args.role not in ROLES:
        raise DirectoryError(f"role must be one of {', '.join(ROLES)}, not {args.role!r}")
    minutes = _weekly_minutes(args.weekly_minutes)
    with Instance(args.home).open() as (db, keyring):
        # Everything that can be checked is checked before a password is asked for.
        with db.transaction("r") as conn:
            if directory.get_department(conn, args.department) is None:
                raise DirectoryError(f"no department {args.department!r}")
            exists = directory.user_id_of(conn, args.username) is not None
        if minutes is not None and args.role != "recipient":
            raise DirectoryError("--weekly-minutes belongs to a recipient role")
        personal = [f"--{n}" for n in ("name", "email", "address", "phone") if getattr(args, n)]
        if exists:
            with db.transaction("w") as conn:
                user_id = directory.user_id_of(conn, args.username)
                if user_id is None:
                    raise DirectoryError(f"user {args.username!r} was removed meanwhile")
                directory.add_role(conn, user_id, args.department, args.role, minutes)
            ensure_provisioned(db, args.username)
            print(f"user {args.username} exists: role {args.role} in {args.department} added")
            kept = personal + (["the password"] if args.password_stdin else [])
            if kept:
                print(f"  left as they were: {', '.join(kept)} "
                      "(`user add` only adds a role to an existing user; `user passwd` sets a password)")
            return
        if not args.name or not args.email:
            raise DirectoryError(f"a new user needs --name and --email ({args.username!r} does not exist)")
        # Checked here too, so a bad value fails before the password prompt.
        if not args.name.strip():
            raise DirectoryError("a person needs a name")
        if "@" not in args.email:
            raise DirectoryError(f"{args.email!r} is not an e-mail address")
        password = _read_password(args)
        with db.transaction("w") as conn:
            user_id = directory.add_user(conn, keyring, args.username, password, args.name,
                                         args.email, args.address, args.phone)
            directory.add_role(conn, user_id, args.department, args.role, minutes)
        ensure_provisioned(db, args.username)
    print(f"added user {args.username} ({args.role} in {args.department})")


def cmd_user_passwd(args: argparse.Namespace) -> None:
    with Instance(args.home).open() as (db, _keyring):
        with db.transaction("r") as conn:
            if directory.user_id_of(conn, args.username) is None:
                raise DirectoryError(f"no user {args.username!r}")
        password = _read_password(args)
        with db.transaction("w") as conn:
            directory.set_password(conn, args.username, password)
    print(f"password of {args.username} changed")


def _set_disabled(args: argparse.Namespace, disabled: bool) -> None:
    with Instance(args.home).open() as (db, _keyring):
        with db.transaction("w") as conn:
            directory.set_disabled(conn, args.username, disabled)
        if not disabled:
            ensure_provisioned(db, args.username)
    print(f"user {args.username} {'disabled' if disabled else 'enabled'}")


def cmd_user_disable(args: argparse.Namespace) -> None:
    _set_disabled(args, True)


def cmd_user_enable(args: argparse.Namespace) -> None:
    _set_disabled(args, False)


def _roles(person: directory.Person) -> str:
    return ", ".join(f"{r.role}@{r.department_id}" for r in person.roles) or "-"


def cmd_user_list(args: argparse.Namespace) -> None:
    with Instance(args.home).open() as (db, keyring):
        with db.transaction("r") as conn:
            if args.department is not None and directory.get_department(conn, args.department) is None:
                raise DirectoryError(f"no department {args.department!r}")
            people = directory.list_people(conn, keyring, args.department)
    # ID: the number the log's decision lines and the audit log use.
    _table(("USERNAME", "ID", "NAME", "ROLES", "STATUS"),
           [(p.username, str(p.id), p.name, _roles(p), "disabled" if p.disabled else "active")
            for p in people])


def cmd_user_show(args: argparse.Namespace) -> None:
    with Instance(args.home).open() as (db, keyring):
        with db.transaction("r") as conn:
            person = directory.get_person(conn, keyring, args.username)
    if person is None:
        raise DirectoryError(f"no user {args.username!r}")
    print(f"username: {person.username}")
    print(f"id:       {person.id}  (in the log's decision lines and the audit log)")
    print(f"status:   {'disabled' if person.disabled else 'active'}")
    print(f"name:     {person.name}")
    print(f"e-mail:   {person.email}")
    print(f"address:  {person.address or '-'}")
    print(f"phone:    {person.phone or '-'}")
    for role in person.roles:
        weekly = f" (weekly entitlement {role.weekly_minutes} min)" if role.weekly_minutes is not None else ""
        print(f"role:     {role.role} in {role.department_id}{weekly}")
