"""`export`: an instance's data as files (see :mod:`.format` for the layout).

Everything is read in one read transaction, so the export is one
consistent moment of the instance even while the server keeps serving
(SQLite WAL readers and PostgreSQL REPEATABLE READ snapshots block no
writer). The files go into a new private directory next to ``OUT`` that
gets its name only when everything is written: a failed export leaves no
half export behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from servicehop_caldav import __version__
from servicehop_caldav.crypto import Keyring
from servicehop_caldav.db.schema import (
    SCHEMA_VERSION,
    audit_log,
    bookings,
    calendar_instances,
    calendars,
    department_views,
    users,
)
from servicehop_caldav.directory import store as directory
from servicehop_caldav.dump import format as fmt
from servicehop_caldav.dump.format import DumpError
from servicehop_caldav.instance import SERVICEHOP_TOML, Instance
from servicehop_caldav.store import objects as store_objects


@dataclass(frozen=True)
class Exported:
    out: Path
    calendars: int
    objects: int
    users: int
    bookings: int
    audit_entries: int


def export_instance(instance: Instance, out: Path) -> Exported:
    """Write the instance's data into the new directory ``out``."""
    instance.check()
    out = out.absolute()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DumpError(f"{out} already exists and is not empty; not writing into it")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        os.chmod(work, 0o700)
        with instance.open() as (db, keyring), db.transaction("r") as conn:
            counts = _write(conn, keyring, instance, work, db.backend)
        if out.exists():
            out.rmdir()  # empty, checked above
        os.rename(work, out)
        fmt.fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return Exported(out, counts["calendars"], counts["objects"], counts["users"], counts["bookings"],
                    counts["audit_entries"])


def _write(conn: Connection, keyring: Keyring, instance: Instance, root: Path,
           backend: str) -> dict[str, int]:
    local_ids = {cid: f"c{n}" for n, cid in enumerate(
        conn.execute(select(calendars.c.id).order_by(calendars.c.id)).scalars(), 1)}
    views = [dict(row._mapping) for row in conn.execute(
        select(department_views).order_by(department_views.c.department_id))]
    calendar_entries, objects = _write_calendars(conn, root, local_ids, views)
    fmt.write_json(root, fmt.CALENDARS_JSON, {"calendars": calendar_entries})

    def ref(calendar_id: int | None) -> str | None:
        # A reference to a calendar that is gone (assignment_calendar_id has
        # no foreign key) is exported as none.
        return local_ids.get(calendar_id) if calendar_id is not None else None

    people = _users(conn, keyring)
    fmt.write_json(root, fmt.DIRECTORY_JSON, {
        "departments": [
            {"id": d.id, "name": d.name, "timezone": d.timezone, "language": d.language,
             "opening_calendar": ref(d.opening_calendar_id)}
            for d in directory.list_departments(conn)
        ],
        "users": people,
        "department_views": [
            {"department_id": v["department_id"],
             "availability_calendar": ref(v["availability_calendar_id"]),
             "overview_calendar": ref(v["overview_calendar_id"]),
             "covered_from": v["covered_from"], "covered_to": v["covered_to"]}
            for v in views
        ],
    })

    b = bookings.c
    booking_rows = []
    for row in conn.execute(select(bookings).order_by(b.created, b.id)):
        values = dict(row._mapping)
        values["booking_calendar"] = ref(values.pop("booking_calendar_id"))
        values["assignment_calendar"] = ref(values.pop("assignment_calendar_id"))
        booking_rows.append(values)
    fmt.write_json(root, fmt.BOOKINGS_JSON, {"bookings": booking_rows})

    entries = [dict(row._mapping) for row in conn.execute(select(audit_log).order_by(audit_log.c.id))]
    for entry in entries:
        del entry["id"]  # the order is kept; the numbers are the database's
    fmt.write_json(root, fmt.AUDIT_JSON, {"entries": entries})

    settings = instance.home / SERVICEHOP_TOML
    has_settings = settings.is_file()
    if has_settings:
        fmt.write_private(root / fmt.SETTINGS, settings.read_bytes())
    counts = {"calendars": len(calendar_entries), "objects": objects, "users": len(people),
              "bookings": len(booking_rows), "audit_entries": len(entries)}
    fmt.write_json(root, fmt.EXPORT_JSON, {
        "exported": datetime.now(UTC).isoformat(timespec="seconds"),
        "software": f"servicehop-caldav {__version__}",
        "schema_version": SCHEMA_VERSION,
        "source_backend": backend,
        "settings": fmt.SETTINGS if has_settings else None,
        "counts": counts,
        "note": "personal data in clear: keep this export as safe as the database and its key",
    })
    return counts


def _write_calendars(conn: Connection, root: Path, local_ids: dict[int, str],
                     views: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Each calendar's stream file; its calendars.json entry; the object count."""
    i = calendar_instances.c
    mounts: dict[int, list[dict[str, Any]]] = {cid: [] for cid in local_ids}
    for row in conn.execute(select(i.calendar_id, i.path, i.parent_path, i.props, i.modified)
                            .order_by(i.path)):
        mounts[row.calendar_id].append({"path": row.path, "parent": row.parent_path,
                                        "props": json.loads(row.props), "modified": row.modified})
    view_names = {}
    for v in views:
        view_names[v["availability_calendar_id"]] = f"availability-{v['department_id']}"
        view_names[v["overview_calendar_id"]] = f"overview-{v['department_id']}"
    modified = dict(conn.execute(select(calendars.c.id, calendars.c.modified)).tuples().all())
    names = fmt.FileNames()
    entries = []
    total = 0
    for calendar_id, local_id in local_ids.items():
        mounted = mounts[calendar_id]
        tags = {m["props"].get("tag", "") for m in mounted} - {""}
        tag = min(tags) if tags else ("VCALENDAR" if calendar_id in view_names else "")
        stored = list(store_objects.all_objects(conn, calendar_id))
        file_name = None
        if tag or stored:
            file_name = names.name(local_id, [m["path"] for m in mounted], tag,
                                   view_names.get(calendar_id))
            for obj in stored:
                if not fmt.streamable(obj.text):
                    where = mounted[0]["path"] if mounted else local_id
                    raise DumpError(f"the object {where}/{obj.href} is not one iCalendar object ending "
                                    "with a line break; it cannot be exported exactly")
            path = root / file_name
            fmt.make_private_dirs(root, path.parent)
            fmt.write_private(path, "".join(obj.text for obj in stored).encode("utf-8"))
        total += len(stored)
        entries.append({
            "id": local_id,
            "file": file_name,
            "modified": modified[calendar_id],
            "mounts": mounted,
            "objects": [
                {"href": o.href, "uid": o.uid, "etag": o.etag, "name": o.name, "component": o.component,
                 "first_occurrence": o.first_occurrence, "last_occurrence": o.last_occurrence,
                 "modified": o.modified}
                for o in stored
            ],
        })
    return entries, total


def _users(conn: Connection, keyring: Keyring) -> list[dict[str, Any]]:
    """Every user with decrypted personal fields and roles; never the password hash."""
    created = dict(conn.execute(select(users.c.id, users.c.created)).tuples().all())
    return [
        {"id": p.id, "username": p.username, "disabled": p.disabled, "name": p.name,
         "email": p.email, "address": p.address, "phone": p.phone, "created": created[p.id],
         "roles": [{"department_id": r.department_id, "role": r.role,
                    "weekly_minutes": r.weekly_minutes} for r in p.roles]}
        for p in directory.list_people(conn, keyring)
    ]

