"""The schema is versioned and upgraded in place at start."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection, inspect, select, text

from servicehop_caldav.db import migrate
from servicehop_caldav.db.engine import Database, DatabaseError
from servicehop_caldav.db.schema import SCHEMA_VERSION, schema_info


def version_of(db: Database) -> int | None:
    with db.transaction("r") as conn:
        return migrate.current_version(conn)


def test_new_database_gets_the_current_schema(database_url: str) -> None:
    db = Database(database_url)
    try:
        assert migrate.ensure_schema(db) == 0
        assert version_of(db) == SCHEMA_VERSION
        assert migrate.ensure_schema(db) == SCHEMA_VERSION  # a second start changes nothing
        with db.transaction("r") as conn:
            tables = set(inspect(conn).get_table_names())
        assert {"calendars", "calendar_instances", "calendar_objects", "calendar_changes"} <= tables
    finally:
        db.dispose()


def test_older_schema_is_upgraded_in_place(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    db = Database(database_url)
    try:
        migrate.ensure_schema(db)
        with db.transaction("w") as conn:
            conn.execute(text("INSERT INTO calendars (sync_salt, revision, modified) VALUES ('s', 7, 0)"))

        def add_column(conn: Connection) -> None:
            conn.execute(text("ALTER TABLE calendars ADD COLUMN colour_hint VARCHAR(16)"))

        monkeypatch.setattr(migrate, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
        monkeypatch.setitem(migrate.UPGRADES, SCHEMA_VERSION, add_column)
        assert migrate.ensure_schema(db) == SCHEMA_VERSION
        assert version_of(db) == SCHEMA_VERSION + 1
        with db.transaction("r") as conn:
            assert conn.execute(text("SELECT revision, colour_hint FROM calendars")).one() == (7, None)
    finally:
        db.dispose()


def test_failed_upgrade_changes_nothing(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    db = Database(database_url)
    try:
        migrate.ensure_schema(db)

        def half_then_fail(conn: Connection) -> None:
            conn.execute(text("ALTER TABLE calendars ADD COLUMN half_done INTEGER"))
            raise RuntimeError("disk on fire")

        monkeypatch.setattr(migrate, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
        monkeypatch.setitem(migrate.UPGRADES, SCHEMA_VERSION, half_then_fail)
        with pytest.raises(DatabaseError, match="disk on fire"):
            migrate.ensure_schema(db)
        assert version_of(db) == SCHEMA_VERSION
        with db.transaction("r") as conn:
            columns = {c["name"] for c in inspect(conn).get_columns("calendars")}
        assert "half_done" not in columns
    finally:
        db.dispose()


def test_newer_schema_is_refused(database_url: str) -> None:
    db = Database(database_url)
    try:
        migrate.ensure_schema(db)
        with db.transaction("w") as conn:
            conn.execute(schema_info.update().values(version=SCHEMA_VERSION + 5))
        with pytest.raises(DatabaseError, match="newer than this servicehop-caldav"):
            migrate.ensure_schema(db)
        with db.transaction("r") as conn:
            assert conn.execute(select(schema_info.c.version)).scalar_one() == SCHEMA_VERSION + 5
    finally:
        db.dispose()


def test_version_1_database_gains_directory_and_bookings(database_url: str) -> None:
    """A database made by the first release (no directory) upgrades to the
    current schema and keeps its calendars."""
    from servicehop_caldav.db.schema import VERSION_2_TABLES, VERSION_3_TABLES, VERSION_4_TABLES, metadata

    db = Database(database_url)
    try:
        later = set(VERSION_2_TABLES) | set(VERSION_3_TABLES) | set(VERSION_4_TABLES)
        v1_tables = [t for t in metadata.sorted_tables if t not in later]
        with db.transaction("w") as conn:
            metadata.create_all(conn, tables=v1_tables)
            conn.execute(schema_info.insert().values(id=1, version=1))
            conn.execute(text("INSERT INTO calendars (sync_salt, revision, modified) VALUES ('s', 3, 0)"))
        assert migrate.ensure_schema(db) == 1
        assert version_of(db) == SCHEMA_VERSION
        with db.transaction("r") as conn:
            tables = set(inspect(conn).get_table_names())
            assert {"departments", "users", "user_roles", "key_checks", "bookings", "audit_log",
                    "department_views"} <= tables
            assert conn.execute(text("SELECT revision FROM calendars")).scalar_one() == 3
    finally:
        db.dispose()


def test_version_5_database_gains_the_uid_index(database_url: str) -> None:
    """5 -> 6 indexes calendar_objects.uid alone; a second start finds it there."""
    db = Database(database_url)
    try:
        assert migrate.ensure_schema(db) == 0
        with db.transaction("w") as conn:
            conn.execute(text("DROP INDEX ix_objects_uid_anywhere"))
            conn.execute(schema_info.update().values(version=5))
        assert "ix_objects_uid_anywhere" not in uid_indexes(db)
        assert migrate.ensure_schema(db) == 5
        assert version_of(db) == SCHEMA_VERSION
        assert uid_indexes(db)["ix_objects_uid_anywhere"] == ["uid"]
        assert migrate.ensure_schema(db) == SCHEMA_VERSION
    finally:
        db.dispose()


def uid_indexes(db: Database) -> dict[str, list[str | None]]:
    with db.transaction("r") as conn:
        return {str(ix["name"]): list(ix["column_names"])
                for ix in inspect(conn).get_indexes("calendar_objects")}
