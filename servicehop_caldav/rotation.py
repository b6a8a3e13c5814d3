"""Key rotation: a new instance key, and every encrypted row re-encrypted under it.

``rotate(database_url, key_file)`` runs these steps; each is safe to
interrupt, and a re-run continues where the last one stopped:

1. **New key.** If the key file holds one key, make the next one (ids only
   grow) and replace the key file atomically with the old key and the new
   one, the new one last (current). If it already holds more than one key,
   an earlier rotation was interrupted: its last key is the target and no
   further key is made.
2. **Register it.** The database gets the new key's key-check row. From
   then on a process still running with the old key file refuses to write
   (:func:`servicehop_caldav.store.codec.check_current`), so nothing new is
   ever stored under the key being retired.
3. **Re-encrypt** every row not under the new key, in batches of
   ``batch_size`` rows, each batch one write transaction: calendar object
   data (also rows stored in clear, key id NULL, before the instance had a
   key) and the personal columns of the directory's users, with the e-mail
   blind index recomputed under the new key. Index columns, etags and the
   change log are untouched: clients see no change.
4. **Retire the old keys.** In one write transaction: check that no row
   uses an old key any more and delete the old keys' key-check rows. Then
   compact the database, so old ciphertext (and any former clear text) is
   gone from its files, and replace the key file with the new key alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import ColumnElement, Connection, Table, delete, or_, select, text, update

from servicehop_caldav.crypto import Keyring
from servicehop_caldav.db.engine import Database
from servicehop_caldav.db.migrate import ensure_schema
from servicehop_caldav.db.schema import calendar_objects, key_checks, users
from servicehop_caldav.directory.store import forget_people, personal_values
from servicehop_caldav.keyfile import load_keys, new_key, write_key_file
from servicehop_caldav.store import codec
from servicehop_caldav.store.keycheck import bind_keyring

BATCH_SIZE = 500
_PERSONAL = ("name", "email", "address", "phone")


@dataclass
class Rotation:
    """What a run of :func:`rotate` did."""

    key_id: int
    # True: this run finished an interrupted rotation instead of making a key.
    continued: bool
    reencrypted: dict[str, int] = field(default_factory=dict)
    retired: list[int] = field(default_factory=list)


def _stale(table: Table, keyring: Keyring) -> ColumnElement[bool]:
    """Rows not under the current key (NULL: stored in clear)."""
    return or_(table.c.key_id.is_(None), table.c.key_id != keyring.current)


def _objects_batch(conn: Connection, keyring: Keyring, after: int, limit: int) -> tuple[int, int]:
    """Re-encrypt up to ``limit`` calendar objects with id > ``after``;
    return (rows done, last id seen)."""
    o = calendar_objects.c
    rows = conn.execute(
        select(o.id, o.key_id, o.data)
        .where(o.id > after, _stale(calendar_objects, keyring))
        .order_by(o.id)
        .limit(limit)
    ).all()
    for row in rows:
        if row.key_id is None:
            plain = bytes(row.data)
            plain.decode("utf-8")  # what codec.decode would accept, or stop here
        else:
            plain = keyring.decrypt(row.key_id, row.data, codec.OBJECT_CONTEXT)
        blob, key_id = keyring.encrypt(plain, codec.OBJECT_CONTEXT)
        conn.execute(
            update(calendar_objects)
            .where(o.id == row.id)
            .values(data=blob, key_id=key_id, size=len(blob))
        )
    return len(rows), rows[-1].id if rows else after


def _users_batch(conn: Connection, keyring: Keyring, after: int, limit: int) -> tuple[int, int]:
    """Re-encrypt the personal columns of up to ``limit`` users with id >
    ``after`` and recompute their e-mail blind index under the current key."""
    u = users.c
    rows = conn.execute(
        select(u.id, u.key_id, u.name_enc, u.email_enc, u.address_enc, u.phone_enc)
        .where(u.id > after, _stale(users, keyring))
        .order_by(u.id)
        .limit(limit)
    ).all()
    for row in rows:
        plain: dict[str, str | None] = {}
        for column in _PERSONAL:
            blob = getattr(row, f"{column}_enc")
            if blob is None:
                plain[column] = None
            elif row.key_id is None:
                plain[column] = bytes(blob).decode("utf-8")
            else:
                plain[column] = keyring.decrypt(
                    row.key_id, blob, f"users.{column}".encode()
                ).decode("utf-8")
        values = personal_values(
            keyring, plain["name"] or "", plain["email"] or "", plain["address"], plain["phone"]
        )
        conn.execute(update(users).where(u.id == row.id).values(**values))
    forget_people(conn)
    return len(rows), rows[-1].id if rows else after


# Every table with encrypted rows (an integer ``id`` and a ``key_id`` column)
# and the function that re-encrypts a batch of it. A table that comes to hold
# encrypted data joins this list (and keycheck.bind_keyring's check).
TABLES: list[tuple[Table, Callable[[Connection, Keyring, int, int], tuple[int, int]]]] = [
    (calendar_objects, _objects_batch),
    (users, _users_batch),
]


def _pending(conn: Connection, keyring: Keyring) -> bool:
    return any(
        conn.execute(select(table.c.id).where(_stale(table, keyring)).limit(1)).first()
        for table, _batch in TABLES
    )


def _start(db: Database, key_file: Path) -> tuple[Keyring, bool]:
    """Steps 1 and 2: the keyring to rotate to, and whether it continues an
    interrupted rotation.

    All under the database's write lock: two rotations started together
    cannot both make a key; the second one finds the first one's key file
    and joins its rotation.
    """
    with db.transaction("w") as conn:
        keys = load_keys(key_file)
        continued = len(keys) > 1
        if not continued:
            # The key file must match the database before anything is made.
            bind_keyring(db, Keyring.from_keys(keys))
            known = set(conn.execute(select(key_checks.c.key_id)).scalars())
            new_id = max(known | set(keys)) + 1
            keys[new_id] = new_key()
            # On disk before the database knows the key, and long before any
            # row is encrypted with it.
            write_key_file(key_file, keys)
        keyring = Keyring.from_keys(keys)
        bind_keyring(db, keyring)  # checks every key; registers the new one
        codec.check_current(conn, keyring)  # no newer key than the file's exists
    return keyring, continued


def _compact(db: Database) -> None:
    """Rewrite the tables' files so no old page or tuple version remains."""
    if db.backend == "sqlite":
        raw = db.engine.raw_connection()
        try:
            sqlite = raw.driver_connection
            assert sqlite is not None
            sqlite.execute("VACUUM")
            sqlite.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()
        return
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM FULL calendar_objects, users, key_checks"))


def rotate(
    database_url: str,
    key_file: Path,
    batch_size: int = BATCH_SIZE,
) -> Rotation:
    """Rotate the instance key (see the module's description)."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    db = Database(database_url)
    try:
        ensure_schema(db)
        keyring, continued = _start(db, key_file)
        result = Rotation(keyring.current, continued, {table.name: 0 for table, _ in TABLES})
        while True:
            for table, batch in TABLES:
                after = 0
                while True:
                    with db.transaction("w") as conn:
                        codec.check_current(conn, keyring)
                        done, after = batch(conn, keyring, after, batch_size)
                    if not done:
                        break
                    result.reencrypted[table.name] += done
            with db.transaction("w") as conn:
                # Look before retiring: any row still under an old key (none
                # should be: since the new key was registered, writers under
                # an old one are refused) gets one more pass.
                if _pending(conn, keyring):
                    continue
                result.retired = sorted(
                    conn.execute(
                        select(key_checks.c.key_id).where(key_checks.c.key_id != keyring.current)
                    ).scalars()
                )
                conn.execute(delete(key_checks).where(key_checks.c.key_id != keyring.current))
            break
        _compact(db)
        result.retired = sorted(set(result.retired) | (set(keyring.keys) - {keyring.current}))
        with db.transaction("w") as conn:
            # Under the lock, and only if no newer rotation has begun meanwhile.
            codec.check_current(conn, keyring)
            write_key_file(key_file, {keyring.current: keyring.keys[keyring.current]})
        return result
    finally:
        db.dispose()
