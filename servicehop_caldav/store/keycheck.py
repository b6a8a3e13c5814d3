"""Bind a keyring to a database at start, or refuse to start.

A missing key file, a key file with the wrong key, or data under a key the
file no longer holds stops the start with one clear message, before any
calendar data is read or written.
"""

from __future__ import annotations

from sqlalchemy import insert, select, union

from servicehop_caldav.crypto import Keyring
from servicehop_caldav.db.engine import Database, DatabaseError
from servicehop_caldav.db.schema import calendar_objects, key_checks, users
from servicehop_caldav.store import codec


def bind_keyring(db: Database, keyring: Keyring | None) -> None:
    with db.transaction("w") as conn:
        checks = {row.key_id: row.check_value for row in conn.execute(select(key_checks))}
        if keyring is None:
            if checks:
                raise DatabaseError(
                    "the database holds encrypted data, but no key file is configured "
                    "([storage] key_file)"
                )
            codec.install(db.engine, None)
            return
        for key_id, check in checks.items():
            if key_id in keyring.keys and not keyring.matches(key_id, check):
                raise DatabaseError(
                    f"key {key_id} of the key file does not match this database: wrong key file"
                )
        used = set(
            conn.execute(
                union(
                    select(calendar_objects.c.key_id).where(calendar_objects.c.key_id.is_not(None)),
                    select(users.c.key_id).where(users.c.key_id.is_not(None)),
                )
            ).scalars()
        )
        missing = sorted(used - set(keyring.keys))
        if missing:
            raise DatabaseError(
                f"data is encrypted with key(s) {', '.join(map(str, missing))}, "
                "which the key file does not hold"
            )
        if keyring.current not in checks:
            conn.execute(
                insert(key_checks).values(
                    key_id=keyring.current, check_value=keyring.check_value(keyring.current)
                )
            )
    codec.install(db.engine, keyring)
