"""Radicale rights plugin: each person reaches exactly their role collections.

Configure with::

    [rights]
    type = radicale_rights_servicehop
    permit_delete_collection = False
    permit_overwrite_collection = False

Roles come from the servicehop directory in the database named by
``[storage] database_url``. The table, in Radicale's permission letters:

- ``/`` for a known, enabled user: ``R`` (PROPFIND; a depth-1 listing shows
  only the caller's own home, Radicale filters it through these rights).
- ``/<me>/``: ``R`` (PROPFIND, an empty calendar-query); nothing can be
  created in it, changed or deleted (no ``W``).
- ``/<me>/bookings-D/``, ``/<me>/opening-D/``: ``rwdlotm``: read and write
  events; never delete the collection (``d``), replace it by a whole-calendar
  PUT (``o``), PROPPATCH it (``l``: it could change the resource type or the
  component set) or share it (``t``, ``m``). The privilege set shows
  read, write-content, no write-properties.
- ``/<me>/availability-D/``, ``/<me>/overview-D/``, ``/<me>/assignments/``:
  ``r``: read only; DAV:current-user-privilege-set is DAV:read and
  read-free-busy, so clients stop edits before sending them.
- Anything else, and anonymous, unknown or disabled users: nothing. Radicale
  answers 403 (401 without a login) before it looks the path up, so a path
  answers the same whether or not it exists.

A role collection is granted only while it exists: a MKCALENDAR can never
create one with a client's properties (provisioning creates them).

Item paths (``/<me>/bookings-D/x.ics``) get no letters of their own:
Radicale checks the collection's letters for them, as with ``owner_only``.

Roles are read with the request's login when the auth plugin recalls it
(:mod:`servicehop_caldav.directory.grants`): then they are of this very
request. Otherwise they are read from the database and kept per user for
at most ``CACHE_SECONDS`` (1 s): a role change, a disabled flag or a new
collection takes effect within a second. Radicale asks for the rights of
the request path, its parent and (in a PROPFIND) every listed resource, so
either way those are one lookup.
"""

from __future__ import annotations

import threading
import time

from radicale import config, pathutils, rights
from radicale.log import logger
from radicale_storage_servicehop import database_url_of

from servicehop_caldav.db.engine import Database
from servicehop_caldav.directory.grants import READ_ONLY, READ_WRITE, Grants, from_login
from servicehop_caldav.directory.grants import STATEMENT as GRANTS
from servicehop_caldav.directory.grants import of_rows as grants_of_rows

__all__ = ["CACHE_SECONDS", "HOME", "READ_ONLY", "READ_WRITE", "ROOT", "Grants", "Rights", "read_grants"]

CACHE_SECONDS = 1.0
# Radicale's letters for the collection kinds.
ROOT = "R"
HOME = "R"


def read_grants(db: Database, username: str) -> Grants | None:
    """The user's grants from the directory; None if unknown or disabled."""
    with db.transaction("r") as conn:
        return grants_of_rows(username, conn.execute(GRANTS, {"username": username}).all())


class Rights(rights.BaseRights):
    """Radicale rights from the servicehop directory (see the module docstring)."""

    def __init__(self, configuration: config.Configuration) -> None:
        super().__init__(configuration)
        sharing_type = configuration.get("sharing", "type")
        if sharing_type != "none":
            # Sharing maps one person's collection into another's reach,
            # outside the privacy table this plugin enforces.
            raise RuntimeError(
                f"radicale_rights_servicehop needs [sharing] type = none, not {sharing_type!r}"
            )
        self._db = Database.shared(database_url_of(configuration))
        self._cache: dict[str, tuple[float, Grants | None]] = {}
        self._lock = threading.Lock()

    def _grants(self, username: str) -> Grants | None:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(username)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        grants = read_grants(self._db, username)
        with self._lock:
            if len(self._cache) > 1000:
                for name in [n for n, (t, _) in self._cache.items() if now - t >= CACHE_SECONDS]:
                    del self._cache[name]
            self._cache[username] = (now, grants)
        return grants

    def authorization(self, user: str, user_groups: set, path: str) -> str:
        if not user:
            return ""
        grants = from_login(user)
        if grants is None:
            grants = self._grants(user)
        if grants is None:
            logger.debug("servicehop rights: no grants for this login")
            return ""
        sane_path = pathutils.strip_path(path)
        if not sane_path:
            return ROOT
        parts = sane_path.split("/")
        if parts[0] != user:
            return ""
        if len(parts) == 1:
            return HOME
        if len(parts) == 2:
            return grants.collections.get(parts[1], "")
        return ""
