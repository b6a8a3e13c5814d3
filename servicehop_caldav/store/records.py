"""Plain rows the store hands out."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CalendarState:
    """What the sync token and the collection etag are made of."""

    calendar_id: int
    sync_salt: str
    revision: int
    modified: float


@dataclass(frozen=True)
class Instance:
    """A collection at one path: a mount of a calendar with its properties,
    and the calendar's state as read in the same query (one snapshot)."""

    id: int
    path: str
    props_json: str
    modified: float
    state: CalendarState

    @property
    def calendar_id(self) -> int:
        return self.state.calendar_id


@dataclass(frozen=True)
class Occurrences:
    """The time ranges Radicale's time-range filter visits for one object
    (:mod:`servicehop_caldav.store.occurrences`): exact for queries ending
    before ``until``. ``spans`` are (start, end, after) in POSIX seconds."""

    until: int
    spans: tuple[tuple[int, int, int], ...]


@dataclass(frozen=True)
class NewObject:
    """What the store needs to write one object; all derived by the caller."""

    uid: str
    etag: str
    name: str
    component: str
    first_occurrence: int
    last_occurrence: int
    text: str
    # None: not computed (the writer did not parse the text); the store
    # records them later (occurrences.fill) and Radicale's filter decides
    # meanwhile. Objects read from the store carry None.
    occurrences: Occurrences | None = None


# kw_only: its own fields follow NewObject's field with a default.
@dataclass(frozen=True, kw_only=True)
class StoredObject(NewObject):
    """One stored calendar object resource: its values, href and mtime."""

    href: str
    modified: float
