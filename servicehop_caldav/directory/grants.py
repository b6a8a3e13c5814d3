"""What a login may reach in its home: the collections of its roles, as Radicale's letters.

The rights plugin (``radicale_rights_servicehop``) answers from these. They
come from the user's rows with their roles and the paths of their home's
collections (:data:`STATEMENT`), and a role collection is granted only
while it exists.

A login that the auth plugin recalls (its password verified lately) reads
them in its own statement (``directory.credentials_of``) and hands them to
the rights plugin for this request (:func:`hand_over`, :func:`from_login`):
the rights of a request are then of the same snapshot as its login, and on
PostgreSQL the request saves a round trip whenever the rights plugin's
one-second cache has run out, which for a phone's sync or booking, minutes
apart, is every time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, null, select, union_all

from servicehop_caldav.db.schema import calendar_instances, user_roles, users

READ_WRITE = "rwdlotm"
READ_ONLY = "r"


@dataclass(frozen=True)
class Grants:
    """What one enabled user may reach inside their own home, by name."""

    collections: dict[str, str]


# The user's rows with their roles, then (role NULL, disabled NULL) the paths
# of their home's collections: columns (disabled, department_id, role, path).
STATEMENT = union_all(
    select(users.c.disabled, user_roles.c.department_id, user_roles.c.role, null().label("path"))
    .select_from(users.outerjoin(user_roles, user_roles.c.user_id == users.c.id))
    .where(users.c.username == bindparam("username")),
    select(null(), null(), null(), calendar_instances.c.path)
    .where(calendar_instances.c.parent_path == bindparam("username")),
)


def of_rows(username: str, rows: Iterable[Any]) -> Grants | None:
    """The grants in :data:`STATEMENT`'s rows (pure); None if the user is
    unknown or disabled."""
    # Imported here: provisioning imports the directory's store, which imports this module.
    from servicehop_caldav.directory.store import Role
    from servicehop_caldav.provisioning import role_collections

    rows = list(rows)
    user_rows = [(disabled, department_id, role) for disabled, department_id, role, path in rows
                 if path is None]
    if not user_rows or any(bool(disabled) for disabled, _, _ in user_rows):
        return None
    roles = [Role(department_id, role) for _, department_id, role in user_rows if role is not None]
    existing = {path for *_, path in rows if path is not None}
    return Grants({
        name: READ_WRITE if rc.writable else READ_ONLY
        for name, rc in role_collections(roles).items()
        if f"{username}/{name}" in existing
    })


# This request's login and the grants read with it: a holder the application
# sets around each request (:func:`request`). Outside one (a plugin called
# directly) nothing is handed over, so grants never outlive their request.
_REQUEST: ContextVar[list[tuple[str, Grants]] | None] = ContextVar("servicehop_login_grants", default=None)


@contextmanager
def request() -> Iterator[None]:
    """While the block runs, its login may hand its grants over."""
    token = _REQUEST.set([])
    try:
        yield
    finally:
        _REQUEST.reset(token)


def forget() -> None:
    """A login begins: what an earlier one of this request handed over is gone."""
    held = _REQUEST.get()
    if held is not None:
        held.clear()


def hand_over(username: str, grants: Grants) -> None:
    """``username`` logged in on this request with ``grants``, read with the login."""
    held = _REQUEST.get()
    if held is not None:
        held[:] = [(username, grants)]


def from_login(username: str) -> Grants | None:
    """The grants read with this request's login of ``username``, if it read them."""
    held = _REQUEST.get()
    if held:
        handed_to, grants = held[0]
        if handed_to == username:
            return grants
    return None
