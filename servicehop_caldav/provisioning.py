"""Provisioning: each user's calendar home holds the collections of their roles.

The privacy table of DESIGN.md, as collections in ``/<username>/``:

=============  ===========================  ==========
role           collection                   access
=============  ===========================  ==========
recipient of D ``bookings-D/``              read-write
recipient of D ``availability-D/``          read-only
staff (any D)  ``assignments/``             read-only
admin of D     ``opening-D/``               read-write
admin of D     ``overview-D/``              read-only
=============  ===========================  ==========

``opening-D/`` is one calendar of the department, mounted into the home of
every admin of D as an instance of the same calendar (same objects, same
sync tokens); the department remembers it (``opening_calendar_id``).

``availability-D/`` and ``overview-D/`` are likewise the department's two
computed calendars (:mod:`servicehop_caldav.store.views`), one of each per
department, mounted into every recipient's and every admin's home; a home
that still has a calendar of its own there (made before the views were
computed) gets the department's instead: the server alone writes them.

``role_collections`` is the one place that maps roles to collections: the
rights plugin asks it too, so what is provisioned and what is accessible
cannot drift apart. Collections of roles a user no longer holds are left
in place (they may hold data, and the opening calendar may be the
department's last mount) but the rights plugin no longer shows them.
"""

from __future__ import annotations

import json
import logging
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import Connection

from servicehop_caldav.db.engine import Database
from servicehop_caldav.directory import store as directory
from servicehop_caldav.directory.store import Department, Role
from servicehop_caldav.store import collections as store_collections
from servicehop_caldav.store import views as store_views
from servicehop_caldav.store.records import Instance

logger = logging.getLogger(__name__)

# kind -> (role that brings it, writable, one per department)
KINDS: dict[str, tuple[str, bool, bool]] = {
    "bookings": ("recipient", True, True),
    "availability": ("recipient", False, True),
    "assignments": ("staff", False, False),
    "opening": ("admin", True, True),
    "overview": ("admin", False, True),
}

LABELS: dict[str, dict[str, str]] = {
    "nb": {
        "bookings": "Bestillinger – {department}",
        "availability": "Ledig tid – {department}",
        "assignments": "Mine oppdrag",
        "opening": "Åpningstider – {department}",
        "overview": "Oversikt – {department}",
    },
    "en": {
        "bookings": "Bookings – {department}",
        "availability": "Availability – {department}",
        "assignments": "My assignments",
        "opening": "Opening hours – {department}",
        "overview": "Overview – {department}",
    },
}

# Kinds that mount one computed calendar of the department.
VIEW_KINDS = (store_views.AVAILABILITY, store_views.OVERVIEW)

# The properties provisioning owns on every role collection; others are kept.
TAG = "tag"
COMPONENTS = "C:supported-calendar-component-set"
DISPLAYNAME = "D:displayname"


@dataclass(frozen=True)
class RoleCollection:
    """One collection a role puts in a home."""

    name: str  # the path segment inside the home, e.g. "bookings-east"
    kind: str  # a key of KINDS
    department_id: str | None  # None for "assignments"
    writable: bool


@dataclass(frozen=True)
class Planned:
    collection: RoleCollection
    displayname: str

    @property
    def props(self) -> dict[str, str]:
        return {TAG: "VCALENDAR", COMPONENTS: "VEVENT", DISPLAYNAME: self.displayname}


def collection_name(kind: str, department_id: str | None) -> str:
    return f"{kind}-{department_id}" if KINDS[kind][2] else kind


def role_collections(roles: Iterable[Role]) -> dict[str, RoleCollection]:
    """The collections of these roles by name (pure; no database)."""
    result: dict[str, RoleCollection] = {}
    for role in sorted(roles, key=lambda r: (r.department_id, r.role)):
        for kind, (role_name, writable, per_department) in KINDS.items():
            if role.role != role_name:
                continue
            department_id = role.department_id if per_department else None
            name = collection_name(kind, department_id)
            result.setdefault(name, RoleCollection(name, kind, department_id, writable))
    return result


def displayname(kind: str, department: Department | None, language: str) -> str:
    labels = LABELS.get(language, LABELS["nb"])
    return labels[kind].format(department=department.name if department else "")


def plan(roles: Iterable[Role], departments: Mapping[str, Department]) -> list[Planned]:
    """The role collections with their display names in the department's
    language (``assignments``: the language of the first department, by id,
    where the person is staff)."""
    roles = list(roles)
    staff_languages = [
        departments[r.department_id].language
        for r in sorted(roles, key=lambda r: r.department_id)
        if r.role == "staff" and r.department_id in departments
    ]
    planned = []
    for rc in role_collections(roles).values():
        department = departments.get(rc.department_id) if rc.department_id else None
        if rc.department_id is not None and department is None:
            continue  # the department is gone (roles cascade; defensive)
        language = department.language if department else (staff_languages or ["nb"])[0]
        planned.append(Planned(rc, displayname(rc.kind, department, language)))
    return planned


# -- the database --------------------------------------------------------------


@dataclass
class _State:
    username: str
    home: Instance | None
    children: dict[str, Instance]
    departments: dict[str, Department]
    views: dict[str, store_views.Views | None]
    planned: list[Planned]


def _read(conn: Connection, username: str) -> _State | None:
    user_id = directory.user_id_of(conn, username)
    if user_id is None:
        return None
    roles = directory.roles_of(conn, user_id)
    departments: dict[str, Department] = {}
    for department_id in {r.department_id for r in roles}:
        department = directory.get_department(conn, department_id)
        if department is not None:
            departments[department_id] = department
    home = store_collections.get_instance(conn, username)
    children = {
        posixpath.basename(i.path): i for i in store_collections.child_instances(conn, username)
    }
    views = {d: store_views.get_views(conn, d) for d in departments}
    return _State(username, home, children, departments, views, plan(roles, departments))


def _props_with(instance: Instance, planned: Planned) -> dict[str, str] | None:
    """The instance's properties with ours applied, or None if nothing changes."""
    props: dict[str, str] = json.loads(instance.props_json)
    wanted = planned.props
    if all(props.get(k) == v for k, v in wanted.items()):
        return None
    return {**props, **wanted}


def _opening_to_adopt(state: _State, planned: Planned, instance: Instance) -> bool:
    """An existing opening-D instance while the department has no calendar yet."""
    department = state.departments[planned.collection.department_id or ""]
    if department.opening_calendar_id is None:
        return True
    if department.opening_calendar_id != instance.calendar_id:
        logger.warning(
            "%s/%s is not the department's opening calendar; left as it is",
            state.username, planned.collection.name,
        )
    return False


def _is_view(state: _State, planned: Planned, instance: Instance) -> bool:
    """Whether a view collection mounts the department's computed calendar."""
    views = state.views.get(planned.collection.department_id or "")
    return views is not None and instance.calendar_id == views.calendar_id(planned.collection.kind)


def _needs_work(state: _State) -> bool:
    if state.home is None:
        return True
    for planned in state.planned:
        instance = state.children.get(planned.collection.name)
        if instance is None or _props_with(instance, planned) is not None:
            return True
        if planned.collection.kind in VIEW_KINDS and not _is_view(state, planned, instance):
            return True
        if planned.collection.kind == "opening" and _opening_to_adopt(state, planned, instance):
            return True
    return False


def _apply(conn: Connection, state: _State) -> None:
    if state.home is None:
        store_collections.create_instance(conn, state.username, {})
    for planned in state.planned:
        rc = planned.collection
        path = f"{state.username}/{rc.name}"
        instance = state.children.get(rc.name)
        if rc.kind in VIEW_KINDS:
            if instance is None or not _is_view(state, planned, instance):
                if instance is not None:
                    store_collections.delete_instance_tree(conn, path)
                views = store_views.ensure_views(conn, rc.department_id or "")
                state.views[views.department_id] = views
                store_collections.mount_instance(conn, path, views.calendar_id(rc.kind), planned.props)
                continue
        if instance is not None:
            props = _props_with(instance, planned)
            if props is not None:
                store_collections.set_props(conn, instance.id, instance.calendar_id, props)
            if rc.kind == "opening" and _opening_to_adopt(state, planned, instance):
                directory.set_opening_calendar(conn, rc.department_id or "", instance.calendar_id)
            continue
        if rc.kind != "opening":
            store_collections.create_instance(conn, path, planned.props)
            continue
        department = state.departments[rc.department_id or ""]
        if department.opening_calendar_id is None:
            created = store_collections.create_instance(conn, path, planned.props)
            directory.set_opening_calendar(conn, department.id, created.calendar_id)
            # Later admins of the same department in this pass mount it too.
            state.departments[department.id] = Department(
                department.id, department.name, department.timezone, department.language,
                created.calendar_id,
            )
        else:
            store_collections.mount_instance(
                conn, path, department.opening_calendar_id, planned.props
            )


def provision_in(conn: Connection, username: str) -> None:
    """:func:`ensure_provisioned` inside a write transaction already open."""
    state = _read(conn, username)
    if state is not None and _needs_work(state):
        _apply(conn, state)


def ensure_provisioned(db: Database, username: str) -> None:
    """Create what is missing of ``username``'s home and role collections.

    One read transaction when everything is in place; a write transaction
    (which reads again, so two racing logins create everything once) only
    when something must be created or its display name changed. Does
    nothing for an unknown user. Call it outside any read transaction of
    this thread (a read cannot be upgraded to a write).
    """
    with db.transaction("r") as conn:
        state = _read(conn, username)
        if state is None or not _needs_work(state):
            return
    with db.transaction("w") as conn:
        state = _read(conn, username)
        if state is None or not _needs_work(state):
            return
        _apply(conn, state)
