"""Radicale's application with servicehop's answers to refused writes.

Radicale answers any ValueError from the storage with a bare "400 Bad
Request". When the storage refused for a reason of ours, this subclass turns
that into 403 with a DAV:error body (RFC 4918 §16) that names the failed
precondition and carries the reason as text. When the storage stored an
event other than the one sent (a booking decision), the PUT answer loses
the ETag Radicale gives it.

Radicale's own refusals of a PUT body say why too:

- calendar data it cannot read: 400 stays 400, with a DAV:error body naming
  CALDAV:valid-calendar-data and the parser's message;
- an object over ``[server] max_resource_size``: Radicale's "412
  Precondition failed" (412 is about If-Match and If-None-Match) becomes
  403 with CALDAV:max-resource-size (RFC 4791 §5.3.2.1) and the limit.
  Radicale checks If-Match before the size, so a 412 for a body over the
  limit is read as the size; a body under the limit keeps Radicale's 412.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import Any, cast

import radicale
import radicale.item as radicale_item
from radicale import httputils, types
from radicale.app import put as radicale_put

from servicehop_caldav import health, propfind, refusal, report, request_log, rewritten
from servicehop_caldav.directory import grants
from servicehop_caldav.store import read_ahead, write_ahead

CALDAV = "urn:ietf:params:xml:ns:caldav"
# Methods Radicale answers without writing.
# Requests whose reads share one snapshot. A GET or HEAD reads one
# statement for an item (a collection's members are read in a snapshot of
# their own: Database.snapshot); a write reads only its login before the lock.
_SNAPSHOT_METHODS = frozenset({"OPTIONS", "PROPFIND", "REPORT"})
# Requests that read their path with the login (store.read_ahead): those
# that read it in the login's transaction, which a write ends.
_READ_AHEAD_METHODS = frozenset({"GET", "HEAD", "PROPFIND", "REPORT"})


def refusal_response(refused: refusal.Refusal) -> types.WSGIResponse:
    root = ET.Element("{DAV:}error")
    ET.SubElement(root, refused.precondition)
    ET.SubElement(root, f"{{{refusal.NAMESPACE}}}reason").text = refused.reason
    body = b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="utf-8")
    return refused.status, {"Content-Type": "text/xml; charset=utf-8"}, body, None



class Application(radicale.Application):
    """Radicale's WSGI application; refusals answered with reasons."""

    def __call__(self, environ: types.WSGIEnviron,
                 start_response: types.WSGIStartResponse) -> Iterable[bytes]:
        """Radicale's answer, timed and logged in one line without personal
        data; what Radicale logs meanwhile is kept below debug level
        (:mod:`servicehop_caldav.request_log`, :mod:`servicehop_caldav.logs`)."""
        return request_log.handle(cast(dict[str, Any], environ), start_response, super().__call__)

    def _handle_request(self, environ: types.WSGIEnviron) -> Any:
        """The health path is answered here, before Radicale's
        authentication and rights (:mod:`servicehop_caldav.health`)."""
        if health.requested(environ):
            return health.answer(environ, getattr(self._storage, "db", None))
        db = getattr(self._storage, "db", None)
        if db is None:
            return super()._handle_request(environ)
        method = environ.get("REQUEST_METHOD", "GET")
        # One connection and one read snapshot (Database.request); the
        # request path read with the login where that saves a statement.
        ahead = environ.get("PATH_INFO", "") if method in _READ_AHEAD_METHODS else None
        with db.request(snapshot=method in _SNAPSHOT_METHODS), read_ahead.reading(ahead), grants.request():
            return super()._handle_request(environ)

    def _answer_refusal(self, result: Any) -> Any:
        refused = refusal.take()
        if refused is not None and result[0] == 400:
            return refusal_response(refused)
        return result

    def _unreadable(self, environ: types.WSGIEnviron, body: bytes, path: str) -> refusal.Refusal | None:
        """Why Radicale could not take this body (None: it is not the body)."""
        try:
            text = httputils.decode_request(self.configuration, environ, body)
            components = radicale_item.read_components(text)
            whole = path.endswith("/")
            *_, problem = radicale_put.prepare(
                components, path, environ.get("CONTENT_TYPE", "").split(";")[0],
                True, True, self._max_resource_size, self._max_vevent_rrule_occurrence,
                None if whole else "VCALENDAR", whole,
            )
        except Exception as e:  # noqa: BLE001 - vobject's and the decoder's errors are many
            return refusal.Refusal(f"{{{CALDAV}}}valid-calendar-data",
                                   f"the calendar data cannot be read: {e}", status=400)
        if problem is not None and problem[0] is not OverflowError:
            return refusal.Refusal(f"{{{CALDAV}}}valid-calendar-data",
                                   f"the calendar data is not valid: {problem[1]}", status=400)
        return None

    def do_PUT(self, environ: types.WSGIEnviron, base_prefix: str, path: str, *args: Any,
               **kwargs: Any) -> Any:
        refusal.take()
        rewritten.take()
        body = propfind.read_body(environ)
        with write_ahead.sending(body):
            result = self._answer_refusal(super().do_PUT(environ, base_prefix, path, *args, **kwargs))
        status = result[0]
        if status == 400:  # not ours: the storage's refusals are answered above
            explained = self._unreadable(environ, body, path)
            if explained is not None:
                return refusal_response(explained)
        if status == 412 and len(body) > self._max_resource_size:
            return refusal_response(refusal.Refusal(
                f"{{{CALDAV}}}max-resource-size",
                f"a calendar object is larger than this server takes "
                f"(at most {self._max_resource_size} bytes each)",
            ))
        if rewritten.take() and status in (200, 201, 204):
            # RFC 4791 5.3.4: the stored event is not what was sent; no ETag,
            # so the client fetches the server's version.
            status, headers, *rest = result
            return (status, {k: v for k, v in dict(headers).items() if k.lower() != "etag"}, *rest)
        return result

    # False: every PROPFIND is Radicale's own (tests compare the two answers).
    fast_propfind = True

    def do_PROPFIND(self, environ: types.WSGIEnviron, base_prefix: str, path: str, user: str,
                    user_groups: set[str], request_info: dict[str, Any]) -> Any:
        """A calendar's members' etags from the index when that is the
        whole question (:mod:`servicehop_caldav.propfind`); else Radicale."""
        fast = propfind.answer(self, environ, base_prefix, path, user, user_groups, request_info)
        if fast is not None:
            return fast
        return super().do_PROPFIND(environ, base_prefix, path, user, user_groups, request_info)

    # False: every REPORT is Radicale's own (tests compare the two answers).
    fast_report = True

    def do_REPORT(self, environ: types.WSGIEnviron, base_prefix: str, path: str, user: str,
                  user_groups: set[str], request_info: dict[str, Any]) -> Any:
        """A calendar-query, sync or multiget written from the rows when
        Radicale would only list them (:mod:`servicehop_caldav.report`)."""
        fast = report.answer(self, environ, base_prefix, path, user, user_groups, request_info)
        if fast is not None:
            return fast
        return super().do_REPORT(environ, base_prefix, path, user, user_groups, request_info)

    def do_MOVE(self, environ: types.WSGIEnviron, *args: Any, **kwargs: Any) -> Any:
        refusal.take()
        return self._answer_refusal(super().do_MOVE(environ, *args, **kwargs))
