"""Create the schema on a new database and upgrade an older one in place.

Every start runs :func:`ensure_schema`. It holds the write lock while it
looks, so several processes starting together on one PostgreSQL upgrade
once. Each step in ``UPGRADES`` takes the schema from version N to N + 1
inside the same transaction: an upgrade is all or nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, inspect, select, text

from servicehop_caldav.db.engine import Database, DatabaseError
from servicehop_caldav.db.schema import (
    SCHEMA_VERSION,
    UID_ANYWHERE,
    VERSION_2_TABLES,
    VERSION_3_TABLES,
    VERSION_4_TABLES,
    VERSION_5_TABLES,
    calendar_objects,
    metadata,
    schema_info,
)


def _add_directory(conn: Connection) -> None:
    """1 -> 2: the directory (departments, users, roles) and key checks."""
    metadata.create_all(conn, tables=list(VERSION_2_TABLES))


def _add_bookings(conn: Connection) -> None:
    """2 -> 3: bookings and the audit log."""
    metadata.create_all(conn, tables=list(VERSION_3_TABLES))


def _add_views(conn: Connection) -> None:
    """3 -> 4: the departments' availability and overview calendars (filled
    by the server's upkeep at its next start)."""
    metadata.create_all(conn, tables=list(VERSION_4_TABLES))


def _add_occurrences(conn: Connection) -> None:
    """4 -> 5: the occurrence table and ``calendar_objects.occurrences_until``.

    The rows are filled at the next start, after the key is bound
    (:func:`servicehop_caldav.store.occurrences.fill`): the upgrade runs
    before it and cannot read encrypted data. Until then every object's
    ``occurrences_until`` is NULL, which leaves the time-range test to
    Radicale's own filter as before."""
    columns = {c["name"] for c in inspect(conn).get_columns(calendar_objects.name)}
    if "occurrences_until" not in columns:
        conn.execute(text("ALTER TABLE calendar_objects ADD COLUMN occurrences_until BIGINT"))
    metadata.create_all(conn, tables=list(VERSION_5_TABLES))


def _index_uids(conn: Connection) -> None:
    """5 -> 6: ``calendar_objects.uid`` indexed alone (the desk's check that
    a new booking's UID is no other recipient's)."""
    UID_ANYWHERE.create(conn, checkfirst=True)


# UPGRADES[n] upgrades a database at version n to version n + 1.
UPGRADES: dict[int, Callable[[Connection], None]] = {
    1: _add_directory, 2: _add_bookings, 3: _add_views, 4: _add_occurrences, 5: _index_uids,
}


def current_version(conn: Connection) -> int | None:
    """The schema version recorded in the database, None if it has none."""
    if not inspect(conn).has_table(schema_info.name):
        return None
    return conn.execute(select(schema_info.c.version)).scalar_one_or_none()


def ensure_schema(db: Database) -> int:
    """Bring the database to SCHEMA_VERSION; return the version found first."""
    try:
        with db.transaction("w") as conn:
            found = current_version(conn)
            if found is None:
                metadata.create_all(conn)
                conn.execute(schema_info.insert().values(id=1, version=SCHEMA_VERSION))
                return 0
            if found > SCHEMA_VERSION:
                raise DatabaseError(
                    f"the database has schema version {found}, newer than this "
                    f"servicehop-caldav understands ({SCHEMA_VERSION}): upgrade the software"
                )
            for version in range(found, SCHEMA_VERSION):
                UPGRADES[version](conn)
                conn.execute(schema_info.update().values(version=version + 1))
            return found
    except DatabaseError:
        raise
    except Exception as e:
        raise DatabaseError(f"cannot open the database: {_one_line(e)}") from e


def _one_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
