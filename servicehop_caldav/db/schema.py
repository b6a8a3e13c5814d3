"""The SQL schema, after sabre/dav's calendar backend.

A *calendar* holds data (objects, a change log, a revision counter); a
*calendar instance* mounts a calendar at one path with its own properties,
so one calendar can appear in several homes. Plain WebDAV collections
(principals, MKCOL folders) are instances of a calendar without objects,
which keeps every path uniform.

Index columns (paths, hrefs, UIDs, times) stay in clear text so lookups and
time-range candidates are answered by indexes; object data is a blob that
the codec may encrypt, with the id of the key that did it.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

SCHEMA_VERSION = 1

metadata = MetaData()

schema_info = Table(
    "schema_info",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", Integer, nullable=False),
)

calendars = Table(
    "calendars",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # Random per calendar: a token of a deleted calendar never matches a new
    # one that happens to reuse the same row id.
    Column("sync_salt", String(32), nullable=False),
    Column("revision", BigInteger, nullable=False, default=0),
    Column("modified", Float, nullable=False),
)

calendar_instances = Table(
    "calendar_instances",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "calendar_id",
        Integer,
        ForeignKey("calendars.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("path", Text, nullable=False, unique=True),
    Column("parent_path", Text, nullable=False),
    # Radicale's collection properties as sorted JSON (tag, displayname, ...).
    Column("props", Text, nullable=False, default="{}"),
    Column("modified", Float, nullable=False),
    Index("ix_instances_parent", "parent_path"),
    Index("ix_instances_calendar", "calendar_id"),
)

calendar_objects = Table(
    "calendar_objects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "calendar_id",
        Integer,
        ForeignKey("calendars.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("href", Text, nullable=False),
    Column("uid", Text, nullable=False),
    Column("etag", String(80), nullable=False),
    Column("name", String(32), nullable=False),
    Column("component", String(32), nullable=False),
    # Enclosing time range of all occurrences (POSIX seconds), as Radicale's
    # item.time_range computes it: open-ended recurrences reach TIMESTAMP_MAX.
    Column("first_occurrence", BigInteger, nullable=False),
    Column("last_occurrence", BigInteger, nullable=False),
    Column("size", Integer, nullable=False),
    Column("modified", Float, nullable=False),
    Column("key_id", Integer, nullable=True),
    Column("data", LargeBinary, nullable=False),
    UniqueConstraint("calendar_id", "href", name="uq_objects_href"),
    Index("ix_objects_uid", "calendar_id", "uid"),
    Index("ix_objects_time", "calendar_id", "first_occurrence", "last_occurrence"),
)

calendar_changes = Table(
    "calendar_changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "calendar_id",
        Integer,
        ForeignKey("calendars.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("revision", BigInteger, nullable=False),
    Column("href", Text, nullable=False),
    # 1 = added, 2 = modified, 3 = deleted (sabre/dav's operation codes).
    Column("operation", Integer, nullable=False),
    Index("ix_changes_revision", "calendar_id", "revision"),
)

# The longest path, href or UID stored (UTF-8 bytes). They are index keys,
# and a PostgreSQL btree index row holds at most 2704 bytes: a longer key made
# the INSERT fail (a 500) on PostgreSQL while SQLite took it. Refusing it on
# every backend keeps them alike; callers see a ValueError (a 400 in Radicale).
MAX_KEY_BYTES = 2000


def check_key(what: str, value: str) -> None:
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_KEY_BYTES:
        raise ValueError(f"{what} too long: {size} bytes, at most {MAX_KEY_BYTES} (UTF-8)")


OP_ADDED = 1
OP_MODIFIED = 2
OP_DELETED = 3
