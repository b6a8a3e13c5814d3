"""Calendar objects: one row per resource, found by href, UID or time range."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import (
    BindParameter,
    Connection,
    Select,
    Text,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY

from servicehop_caldav.db import memo
from servicehop_caldav.db.direct import Direct
from servicehop_caldav.db.schema import (
    OP_ADDED,
    OP_DELETED,
    OP_MODIFIED,
    calendar_instances,
    calendar_objects,
    check_key,
)
from servicehop_caldav.store import codec, one_trip
from servicehop_caldav.store import collections as store_collections
from servicehop_caldav.store import occurrences as store_occurrences
from servicehop_caldav.store.records import Instance, NewObject, StoredObject
from servicehop_caldav.store.sync import record_change

_o = calendar_objects.c
_COLUMNS = (
    _o.href,
    _o.uid,
    _o.etag,
    _o.name,
    _o.component,
    _o.first_occurrence,
    _o.last_occurrence,
    _o.modified,
    _o.key_id,
    _o.data,
)
# Bound the IN lists a multiget sends, well below every backend's limit.
_IN_CHUNK = 500


_WIDTH = len(_COLUMNS)


def _stored(row: Any, decode: Callable[[bytes, int | None], str], at: int = 0) -> StoredObject:
    """The object of a row holding :data:`_COLUMNS` from column ``at`` on,
    its data decrypted (``decode``: :func:`codec.decoder` of the connection).
    Read by position: a Row's attributes by name cost about 0.6 µs each,
    some 30 times its unpacking, which a 545-event REPORT felt (3 ms)."""
    href, uid, etag, name, component, first, last, modified, key_id, data = row[at:at + _WIDTH]
    return StoredObject(
        href=href, uid=uid, etag=etag, name=name, component=component,
        first_occurrence=first, last_occurrence=last, modified=modified, text=decode(data, key_id),
    )


def _rows(conn: Connection, query: Select, params: dict[str, object] | None = None) -> Iterator[StoredObject]:
    decode = codec.decoder(conn)
    for row in conn.execute(query, params or {}):
        yield _stored(row, decode)


# Built once: SQLAlchemy memoizes a statement's cache key on the statement,
# so the lookups every request makes skip building and keying it again.
_BY_HREF = select(*_COLUMNS).where(_o.calendar_id == bindparam("calendar_id"), _o.href == bindparam("href"))


# Memo kind (servicehop_caldav.db.memo): (calendar_id, href) -> StoredObject or
# None, as read in this transaction. Radicale's PUT discovers the href, then
# the plugin reads the old object again to upload; put_object and
# delete_object forget the href they write.
_MEMO = "objects"


# Memo kind: (calendar_id, href) -> the row of an object read along with
# something else and not decrypted yet (a tuple of _COLUMNS), or None.
_UNREAD = "objects_unread"


def get_object(conn: Connection, calendar_id: int, href: str) -> StoredObject | None:
    def read() -> StoredObject | None:
        unread = memo.memo(conn, _UNREAD)
        if (calendar_id, href) in unread:
            row = unread.pop((calendar_id, href))
            return _stored(row, codec.decoder(conn)) if row is not None else None
        return next(_rows(conn, _BY_HREF, {"calendar_id": calendar_id, "href": href}), None)

    return memo.once(conn, _MEMO, (calendar_id, href), read)


def _forget(conn: Connection, calendar_id: int, href: str) -> None:
    """Drop what this transaction read at ``href`` (it is being written),
    every UID it found or missed (the write may add or take one) and every
    range's etags it was told of."""
    memo.memo(conn, _MEMO).pop((calendar_id, href), None)
    memo.memo(conn, _UNREAD).pop((calendar_id, href), None)
    memo.forget(conn, _UIDS, _ETAGS)


def remember_absent(conn: Connection, calendar_id: int, href: str) -> None:
    """Note that there is no object at ``href`` (a name the caller has just
    made up from a UUID), so that this transaction does not look for one."""
    memo.memo(conn, _MEMO)[(calendar_id, href)] = None


_i = calendar_instances.c
_MEMBER_PREFIX = "member_"
_PATH = [c.name for c in store_collections.INSTANCE_COLUMNS].index("path")
_MEMBER_AT = len(store_collections.INSTANCE_COLUMNS)  # the member's _COLUMNS follow
# The instance at "path", or else the one at "parent" with its member "href"
# (up to two rows): what a request path names.
PATH_PARENT_AND_MEMBER = (
    select(*store_collections.INSTANCE_COLUMNS,
           *(c.label(_MEMBER_PREFIX + c.name) for c in _COLUMNS))
    .select_from(store_collections.INSTANCES_WITH_CALENDARS.outerjoin(calendar_objects, and_(
        _i.path == bindparam("parent"), _o.calendar_id == _i.calendar_id, _o.href == bindparam("href"))))
    .where(or_(_i.path == bindparam("path"), _i.path == bindparam("parent")))
)


def get_path_and_member(
    conn: Connection, path: str, parent: str, href: str,
) -> tuple[Instance | None, Instance | None, StoredObject | None]:
    """What a request path names, in one statement where Radicale's lookups
    took two: (the instance at ``path``, or else the instance at ``parent``
    and its member ``href``), None where there is nothing. Remembered for
    the transaction as the lookups it stands for remember them."""
    seen, at_path = store_collections.known(conn, path)
    if at_path is not None:
        return at_path, None, None
    seen_parent, at_parent = store_collections.known(conn, parent)
    if not (seen and seen_parent):
        at_path, at_parent = remember_path_and_member(conn, path, parent, href, conn.execute(
            PATH_PARENT_AND_MEMBER, {"path": path, "parent": parent, "href": href}).all())
        if at_path is not None:
            return at_path, None, None
    member = get_object(conn, at_parent.calendar_id, href) if at_parent is not None else None
    return None, at_parent, member


def remember_path_and_member(
    conn: Connection, path: str, parent: str, href: str, rows: Sequence[Any], at: int = 0,
) -> tuple[Instance | None, Instance | None]:
    """Note for the transaction what :data:`PATH_PARENT_AND_MEMBER` read (its
    columns from ``at`` on, in each of ``rows``; rows whose path is NULL,
    from an outer join, are none). The member stays encrypted until
    :func:`get_object` asks for it: the login's statement reads it before
    the password is checked (servicehop_caldav.store.read_ahead). Returns
    (the instance at ``path``, the instance at ``parent``)."""
    found = {row[at + _PATH]: row for row in rows if row[at + _PATH] is not None}
    at_path = store_collections.instance_of(found[path], at) if path in found else None
    at_parent = store_collections.instance_of(found[parent], at) if parent in found else None
    store_collections.remember(conn, path, at_path)
    store_collections.remember(conn, parent, at_parent)
    if at_path is None and at_parent is not None:
        row = found[parent]
        member = row[at + _MEMBER_AT:at + _MEMBER_AT + _WIDTH] if row[at + _MEMBER_AT] is not None else None
        memo.memo(conn, _UNREAD)[(at_parent.calendar_id, href)] = member
    return at_path, at_parent


# PostgreSQL: the hrefs in one array parameter, each looked up by the
# (calendar_id, href) index. A multiget's IN list of as many parameters is
# prepared once it repeats (psycopg's second run), and PostgreSQL's generic
# plan for it may read the calendar's every row by calendar_id and test
# each against the list: a 100-href multiget cost in proportion to the
# calendar (seen: 1.5 ms, then 4 ms at 1,000 events).
_WANTED = func.unnest(bindparam("hrefs", type_=ARRAY(Text))).table_valued("href").render_derived("wanted")
_BY_HREFS = select(*_COLUMNS).select_from(_WANTED.join(calendar_objects, and_(
    _o.calendar_id == bindparam("calendar_id"), _o.href == _WANTED.c.href)))


def get_objects(conn: Connection, calendar_id: int, hrefs: Iterable[str]) -> dict[str, StoredObject]:
    wanted = list(dict.fromkeys(hrefs))
    found: dict[str, StoredObject] = {}
    if conn.dialect.name == "postgresql":
        params: dict[str, object] = {"calendar_id": calendar_id, "hrefs": wanted}
        return {obj.href: obj for obj in _rows(conn, _BY_HREFS, params)} if wanted else found
    for i in range(0, len(wanted), _IN_CHUNK):
        query = select(*_COLUMNS).where(
            _o.calendar_id == calendar_id, _o.href.in_(wanted[i : i + _IN_CHUNK])
        )
        found.update((obj.href, obj) for obj in _rows(conn, query))
    return found


def all_objects(conn: Connection, calendar_id: int) -> Iterator[StoredObject]:
    return _rows(conn, select(*_COLUMNS).where(_o.calendar_id == calendar_id).order_by(_o.href))


def objects_page(conn: Connection, calendar_id: int, after: str | None, limit: int) -> list[StoredObject]:
    """Up to ``limit`` objects in href order, those after ``after`` (None:
    from the first): :func:`all_objects` a page at a time, so a reader of a
    whole calendar holds one page of decrypted texts, not all of them, and
    no cursor stays open between pages (psycopg would fetch a whole result
    anyway)."""
    query = select(*_COLUMNS).where(_o.calendar_id == calendar_id)
    if after is not None:
        query = query.where(_o.href > after)
    return list(_rows(conn, query.order_by(_o.href).limit(limit)))


def all_hrefs(conn: Connection, calendar_id: int) -> list[str]:
    return list(
        conn.execute(select(_o.href).where(_o.calendar_id == calendar_id).order_by(_o.href)).scalars()
    )


_INDEX_LISTING = Direct(select(_o.href, _o.etag, _o.name, _o.component, _o.modified).where(
    _o.calendar_id == bindparam("calendar_id")
).order_by(_o.href))


def index_listing(
    conn: Connection, calendar_id: int
) -> Generator[tuple[str, str, str, str, float], None, None]:
    """(href, etag, name, component, modified) of every object, in the order
    of :func:`all_objects`, without reading their data: what a PROPFIND of
    the members' etags and content types needs (no decryption).

    Run now, its rows read from the driver a batch at a time
    (:meth:`Direct.each`): the caller builds its answer as they come, so
    10,000 of them are never held as a list, and none is taken through
    SQLAlchemy's result one by one (a sixth of a 10,000-member PROPFIND
    on PostgreSQL, a twelfth on SQLite).
    Consume or close it before ``conn``'s transaction ends."""
    return _INDEX_LISTING.each(conn, {"calendar_id": calendar_id})


_ETAGS_IN_RANGE = select(_o.href, _o.etag).where(
    _o.calendar_id == bindparam("calendar_id"),
    _o.first_occurrence < bindparam("end"), _o.last_occurrence > bindparam("start"),
).order_by(_o.href)
# Built once, by component or not (None): every booking decision asks
# for the opening calendar's objects, several times.
_ETAGS_OF: dict[bool, Select[tuple[str, str]]] = {
    False: _ETAGS_IN_RANGE, True: _ETAGS_IN_RANGE.where(_o.component == bindparam("component")),
}
# Memo kind: (calendar_id, component, start, end) -> etags_in_range's answer,
# read along with another statement (store.decision_ahead); a write of any
# object forgets them all.
_ETAGS = "etags_in_range"


def etags_statement(component: bool) -> Select[tuple[str, str]]:
    """:func:`etags_in_range`'s statement (parameters ``calendar_id``,
    ``start``, ``end`` and, with ``component``, ``component``), for another
    module's statement to read along."""
    return _ETAGS_OF[component]


def remember_etags(
    conn: Connection, calendar_id: int, component: str | None, start: int, end: int,
    found: Sequence[tuple[str, str]],
) -> None:
    """Note what another module's statement read of :func:`etags_in_range`."""
    memo.memo(conn, _ETAGS)[(calendar_id, component, start, end)] = sorted(found)


def etags_in_range(
    conn: Connection, calendar_id: int, component: str | None, start: int, end: int
) -> list[tuple[str, str]]:
    """(href, etag) of the objects whose time range overlaps [start, end),
    without reading their data: enough to tell whether a kept result of
    reading them is still current."""
    known = memo.memo(conn, _ETAGS).get((calendar_id, component, start, end))
    if known is not None:
        return list(known)
    query = _ETAGS_OF[component is not None]
    params = {"calendar_id": calendar_id, "start": start, "end": end, "component": component}
    return [(href, etag) for href, etag in conn.execute(query, params)]


_SPANS_IN_RANGE = select(_o.href, _o.first_occurrence, _o.last_occurrence).where(
    _o.calendar_id == bindparam("calendar_id"),
    _o.first_occurrence < bindparam("end"), _o.last_occurrence > bindparam("start"),
).order_by(_o.href)


def spans_in_range(conn: Connection, calendar_id: int, start: int, end: int) -> list[tuple[str, int, int]]:
    """(href, first, last) of the objects whose time range overlaps [start, end),
    without reading their data: enough to compare computed views by href."""
    rows = conn.execute(_SPANS_IN_RANGE, {"calendar_id": calendar_id, "start": start, "end": end})
    return [(href, int(first), int(last)) for href, first, last in rows]


def objects_in_range(
    conn: Connection, calendar_id: int, component: str | None, start: int, end: int
) -> Iterator[StoredObject]:
    """Objects whose enclosing time range overlaps [start, end).

    The same test Radicale's prefilter applies to every item, answered here
    by the (calendar_id, first_occurrence, last_occurrence) index.
    """
    query = select(*_COLUMNS).where(
        _o.calendar_id == calendar_id,
        _o.first_occurrence < end,
        _o.last_occurrence > start,
    )
    if component is not None:
        query = query.where(_o.component == component)
    return _rows(conn, query.order_by(_o.href))


def objects_matching_range(
    conn: Connection, calendar_id: int, component: str, start: int, end: int
) -> Iterator[tuple[StoredObject, bool]]:
    """The objects a time-range filter on ``component`` over [start, end)
    can match, each with whether it certainly does (Radicale's "fully
    matched": it need not test it again).

    An object whose first/last occurrence encloses the range (a recurring
    event that began before it and goes on after it) is decided here by its
    recorded occurrences (:mod:`servicehop_caldav.store.occurrences`) when
    they reach past ``end``: a match comes back fully matched, a miss not
    at all (and is never decoded). Objects without them come back not
    fully matched, for Radicale's filter, as from :func:`objects_in_range`.
    """
    decode = codec.decoder(conn)
    params = {"calendar_id": calendar_id, "component": component, "start": start, "end": end}
    for row in conn.execute(_MATCHING, params):
        obj = _stored(row, decode)
        yield obj, _matched(obj.first_occurrence, obj.last_occurrence, row[_WIDTH], obj.name, start, end)


def matches_in_range(
    conn: Connection, calendar_id: int, component: str, start: int, end: int, with_text: bool = True
) -> Iterator[tuple[str, str, str, str, int, int, str | None, bool]]:
    """What :func:`objects_matching_range` finds, as the values a REPORT
    writes: (href, etag, name, component, first occurrence, last
    occurrence, text, certainly matched). No StoredObject per row (building
    and dropping one was a tenth of a 545-event week query), and without
    ``with_text`` nothing decrypted (text None). Its rows are read from
    the driver a batch at a time (:meth:`Direct.each`), not through
    SQLAlchemy's result one by one (0.7 to 0.9 ms of a 545-event week
    query on PostgreSQL, 1.1 ms on SQLite)."""
    decode = codec.decoder(conn)
    params = {"calendar_id": calendar_id, "component": component, "start": start, "end": end}
    for href, _uid, etag, name, kind, first, last, _modified, key_id, data, until in _MATCHING_DIRECT.each(
        conn, params
    ):
        text = decode(data, key_id) if with_text else None
        yield href, etag, name, kind, first, last, text, _matched(first, last, until, name, start, end)


def _matched(first: int, last: int, until: int | None, name: str, start: int, end: int) -> bool:
    """Whether an object :data:`_MATCHING` found certainly matches
    [start, end): Radicale's "fully matched" rule, or its recorded
    occurrences reach past ``end`` (the statement found one in the range)."""
    fully = start <= first or last <= end
    known = until is not None and until > end
    # Radicale's comp_match also wants the item's name to be VCALENDAR.
    return fully or (known and name == "VCALENDAR")


_START: BindParameter[int] = bindparam("start")
_END: BindParameter[int] = bindparam("end")
_MATCHING = select(*_COLUMNS, _o.occurrences_until).where(  # built once (see _BY_HREF)
    _o.calendar_id == bindparam("calendar_id"),
    _o.first_occurrence < _END,
    _o.last_occurrence > _START,
    _o.component == bindparam("component"),
    or_(
        # Radicale's fully matched rule (BaseCollection.get_filtered).
        _o.first_occurrence >= _START,
        _o.last_occurrence <= _END,
        # Occurrences not known as far as this range: Radicale's filter.
        _o.occurrences_until.is_(None),
        _o.occurrences_until <= _END,
        store_occurrences.exact_match_clause(_START, _END),
    ),
).order_by(_o.href)

_MATCHING_DIRECT = Direct(_MATCHING)


# Whether calendar "calendar_id" holds an object with "uid" (the desk asks it
# together with its own check of a department's bookings calendars).
UID_IN_CALENDAR = exists().where(_o.calendar_id == bindparam("calendar_id"), _o.uid == bindparam("uid"))
_HAS_UID = select(UID_IN_CALENDAR)
# Memo kind: (calendar_id, uid) -> (whether that calendar holds an object
# with uid, whether any other calendar does), read along with something else.
_UIDS = "objects_uids"


def remember_uid(conn: Connection, calendar_id: int, uid: str, here: bool, elsewhere: bool) -> None:
    """Note what a statement read of ``uid``: whether calendar
    ``calendar_id`` holds it (``here``) and whether another does."""
    memo.memo(conn, _UIDS)[(calendar_id, uid)] = (here, elsewhere)


def known_uid(conn: Connection, calendar_id: int, uid: str) -> tuple[bool, bool] | None:
    """What :func:`remember_uid` noted of ``uid`` in this transaction
    (None: nothing; every object write forgets it all)."""
    found: tuple[bool, bool] | None = memo.memo(conn, _UIDS).get((calendar_id, uid))
    return found


def has_uid(conn: Connection, calendar_id: int, uid: str) -> bool:
    known = known_uid(conn, calendar_id, uid)
    if known is not None:
        return known[0]
    return bool(conn.execute(_HAS_UID, {"calendar_id": calendar_id, "uid": uid}).scalar())


# Built once, executed with the row's values as parameters: building
# ``.values(**row)`` per call cost more than running the statement.
_UPDATE = (
    update(calendar_objects)
    .where(_o.calendar_id == bindparam("b_calendar_id"), _o.href == bindparam("b_href"))
    .returning(_o.id)
)
_INSERT = insert(calendar_objects).returning(_o.id)


def put_object(
    conn: Connection, calendar_id: int, href: str, obj: NewObject, replacing: bool | None = None
) -> StoredObject:
    """Insert or replace the object at ``href`` and log the change.

    ``replacing``: False when the caller read, in this transaction, that
    there is no object at ``href``: only the INSERT runs. Otherwise the
    UPDATE, then the INSERT if it found no row."""
    check_key("href", href)
    check_key("UID", obj.uid)
    data, key_id = codec.encode(conn, obj.text)
    now = time.time()
    values = dict(
        uid=obj.uid,
        etag=obj.etag,
        name=obj.name,
        component=obj.component,
        first_occurrence=obj.first_occurrence,
        last_occurrence=obj.last_occurrence,
        size=len(data),
        modified=now,
        key_id=key_id,
        data=data,
        occurrences_until=None if obj.occurrences is None else obj.occurrences.until,
    )
    _forget(conn, calendar_id, href)
    if one_trip.in_one_trip(conn):
        store_collections.forget_instances(conn)
        spans = obj.occurrences.spans if obj.occurrences is not None else ()
        one_trip.put_object(conn, calendar_id, href, values, spans, replacing)
        return StoredObject(**vars(obj), href=href, modified=now)
    object_id = None
    if replacing is not False:
        object_id = conn.execute(
            _UPDATE, {**values, "b_calendar_id": calendar_id, "b_href": href}
        ).scalar_one_or_none()
    updated = object_id is not None
    if object_id is None:
        object_id = conn.execute(
            _INSERT, {**values, "calendar_id": calendar_id, "href": href}
        ).scalar_one()
    store_occurrences.write_spans(conn, object_id, obj.occurrences, replace=updated)
    record_change(conn, calendar_id, href, OP_MODIFIED if updated else OP_ADDED)
    return StoredObject(**vars(obj), href=href, modified=now)


_DELETE = delete(calendar_objects).where(
    _o.calendar_id == bindparam("calendar_id"), _o.href == bindparam("href")
)


def delete_object(conn: Connection, calendar_id: int, href: str) -> bool:
    """Delete the object at ``href``; False if there was none."""
    _forget(conn, calendar_id, href)
    if one_trip.in_one_trip(conn):
        store_collections.forget_instances(conn)
        return one_trip.delete_object(conn, calendar_id, href)
    deleted = conn.execute(_DELETE, {"calendar_id": calendar_id, "href": href}).rowcount
    if deleted:
        record_change(conn, calendar_id, href, OP_DELETED)
    return bool(deleted)
