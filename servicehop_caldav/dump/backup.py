"""`backup`: a consistent copy of a live SQLite database, and the check that
a database handed to `verify` is there.

SQLite's online backup API copies the database in one step, that is in one
read transaction: a snapshot of one moment, while the server (WAL mode)
keeps writing. The copy goes to a new file next to the target, is checked
(``PRAGMA quick_check``), turned into a single self-contained file (rollback
journal mode; the server switches it back to WAL when it opens it), flushed
to disk and only then linked to its name, so the target name never holds a
partial copy and an existing file is never replaced.

The copy holds what the database holds: ciphertext under the instance key
(and the clear index columns). The key file is not in it; keep the key
apart, and keep it as long as the backup.

PostgreSQL has its own tool for this (pg_dump, see the README); `backup`
refuses it with a pointer there.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from servicehop_caldav.db.engine import Database, DatabaseError
from servicehop_caldav.db.migrate import current_version
from servicehop_caldav.dump.format import DumpError, fsync_dir
from servicehop_caldav.instance import Instance

PG_DUMP_HINT = ('this instance uses PostgreSQL: back it up with pg_dump and the key file '
                '(README, "Backups, export and import")')


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError as e:
        raise DatabaseError(f"invalid database URL {url!r}: {e}") from e


def backup_instance(instance: Instance, out: Path) -> Path:
    """Copy the instance's SQLite database to the new file ``out`` (mode 0600)."""
    url, _key_file = instance.storage_settings()
    parsed = _parse(url)
    if parsed.get_backend_name() == "postgresql":
        raise DumpError(PG_DUMP_HINT)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        raise DumpError(f"backup copies SQLite databases, not {parsed.get_backend_name()}")
    source = Path(parsed.database).absolute()
    if not source.is_file():
        raise DumpError(f"no database at {source}")
    out = out.absolute()
    if out.exists() or out.is_symlink():
        raise DumpError(f"{out} already exists; not overwriting it")
    if not out.parent.is_dir():
        raise DumpError(f"no directory {out.parent}")
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)  # mode 0600
    os.close(fd)
    partial = Path(name)
    try:
        _copy(source, partial)
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        try:
            os.link(partial, out)  # unlike a rename, never replaces a file made meanwhile
        except FileExistsError as e:
            raise DumpError(f"{out} already exists; not overwriting it") from e
        fsync_dir(out.parent)
    finally:
        partial.unlink(missing_ok=True)
        for suffix in ("-wal", "-shm", "-journal"):
            Path(f"{partial}{suffix}").unlink(missing_ok=True)
    return out


def _copy(source: Path, target: Path) -> None:
    # mode=rw: never create the source (a plain connect makes an empty database).
    src = sqlite3.connect(f"{source.as_uri()}?mode=rw", uri=True, timeout=60)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)  # pages=-1: everything in one step, one snapshot
            dst.execute("PRAGMA journal_mode=DELETE")
            check = dst.execute("PRAGMA quick_check").fetchall()
            if check != [("ok",)]:
                raise DumpError(f"the copy of {source} does not pass SQLite's check: {check[:3]}")
        finally:
            dst.close()
    except sqlite3.Error as e:
        raise DumpError(f"cannot back up {source}: {e}") from e
    finally:
        src.close()


def check_database(url: str) -> None:
    """Refuse to verify a database that is not there or holds no
    servicehop-caldav schema: opening it would make an empty one (a new
    SQLite file, tables in an empty PostgreSQL schema), and an empty
    database verifies."""
    parsed = _parse(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        if not Path(parsed.database).is_file():
            raise DumpError(f"no database at {parsed.database}")
    db = Database(url)
    try:
        with db.transaction("r") as conn:
            version = current_version(conn)
    except SQLAlchemyError as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DatabaseError(f"cannot open the database: {first}") from e
    finally:
        db.dispose()
    if version is None:
        raise DumpError(f"no servicehop-caldav database at {parsed.render_as_string(hide_password=True)}")
