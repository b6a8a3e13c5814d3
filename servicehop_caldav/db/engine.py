"""Engines and the one-request-one-transaction scope.

SQLite runs in WAL mode with a busy timeout; writers take the database's
write lock at BEGIN (``BEGIN IMMEDIATE``) so two writers never deadlock on a
lock upgrade. PostgreSQL writers take a transaction-level advisory lock, so
writers serialize across every process that shares the database, and
readers see one snapshot (REPEATABLE READ) for the whole request.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url

# Arbitrary constant: the advisory lock key all servicehop writers share.
WRITE_LOCK_KEY = 0x5E41C0DA
SQLITE_BUSY_TIMEOUT_MS = 60_000


class DatabaseError(RuntimeError):
    """The database cannot be used (unreachable, wrong URL, bad schema)."""


def make_engine(url: str) -> Engine:
    """Create an engine with the settings each backend needs for us."""
    try:
        parsed = make_url(url)
    except Exception as e:  # sqlalchemy.exc.ArgumentError and friends
        raise DatabaseError(f"invalid database_url {url!r}: {e}") from e
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise DatabaseError("SQLite needs a file path (sqlite:////abs/path.db)")
        engine = create_engine(
            parsed,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=10,
            max_overflow=10,
        )
        _configure_sqlite(engine)
        return engine
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, pool_size=10, max_overflow=10, pool_pre_ping=True)
    raise DatabaseError(f"unsupported database {backend!r}: use sqlite or postgresql")


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us emit BEGIN ourselves (pysqlite's own is deferred and late).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(conn.info.get("servicehop_begin", "BEGIN"))


@dataclass
class _Scope:
    connection: Connection
    mode: str
    depth: int = 1


@dataclass
class Database:
    """An engine plus the transaction of the request running on each thread."""

    url: str
    engine: Engine = field(init=False)
    _local: threading.local = field(init=False, default_factory=threading.local)
    # Threads of one process queue here instead of polling the database lock.
    _writer: threading.Lock = field(init=False, default_factory=threading.Lock)
    # Set by dispose(): background work on this database (the upkeep) stops.
    closed: threading.Event = field(init=False, default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.engine = make_engine(self.url)

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self, mode: str = "r") -> Iterator[Connection]:
        """One transaction for the whole block; nested blocks join it.

        ``mode`` is "r" (consistent snapshot) or "w" (exclusive writer). The
        transaction commits when the block ends normally and rolls back when
        it raises, so nothing is ever half-written.
        """
        if mode not in ("r", "w"):
            raise ValueError(f"invalid lock mode {mode!r}")
        scope: _Scope | None = getattr(self._local, "scope", None)
        if scope is not None:
            if mode == "w" and scope.mode != "w":
                raise RuntimeError("cannot upgrade a read transaction to a write")
            scope.depth += 1
            try:
                yield scope.connection
            finally:
                scope.depth -= 1
            return
        if mode == "w":
            self._writer.acquire()
        try:
            with self._open(mode) as conn:
                self._local.scope = _Scope(conn, mode)
                try:
                    yield conn
                finally:
                    self._local.scope = None
        finally:
            if mode == "w":
                self._writer.release()

    @contextmanager
    def _open(self, mode: str) -> Iterator[Connection]:
        conn = self.engine.connect()
        try:
            if self.backend == "sqlite":
                conn.info["servicehop_begin"] = "BEGIN IMMEDIATE" if mode == "w" else "BEGIN"
            else:
                conn = conn.execution_options(
                    isolation_level="READ COMMITTED" if mode == "w" else "REPEATABLE READ"
                )
            with conn.begin():
                if mode == "w" and self.backend == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITE_LOCK_KEY})
                yield conn
        finally:
            conn.close()

    def current(self) -> Connection | None:
        """The connection of the transaction open on this thread, if any."""
        scope: _Scope | None = getattr(self._local, "scope", None)
        return scope.connection if scope is not None else None

    @property
    def writing(self) -> bool:
        scope: _Scope | None = getattr(self._local, "scope", None)
        return scope is not None and scope.mode == "w"

    def dispose(self) -> None:
        self.closed.set()
        self.engine.dispose()

    @classmethod
    def shared(cls, url: str) -> Database:
        """The process's one Database for ``url``.

        Radicale builds more than one storage object per process (its sharing
        module loads its own); they must share the engine, the per-thread
        transaction and the writer lock, or one request could hold two
        transactions and wait on itself.
        """
        with _shared_lock:
            db = _shared.get(url)
            if db is None:
                db = _shared[url] = cls(url)
            return db


_shared: dict[str, Database] = {}
_shared_lock = threading.Lock()


def dispose_shared(url: str) -> None:
    """Close the pooled connections of the shared Database for ``url``."""
    with _shared_lock:
        db = _shared.pop(url, None)
    if db is not None:
        db.dispose()
