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
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from servicehop_caldav.refusal import NAMESPACE, Refusal

SCHEMA_VERSION = 6

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

# Version 6: a UID wherever it is, for the booking desk's question whether
# another recipient of the department holds it (a look at the few objects
# with that UID, instead of at every booking calendar of the department).
UID_ANYWHERE = Index("ix_objects_uid_anywhere", "uid")

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
    # Version 5: calendar_occurrences holds every occurrence of this object
    # that starts before this time (POSIX seconds). NULL: not computed yet
    # (filled at the next start); Radicale's TIMESTAMP_MIN: cannot be known
    # (the text fails Radicale's expansion). Where the rows are not known,
    # Radicale's own filter decides.
    Column("occurrences_until", BigInteger, nullable=True),
    UniqueConstraint("calendar_id", "href", name="uq_objects_href"),
    Index("ix_objects_uid", "calendar_id", "uid"),
    UID_ANYWHERE,
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

# -- version 2: the directory and encryption keys ------------------------------

# One row per key id that has ever encrypted data here: a known constant
# encrypted with that key, so a start with a missing or wrong key is refused
# before anything is read or written.
key_checks = Table(
    "key_checks",
    metadata,
    Column("key_id", Integer, primary_key=True, autoincrement=False),
    Column("check_value", LargeBinary, nullable=False),
)

departments = Table(
    "departments",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", Text, nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("language", String(8), nullable=False),
    # The department's opening-time calendar, mounted in every admin's home.
    Column("opening_calendar_id", Integer, ForeignKey("calendars.id", ondelete="SET NULL")),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(128), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    # Personal fields, encrypted with key ``key_id`` (AES-GCM).
    Column("key_id", Integer, nullable=True),
    Column("name_enc", LargeBinary, nullable=False),
    Column("email_enc", LargeBinary, nullable=False),
    Column("address_enc", LargeBinary, nullable=True),
    Column("phone_enc", LargeBinary, nullable=True),
    # Keyed hash of the lower-cased e-mail address: finds staff by ATTENDEE
    # without storing the address in clear.
    Column("email_index", String(64), nullable=False),
    Column("created", Float, nullable=False),
    Index("ix_users_email_index", "email_index"),
)

user_roles = Table(
    "user_roles",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column(
        "department_id", String(64), ForeignKey("departments.id", ondelete="CASCADE"), nullable=False
    ),
    Column("role", String(16), nullable=False),
    # Recipients only: weekly entitlement in minutes (None = unlimited).
    Column("weekly_minutes", Integer, nullable=True),
    PrimaryKeyConstraint("user_id", "department_id", "role"),
    Index("ix_roles_department", "department_id", "role"),
)

ROLES = ("recipient", "staff", "admin")
VERSION_2_TABLES = (key_checks, departments, users, user_roles)

# -- version 3: bookings and the audit log --------------------------------------

# One row per booking the engine holds (confirmed, waiting or flagged): who,
# when, by whom, and where its two events live. No event text: the service,
# notes and names stay in the (encrypted) calendar objects.
bookings = Table(
    "bookings",
    metadata,
    Column("id", String(36), primary_key=True),
    Column(
        "department_id", String(64), ForeignKey("departments.id", ondelete="CASCADE"), nullable=False
    ),
    Column("recipient_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("staff_id", Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    Column("start_ts", BigInteger, nullable=False),
    Column("end_ts", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    # The recipient's event (bookings-D/<href>) and the staff member's visit.
    Column(
        "booking_calendar_id", Integer, ForeignKey("calendars.id", ondelete="CASCADE"), nullable=False
    ),
    Column("booking_href", Text, nullable=False),
    Column("assignment_calendar_id", Integer, nullable=True),
    Column("assignment_href", Text, nullable=True),
    Column("created", Float, nullable=False),
    Column("updated", Float, nullable=False),
    UniqueConstraint("booking_calendar_id", "booking_href", name="uq_bookings_event"),
    Index("ix_bookings_department_time", "department_id", "start_ts", "end_ts"),
    Index("ix_bookings_recipient_time", "recipient_id", "start_ts"),
)

BOOKING_STATUSES = ("confirmed", "waiting", "flagged")

# Every decision: who, what interval, outcome, reason codes, staff; never
# event text. Ids, not names: the people may later be removed, the log stays.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("department_id", String(64), nullable=False),
    Column("recipient_id", Integer, nullable=True),
    Column("start_ts", BigInteger, nullable=True),
    Column("end_ts", BigInteger, nullable=True),
    Column("action", String(16), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("reasons", Text, nullable=False, default=""),
    Column("staff_id", Integer, nullable=True),
    Index("ix_audit_department_at", "department_id", "at"),
)

VERSION_3_TABLES = (bookings, audit_log)

# -- version 4: the departments' computed calendars ----------------------------

# Each department's two read-only calendars, kept by the booking desk in the
# same transaction as every booking and opening change: the anonymous
# availability (mounted in every recipient's home) and the admins' overview
# (mounted in every admin's home). ``covered_from``/``covered_to`` are the
# first and last local dates (ISO) the availability calendar holds.
department_views = Table(
    "department_views",
    metadata,
    Column(
        "department_id", String(64), ForeignKey("departments.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("availability_calendar_id", Integer, ForeignKey("calendars.id", ondelete="SET NULL")),
    Column("overview_calendar_id", Integer, ForeignKey("calendars.id", ondelete="SET NULL")),
    Column("covered_from", String(10), nullable=True),
    Column("covered_to", String(10), nullable=True),
)

VERSION_4_TABLES = (department_views,)

# -- version 5: the occurrences of calendar objects ------------------------------

# The time ranges Radicale's time-range filter (radicale.item.filter.
# visit_time_ranges, RFC 4791 9.9) visits for an object, in clear like the
# first/last occurrence index, computed when the object is written: a
# time-range REPORT on a recurring event then finds the exact matches by
# index instead of parsing and expanding every event whose first/last
# occurrence encloses the range (store/occurrences.py). ``after_ts`` is the
# latest start of the main component's ranges visited before this one:
# Radicale's filter stops at the first that starts after the query's end, so
# this range counts only for queries ending at or after ``after_ts``.
calendar_occurrences = Table(
    "calendar_occurrences",
    metadata,
    Column(
        "object_id",
        Integer,
        ForeignKey("calendar_objects.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("start_ts", BigInteger, nullable=False),
    Column("end_ts", BigInteger, nullable=False),
    Column("after_ts", BigInteger, nullable=False),
    Index("ix_occurrences_object", "object_id", "start_ts"),
)

VERSION_5_TABLES = (calendar_occurrences,)

# The longest path, href or UID stored (UTF-8 bytes). They are index keys,
# and a PostgreSQL btree index row holds at most 2704 bytes: a longer key made
# the INSERT fail (a 500) on PostgreSQL while SQLite took it. Refusing it on
# every backend keeps them alike; callers see a Refusal (a ValueError: a 400
# with the reason).
MAX_KEY_BYTES = 2000


def check_key(what: str, value: str) -> None:
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_KEY_BYTES:
        raise Refusal(
            f"{{{NAMESPACE}}}name-too-long",
            f"{what} too long: {size} bytes, at most {MAX_KEY_BYTES} (UTF-8)",
            status=400,
        )


OP_ADDED = 1
OP_MODIFIED = 2
OP_DELETED = 3
