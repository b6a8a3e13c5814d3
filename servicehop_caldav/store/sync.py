"""RFC 6578 sync tokens from the per-calendar change log.

A token names a calendar (by its random salt) and a revision of it. Every
write advances the revision and logs the href it touched, so the changes
since any earlier token are one indexed range scan.
"""

from __future__ import annotations

import re

from sqlalchemy import Connection, insert, select

from servicehop_caldav.db.schema import calendar_changes
from servicehop_caldav.store.collections import bump_revision
from servicehop_caldav.store.records import CalendarState

TOKEN_PREFIX = "http://servicehop.invalid/ns/sync/"
_TOKEN_RE = re.compile(re.escape(TOKEN_PREFIX) + r"([0-9a-f]{16})-([0-9]{1,18})\Z")


class InvalidSyncToken(ValueError):
    """The token is not one this calendar gave out (RFC 6578 valid-sync-token)."""


def make_token(state: CalendarState) -> str:
    return f"{TOKEN_PREFIX}{state.sync_salt}-{state.revision}"


def token_revision(state: CalendarState, token: str) -> int:
    """The revision an earlier token of this calendar stands for."""
    match = _TOKEN_RE.match(token)
    if match is None or match.group(1) != state.sync_salt:
        raise InvalidSyncToken(f"sync token not issued by this collection: {token!r}")
    revision = int(match.group(2))
    if revision > state.revision:
        raise InvalidSyncToken(f"sync token from the future: {token!r}")
    return revision


_LOG = insert(calendar_changes)  # built once: every write runs it


def record_change(conn: Connection, calendar_id: int, href: str, operation: int) -> int:
    revision = bump_revision(conn, calendar_id)
    conn.execute(
        _LOG, {"calendar_id": calendar_id, "revision": revision, "href": href, "operation": operation}
    )
    return revision


def changed_hrefs(conn: Connection, calendar_id: int, since_revision: int, until_revision: int) -> list[str]:
    """Hrefs added, changed or deleted in (since, until], each once."""
    c = calendar_changes.c
    rows = conn.execute(
        select(c.href)
        .where(
            c.calendar_id == calendar_id,
            c.revision > since_revision,
            c.revision <= until_revision,
        )
        .group_by(c.href)
        .order_by(c.href)
    )
    return list(rows.scalars())
