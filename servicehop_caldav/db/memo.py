"""What one transaction has already read, so a request does not read it again.

Radicale looks the same path up several times per request (the request
path, then its parent), and the storage plugin and the booking desk each
ask for the department of a calendar; every one was a statement (on
PostgreSQL a round trip). Entries live in the connection's ``info`` tagged
with the transaction that read them: a lookup in another transaction finds
nothing, and :meth:`servicehop_caldav.db.engine.Database` drops them when a
transaction ends. Writers of the rows behind an entry forget it
(:func:`forget`), in the same transaction, before anyone can read it again.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from sqlalchemy import Connection

_KEY = "servicehop_memo"

T = TypeVar("T")


def memo(conn: Connection, kind: str) -> dict[Hashable, Any]:
    """The entries of ``kind`` read in the current transaction of ``conn``;
    an empty throwaway dict outside a transaction (nothing is kept)."""
    transaction = conn.get_transaction()
    if transaction is None:
        return {}
    found = conn.info.get(_KEY)
    if found is None or found[0] is not transaction:
        found = conn.info[_KEY] = (transaction, {})
    kinds: dict[str, dict[Hashable, Any]] = found[1]
    entries = kinds.get(kind)
    if entries is None:
        entries = kinds[kind] = {}
    return entries


def once(conn: Connection, kind: str, key: Hashable, read: Callable[[], T]) -> T:
    """``read()``'s answer for ``key``, read at most once per transaction
    (a None answer is kept too: nothing there is also an answer)."""
    known = memo(conn, kind)
    if key in known:
        found: T = known[key]
        return found
    value = known[key] = read()
    return value


def forget(conn: Connection, *kinds: str) -> None:
    """Drop the entries of ``kinds`` (all kinds if none) of the current transaction."""
    found = conn.info.get(_KEY)
    if found is None:
        return
    if not kinds:
        found[1].clear()
        return
    for kind in kinds:
        found[1].pop(kind, None)


def clear(conn: Connection) -> None:
    """Drop everything (the transaction ended): decrypted texts do not stay
    in the pooled connection."""
    conn.info.pop(_KEY, None)
