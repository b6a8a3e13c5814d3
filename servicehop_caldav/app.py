"""Radicale's application with servicehop's answers to refused writes.

Radicale answers any ValueError from the storage with a bare "400 Bad
Request". When the storage refused for a reason of ours, this subclass turns
that into 403 with a DAV:error body (RFC 4918 §16) that names the failed
precondition and carries the reason as text. When the storage stored an
event other than the one sent (a booking decision), the PUT answer loses
the ETag Radicale gives it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import radicale
from radicale import types

from servicehop_caldav import refusal, rewritten


def refusal_response(refused: refusal.Refusal) -> types.WSGIResponse:
    root = ET.Element("{DAV:}error")
    ET.SubElement(root, refused.precondition)
    ET.SubElement(root, f"{{{refusal.NAMESPACE}}}reason").text = refused.reason
    body = b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="utf-8")
    return refused.status, {"Content-Type": "text/xml; charset=utf-8"}, body, None


class Application(radicale.Application):
    """Radicale's WSGI application; storage refusals answered with reasons."""

    def _answer_refusal(self, result: Any) -> Any:
        refused = refusal.take()
        if refused is not None and result[0] == 400:
            return refusal_response(refused)
        return result

    def do_PUT(self, environ: types.WSGIEnviron, *args: Any, **kwargs: Any) -> Any:
        refusal.take()
        rewritten.take()
        result = self._answer_refusal(super().do_PUT(environ, *args, **kwargs))
        if rewritten.take() and result[0] in (200, 201, 204):
            # RFC 4791 5.3.4: the stored event is not what was sent; no ETag,
            # so the client fetches the server's version.
            status, headers, *rest = result
            return (status, {k: v for k, v in headers.items() if k.lower() != "etag"}, *rest)
        return result

    def do_MOVE(self, environ: types.WSGIEnviron, *args: Any, **kwargs: Any) -> Any:
        refusal.take()
        return self._answer_refusal(super().do_MOVE(environ, *args, **kwargs))
