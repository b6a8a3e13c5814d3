"""Logging of a serving process, without personal data above debug level.

DESIGN.md: "Logs never contain event contents or personal data above debug
level." Radicale logs freely what a request carries (the path with the
username, the client's address and user agent, the login, hrefs and UIDs in
its warnings), so a serving process logs through Radicale's handler with
:class:`PrivacyFilter` on it. The filter does not know Radicale's messages;
it knows *when* a record is written: while a request is handled
(:mod:`servicehop_caldav.request_log` marks it), everything anyone logs is
about that request and may carry its data. Such a record

- below WARNING (Radicale's INFO and NOTICE lines: "request for '/alice/…'
  received from …", "Successful login: 'alice'", "Access to … denied for
  'alice'", the response line) becomes DEBUG: dropped, unless the level is
  debug, where it is shown as DEBUG;
- at WARNING and above keeps its level and its template, with every
  argument replaced by ``<hidden>`` (numbers stay; an exception shows its
  type only), quoted text of a message that came already formatted hidden
  too, and an exception's traceback keeps its frames but not its message -
  unless the level is debug, where it stays as it was.

Two loggers are exempt, because their lines are written for this level and
carry ids and codes only: the request line (:data:`request_log.LOGGER`) and
the booking decisions (:data:`DECISIONS`, written by :func:`decision`).
Records outside a request (start-up, the upkeep pass) are left alone; what
this package logs there names no person.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, event
from sqlalchemy.engine import Engine

from servicehop_caldav import request_log

if TYPE_CHECKING:
    from radicale import config

    from servicehop_caldav.store.audit import AuditEntry

PACKAGE = "servicehop_caldav"
DECISIONS = f"{PACKAGE}.decisions"
"""The logger of the booking decisions: one INFO line per audit entry."""
PUBLIC_LOGGERS = frozenset({request_log.LOGGER, DECISIONS})
"""Loggers whose lines are written to carry no personal data: exempt."""
HIDDEN = "<hidden>"

# Functions of Radicale's HTTP server that log about a request before the
# application is called (a request line that does not parse, a client
# error): their records carry the raw request as much as the application's.
_SERVER_REQUEST_FUNCTIONS = frozenset({"log_error", "log_exception", "handle_error"})


def setup(configuration: config.Configuration) -> None:
    """Radicale's stream handler at ``[logging] level`` (``serve
    --log-level`` overrides it in the configuration), the same level for
    this package's loggers (the root logger's WARNING would drop their
    INFO lines), and :class:`PrivacyFilter` on the handler."""
    from radicale import log

    # Radicale's setup sets INFO and says so: not at --log-level warning.
    logging.disable(logging.INFO)
    try:
        log.setup()
    finally:
        logging.disable(logging.NOTSET)
    log.set_level(
        configuration.get("logging", "level"),
        configuration.get("logging", "backtrace_on_debug"),
        configuration.get("logging", "trace_filter"),
    )
    level = logging.getLogger(log.LOGGER_NAME).level
    logging.getLogger(PACKAGE).setLevel(level)
    install_filter(debug=level <= logging.DEBUG)


def install_filter(debug: bool) -> PrivacyFilter:
    """Put a :class:`PrivacyFilter` on every handler of the root logger
    (the one Radicale's ``log.setup`` made), replacing an earlier one."""
    privacy = PrivacyFilter(debug)
    for handler in logging.getLogger().handlers:
        for old in [f for f in handler.filters if isinstance(f, PrivacyFilter)]:
            handler.removeFilter(old)
        handler.addFilter(privacy)
    return privacy


class PrivacyFilter(logging.Filter):
    """Keeps a request's data out of every line above debug (see the module
    docstring). A handler filter, not a logger filter: it sees the records
    of every logger (Radicale's, the root logger's tracebacks, libraries')."""

    def __init__(self, debug: bool) -> None:
        super().__init__()
        self.debug = debug

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name in PUBLIC_LOGGERS:
            return True
        scope = request_log.current()
        if scope is None and not _about_a_request(record):
            return True
        if record.levelno < logging.WARNING:
            if not self.debug:
                return False
            if record.levelno > logging.DEBUG:  # TRACE stays TRACE
                record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
            return True
        if not self.debug:
            withhold(record, scope)
        return True


def _about_a_request(record: logging.LogRecord) -> bool:
    return record.name == "radicale" and record.funcName in _SERVER_REQUEST_FUNCTIONS


# -- hiding the data of a record -------------------------------------------------

_SPEC = re.compile(
    r"%(?:\((?P<key>[^)]*)\))?[#0\- +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[hlL]?(?P<conv>[diouxXeEfFgGcrsa%])"
)
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_TRACEBACK = "Traceback (most recent call last):"
_EXCEPTION_LINE = re.compile(r"(?P<type>[A-Za-z_][\w.]*)(?=:|$)")


def withhold(record: logging.LogRecord, scope: request_log.RequestScope | None = None) -> None:
    """Rewrite ``record`` in place so that its message carries only what
    the code wrote (the template) and numbers, never the values it logged."""
    if isinstance(record.msg, str):
        if record.args:
            record.msg = _fill(record.msg, record.args)
        else:
            # Formatted before logging: only its quoted parts and the
            # request's own strings can be told apart from the text.
            record.msg = _QUOTED.sub(HIDDEN, record.msg)
            for secret in scope.secrets() if scope is not None else ():
                record.msg = record.msg.replace(secret, HIDDEN)
    else:
        record.msg = f"{HIDDEN} ({type(record.msg).__name__})"
    record.args = None
    if record.exc_info and record.exc_info[1] is not None:
        import traceback

        record.exc_text = scrub_traceback("".join(traceback.format_exception(*record.exc_info)))
        record.exc_info = None
    elif record.exc_text:
        record.exc_text = scrub_traceback(record.exc_text)


def _fill(template: str, args: Any) -> str:
    """``template`` with each conversion replaced by a placeholder of its value."""
    values = iter(args) if isinstance(args, tuple) else iter(())
    mapping = args if isinstance(args, Mapping) else {}

    def placeholder(match: re.Match[str]) -> str:
        if match["conv"] == "%":
            return "%"
        value = mapping.get(match["key"]) if match["key"] is not None else next(values, None)
        return _placeholder(value)

    return _SPEC.sub(placeholder, template)


def _placeholder(value: object) -> str:
    if isinstance(value, (bool, int, float)):
        return str(value)  # counts, sizes, statuses, seconds: not about a person
    if isinstance(value, BaseException):
        return f"{HIDDEN} ({type(value).__name__})"
    if isinstance(value, str) and value.startswith(_TRACEBACK):
        return scrub_traceback(value)
    return HIDDEN


def scrub_traceback(text: str) -> str:
    """A formatted traceback with its frames (file, line, function, source
    line: the code, not the data) and each exception's type, without the
    exceptions' messages (a UID, a path, an SQL parameter).

    In a traceback an exception's message starts on the first unindented
    line after the frames and runs to the chain line of the next exception
    or to the end (blank and indented lines included: a message may hold
    them); of it, only the type before its colon is kept."""
    kept: list[str] = []
    in_message = False
    for line in text.splitlines():
        if line in _CHAIN_LINES:
            kept += ["", line]
            in_message = False
        elif in_message:
            continue  # the message, on lines of its own
        elif not line or line.startswith(_TRACEBACK) or line[0].isspace():
            kept.append(line)
        else:
            match = _EXCEPTION_LINE.match(line)
            kept.append(f"{match['type']}: {HIDDEN}" if match is not None else HIDDEN)
            in_message = True
    return "\n".join(kept)


_CHAIN_LINES = frozenset({
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
})


# -- booking decisions -----------------------------------------------------------

_VERBS: Mapping[tuple[str, str], str] = {
    ("book", "accepted"): "accepted",
    ("book", "waiting"): "waiting",
    ("move", "accepted"): "moved",
    ("change", "kept"): "kept",
    ("cancel", "cancelled"): "cancelled",
    ("reassign", "accepted"): "reassigned",
    ("confirm-waiting", "accepted"): "confirmed",
    ("flag", "flagged"): "flagged",
    ("wait", "expired"): "expired",
}
_PENDING = "servicehop_decision_lines"
_MARKS = "servicehop_decision_marks"


def decision_line(booking_id: str | None, entry: AuditEntry) -> str:
    """``booking <id> <what> department=… recipient=… [staff=…] [reasons=…]
    audit=<action>/<outcome>``: the ids of the directory (never usernames),
    the booking's id (none for a new request that was refused), the reason
    codes, and the audit entry's action and outcome to find it in
    ``servicehop-caldav audit``."""
    verb = _VERBS.get((entry.action, entry.outcome), entry.outcome)
    parts = [f"booking {booking_id}" if booking_id else "booking request", verb,
             f"department={entry.department_id}"]
    if entry.recipient_id is not None:
        parts.append(f"recipient={entry.recipient_id}")
    if entry.staff_id is not None:
        parts.append(f"staff={entry.staff_id}")
    if entry.reasons:
        parts.append(f"reasons={','.join(entry.reasons)}")
    parts.append(f"audit={entry.action}/{entry.outcome}")
    return " ".join(parts)


def decision(conn: Connection, booking_id: str | None, entry: AuditEntry) -> None:
    """Log the decision recorded as ``entry`` when its transaction commits.

    The line is held until then so that the log says what the audit log
    says: a decision rolled back (its savepoint or the whole transaction,
    say the request failed) is not logged."""
    if not conn.in_transaction():
        logging.getLogger(DECISIONS).info("%s", decision_line(booking_id, entry))
        return
    _listen()
    conn.info.setdefault(_PENDING, []).append(decision_line(booking_id, entry))


_listening = False


def _listen() -> None:
    global _listening
    if _listening:
        return
    _listening = True
    event.listen(Engine, "commit", _on_commit)
    event.listen(Engine, "rollback", _on_rollback)
    event.listen(Engine, "savepoint", _on_savepoint)
    event.listen(Engine, "release_savepoint", _on_release_savepoint)
    event.listen(Engine, "rollback_savepoint", _on_rollback_savepoint)


def _on_commit(conn: Connection) -> None:
    lines: list[str] = conn.info.pop(_PENDING, [])
    conn.info.pop(_MARKS, None)
    for line in lines:
        logging.getLogger(DECISIONS).info("%s", line)


def _on_rollback(conn: Connection) -> None:
    conn.info.pop(_PENDING, None)
    conn.info.pop(_MARKS, None)


def _on_savepoint(conn: Connection, name: str | None) -> None:
    conn.info.setdefault(_MARKS, []).append(len(conn.info.get(_PENDING, ())))


def _on_release_savepoint(conn: Connection, name: str | None, context: object) -> None:
    marks: list[int] = conn.info.get(_MARKS, [])
    if marks:
        marks.pop()


def _on_rollback_savepoint(conn: Connection, name: str | None, context: object) -> None:
    marks: list[int] = conn.info.get(_MARKS, [])
    if marks:
        del conn.info.get(_PENDING, [])[marks.pop():]
