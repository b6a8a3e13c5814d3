"""`import`: a new instance from an export, in one write transaction.

The export is read and checked whole before anything is made: every JSON
file's format and version, every calendar file against calendars.json
(object count and each object's etag, so a changed export is refused).
Then a new instance directory (new key, radicale.conf, the export's
servicehop.toml) and one write transaction that restores everything or,
on any error, nothing; the files made for it are removed again.

The store's own functions write the calendars (``create_calendar``,
``mount_instance``, ``put_object``): objects are encrypted under the new
key and every calendar gets a new sync salt, a revision and a change log
of its own, so sync tokens and change logs stay consistent (clients sync
again from scratch). Directory rows keep their ids (the audit log and the
bookings refer to them); booking and audit rows are written as they were,
their calendar references translated.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import radicale.item as radicale_item
from sqlalchemy import Column, Connection, Table, bindparam, func, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from servicehop_caldav.crypto import Keyring
from servicehop_caldav.db.engine import Database, DatabaseError
from servicehop_caldav.db.migrate import current_version
from servicehop_caldav.db.schema import (
    BOOKING_STATUSES,
    audit_log,
    bookings,
    calendar_instances,
    calendar_objects,
    calendars,
    department_views,
    metadata,
    users,
)
from servicehop_caldav.directory import store as directory
from servicehop_caldav.dump import format as fmt
from servicehop_caldav.dump.format import DumpError
from servicehop_caldav.instance import DATABASE, Instance, new_instance, new_password
from servicehop_caldav.keyfile import load_keys
from servicehop_caldav.passwords import hash_password
from servicehop_caldav.store import collections as store_collections
from servicehop_caldav.store import objects as store_objects
from servicehop_caldav.store.keycheck import bind_keyring
from servicehop_caldav.store.records import NewObject


@dataclass(frozen=True)
class Export:
    """An export's JSON files, checked; the calendar files are read on demand."""

    root: Path
    settings: str | None
    departments: list[dict[str, Any]]
    users: list[dict[str, Any]]
    views: list[dict[str, Any]]
    calendars: list[dict[str, Any]]
    bookings: list[dict[str, Any]]
    audit: list[dict[str, Any]]


@dataclass(frozen=True)
class Restored:
    instance: Instance
    # Each user's new password (the export holds none), by username.
    passwords: dict[str, str]
    calendars: int
    objects: int
    bookings: int
    audit_entries: int


def read_export(root: Path) -> Export:
    """The export at ``root``, every calendar file checked against
    calendars.json; a DumpError names the first thing that is wrong."""
    root = root.absolute()
    if not root.is_dir():
        raise DumpError(f"no export at {root}")
    head = fmt.read_json(root, fmt.EXPORT_JSON)
    name = fmt.SETTINGS  # the file being read, for the message
    try:
        settings = None
        if head.get("settings"):
            settings = (root / fmt.SETTINGS).read_text(encoding="utf-8")
        name = fmt.DIRECTORY_JSON
        found = fmt.read_json(root, name)
        departments, people, views = found["departments"], found["users"], found["department_views"]
        name = fmt.CALENDARS_JSON
        calendar_entries = fmt.read_json(root, name)["calendars"]
        name = fmt.BOOKINGS_JSON
        booking_rows = fmt.read_json(root, name)["bookings"]
        name = fmt.AUDIT_JSON
        entries = fmt.read_json(root, name)["entries"]
        export = Export(root, settings, departments, people, views, calendar_entries, booking_rows,
                        entries)
        name = fmt.CALENDARS_JSON
        for entry in export.calendars:  # every file checked now: a bad one stops before anything is made
            for _ in calendar_objects_of(export, entry):
                pass
    except (OSError, UnicodeDecodeError) as e:
        raise DumpError(f"cannot read the export: {e}") from e
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise DumpError(f"{root / name}: not as the export format says ({type(e).__name__}: {e})") from e
    return export


def calendar_objects_of(export: Export, entry: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str]]:
    """(calendars.json entry, exact text) of each object of one calendar,
    after checking the file holds exactly the listed objects."""
    listed: list[dict[str, Any]] = entry["objects"]
    if entry["file"] is None:
        if listed:
            raise DumpError(f"{fmt.CALENDARS_JSON}: calendar {entry['id']} lists objects but no file")
        return
    path = (export.root / entry["file"]).resolve()
    if not path.is_relative_to(export.root.resolve()):
        raise DumpError(f"{fmt.CALENDARS_JSON}: calendar {entry['id']} names a file outside the export")
    try:
        texts = fmt.split_stream(path.read_bytes().decode("utf-8"))
    except ValueError as e:  # UnicodeDecodeError too
        raise DumpError(f"{entry['file']}: {e}; the export was changed: nothing imported") from e
    if len(texts) != len(listed):
        raise DumpError(f"{entry['file']} holds {len(texts)} objects, {fmt.CALENDARS_JSON} lists "
                        f"{len(listed)}: the export was changed; nothing imported")
    for number, (meta, text) in enumerate(zip(listed, texts, strict=True), 1):
        if radicale_item.get_etag(text) != meta["etag"]:
            raise DumpError(f"{entry['file']}: object {number} ({meta['href']}) does not match its etag "
                            f"in {fmt.CALENDARS_JSON}: the export was changed; nothing imported")
        yield meta, text


def import_instance(source: Path, home: Path, database_url: str | None = None) -> Restored:
    """Make the new instance ``home`` (on ``database_url``, default SQLite
    in it) holding everything in the export at ``source``."""
    export = read_export(source)
    home = home.absolute()
    if home.exists() and (not home.is_dir() or any(home.iterdir())):
        raise DumpError(f"{home} is not empty; import makes a new instance in a new or empty directory")
    url = database_url or f"sqlite:///{home / DATABASE}"
    had_schema, sqlite_file = _check_target(url)
    # Hashing first (scrypt takes a while per user): the write transaction stays short.
    passwords = {u["username"]: new_password() for u in sorted(export.users, key=lambda u: u["username"])}
    hashes = {username: hash_password(password) for username, password in passwords.items()}
    created_home = not home.exists()
    try:
        with new_instance(home, url, settings=export.settings) as draft:
            counts = _restore(draft.database_url, draft.key_file, export, hashes)
    except BaseException:
        _remove_leftovers(home, created_home, url, had_schema, sqlite_file)
        raise
    return Restored(Instance(home), passwords, counts["calendars"], counts["objects"], counts["bookings"],
                    counts["audit_entries"])


def _check_target(url: str) -> tuple[bool, Path | None]:
    """Refuse a database that holds data. Returns whether it has our schema
    already, and the SQLite file the import will create (None if it exists
    or the database is not SQLite), both for the clean-up after a failure."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        parsed = None  # Database() below names the problem
    if parsed is not None and parsed.get_backend_name() == "sqlite" and parsed.database:
        path = Path(parsed.database)
        if not path.exists():
            return False, path  # nothing there yet; opening it would create it
    db = Database(url)
    try:
        with db.transaction("r") as conn:
            had_schema = current_version(conn) is not None
            if had_schema:
                _refuse_data(conn, url)
    except SQLAlchemyError as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DatabaseError(f"cannot open the database: {first}") from e
    finally:
        db.dispose()
    return had_schema, None


def _refuse_data(conn: Connection, url: str) -> None:
    people = conn.execute(select(func.count()).select_from(users)).scalar_one()
    held = conn.execute(select(func.count()).select_from(calendars)).scalar_one()
    if people or held:
        raise DumpError(f"the database {make_url(url).render_as_string(hide_password=True)} already "
                        f"holds data ({people} users, {held} calendars): import needs an empty database")


def _remove_leftovers(home: Path, created_home: bool, url: str, had_schema: bool,
                      sqlite_file: Path | None) -> None:
    """Undo what a failed import made: the instance files (the directory was
    new or empty), a SQLite file it created, our tables in a PostgreSQL
    database that had none (the transaction left them empty)."""
    if created_home:
        shutil.rmtree(home, ignore_errors=True)
    elif home.is_dir():
        for child in home.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
    if sqlite_file is not None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{sqlite_file}{suffix}").unlink(missing_ok=True)
    elif not had_schema and make_url(url).get_backend_name() == "postgresql":
        db = Database(url)
        try:
            with db.transaction("w") as conn:
                metadata.drop_all(conn)
        except Exception:  # noqa: BLE001 - the import's own error is the one to report
            pass
        finally:
            db.dispose()


def _restore(url: str, key_file: Path, export: Export, hashes: dict[str, str]) -> dict[str, int]:
    keyring = Keyring.from_keys(load_keys(key_file))
    db = Database(url)
    try:
        with db.transaction("w") as conn:
            bind_keyring(db, keyring)  # joins this transaction
            _refuse_data(conn, url)  # again, under the write lock
            try:
                return _write(conn, keyring, export, hashes)
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                raise DumpError(f"{export.root}: not as the export format says "
                                f"({type(e).__name__}: {e}); nothing imported") from e
            except SQLAlchemyError as e:  # say, a booking of a user the export does not hold
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise DumpError(f"{export.root}: the export does not fit together ({first}); "
                                "nothing imported") from e
    finally:
        db.dispose()


def _write(conn: Connection, keyring: Keyring, export: Export, hashes: dict[str, str]) -> dict[str, int]:
    for d in export.departments:
        directory.add_department(conn, d["id"], d["name"], d["timezone"], d["language"])

    ids = {entry["id"]: store_collections.create_calendar(conn) for entry in export.calendars}

    def calendar(ref: str | None) -> int | None:
        if ref is None:
            return None
        if ref not in ids:
            raise DumpError(f"{export.root}: calendar {ref!r} is referred to but not in "
                            f"{fmt.CALENDARS_JSON}; nothing imported")
        return ids[ref]

    _mount(conn, export, ids)
    objects = _put_objects(conn, export, ids)
    for d in export.departments:
        opening = calendar(d["opening_calendar"])
        if opening is not None:
            directory.set_opening_calendar(conn, d["id"], opening)
    _add_users(conn, keyring, export, hashes)
    for v in export.views:
        conn.execute(insert(department_views).values(
            department_id=v["department_id"],
            availability_calendar_id=calendar(v["availability_calendar"]),
            overview_calendar_id=calendar(v["overview_calendar"]),
            covered_from=v["covered_from"], covered_to=v["covered_to"],
        ))
    rows = []
    for b in export.bookings:
        if b["status"] not in BOOKING_STATUSES:
            raise DumpError(f"{fmt.BOOKINGS_JSON}: booking {b['id']} has status {b['status']!r}")
        rows.append({
            **{k: b[k] for k in ("id", "department_id", "recipient_id", "staff_id", "start_ts", "end_ts",
                                 "status", "booking_href", "assignment_href", "created", "updated")},
            "booking_calendar_id": calendar(b["booking_calendar"]),
            "assignment_calendar_id": calendar(b["assignment_calendar"]),
        })
    if rows:
        conn.execute(insert(bookings), rows)
    columns = ("at", "department_id", "recipient_id", "start_ts", "end_ts", "action", "outcome", "reasons",
               "staff_id")
    entries = [{k: e[k] for k in columns} for e in export.audit]
    if entries:  # in their order: new ids, the same sequence
        conn.execute(insert(audit_log), entries)
    return {"calendars": len(ids), "objects": objects, "bookings": len(rows), "audit_entries": len(entries)}


def _mount(conn: Connection, export: Export, ids: dict[str, int]) -> None:
    """Every mount at its path, parents before children (so mount_instance
    never has to make a parent), with the calendar's and mounts' times."""
    mounts = [(m, ids[entry["id"]]) for entry in export.calendars for m in entry["mounts"]]
    for m, calendar_id in sorted(mounts, key=lambda mc: (mc[0]["path"].count("/"), mc[0]["path"])):
        if m["parent"] != store_collections.parent_of(m["path"]):
            raise DumpError(f"{fmt.CALENDARS_JSON}: mount {m['path']!r} names parent {m['parent']!r}")
        if m["parent"] and store_collections.get_instance(conn, m["parent"]) is None:
            raise DumpError(f"{fmt.CALENDARS_JSON}: mount {m['path']!r} has no parent collection")
        instance = store_collections.mount_instance(conn, m["path"], calendar_id, m["props"])
        conn.execute(update(calendar_instances).where(calendar_instances.c.id == instance.id)
                     .values(modified=m["modified"]))
        store_collections.forget_instances(conn)


def _put_objects(conn: Connection, export: Export, ids: dict[str, int]) -> int:
    o = calendar_objects.c
    set_modified = (update(calendar_objects)
                    .where(o.calendar_id == bindparam("b_calendar"), o.href == bindparam("b_href"))
                    .values(modified=bindparam("b_modified")))
    total = 0
    for entry in export.calendars:
        calendar_id = ids[entry["id"]]
        times = []
        for meta, text in calendar_objects_of(export, entry):
            store_objects.put_object(conn, calendar_id, meta["href"], NewObject(
                uid=meta["uid"], etag=meta["etag"], name=meta["name"], component=meta["component"],
                first_occurrence=int(meta["first_occurrence"]), last_occurrence=int(meta["last_occurrence"]),
                text=text,
            ))
            times.append({"b_calendar": calendar_id, "b_href": meta["href"], "b_modified": meta["modified"]})
        if times:
            conn.execute(set_modified, times)
        total += len(times)
        # Last: every put above moved the calendar's modification time on.
        conn.execute(update(calendars).where(calendars.c.id == calendar_id)
                     .values(modified=entry["modified"]))
    return total


def _add_users(conn: Connection, keyring: Keyring, export: Export, hashes: dict[str, str]) -> None:
    for u in export.users:
        directory.check_slug("username", u["username"])
        conn.execute(insert(users).values(
            id=int(u["id"]), username=u["username"], password_hash=hashes[u["username"]],
            disabled=bool(u["disabled"]), created=u["created"],
            **directory.personal_values(keyring, u["name"], u["email"], u["address"], u["phone"]),
        ))
        for r in u["roles"]:
            directory.add_role(conn, int(u["id"]), r["department_id"], r["role"], r["weekly_minutes"])
    _move_sequence(conn, users, users.c.id)


def _move_sequence(conn: Connection, table: Table, column: Column[Any]) -> None:
    """After rows were inserted with their own ids: PostgreSQL's sequence
    behind the column would hand the same ids out again; move it past them.
    (SQLite takes the largest id plus one by itself.)"""
    if conn.dialect.name != "postgresql":
        return
    top = conn.execute(select(func.max(column))).scalar()
    if top is not None:
        conn.execute(select(func.setval(func.pg_get_serial_sequence(table.name, column.name), top)))

