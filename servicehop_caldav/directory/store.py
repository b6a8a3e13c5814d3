"""Departments, people and roles in SQL; personal fields encrypted."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    CompoundSelect,
    Connection,
    Row,
    Select,
    bindparam,
    cast,
    insert,
    literal_column,
    null,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.types import NullType

from servicehop_caldav.crypto import Keyring
from servicehop_caldav.db import memo
from servicehop_caldav.db.direct import Direct
from servicehop_caldav.db.schema import ROLES, calendar_instances, departments, user_roles, users
from servicehop_caldav.directory import grants
from servicehop_caldav.passwords import hash_password
from servicehop_caldav.store import codec
from servicehop_caldav.store import collections as store_collections
from servicehop_caldav.store import objects as store_objects
from servicehop_caldav.store.read_ahead import Wanted

LANGUAGES = ("nb", "en")
# Ids and usernames are path segments of calendar URLs: keep them plain.
_SLUG = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}\Z")
_PERSONAL = ("name", "email", "address", "phone")


class DirectoryError(ValueError):
    """A directory request that cannot be carried out, and why."""


@dataclass(frozen=True)
class Department:
    id: str
    name: str
    timezone: str
    language: str
    opening_calendar_id: int | None


@dataclass(frozen=True)
class Role:
    department_id: str
    role: str
    weekly_minutes: int | None = None


@dataclass(frozen=True)
class Person:
    id: int
    username: str
    disabled: bool
    name: str
    email: str
    address: str | None
    phone: str | None
    roles: tuple[Role, ...]


def check_slug(what: str, value: str) -> str:
    if not _SLUG.match(value):
        raise DirectoryError(
            f"{what} {value!r} must be 1-64 characters: lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def _context(column: str) -> bytes:
    return f"users.{column}".encode()


def email_key(email: str) -> str:
    return email.strip().lower()


# -- departments ----------------------------------------------------------------


def add_department(conn: Connection, id_: str, name: str, timezone: str = "Europe/Oslo",
                   language: str = "nb") -> Department:
    check_slug("department id", id_)
    if not name.strip():
        raise DirectoryError("a department needs a name")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise DirectoryError(f"unknown time zone {timezone!r}") from e
    if language not in LANGUAGES:
        raise DirectoryError(f"language must be one of {', '.join(LANGUAGES)}, not {language!r}")
    if get_department(conn, id_) is not None:
        raise DirectoryError(f"department {id_!r} already exists")
    memo.forget(conn, _DEPARTMENTS)
    conn.execute(insert(departments).values(id=id_, name=name.strip(), timezone=timezone,
                                            language=language))
    return Department(id_, name.strip(), timezone, language, None)


def _department(row: Row) -> Department:
    return Department(row.id, row.name, row.timezone, row.language, row.opening_calendar_id)


# Built once; its answers are kept for the transaction (servicehop_caldav.db.memo):
# a write into an opening calendar asks for the department twice (is this
# its opening calendar? then the desk loads it). Writers forget them.
_DEPARTMENT = select(departments).where(departments.c.id == bindparam("id"))
_DEPARTMENTS = "departments"


def remember_department(conn: Connection, id_: str, department: Department | None) -> None:
    """Note what another module's statement read of department ``id_`` in
    this transaction (store.write_ahead)."""
    memo.memo(conn, _DEPARTMENTS)[id_] = department


def get_department(conn: Connection, id_: str) -> Department | None:
    def read() -> Department | None:
        row = conn.execute(_DEPARTMENT, {"id": id_}).first()
        return _department(row) if row is not None else None

    return memo.once(conn, _DEPARTMENTS, id_, read)


def list_departments(conn: Connection) -> list[Department]:
    return [_department(r) for r in conn.execute(select(departments).order_by(departments.c.id))]


def set_opening_calendar(conn: Connection, department_id: str, calendar_id: int) -> None:
    memo.forget(conn, _DEPARTMENTS)
    conn.execute(update(departments).where(departments.c.id == department_id)
                 .values(opening_calendar_id=calendar_id))


# -- people ---------------------------------------------------------------------


def _encrypt(keyring: Keyring, column: str, value: str | None) -> bytes | None:
    if value is None:
        return None
    blob, _ = keyring.encrypt(value.encode("utf-8"), _context(column))
    return blob


def _decrypt(keyring: Keyring, key_id: int, column: str, blob: bytes | None) -> str | None:
    if blob is None:
        return None
    return keyring.decrypt(key_id, blob, _context(column)).decode("utf-8")


def personal_values(keyring: Keyring, name: str, email: str, address: str | None,
                    phone: str | None) -> dict[str, object]:
    """The encrypted columns for these personal fields under the current key."""
    return {
        "key_id": keyring.current,
        "name_enc": _encrypt(keyring, "name", name),
        "email_enc": _encrypt(keyring, "email", email),
        "address_enc": _encrypt(keyring, "address", address),
        "phone_enc": _encrypt(keyring, "phone", phone),
        "email_index": keyring.blind_index(email_key(email)),
    }


def add_user(conn: Connection, keyring: Keyring, username: str, password: str, name: str,
             email: str, address: str | None = None, phone: str | None = None) -> int:
    check_slug("username", username)
    if not name.strip():
        raise DirectoryError("a person needs a name")
    if "@" not in email:
        raise DirectoryError(f"{email!r} is not an e-mail address")
    if not password:
        raise DirectoryError("the password must not be empty")
    codec.check_current(conn, keyring)
    forget_people(conn)
    try:
        return int(conn.execute(
            insert(users).values(
                username=username, password_hash=hash_password(password), disabled=False,
                created=time.time(), **personal_values(keyring, name.strip(), email.strip(),
                                                       address, phone),
            ).returning(users.c.id)
        ).scalar_one())
    except IntegrityError as e:
        raise DirectoryError(f"user {username!r} already exists") from e


def add_role(conn: Connection, user_id: int, department_id: str, role: str,
             weekly_minutes: int | None = None) -> None:
    if role not in ROLES:
        raise DirectoryError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if get_department(conn, department_id) is None:
        raise DirectoryError(f"no department {department_id!r}")
    if weekly_minutes is not None and (role != "recipient" or weekly_minutes < 0):
        raise DirectoryError("a weekly entitlement (minutes >= 0) belongs to a recipient role")
    forget_people(conn)
    exists = conn.execute(select(user_roles.c.role).where(
        user_roles.c.user_id == user_id, user_roles.c.department_id == department_id,
        user_roles.c.role == role)).first()
    if exists is not None:
        conn.execute(update(user_roles).where(
            user_roles.c.user_id == user_id, user_roles.c.department_id == department_id,
            user_roles.c.role == role).values(weekly_minutes=weekly_minutes))
    else:
        conn.execute(insert(user_roles).values(user_id=user_id, department_id=department_id,
                                               role=role, weekly_minutes=weekly_minutes))


def user_id_of(conn: Connection, username: str) -> int | None:
    return conn.execute(select(users.c.id).where(users.c.username == username)).scalar_one_or_none()


def username_of(conn: Connection, user_id: int) -> str | None:
    return conn.execute(select(users.c.username).where(users.c.id == user_id)).scalar_one_or_none()


# Built once: every request reads it. The user's home (the calendar
# instance at their username) comes along: Radicale looks it up next.
_CREDENTIALS = (
    select(users.c.password_hash, users.c.disabled, *store_collections.INSTANCE_COLUMNS)
    .select_from(store_collections.with_instance(users, calendar_instances.c.path == users.c.username))
    .where(users.c.username == bindparam("username"))
)
_HOME_AT = 2
# The same with what the request path names (store.read_ahead): one row per
# row of PATH_PARENT_AND_MEMBER, its columns from _AHEAD_AT on (NULL if none).
_credentials = _CREDENTIALS.subquery()
_path = store_objects.PATH_PARENT_AND_MEMBER.subquery()
_CREDENTIALS_AND_PATH = select(_credentials, _path).select_from(_credentials.outerjoin(_path, true()))
_AHEAD_AT = len(_CREDENTIALS.selected_columns)


_LOGIN, _GRANTS = "l", "g"


def _with_grants(statement: Select[Any]) -> CompoundSelect:
    """``statement``'s rows, then the grants' rows (directory.grants), in one
    statement: each row tagged by its first column, each kind's columns NULL
    in the other's rows (typed, as PostgreSQL's UNION wants them)."""
    mine, theirs = statement.subquery(), grants.STATEMENT.subquery()

    def nulls(columns: Any) -> list[Any]:  # an untyped column's NULL stays untyped
        return [null() if isinstance(c.type, NullType) else cast(null(), c.type) for c in columns]

    return union_all(
        select(literal_column(f"'{_LOGIN}'").label("kind"), *mine.c, *nulls(theirs.c)),
        select(literal_column(f"'{_GRANTS}'"), *nulls(mine.c), *theirs.c),
    )


# By (what the request path names, the grants) read with the login: each
# built once, and run on the driver's cursor (every request runs one).
_STATEMENTS: dict[tuple[bool, bool], Direct] = {
    (False, False): Direct(_CREDENTIALS),
    (True, False): Direct(_CREDENTIALS_AND_PATH),
    (False, True): Direct(_with_grants(_CREDENTIALS)),
    (True, True): Direct(_with_grants(_CREDENTIALS_AND_PATH)),
}


class Credentials(NamedTuple):
    password_hash: str
    disabled: bool
    # Read with the login when asked for (None: not asked, or unknown/disabled).
    grants: grants.Grants | None


def credentials_of(
    conn: Connection, username: str, ahead: Wanted | None = None, with_grants: bool = False,
) -> Credentials | None:
    """The password hash and the disabled flag of ``username``, or None if
    there is no such user; the home read with it is remembered for the
    transaction, and so is what the request path ``ahead`` names, read in
    the same statement. ``with_grants``: the user's grants too, in the same
    statement (directory.grants)."""
    parameters = {"username": username, **(ahead._asdict() if ahead is not None else {})}
    rows: Sequence[Any] = _STATEMENTS[ahead is not None, with_grants].rows(conn, parameters)
    granted = None
    if with_grants:
        granted = grants.of_rows(username, (row[-len(grants.STATEMENT.selected_columns):]
                                            for row in rows if row[0] == _GRANTS))
        rows = [row[1:] for row in rows if row[0] == _LOGIN]
    if not rows:
        return None
    row = rows[0]
    password_hash, disabled, home_id = row[0], row[1], row[_HOME_AT]
    store_collections.remember(
        conn, username, store_collections.instance_of(row, at=_HOME_AT) if home_id is not None else None)
    if ahead is not None:
        store_objects.remember_path_and_member(conn, *ahead, rows, at=_AHEAD_AT)
    return Credentials(password_hash, bool(disabled), granted)


def set_password(conn: Connection, username: str, password: str) -> None:
    if not password:
        raise DirectoryError("the password must not be empty")
    forget_people(conn)
    if not conn.execute(update(users).where(users.c.username == username)
                        .values(password_hash=hash_password(password))).rowcount:
        raise DirectoryError(f"no user {username!r}")


def upgrade_password_hash(conn: Connection, username: str, old_hash: str, new_hash: str) -> bool:
    """Replace ``old_hash`` by ``new_hash`` (the same password at today's
    cost), unless the password changed meanwhile; True if replaced."""
    forget_people(conn)
    return bool(conn.execute(update(users).where(
        users.c.username == username, users.c.password_hash == old_hash,
    ).values(password_hash=new_hash)).rowcount)


def set_disabled(conn: Connection, username: str, disabled: bool) -> None:
    forget_people(conn)
    if not conn.execute(update(users).where(users.c.username == username)
                        .values(disabled=disabled)).rowcount:
        raise DirectoryError(f"no user {username!r}")


def roles_of(conn: Connection, user_id: int) -> tuple[Role, ...]:
    rows = conn.execute(select(user_roles).where(user_roles.c.user_id == user_id)
                        .order_by(user_roles.c.department_id, user_roles.c.role))
    return tuple(Role(r.department_id, r.role, r.weekly_minutes) for r in rows)


def _person(keyring: Keyring, row: Any, roles: tuple[Role, ...]) -> Person:
    key_id = row.key_id
    return Person(
        id=row.id, username=row.username, disabled=bool(row.disabled),
        name=_decrypt(keyring, key_id, "name", row.name_enc) or "",
        email=_decrypt(keyring, key_id, "email", row.email_enc) or "",
        address=_decrypt(keyring, key_id, "address", row.address_enc),
        phone=_decrypt(keyring, key_id, "phone", row.phone_enc),
        roles=roles,
    )


# Built once: every booking reads its recipient. One row per role (one row
# with no role when there is none), in roles_of's order.
_r = user_roles.c
PERSON = (
    select(users, _r.department_id.label("role_department"), _r.role, _r.weekly_minutes)
    .select_from(users.outerjoin(user_roles, _r.user_id == users.c.id))
    .where(users.c.username == bindparam("username"))
    .order_by(_r.department_id, _r.role)
)
_PERSON_NAMES = tuple(c.name for c in PERSON.selected_columns)
# Memo kind: username -> the rows of PERSON read for them (empty: no such
# user), not decrypted yet. Every write of users or roles here forgets it.
_PEOPLE = "people"


def forget_people(conn: Connection) -> None:
    """Drop what this transaction read of people (a write of users or roles)."""
    memo.forget(conn, _PEOPLE, _MEMBERS)


def remember_person(conn: Connection, username: str, rows: Sequence[Sequence[Any]], at: int = 0) -> None:
    """Note what another module's statement read of ``username``: the
    columns of :data:`PERSON` from ``at`` on in each of ``rows`` (rows
    whose user id is NULL, from an outer join, are none; a repeated row,
    from a join with more rows, counts once)."""
    width = len(_PERSON_NAMES)
    found = dict.fromkeys(tuple(row[at:at + width]) for row in rows if row[at] is not None)
    memo.memo(conn, _PEOPLE)[username] = tuple(found)


def get_person(conn: Connection, keyring: Keyring, username: str) -> Person | None:
    """The user and their roles, in one statement (none when another
    module's statement read them in this transaction)."""
    rows = memo.once(conn, _PEOPLE, username, lambda: tuple(
        tuple(row) for row in conn.execute(PERSON, {"username": username})))
    if not rows:
        return None
    named = [SimpleNamespace(**dict(zip(_PERSON_NAMES, row, strict=True))) for row in rows]
    roles = sorted({(r.role_department, r.role, r.weekly_minutes) for r in named if r.role is not None})
    return _person(keyring, named[0], tuple(Role(*role) for role in roles))


def list_people(conn: Connection, keyring: Keyring, department_id: str | None = None) -> list[Person]:
    query = select(users).order_by(users.c.username)
    if department_id is not None:
        query = query.where(users.c.id.in_(
            select(user_roles.c.user_id).where(user_roles.c.department_id == department_id)))
    return [_person(keyring, row, roles_of(conn, row.id)) for row in conn.execute(query)]


@dataclass(frozen=True)
class Member:
    """Who holds a role in a department, as the booking engine needs them."""

    id: int
    username: str
    name: str
    email: str


def enabled_members(
    conn: Connection, keyring: Keyring, department_id: str, role: str, calendar: str | None = None,
) -> list[Member]:
    """The enabled people holding ``role`` in ``department_id``, by username:
    one query, and only their name and e-mail decrypted (every booking reads
    the department's staff). ``calendar``: each one's collection of that
    name (``username/calendar``) is read in the same query and remembered
    for the transaction (a booking writes the visit into the assignments
    calendar of the one it chose)."""
    rows = memo.memo(conn, _MEMBERS).get((department_id, role, calendar))
    if rows is None:
        rows = conn.execute(members_statement(calendar is not None),
                            {"department_id": department_id, "role": role, "calendar": calendar}).all()
    members = []
    for row in rows:
        id_, username, key_id, name_enc, email_enc = row[:_MEMBER_WIDTH]
        members.append(Member(id_, username, _decrypt(keyring, key_id, "name", name_enc) or "",
                              _decrypt(keyring, key_id, "email", email_enc) or ""))
        if calendar is not None:
            found = row[_MEMBER_WIDTH + 1] is not None  # the instance's calendar_id
            store_collections.remember(conn, f"{username}/{calendar}", store_collections.instance_of(
                row, at=_MEMBER_WIDTH) if found else None)
    return members


_ENABLED_MEMBERS = (  # built once (see store.objects): every booking reads it
    select(users.c.id, users.c.username, users.c.key_id, users.c.name_enc, users.c.email_enc)
    .where(users.c.disabled.is_(False), users.c.id.in_(
        select(user_roles.c.user_id).where(user_roles.c.department_id == bindparam("department_id"),
                                           user_roles.c.role == bindparam("role"))))
    .order_by(users.c.username)
)
_MEMBER_WIDTH = len(_ENABLED_MEMBERS.selected_columns)
_ENABLED_MEMBERS_WITH_CALENDAR = (
    _ENABLED_MEMBERS.add_columns(*store_collections.INSTANCE_COLUMNS)
    .select_from(store_collections.with_instance(
        users, calendar_instances.c.path == users.c.username + "/" + bindparam("calendar")))
)
# Memo kind: (department id, role, calendar) -> the rows of members_statement
# read along with another statement (store.write_ahead), by username, not
# decrypted yet. Every write of users or roles here forgets it.
_MEMBERS = "members"
STAFF_ROLE, STAFF_CALENDAR = "staff", "assignments"
"""Whom a booking chooses among, with the calendar it writes the visit into."""


def members_statement(calendar: bool) -> Select:
    """:func:`enabled_members`' statement (parameters ``department_id``,
    ``role`` and, with ``calendar``, ``calendar``), for another module's
    statement to read along."""
    return _ENABLED_MEMBERS_WITH_CALENDAR if calendar else _ENABLED_MEMBERS


def remember_members(
    conn: Connection, department_id: str, role: str, calendar: str | None, rows: Sequence[Sequence[Any]],
) -> None:
    """Note what another module's statement read of :func:`enabled_members`
    (rows of :func:`members_statement`'s columns, in any order)."""
    memo.memo(conn, _MEMBERS)[(department_id, role, calendar)] = sorted(rows, key=lambda row: row[1])


def usernames_by_email(conn: Connection, keyring: Keyring, email: str) -> list[str]:
    """Users whose e-mail address is ``email`` (case-insensitive)."""
    # Every key's index: rows a rotation has not re-indexed yet are found too.
    indexes = keyring.blind_indexes(email_key(email))
    return list(conn.execute(select(users.c.username).where(users.c.email_index.in_(indexes))
                             .order_by(users.c.username)).scalars())
