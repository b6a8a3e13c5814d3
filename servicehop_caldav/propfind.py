"""PROPFIND with Depth: 1 on a calendar, answered from the index columns.

Radicale answers a PROPFIND of a calendar's members by building a full
item per member (our storage decrypts each object for it), checking the
rights again for each member (the same question every time: the rights of
the calendar's path), building an ElementTree response per member and
serializing it: about 120 µs a member, over a second at 10,000 events, for
what a client mostly asks to learn which etags changed.

Here the same answer comes from one query of the index columns (href, etag,
component, modified time) without reading any object. Radicale's own code
still writes every byte that is not a member's own value: the calendar's
response and one *template* member response, built by Radicale's
``xml_propfind`` for a stand-in item whose href, etag, last-modified time
and content type are unique markers. Each real member is that template with
its own values in place of the markers, so the properties, their order,
the 404 propstat for properties a member does not have, the namespace
prefixes and the href encoding are Radicale's.

Taken only when every answer is determined by those columns: Depth 1, a
``DAV:prop`` request (not allprop or propname) without ``getcontentlength``
(the stored size is of the encrypted data, not of the text), a calendar
collection of our storage whose members are not hidden per reader (the
availability views) and that holds no collections, no sharing configured.
Everything else goes to Radicale unchanged, as does every refusal: the
checks below let through only what Radicale's ``do_PROPFIND`` would
answer with a 207, using its own ``Access`` and ``_collect_allowed_items``.
"""

from __future__ import annotations

import contextlib
import io
import operator
import re
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from http import client
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

import radicale.item as radicale_item
from radicale import httputils, storage, types, xmlutils
from radicale.app import propfind as radicale_propfind
from radicale.app.base import Access
from radicale.log import logger

from servicehop_caldav import answer_body

if TYPE_CHECKING:
    import radicale

# Of the properties whose value differs from member to member, the one the
# index does not answer: a request for it is Radicale's.
_GETCONTENTLENGTH = xmlutils.make_clark("D:getcontentlength")
_PROP = xmlutils.make_clark("D:prop")

# Markers for the template: letters and digits only, so quoting and XML
# escaping leave them as they are; random, so no calendar can hold them.
_TOKEN = secrets.token_hex(12)


def marker(name: str) -> str:
    """A template marker named ``name`` (letters only), unique to this process."""
    return f"servicehop{name}{_TOKEN}"


_HREF = marker("href")
_ETAG = marker("etag")
_MODIFIED = marker("modified")
_COMPONENT = marker("component")
# What urllib's quote() never changes (its safe "/" is never in a name).
UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")


def enabled(app: radicale.Application) -> bool:
    """Off in tests that compare with Radicale's own answer."""
    return bool(getattr(app, "fast_propfind", True))


def escape(text: str) -> str:
    """XML character data, escaped as ElementTree escapes it."""
    if "&" in text or "<" in text or ">" in text:
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text


def serialize(app: radicale.Application, multistatus: ET.Element) -> str:
    """As Radicale's ``_xml_response`` writes it, as text."""
    f = io.BytesIO()
    ET.ElementTree(multistatus).write(f, encoding=app._encoding, xml_declaration=True)
    return f.getvalue().decode(app._encoding)


def read_body(environ: types.WSGIEnviron) -> bytes:
    """The request body, left readable again for Radicale."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    cast(dict[str, Any], environ)["wsgi.input"] = io.BytesIO(body)
    return body


def answer(
    app: radicale.Application, environ: types.WSGIEnviron, base_prefix: str, path: str,
    user: str, user_groups: set[str], request_info: dict[str, Any],
) -> types.WSGIResponse | None:
    """The answer to this PROPFIND from the index, or None: Radicale's to give.

    Called where Radicale's ``do_PROPFIND`` is, after its authentication."""
    if environ.get("HTTP_DEPTH", "0") != "1" or app._sharing._enabled or not enabled(app):
        return None
    # Radicale's first checks, in its order: it refuses before reading the body.
    access = Access(app._rights, user, user_groups, path)
    if not access.check("r") or ("r" not in access.permissions and access.allows_freebusy()):
        return None  # Radicale's refusal, or its free-busy answer
    try:
        raw = read_body(environ)
    except TimeoutError:  # socket.timeout, as Radicale catches it
        logger.debug("Client timed out", exc_info=True)
        return httputils.REQUEST_TIMEOUT
    try:
        xml_content = app._read_xml_request_body(environ, request_info)
    except RuntimeError:
        xml_content = None
    cast(dict[str, Any], environ)["wsgi.input"] = io.BytesIO(raw)  # for Radicale, if it answers
    if xml_content is None or len(xml_content) == 0 or xml_content[0].tag != _PROP:
        return None
    props = [prop.tag for prop in xml_content[0]]
    if _GETCONTENTLENGTH in props:
        return None

    with app._storage.acquire_lock("r", user):
        collection = next(iter(app._storage.discover(path, "0", None, user_groups)), None)
        listing = getattr(collection, "member_listing", None)
        if (
            not isinstance(collection, storage.BaseCollection) or listing is None
            or collection.tag != "VCALENDAR" or not access.check("r", collection)
        ):
            return None
        members = listing()
        if members is None:
            return None
        template = radicale_item.Item(
            collection=collection, href=_HREF, last_modified=_MODIFIED, text="", etag=_ETAG,
            name="VCALENDAR", component_name=_COMPONENT,
        )
        # The rights of a member are those of the calendar's path, the same
        # for all: Radicale's check of one stands for every member.
        member_rights = list(app._collect_allowed_items([template], user, user_groups))
        if len(member_rights) != 1:
            return None  # members Radicale would leave out: its answer to give
        allowed = [*app._collect_allowed_items([collection], user, user_groups), *member_rights]
        xml_answer = radicale_propfind.xml_propfind(
            app, base_prefix, path, xml_content,
            # No conversion (None), as do_PROPFIND passes without sharing;
            # its annotation says str.
            [(item, permission, raw_permissions, cast(str, None))
             for item, permission, raw_permissions in allowed],
            user, app._encoding, max_resource_size=app._max_resource_size,
        )
        if xml_answer is None:
            return httputils.NOT_ALLOWED
        # The members are read as the answer is written, in this lock.
        with contextlib.closing(members):
            body = _members_body(app, xml_answer, template, members, answer_body.accepts_gzip(environ))
    if body is None:
        return None
    request_info["status"] = client.MULTI_STATUS
    headers = {"DAV": httputils.DAV_HEADERS, "Content-Type": f"text/xml; charset={app._encoding}"}
    data = answer_body.finished(environ, headers, body)
    return client.MULTI_STATUS, headers, data, xmlutils.pretty_xml(xml_content)


def _members_body(
    app: radicale.Application, multistatus: ET.Element, template: radicale_item.Item,
    members: Iterator[tuple[str, str, str, str, str]], gzip: bool,
) -> answer_body.Body | bytes | None:
    """The multistatus with the template response repeated for every member
    (none: without it), encoded (and compressed, ``gzip``: see
    :class:`answer_body.Body`); None where Radicale answers instead.

    Each member is read as its response is written: at 10,000 members the
    rows, the listing and the answer were a few MiB each, and the process's
    peak is the sum of what is alive at once."""
    whole = serialize(app, multistatus)
    template_response = multistatus[-1]
    multistatus.remove(template_response)
    without = serialize(app, multistatus)
    end = without.rindex("</")
    head, tail = without[:end], without[end:]
    if not (whole.startswith(head) and whole.endswith(tail)):
        return None  # not the shape assumed here: Radicale answers
    response = whole[len(head):len(whole) - len(tail)]
    content_type = escape(xmlutils.get_content_type(template, app._encoding))
    markers = {_HREF: 0, _ETAG: 1, content_type: 2, _MODIFIED: 3}
    pieces = re.split("(" + "|".join(map(re.escape, markers)) + ")", response)
    # The template as a %-format, its markers as the slots, in their order.
    form = "".join("%s" if i % 2 else piece.replace("%", "%%") for i, piece in enumerate(pieces))
    # The values of a member in the template's order (a 1-tuple for one).
    order = [markers[piece] for piece in pieces[1::2]]
    if not order:
        return None  # no href in it: not Radicale's response as known here
    if len(order) == 1:
        only = order[0]
        pick: Callable[[tuple[str, ...]], tuple[str, ...]] = lambda values: (values[only],)  # noqa: E731
    else:
        pick = operator.itemgetter(*order)
    content_types: dict[tuple[str, str], str] = {}
    out = answer_body.Body(app._encoding, gzip)
    out.write(head)
    empty = True
    for href, etag, name, component, modified in members:
        if not href or "/" in href or href in (".", ".."):
            return None  # names Radicale's own path checks would stop at
        empty = False
        kind = content_types.get((name, component))
        if kind is None:
            kind = content_types[name, component] = escape(xmlutils.get_content_type(
                cast(radicale_item.Item, Kind(name, component)), app._encoding))
        # quote() leaves these names as they are, and the test costs less.
        quoted = href if UNRESERVED.fullmatch(href) else quote(href)
        out.write(form % pick((quoted, escape(etag), kind, escape(modified))))
    if empty:
        # Radicale's answer for no member: the calendar's response alone.
        return without.encode(app._encoding, "xmlcharrefreplace")
    out.write(tail)
    return out


class Kind:
    """What ``xmlutils.get_content_type`` reads of an item."""

    def __init__(self, name: str, component_name: str) -> None:
        self.name = name
        self.component_name = component_name
