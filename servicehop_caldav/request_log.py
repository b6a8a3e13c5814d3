"""One log line per HTTP request, without personal data.

::

    PUT /{user}/bookings-ost/{object} 201 12.4 ms 0 B

Method, the path's shape, status, time in the application, bytes of the
answer's body. The path is shown as its shape because its segments are
personal: the first is a username (the home, ``/alice/``), the last an
event's href (often its UID). Only names the server makes itself stay:
the calendars of the roles (``bookings-D``, ``availability-D``,
``opening-D``, ``overview-D``, ``assignments``) when the request succeeded
(then the calendar exists, and nobody but provisioning makes calendars),
and the server's own paths (``/.well-known/caldav``,
``/.servicehop/health``). No client address, user agent, login or body.

:func:`handle` also marks the request as the scope of everything logged
while it runs (:func:`current`), which is how
:class:`servicehop_caldav.logs.PrivacyFilter` knows that a record of
Radicale's may carry a request's data. The request line itself is INFO
(ERROR for a 5xx); health checks, which load balancers send every few
seconds, are DEBUG, also when they answer 503.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import logging
import re
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

LOGGER = "servicehop_caldav.request"
HEALTH_PATH = "/.servicehop/health"

USER, COLLECTION, OBJECT, PART = "{user}", "{collection}", "{object}", "{part}"
# Calendars every home may hold, named by provisioning (department ids are
# slugs: servicehop_caldav.directory.store).
_SERVER_CALENDAR = re.compile(
    r"(?:(?:bookings|availability|opening|overview)-[a-z0-9][a-z0-9._-]{0,63}|assignments)"
)
# First segments that are the server's, not a user's, with the names under them.
_SERVER_PATHS: dict[str, frozenset[str]] = {
    ".well-known": frozenset({"caldav", "carddav"}),
    ".servicehop": frozenset({"health"}),
}

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_current: contextvars.ContextVar[RequestScope | None] = contextvars.ContextVar(
    "servicehop_request", default=None
)


class RequestScope:
    """The request being handled on this thread (or task)."""

    def __init__(self, environ: dict[str, Any]) -> None:
        self._environ = environ

    def secrets(self) -> list[str]:
        """The strings of this request that must not appear above debug
        level: the login, the path's personal segments, the client's
        addresses, its user agent. Longest first, so that a replacement
        never leaves part of a longer one."""
        env = self._environ
        found = {env.get(k, "") for k in ("REMOTE_ADDR", "REMOTE_HOST", "HTTP_X_FORWARDED_FOR",
                                         "HTTP_X_REMOTE_ADDR", "HTTP_USER_AGENT", "PATH_INFO")}
        found.add(login_of(env))
        found.update(s for s in str(env.get("PATH_INFO", "")).split("/") if s not in _SERVER_PATHS)
        return sorted((s for s in found if s), key=len, reverse=True)


def current() -> RequestScope | None:
    """The request this thread is handling, if any."""
    return _current.get()


def login_of(environ: dict[str, Any]) -> str:
    """The username a Basic Authorization header names ('' if none)."""
    authorization = str(environ.get("HTTP_AUTHORIZATION", ""))
    if not authorization.startswith("Basic"):
        return ""
    try:
        decoded = base64.b64decode(authorization[len("Basic"):].strip()).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return ""
    return decoded.split(":", 1)[0]


def shape(path_info: str, script_name: str = "", status: int = 200) -> str:
    """The path with its personal segments replaced by placeholders.

    ``path_info`` is as the WSGI server gives it (percent-decoded); a
    reverse proxy's prefix (``X-Script-Name``) is dropped when the path
    still carries it, as Radicale does. Segments are matched after
    Radicale's sanitising, so ``//`` or ``..`` cannot smuggle a name past
    the placeholders; anything not known to be the server's is replaced."""
    from radicale import pathutils

    path = pathutils.sanitize_path(path_info)
    prefix = pathutils.sanitize_path(script_name).rstrip("/") if script_name else ""
    if prefix and (path == prefix or path.startswith(prefix + "/")):
        path = path[len(prefix):] or "/"
    segments = [s for s in path.split("/") if s]
    if not segments:
        return "/"
    shaped: list[str]
    if segments[0] in _SERVER_PATHS:
        known = _SERVER_PATHS[segments[0]]
        shaped = [segments[0]] + [s if i == 0 and s in known else PART
                                  for i, s in enumerate(segments[1:])]
    else:
        shaped = [USER]
        if len(segments) > 1:
            calendar = segments[1]
            shown = status < 400 and _SERVER_CALENDAR.fullmatch(calendar) is not None
            shaped.append(calendar if shown else COLLECTION)
        if len(segments) > 2:
            shaped.append(OBJECT)
        shaped.extend(PART for _ in segments[3:])
    return "/" + "/".join(shaped) + ("/" if path.endswith("/") else "")


def line(method: str, shaped: str, status: int, seconds: float, size: int) -> str:
    return f"{method} {shaped} {status} {seconds * 1000:.1f} ms {size} B"


_METHOD = re.compile(r"[A-Z]{1,16}")


def handle(environ: dict[str, Any], start_response: Callable[..., Any], app: WSGIApp) -> Iterable[bytes]:
    """Call ``app`` (Radicale's WSGI ``__call__``) as the scope of what it
    logs, then write the request's line."""
    begin = time.perf_counter()
    status = 500  # unless the application answers

    def recording_start_response(
        status_text: str, headers: list[tuple[str, str]],
        exc_info: tuple[type[BaseException], BaseException, TracebackType] | None = None,
    ) -> Any:
        nonlocal status
        try:
            status = int(status_text.split(" ", 1)[0])
        except ValueError:
            status = 500
        return start_response(status_text, headers, exc_info) if exc_info else start_response(
            status_text, headers)

    token = _current.set(RequestScope(environ))
    answers: Iterable[bytes] = []
    try:
        answers = app(environ, recording_start_response)
        if not isinstance(answers, list):
            answers = list(answers)
    finally:
        _current.reset(token)
        _log(environ, status, time.perf_counter() - begin, sum(len(a) for a in answers))
    return answers


def _log(environ: dict[str, Any], status: int, seconds: float, size: int) -> None:
    logger = logging.getLogger(LOGGER)
    if status < 500 and not logger.isEnabledFor(logging.INFO):
        return  # nothing below would be written: not worth shaping the path
    method = str(environ.get("REQUEST_METHOD", "")).upper()
    if _METHOD.fullmatch(method) is None:
        method = "?"  # not a method name: whatever it is, not logged
    script_name = str(environ.get("HTTP_X_SCRIPT_NAME") or environ.get("SCRIPT_NAME") or "")
    shaped = shape(str(environ.get("PATH_INFO", "")), script_name, status)
    # Health checks are DEBUG whatever they answer: a load balancer polls
    # every few seconds, and a 503 there is the balancer's to act on.
    level = logging.DEBUG if shaped == HEALTH_PATH else logging.ERROR if status >= 500 else logging.INFO
    logger.log(level, "%s", line(method, shaped, status, seconds, size))
