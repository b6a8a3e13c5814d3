"""Radicale storage plugin on SQL (SQLite or PostgreSQL).

Configure with::

    [storage]
    type = radicale_storage_servicehop
    database_url = sqlite:////abs/path.db   (or postgresql+psycopg://user@host/db)

A thin adapter: it turns Radicale's storage calls into calls of
``servicehop_caldav.store`` inside the request's transaction. Each request
runs in one database transaction (``acquire_lock``); each mutating call runs
in a savepoint, so a call that fails leaves nothing behind even when
Radicale answers the error itself and goes on to commit.

Writes into a recipient's ``bookings-<dept>/`` go to the booking desk
(``servicehop_caldav.desk``), which decides them in the same transaction;
``[storage] settings_file`` names the servicehop.toml with the rules.
"""

from __future__ import annotations

import functools
import json
import os
import posixpath
import threading
import time
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, closing, contextmanager
from hashlib import sha256
from pathlib import Path
from typing import Any, overload

import radicale.item as radicale_item
from radicale import config, pathutils, storage, types
from radicale.app.base import PATH_BLACKLIST_MINIMAL
from radicale.item import filter as radicale_filter
from radicale.log import logger
from sqlalchemy import Connection

from servicehop_caldav import rewritten
from servicehop_caldav.crypto import Keyring
from servicehop_caldav.db.engine import Database
from servicehop_caldav.db.migrate import ensure_schema
from servicehop_caldav.desk import views as desk_views
from servicehop_caldav.desk.desk import (
    BookingsCalendar,
    Desk,
    bookings_calendar,
    department_named,
    opening_calendar,
    recipient_named_in,
    uid_in_calendar,
)
from servicehop_caldav.desk.settings import SettingsFile
from servicehop_caldav.desk.views import MakeObject
from servicehop_caldav.keyfile import load_keys
from servicehop_caldav.refusal import NAMESPACE, Refusal
from servicehop_caldav.store import collections as store_collections
from servicehop_caldav.store import objects as store_objects
from servicehop_caldav.store import occurrences as store_occurrences
from servicehop_caldav.store import sync as store_sync
from servicehop_caldav.store import write_ahead
from servicehop_caldav.store.keycheck import bind_keyring
from servicehop_caldav.store.records import CalendarState, Instance, NewObject, StoredObject
from servicehop_caldav.store.verify import verify_database

PLUGIN_CONFIG_SCHEMA: dict[str, dict[str, dict[str, Any]]] = {
    "storage": {
        "database_url": {
            "value": "",
            "help": "SQLAlchemy URL: sqlite:////abs/path.db or postgresql+psycopg://user@host/db "
            "(empty: a SQLite file in filesystem_folder)",
            "type": str,
        },
        "key_file": {
            "value": "",
            "help": "key file for encryption at rest (servicehop-caldav init makes one); "
            "empty: objects are stored in clear",
            "type": str,
        },
        "upkeep_interval": {
            "value": "60",
            "help": "seconds between passes that move the availability calendars along "
            "the calendar and decide bookings affected by directory changes (0: only "
            "the pass at start; -1: none, for tools that only read)",
            "type": int,
        },
        "settings_file": {
            "value": "",
            "help": "servicehop.toml with the departments' booking rules "
            "(empty: the defaults of DESIGN.md, no service catalogue)",
            "type": str,
        },
    }
}


GET_ALL_PAGE = 500
"""Objects :meth:`Collection.get_all` reads and decrypts at a time."""


def database_url_of(configuration: config.Configuration) -> str:
    """``[storage] database_url`` of a Radicale configuration; empty means a
    SQLite file in ``filesystem_folder``. The auth and rights plugins use it
    to reach the same database."""
    storage_configuration = configuration.copy(PLUGIN_CONFIG_SCHEMA)
    url: str = storage_configuration.get("storage", "database_url")
    if url:
        return url
    folder = os.path.abspath(
        os.path.expanduser(storage_configuration.get("storage", "filesystem_folder"))
    )
    return "sqlite:///" + os.path.join(folder, "servicehop.db")


def _http_date(timestamp: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(timestamp))


def object_of_text(collection_path: str) -> MakeObject:
    """Row values of an iCalendar text the server writes into ``collection_path``.

    With ``like`` (an object with the same UID, component and time range as
    the text: the desk's rewrites keep them), only the etag is computed; a
    booking PUT writes three such texts, and parsing each again cost more
    than the rest of the write."""

    def make(text: str, like: NewObject | None = None) -> NewObject:
        if like is not None:
            return NewObject(
                uid=like.uid, etag=radicale_item.get_etag(text), name=like.name,
                component=like.component, first_occurrence=like.first_occurrence,
                last_occurrence=like.last_occurrence, text=text,
            )
        return new_object(radicale_item.Item(collection_path=collection_path, text=text))

    return make


def new_object(item: radicale_item.Item) -> NewObject:
    """The row values of a Radicale item (prepared by Radicale on upload),
    with its occurrences as Radicale's filter finds them in the text as
    stored (:func:`store_occurrences.of_item`)."""
    start, end = item.time_range
    text = item.serialize()
    return NewObject(
        uid=item.uid,
        etag=item.etag,
        name=item.name,
        component=item.component_name,
        first_occurrence=start,
        last_occurrence=end,
        text=text,
        occurrences=store_occurrences.of_item(item, item.component_name),
    )


class Collection(storage.BaseCollection):
    """A collection at one path; the root ("") has no row and holds nothing."""

    def __init__(self, storage_: Storage, path: str, instance: Instance | None) -> None:
        self._storage = storage_
        self._path = path
        self._instance = instance
        self._props: dict[str, str] = json.loads(instance.props_json) if instance else {}
        # The calendar's revision as read with the collection, so a PROPFIND
        # answers ctag and sync-token of the same snapshot as its members
        # (Radicale renders properties after it releases the lock). None
        # after a write through this object: read again when asked.
        self._state: CalendarState | None = instance.state if instance else None
        self._props_modified = instance.modified if instance else 0.0

    @property
    def path(self) -> str:
        return self._path

    @property
    def _calendar_id(self) -> int | None:
        return self._instance.calendar_id if self._instance else None

    @functools.cached_property
    def _hidden(self) -> Callable[[str, int, int], bool] | None:
        """For a recipient's ``availability-D``: which events their view
        leaves out (busy time that is their own booking). Read once per
        request: the collection object lives for one request."""
        if self._instance is None:
            return None
        found = desk_views.availability_path(self._path)
        if found is None:
            return None
        with self._storage.reading() as conn:
            return self._storage.desk.hidden_for(conn, *found)

    def _visible(self, obj: StoredObject) -> bool:
        hidden = self._hidden
        return hidden is None or not hidden(obj.href, obj.first_occurrence, obj.last_occurrence)

    @property
    def _bookings(self) -> BookingsCalendar | None:
        """This collection as a recipient's bookings calendar, if it is one."""
        if self._instance is None:
            return None
        return bookings_calendar(self._path, self._instance.calendar_id)

    def _current_state(self) -> CalendarState | None:
        if self._state is None and self._instance is not None:
            with self._storage.reading() as conn:
                self._state = store_collections.calendar_state(conn, self._instance.calendar_id)
        return self._state

    def _check_component(self, item: radicale_item.Item) -> None:
        """RFC 4791 5.3.2.1: only the calendar's supported components go in."""
        allowed = self._props.get("C:supported-calendar-component-set")
        if not allowed or not item.component_name:
            return
        if item.component_name.upper() not in {c.strip().upper() for c in allowed.split(",")}:
            raise Refusal(
                "{urn:ietf:params:xml:ns:caldav}supported-calendar-component",
                f"this calendar holds only {allowed.replace(',', ', ')}, "
                f"not {item.component_name}",
            )

    def _item(self, obj: StoredObject) -> radicale_item.Item:
        return radicale_item.Item(
            collection=self,
            href=obj.href,
            last_modified=_http_date(obj.modified),
            text=obj.text,
            etag=obj.etag,
            uid=obj.uid,
            name=obj.name,
            component_name=obj.component,
            time_range=(obj.first_occurrence, obj.last_occurrence),
        )

    # -- reading ---------------------------------------------------------

    def get_multi(self, hrefs: Iterable[str]) -> Iterator[tuple[str, radicale_item.Item | None]]:
        hrefs = list(hrefs)
        if self._calendar_id is None:
            for href in hrefs:
                yield href, None
            return
        with self._storage.reading() as conn:
            found = store_objects.get_objects(conn, self._calendar_id, hrefs)
        for href in hrefs:
            obj = found.get(href)
            yield href, self._item(obj) if obj is not None and self._visible(obj) else None

    def get_all(self) -> Iterator[radicale_item.Item]:
        """Read and decrypted a page (``GET_ALL_PAGE``) at a time: reading
        the whole calendar first held every decrypted text of a 10,000-event
        calendar before the first item was used. Every page is read in one
        snapshot (:meth:`Database.snapshot`: the request's, or, in a GET,
        whose reads are single statements, one of their own); pages follow
        by href, the order Radicale got them in. A GET's ETag, read with the
        collection before, is never newer than the members it answers."""
        calendar_id = self._calendar_id
        if calendar_id is None:
            return
        after: str | None = None
        with self._storage.db.snapshot() as conn:
            while True:
                page = store_objects.objects_page(conn, calendar_id, after, GET_ALL_PAGE)
                for obj in page:
                    if self._visible(obj):
                        yield self._item(obj)
                if len(page) < GET_ALL_PAGE:
                    return
                after = page[-1].href

    def member_listing(self) -> Generator[tuple[str, str, str, str, str], None, None] | None:
        """(href, etag, name, component, last modified) of the members, as
        :meth:`get_all` would yield them as items, read from the index
        columns alone (no decryption, no items): for a PROPFIND that asks
        only for what these answer (``servicehop_caldav.propfind``).

        One member at a time, read when the caller takes it: consume or
        close it within the lock the collection was discovered in (the
        request's transaction).

        None where the listing would differ from what ``discover`` yields
        at depth 1: a view whose events are hidden per reader, and a
        collection with collections inside (they come after the items)."""
        if self._calendar_id is None or self._hidden is not None:
            return None
        with self._storage.reading() as conn:
            if store_collections.child_instances(conn, self._path):
                return None
        return self._member_entries(self._calendar_id)

    def _member_entries(self, calendar_id: int) -> Generator[tuple[str, str, str, str, str], None, None]:
        dates: dict[int, str] = {}  # one strftime per second, not per row
        with self._storage.reading() as conn, closing(store_objects.index_listing(conn, calendar_id)) as rows:
            for href, etag, name, component, modified in rows:
                second = int(modified)
                date = dates.get(second)
                if date is None:
                    date = dates[second] = _http_date(second)
                yield href, etag, name, component, date

    def get_filtered(
        self, filters: Iterable[ET.Element]
    ) -> Iterator[tuple[radicale_item.Item, bool]]:
        """Only the rows whose occurrence range can match reach Radicale.

        A plain time-range on one component is answered exactly here from
        the recorded occurrences, so Radicale neither parses nor expands the
        recurring events that enclose the range."""
        if not self.tag or self._calendar_id is None:
            return
        tag, start, end, simple = radicale_filter.simplify_prefilters(filters, self.tag)
        if simple and tag in store_occurrences.COMPONENTS:
            with self._storage.reading() as conn:
                matching = list(
                    store_objects.objects_matching_range(conn, self._calendar_id, tag, start, end)
                )
            for obj, matched in matching:
                if self._visible(obj):
                    yield self._item(obj), matched
            return
        with self._storage.reading() as conn:
            objects = list(
                store_objects.objects_in_range(conn, self._calendar_id, tag, start, end)
            )
        for obj in objects:
            if not self._visible(obj):
                continue
            item = self._item(obj)
            istart, iend = obj.first_occurrence, obj.last_occurrence
            # The same "fully matched" rule as radicale's BaseCollection.
            yield item, simple and (start <= istart or iend <= end)

    def has_uid(self, uid: str) -> bool:
        if self._calendar_id is None:
            return False
        with self._storage.reading() as conn:
            bookings = self._bookings
            if bookings is not None:  # with the desk's check of the department
                return uid_in_calendar(conn, bookings, uid)
            return store_objects.has_uid(conn, self._calendar_id, uid)

    def sync(self, old_token: str = "") -> tuple[str, Iterable[str]]:
        state = self._current_state()
        if state is None:
            if old_token:
                raise ValueError("the root collection has no sync tokens")
            return store_sync.TOKEN_PREFIX + "root", ()
        token = store_sync.make_token(state)
        if not old_token:
            # Lazy: a PROPFIND asks for the token only and never iterates.
            return token, _LazyHrefs(self._storage, state.calendar_id, self._hidden)
        since = store_sync.token_revision(state, old_token)
        if since == state.revision:
            return token, ()
        with self._storage.reading() as conn:
            return token, store_sync.changed_hrefs(conn, state.calendar_id, since, state.revision)

    @property
    def etag(self) -> str:
        digest = sha256()
        state = self._current_state()
        if state is not None:
            digest.update(f"{state.sync_salt}-{state.revision}\0".encode())
        digest.update(store_collections.props_to_json(self._props).encode())
        return f'"{digest.hexdigest()}"'

    @property
    def last_modified(self) -> str:
        state = self._current_state()
        if state is None:
            return _http_date(0)
        return _http_date(max(state.modified, self._props_modified))

    @overload
    def get_meta(self, key: None = None) -> Mapping[str, str]: ...

    @overload
    def get_meta(self, key: str) -> str | None: ...

    def get_meta(self, key: str | None = None) -> Mapping[str, str] | str | None:
        return dict(self._props) if key is None else self._props.get(key)

    # -- writing ---------------------------------------------------------

    def set_meta(self, props: Mapping[str, str]) -> None:
        if self._instance is None:
            raise ValueError("the root collection has no properties")
        props = radicale_item.check_and_sanitize_props(dict(props))
        with self._storage.writing() as conn:
            store_collections.set_props(
                conn, self._instance.id, self._instance.calendar_id, props
            )
        self._props = dict(props)
        self._props_modified = time.time()
        self._state = None

    def upload(
        self, href: str, item: radicale_item.Item
    ) -> tuple[radicale_item.Item, radicale_item.Item | None]:
        if not pathutils.is_safe_path_component(href):
            raise pathutils.UnsafePathError(href)
        if self._calendar_id is None:
            raise ValueError("cannot store items in the root collection")
        self._check_component(item)
        bookings = self._bookings
        stored: StoredObject | None
        refused: Refusal | None = None
        with self._storage.writing() as conn:
            old = store_objects.get_object(conn, self._calendar_id, href)
            if bookings is None:
                stored = store_objects.put_object(
                    conn, self._calendar_id, href, new_object(item), replacing=old is not None
                )
                self._opening_changed(conn, old, stored)
            else:
                outcome = self._storage.desk.put(
                    conn, bookings, href, new_object(item), object_of_text(self._path)
                )
                stored, refused = outcome.stored, outcome.refusal
                if outcome.rewritten:
                    rewritten.mark()
        self._state = None
        # Raised after the savepoint: the decision's audit entry is kept.
        if refused is not None:
            raise refused
        assert stored is not None
        return self._item(stored), self._item(old) if old is not None else None

    def delete(self, href: str | None = None) -> None:
        with self._storage.writing() as conn:
            if href is None:
                if self._instance is None:
                    raise ValueError("the root collection cannot be deleted")
                store_collections.delete_instance_tree(conn, self._path)
                return
            if self._calendar_id is None:
                raise storage.ComponentNotFoundError(href)
            bookings = self._bookings
            if bookings is not None:
                self._storage.desk.delete(conn, bookings, href)
            department_id = self._opening_department(conn)
            old = store_objects.get_object(conn, self._calendar_id, href) if department_id else None
            if not store_objects.delete_object(conn, self._calendar_id, href):
                raise storage.ComponentNotFoundError(href)
            self._opening_changed(conn, old)
        self._state = None

    def _opening_department(self, conn: Connection) -> str | None:
        """The department whose opening calendar this is, if it is one."""
        if self._instance is None:
            return None
        return opening_calendar(conn, self._path, self._instance.calendar_id)

    def _opening_changed(self, conn: Connection, *objects: NewObject | None) -> None:
        """After a write into a department's opening calendar: the desk
        computes again the availability of the time ``objects`` (the event
        before and after) cover and decides the bookings there again."""
        department_id = self._opening_department(conn)
        if department_id is not None:
            spans = [(o.first_occurrence, o.last_occurrence) for o in objects if o is not None]
            self._storage.desk.opening_changed(conn, department_id, spans)


class _LazyHrefs:
    """All hrefs of a calendar, read only if someone iterates them."""

    def __init__(
        self, storage_: Storage, calendar_id: int, hidden: Callable[[str, int, int], bool] | None
    ) -> None:
        self._storage = storage_
        self._calendar_id = calendar_id
        self._hidden = hidden

    def __iter__(self) -> Iterator[str]:
        with self._storage.reading() as conn:
            if self._hidden is None:
                hrefs = store_objects.all_hrefs(conn, self._calendar_id)
            else:
                # An initial sync lists only what this reader can see.
                hidden = self._hidden
                spans = store_objects.spans_in_range(conn, self._calendar_id, -(2**62), 2**62)
                hrefs = [href for href, first, last in spans if not hidden(href, first, last)]
        return iter(hrefs)


@types.contextmanager
def _null_child_context(path: str, href: str | None) -> Iterator[None]:
    yield


class Storage(storage.BaseStorage):
    """Radicale storage on SQL; a drop-in for ``multifilesystem``."""

    # Paths are strings in a table: every name a client can send is fine.
    _is_collision_free = True
    _supports_unicode = True
    _supports_trailing_whitespace = True
    _supports_problematic_chars = True

    def __init__(self, configuration: config.Configuration) -> None:
        url = database_url_of(configuration)
        configuration = configuration.copy(PLUGIN_CONFIG_SCHEMA)
        super().__init__(configuration)
        if url.startswith("sqlite:///"):
            os.makedirs(os.path.dirname(url[len("sqlite:///"):]) or ".", exist_ok=True)
        self._max_vevent_rrule_occurrence = configuration.get(
            "server", "max_vevent_rrule_occurrence"
        )
        # The key file first: a missing or unreadable one stops the start
        # before the database is even opened.
        key_file = configuration.get("storage", "key_file")
        keyring = Keyring.from_keys(load_keys(Path(key_file))) if key_file else None
        settings_file = configuration.get("storage", "settings_file")
        self.desk = Desk(
            SettingsFile(Path(settings_file) if settings_file else None), object_of_text("servicehop")
        )
        self.db = Database.shared(url)
        found = ensure_schema(self.db)
        bind_keyring(self.db, keyring)
        logger.info(
            "servicehop storage on %s (schema found at version %d)", self.db.backend, found
        )
        interval = configuration.get("storage", "upkeep_interval")
        if interval >= 0:
            # Occurrences of objects written before version 5 (or without
            # parsing them): the upgrade cannot read encrypted data, this
            # can. Not in tools that only read (upkeep_interval -1).
            with self.db.transaction("w") as conn:
                filled = store_occurrences.fill(conn)
            if filled:
                logger.info("servicehop storage: occurrences recorded for %d objects", filled)
            Upkeep.start_once(self.db, self.desk, interval)

    # -- transactions ----------------------------------------------------

    @types.contextmanager
    def acquire_lock(self, mode: str, user: str = "", *args: Any, **kwargs: Any) -> Iterator[None]:
        """One request, one transaction: commit on success, roll back on error."""
        with self.db.transaction(mode):
            yield

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """The request's connection, or a short snapshot when Radicale reads
        after releasing its lock (it may, for collection properties)."""
        conn = self.db.current()
        if conn is not None:
            yield conn
            return
        with self.db.transaction("r") as conn:
            yield conn

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """One write of the request's write transaction, undone as a whole
        if it fails (:meth:`Database.write_block`)."""
        with self.db.write_block() as conn:
            yield conn

    # -- discovery -------------------------------------------------------

    def discover(
        self,
        path: str,
        depth: str = "0",
        child_context_manager: Callable[[str, str | None], AbstractContextManager[None]]
        | None = None,
        user_groups: set[str] = set(),  # noqa: B006 - Radicale's signature
    ) -> Iterator[types.CollectionOrItem]:
        if child_context_manager is None:
            child_context_manager = _null_child_context
        sane_path = pathutils.strip_path(path)
        with self.reading() as conn:
            if sane_path:
                parent_path, href = posixpath.split(sane_path)
                if parent_path:
                    # The path, its parent and the parent's member of that
                    # name in one query: a GET of an item needs all three;
                    # a write reads what it will need too (store.write_ahead).
                    if self.db.in_write():
                        instance, parent, obj = write_ahead.get_path_and_member(
                            conn, sane_path, parent_path, href, department_named(parent_path),
                            recipient_named_in(parent_path))
                    else:
                        instance, parent, obj = store_objects.get_path_and_member(
                            conn, sane_path, parent_path, href)
                else:
                    instance = store_collections.get_instance(conn, sane_path)
                    parent = obj = None
                if instance is None:
                    if parent is not None and obj is not None:
                        yield Collection(self, parent_path, parent)._item(obj)
                    return
            else:
                instance = None
            collection = Collection(self, sane_path, instance)
            yield collection
            if depth == "0":
                return
            for item in collection.get_all():
                with child_context_manager(sane_path, item.href):
                    yield item
            for child in store_collections.child_instances(conn, sane_path):
                with child_context_manager(child.path, None):
                    yield Collection(self, child.path, child)

    # -- collections and moves -------------------------------------------

    def create_collection(
        self,
        href: str,
        items: Iterable[radicale_item.Item] | None = None,
        props: Mapping[str, str] | None = None,
    ) -> tuple[Collection, dict[str, radicale_item.Item], list[str]]:
        path = pathutils.strip_path(href)
        if not path:
            raise ValueError("the root collection always exists")
        with self.writing() as conn:
            existing = store_collections.get_instance(conn, path)
            if not props:
                instance = existing or store_collections.create_instance(conn, path, {})
                return Collection(self, path, instance), {}, []
            props = radicale_item.check_and_sanitize_props(dict(props))
            suffix = {"VCALENDAR": ".ics", "VADDRESSBOOK": ".vcf"}.get(props.get("tag", ""))
            old_objects: dict[str, StoredObject] = {}
            if existing is not None:
                old_objects = {
                    obj.href: obj
                    for obj in store_objects.all_objects(conn, existing.calendar_id)
                }
                old_collection = Collection(self, path, existing)
                store_collections.delete_instance_tree(conn, path)
            instance = store_collections.create_instance(conn, path, props)
            collection = Collection(self, path, instance)
            replaced: dict[str, radicale_item.Item] = {}
            new_hrefs: list[str] = []
            if suffix is not None and items is not None:
                taken: set[str] = set()
                for item in items:
                    item_href = _free_href(item.uid, suffix, taken)
                    taken.add(item_href)
                    store_objects.put_object(conn, instance.calendar_id, item_href, new_object(item))
                    if item_href in old_objects:
                        replaced[item_href] = old_collection._item(old_objects[item_href])
                    else:
                        new_hrefs.append(item_href)
            return collection, replaced, new_hrefs

    def move(
        self, item: radicale_item.Item, to_collection: storage.BaseCollection, to_href: str
    ) -> None:
        if not pathutils.is_safe_path_component(to_href):
            raise pathutils.UnsafePathError(to_href)
        source = item.collection
        assert isinstance(source, Collection) and isinstance(to_collection, Collection)
        assert item.href is not None
        if source._calendar_id is None or to_collection._calendar_id is None:
            raise ValueError("cannot move items into or out of the root collection")
        if source._calendar_id == to_collection._calendar_id and item.href == to_href:
            return
        to_collection._check_component(item)
        source_bookings, target_bookings = source._bookings, to_collection._bookings
        if (source_bookings or target_bookings) and source._calendar_id != to_collection._calendar_id:
            raise Refusal(
                f"{{{NAMESPACE}}}booking-move",
                "a booking stays in its bookings calendar: change its times instead of moving it",
            )
        with self.writing() as conn:
            if not store_objects.delete_object(conn, source._calendar_id, item.href):
                raise storage.ComponentNotFoundError(item.href)
            store_objects.put_object(conn, to_collection._calendar_id, to_href, new_object(item))
            if source_bookings is not None:
                self.desk.rename(conn, source_bookings, item.href, to_href)
            moved = new_object(item)
            source._opening_changed(conn, moved)
            if to_collection._calendar_id != source._calendar_id:
                to_collection._opening_changed(conn, moved)
        source._state = to_collection._state = None

    def verify(self) -> bool:
        return verify_database(self.db, self._max_vevent_rrule_occurrence)


class Upkeep:
    """The desk's periodic pass (:meth:`Desk.upkeep`) in a daemon thread:
    one at start, then every ``interval`` seconds, each in its own write
    transaction, until the database is disposed. One per database in a
    process (Radicale builds more than one storage object); several
    processes on one database may all run it: a pass that finds everything
    current writes nothing."""

    _running: set[int] = set()  # id() of the databases with an upkeep thread
    _lock = threading.Lock()

    def __init__(self, db: Database, desk: Desk, interval: int) -> None:
        self._db = db
        self._desk = desk
        self._interval = interval

    @classmethod
    def start_once(cls, db: Database, desk: Desk, interval: int) -> None:
        with cls._lock:
            if id(db) in cls._running:
                return
            cls._running.add(id(db))
        upkeep = cls(db, desk, interval)
        threading.Thread(target=upkeep._run, name="servicehop-upkeep", daemon=True).start()

    def run_once(self) -> int:
        with self._db.transaction("w") as conn:
            return self._desk.upkeep(conn)

    def _run(self) -> None:
        try:
            while not self._db.closed.is_set():
                try:
                    changes = self.run_once()
                    if changes:
                        logger.info("servicehop upkeep: %d view events written", changes)
                except Exception as e:
                    if self._db.closed.is_set():
                        return
                    # The type, not the message: a database error's message
                    # quotes its SQL parameters (usernames, hrefs, UIDs).
                    # The traceback follows at debug level (backtrace_on_debug).
                    logger.error("servicehop upkeep failed (%s); trying again at the next pass",
                                 type(e).__name__, exc_info=True)
                if self._interval <= 0 or self._db.closed.wait(self._interval):
                    return
        finally:
            with self._lock:
                self._running.discard(id(self._db))


def _addressable(href: str) -> bool:
    """A name Radicale's own request-path check will let a client use."""
    return pathutils.is_safe_filesystem_path_component(href) and not any(
        c in PATH_BLACKLIST_MINIMAL or unicodedata.category(c)[0] == "C" for c in href
    )


def _free_href(uid: str, suffix: str, taken: set[str]) -> str:
    """The href Radicale's own storage would give an item of a whole-collection PUT."""
    for href in (
        uid if uid.lower().endswith(suffix.lower()) else uid + suffix,
        radicale_item.get_etag(uid).strip('"') + suffix,
    ):
        if _addressable(href) and href not in taken:
            return href
    return radicale_item.find_available_uid(lambda h: h in taken, suffix)
