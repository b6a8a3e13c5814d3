"""REPORTs whose answer is a list of members, written from the rows.

Radicale answers a calendar-query, a sync-collection and a
calendar-multiget by building a full item per result, joining and checking
its path several times, building an ElementTree response per result and
serializing them all: at 10,000 events most of an initial sync and of a
one-week query (545 results) went there, and a sync asking only for etags
decrypted every object for it (Radicale reads the text even for getetag).

Here, as in :mod:`servicehop_caldav.propfind`, Radicale's own code still
writes every byte that is not a result's own value: ``xml_report`` is run on
a stand-in collection that yields one *template* result (and one template
missing href where the answer has 404s), whose href, etag, content type and
calendar data are unique markers. Each real result is that template with its
own values in place of the markers, so property order, 404 propstats,
namespace prefixes, href encoding, the sync-token element and where the 404
responses go are Radicale's. The calendar data is the stored text, as
Radicale serves it (``Item.serialize`` returns the text it was built with),
escaped as ElementTree escapes character data.

Taken only when every result comes out of the storage as Radicale would
take it, without testing a filter:

- calendar-query with a plain time-range (or none) on one component, which
  the plugin decides exactly (``matches_in_range``, the decision of its
  ``get_filtered``): every result it yields must be fully matched;
- sync-collection, initial or from a token the collection accepts (a token
  it refuses is Radicale's 403), without ``DAV:limit``;
- calendar-multiget whose hrefs all name members of the calendar.

The properties are a ``DAV:prop`` of elements without children (no expand,
no partial calendar data), at least one; a calendar of our storage, no
sharing; the request on the calendar itself. The members hidden from a
reader of an availability view are left out as the plugin leaves them out
(its ``_visible``). Everything else, and every refusal, is Radicale's: the
checks below let through only what ``do_REPORT`` would answer with a 207,
using its ``Access``.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import operator
import re
import xml.etree.ElementTree as ET
from collections.abc import Generator, Iterable, Iterator
from http import client
from typing import TYPE_CHECKING, Any, NamedTuple, cast
from urllib.parse import quote, unquote, urlparse

import radicale.item as radicale_item
from radicale import httputils, pathutils, types, xmlutils
from radicale.app import report as radicale_report
from radicale.app.base import Access
from radicale.item import filter as radicale_filter
from radicale.log import logger
from radicale_storage_servicehop import Collection

from servicehop_caldav import answer_body, propfind
from servicehop_caldav.store import objects as store_objects
from servicehop_caldav.store import occurrences as store_occurrences

if TYPE_CHECKING:
    import radicale

_PROP = xmlutils.make_clark("D:prop")
_QUERY = xmlutils.make_clark("C:calendar-query")
_SYNC = xmlutils.make_clark("D:sync-collection")
_MULTIGET = xmlutils.make_clark("C:calendar-multiget")
_HREF_TAG = xmlutils.make_clark("D:href")
_FILTER = xmlutils.make_clark("C:filter")
_CARD_FILTER = xmlutils.make_clark("CR:filter")
_EXPAND = xmlutils.make_clark("C:expand")
_LIMIT = xmlutils.make_clark("D:limit")
# The properties whose value is the object's text in Radicale's xml_report
# (each adds the text's VEVENTs to its max_expand_occurrence count).
_DATA = (xmlutils.make_clark("C:calendar-data"), xmlutils.make_clark("CR:address-data"))
_GETETAG = xmlutils.make_clark("D:getetag")
_GETCONTENTTYPE = xmlutils.make_clark("D:getcontenttype")

# Markers: letters and digits only (quoting and escaping leave them as they
# are), random (no calendar holds them); see propfind.marker.
_HREF = propfind.marker("reporthref")
_MISSING = propfind.marker("reportmissing")
_ETAG = propfind.marker("reportetag")
_TEXT = propfind.marker("reporttext")
_COMPONENT = propfind.marker("reportcomponent")
# A response in the serialized multistatus: DAV: is Radicale's default
# namespace, and no marker or escaped value can hold a "<".
_RESPONSE_OPEN = "<response>"
_RESPONSE_CLOSE = "</response>"


class Row(NamedTuple):
    """What a result's response holds (``text`` None when not asked for)."""

    href: str
    etag: str
    name: str
    component: str
    text: str | None


def enabled(app: radicale.Application) -> bool:
    """Off in tests that compare with Radicale's own answer."""
    return bool(getattr(app, "fast_report", True))


def answer(
    app: radicale.Application, environ: types.WSGIEnviron, base_prefix: str, path: str,
    user: str, user_groups: set[str], request_info: dict[str, Any],
) -> types.WSGIResponse | None:
    """The answer to this REPORT from the rows, or None: Radicale's to give.

    Called where Radicale's ``do_REPORT`` is, after its authentication."""
    if app._sharing._enabled or not enabled(app):
        return None
    # Radicale's first check, before it reads the body: without read rights
    # it refuses (or answers a free-busy query).
    access = Access(app._rights, user, user_groups, path)
    if not access.check("r"):
        return None
    try:
        raw = propfind.read_body(environ)
    except TimeoutError:  # socket.timeout, as Radicale catches it
        logger.debug("Client timed out", exc_info=True)
        return httputils.REQUEST_TIMEOUT
    try:
        xml_content = app._read_xml_request_body(environ, request_info)
    except RuntimeError:
        xml_content = None
    cast(dict[str, Any], environ)["wsgi.input"] = io.BytesIO(raw)  # for Radicale, if it answers
    if xml_content is None or xml_content.tag not in (_QUERY, _SYNC, _MULTIGET):
        return None
    prop = xml_content.find(_PROP)
    if (
        prop is None or len(prop) == 0 or any(len(p) for p in prop)
        or xml_content.find(".//" + _EXPAND) is not None or xml_content.find(_LIMIT) is not None
    ):
        return None
    props = [p.tag for p in prop]
    with_text = any(tag in _DATA for tag in props)

    with app._storage.acquire_lock("r", user), contextlib.ExitStack() as stack:
        collection = next(iter(app._storage.discover(path)), None)
        if (
            not isinstance(collection, Collection) or collection.tag != "VCALENDAR"
            or collection._calendar_id is None or not access.check("r", collection)
        ):
            return None
        found = _results(app, base_prefix, xml_content, collection, with_text)
        if found is None:
            return None
        token, missing, found_rows = found
        rows: Iterable[Row] = found_rows
        if isinstance(found_rows, Generator):
            # Read as the answer is written, in this lock; peeked at for
            # whether there is any (the template result is there or not).
            stack.callback(found_rows.close)
            first = next(found_rows, None)
            has_rows = first is not None
            rows = itertools.chain((first,) if first is not None else (), found_rows)
        else:
            has_rows = bool(found_rows)
        if any(not href or "/" in href or href in (".", "..") for href in missing):
            return None  # names Radicale's own path checks would stop at (the rows': _found)
        data_props = sum(tag in _DATA for tag in props)
        max_occurrence = app.configuration.get("reporting", "max_expand_occurrence")
        # With data asked for, the rows are a list (only etag listings stream).
        if data_props and max_occurrence and data_props * sum(
            (r.text or "").upper().count("BEGIN:VEVENT") for r in rows
        ) > max_occurrence:
            return None  # perhaps over Radicale's limit: its 400 to give

        stand_in = _StandIn(collection, xml_content.tag == _QUERY, token, bool(missing), has_rows)
        status, multistatus = radicale_report.xml_report(
            base_prefix, path, xml_content, cast(Any, stand_in), app._encoding, lambda: None,
            max_occurrence, user, request_info,
        )
        if status != client.MULTI_STATUS:
            return None
        body = _fill(app, propfind.serialize(app, multistatus), missing, rows, has_rows,
                     answer_body.accepts_gzip(environ))
    if body is None:
        return None
    request_info["status"] = status
    headers = {"Content-Type": f"text/xml; charset={app._encoding}"}
    data = answer_body.finished(environ, headers, body)
    return status, headers, data, xmlutils.pretty_xml(xml_content)


def _results(
    app: radicale.Application, base_prefix: str, root: ET.Element, collection: Collection,
    with_text: bool,
) -> tuple[str | None, list[str], list[Row] | Generator[Row, None, None]] | None:
    """(sync token, hrefs answered 404, results) as Radicale's xml_report
    would take them from the storage, or None when it would do more. The
    results of an initial sync of etags are read one at a time, as the
    answer is written (consume or close them within the request's lock)."""
    if root.tag == _QUERY:
        return _query(root, collection, with_text)
    if root.tag == _SYNC:
        old = root.find(xmlutils.make_clark("D:sync-token"))
        old_token = old.text.strip() if old is not None and old.text else ""
        try:
            token, names = collection.sync(old_token)
        except ValueError:
            return None  # Radicale's 403 valid-sync-token, and its log line
        if not old_token and not with_text and collection._hidden is None:
            # Every member, none hidden: the index columns answer (no decryption).
            return token, [], _every_member(collection)
        missing, rows = _by_name(collection, list(names), with_text)
        return token, missing, rows
    # calendar-multiget: the names as Radicale's xml_report and
    # retrieve_items make them (a set: its order is the answer's).
    hreferences: set[str] = set()
    for element in root.findall(_HREF_TAG):
        if element.text is None:
            return None
        href_path = pathutils.sanitize_path(unquote(urlparse(element.text).path))
        if (href_path + "/").startswith(base_prefix + "/"):
            hreferences.add(href_path[len(base_prefix):])
        # else Radicale skips it (and logs it): no response
    names = []
    for hreference in hreferences:
        try:
            name = pathutils.name_from_path(hreference, collection)
        except ValueError:
            return None  # not a member's path: Radicale's 404 and its log line
        if not name:
            return None  # the calendar itself: Radicale lists every member
        names.append(name)
    missing, rows = _by_name(collection, names, with_text)
    return None, missing, rows


def _every_member(collection: Collection) -> Generator[Row, None, None]:
    """Every member's result without its text, from the index columns."""
    with collection._storage.reading() as conn, contextlib.closing(
        store_objects.index_listing(conn, collection._calendar_id or 0)
    ) as listing:
        for href, etag, name, component, _ in listing:
            yield Row(href, etag, name, component, None)


def _query(root: ET.Element, collection: Collection, with_text: bool
           ) -> tuple[None, list[str], list[Row]] | None:
    """The results of a calendar-query the plugin decides exactly."""
    if root.findall(_CARD_FILTER):
        return None
    filters = root.findall(_FILTER)
    if not filters:
        return None  # every member: Radicale's (not a time range)
    try:
        tag, start, end, simple = radicale_filter.simplify_prefilters(filters, "VCALENDAR")
    except ValueError:
        return None  # a time range Radicale cannot read: its 400
    if not simple or tag not in store_occurrences.COMPONENTS:
        return None
    rows = []
    with collection._storage.reading() as conn:
        hidden = collection._hidden  # read in this snapshot, as get_filtered reads it
        for href, etag, name, component, first, last, text, matched in store_objects.matches_in_range(
            conn, collection._calendar_id or 0, tag, start, end, with_text
        ):
            if hidden is not None and hidden(href, first, last):
                continue  # as get_filtered (Collection._visible): never yielded
            if not matched:
                return None  # Radicale's filter decides this one
            rows.append(Row(href, etag, name, component, text))
    return None, [], rows


def _by_name(collection: Collection, names: list[str], with_text: bool) -> tuple[list[str], list[Row]]:
    """As the plugin's get_multi yields them, in this order: members it
    has not (or hides from this reader) answered 404, the others found."""
    with collection._storage.reading() as conn:
        found = store_objects.get_objects(conn, collection._calendar_id or 0, names)
    missing, rows = [], []
    for name in names:
        obj = found.get(name)
        if obj is None or not collection._visible(obj):
            missing.append(name)
        else:
            rows.append(Row(obj.href, obj.etag, obj.name, obj.component, obj.text if with_text else None))
    return missing, rows


class _StandIn:
    """What Radicale's xml_report reads of a collection, yielding the
    template results: a missing href, then a found member, as the answer
    needs them (the namespaces the root declares depend on what is in it)."""

    def __init__(self, collection: Collection, query: bool, token: str | None, missing: bool,
                 found: bool) -> None:
        self.path = collection.path
        self._query = query
        self.tag = collection.tag
        self._token = token
        self._missing = missing
        self._item = radicale_item.Item(
            collection=collection, href=_HREF, text=_TEXT, etag=_ETAG, name="VCALENDAR",
            component_name=_COMPONENT,
        ) if found else None

    def sync(self, old_token: str = "") -> tuple[str | None, list[str]]:
        return self._token, [name for name, _ in self._multi()]

    def get_multi(self, hrefs: Iterable[str]) -> Iterator[tuple[str, radicale_item.Item | None]]:
        list(hrefs)  # a query names the calendar itself: no member
        return iter(()) if self._query else self._multi()

    def _multi(self) -> Iterator[tuple[str, radicale_item.Item | None]]:
        if self._missing:
            yield _MISSING, None
        if self._item is not None:
            yield _HREF, self._item

    def get_filtered(self, filters: Iterable[ET.Element]) -> Iterator[tuple[radicale_item.Item, bool]]:
        if self._query and self._item is not None:
            yield self._item, True


def _fill(app: radicale.Application, whole: str, missing: list[str], rows: Iterable[Row],
          has_rows: bool, gzip: bool) -> answer_body.Body | bytes | None:
    """The serialized template multistatus with each template response
    repeated for its results, encoded (and compressed, ``gzip``: see
    :class:`answer_body.Body`); None: not the shape assumed here."""
    starts = [m.start() for m in re.finditer(re.escape(_RESPONSE_OPEN), whole)]
    if len(starts) != bool(missing) + has_rows:
        return None
    if not starts:
        return whole.encode(app._encoding, "xmlcharrefreplace")
    end = whole.rindex(_RESPONSE_CLOSE) + len(_RESPONSE_CLOSE)
    bounds = [*starts, end]
    responses = [whole[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    if not all(r.endswith(_RESPONSE_CLOSE) for r in responses):
        return None
    out = answer_body.Body(app._encoding, gzip)
    out.write(whole[:starts[0]])
    if missing:
        form = responses[0].split(_MISSING)
        if len(form) != 2:
            return None
        for href in missing:
            out.write(_quoted(href).join(form))
    if has_rows and not _found(app, responses[-1], rows, out):
        return None
    out.write(whole[end:])
    return out


def _found(app: radicale.Application, response: str, rows: Iterable[Row], out: answer_body.Body) -> bool:
    """The template response once per row, its markers replaced, written to
    ``out`` (False: not the shape assumed here, or a name Radicale's own
    path checks would stop at). A list of rows is taken apart as it goes."""
    template = radicale_item.Item(collection_path="x", href=_HREF, text=_TEXT, etag=_ETAG,
                                  name="VCALENDAR", component_name=_COMPONENT)
    content_type = propfind.escape(xmlutils.get_content_type(template, app._encoding))
    markers = {_HREF: 0, _ETAG: 1, content_type: 2, _TEXT: 3}
    pieces = re.split("(" + "|".join(map(re.escape, markers)) + ")", response)
    order = [markers[piece] for piece in pieces[1::2]]
    if order.count(0) != 1:
        return False
    form = "".join("%s" if i % 2 else piece.replace("%", "%%") for i, piece in enumerate(pieces))
    pick = operator.itemgetter(*order) if len(order) > 1 else lambda values: (values[order[0]],)
    content_types: dict[tuple[str, str], str] = {}
    for row in _each(rows):
        if not row.href or "/" in row.href or row.href in (".", ".."):
            return False
        if 3 in order and row.text is None:
            return False  # the text was not read: cannot happen, checked for safety
        kind = content_types.get((row.name, row.component))
        if kind is None:
            try:
                kind = content_types[row.name, row.component] = propfind.escape(
                    xmlutils.get_content_type(cast(radicale_item.Item, propfind.Kind(
                        row.name, row.component)), app._encoding))
            except KeyError:
                return False  # no content type Radicale knows: its error
        values = (_quoted(row.href), propfind.escape(row.etag), kind,
                  propfind.escape(row.text) if row.text is not None else "")
        out.write(form % pick(values))
    return True


def _each(rows: Iterable[Row]) -> Iterator[Row]:
    """The rows in order; a list is emptied as they go (each row is dropped
    once its response is written)."""
    if isinstance(rows, list):
        rows.reverse()
        while rows:
            yield rows.pop()
    else:
        yield from rows


def _quoted(href: str) -> str:
    """A member's name as make_href quotes it (quote works per character,
    so the calendar's quoted path in the template stays as it is)."""
    return href if propfind.UNRESERVED.fullmatch(href) else quote(href)
