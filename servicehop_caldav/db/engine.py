"""Engines and the one-request-one-transaction scope.

SQLite runs in WAL mode with a busy timeout; writers take the database's
write lock at BEGIN (``BEGIN IMMEDIATE``) so two writers never deadlock on a
lock upgrade. PostgreSQL writers take a transaction-level advisory lock, so
writers serialize across every process that shares the database, and
readers see one snapshot (REPEATABLE READ) for the whole request.
"""

from __future__ import annotations

import select
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, Transaction, create_engine, event, exc
from sqlalchemy.engine import make_url

from servicehop_caldav.db import direct, memo

# Arbitrary constant: the advisory lock key all servicehop writers share.
WRITE_LOCK_KEY = 0x5E41C0DA
# A PostgreSQL write transaction's start: BEGIN and the write lock, two
# statements sent as one (simple-protocol) query, so one round trip. The
# driver would send its own BEGIN as a round trip of its own before the lock.
BEGIN_WRITE = f"BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})"
SQLITE_BUSY_TIMEOUT_MS = 60_000
# The pool hands out the connection returned last (LIFO), not the one idle
# longest: at the usual few requests at a time they all run on the same one
# or two connections, whose PostgreSQL backends are awake and whose
# statements are prepared and planned (psycopg prepares a statement on a
# connection, PREPARE_THRESHOLD below, and PostgreSQL plans five runs more
# for their parameters before it settles on one plan). First in, first out,
# after a burst had opened ten connections every request ran on the one
# idle longest, each of the ten cold in turn: 200 GETs of one event after
# eight concurrent writers (the benchmark's order) took 4.84 ms at the
# median against 4.62, two servers of each kind interleaved.
POOL = {"pool_size": 10, "max_overflow": 10, "pool_use_lifo": True}
# psycopg prepares a statement on its second run on a connection, not its
# sixth (its default, 5), at the cost of one round trip then. A prepared
# statement is parsed once, and PostgreSQL plans it for its parameters
# five runs more before it settles on one plan: each statement of a
# booking's write path (a dozen, the first taking 0.5 ms to plan) was
# planned afresh on its first ten runs on a connection, now its first six.
# Not 0: a query of several statements (BEGIN_WRITE) cannot be prepared,
# which psycopg learns on its first run. Measured, servers interleaved:
# 20 booking PUTs on fresh servers, 12.97 ms at the median against 13.78
# (the first ten 13.49 against 14.66); 40 PUTs of a new event into 1,000,
# 7.63 against 7.77.
PREPARE_THRESHOLD = 1


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
            **POOL,
        )
        _configure_sqlite(engine)
        return engine
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        engine = create_engine(parsed, connect_args={"prepare_threshold": PREPARE_THRESHOLD}, **POOL)
        _configure_postgresql(engine)
        return engine
    raise DatabaseError(f"unsupported database {backend!r}: use sqlite or postgresql")


def peer_closed(fd: int) -> bool:
    """Whether the server ended the idle connection on socket ``fd``: an idle
    connection has nothing to read, so anything readable (end of file, or
    the server's "terminating connection" message) means it is gone."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


def _configure_postgresql(engine: Engine) -> None:
    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        # Instead of SQLAlchemy's pre-ping (a SELECT 1, one round trip per
        # request): a connection the server closed (a restart, a terminated
        # backend, a cut relay) is seen on its socket without asking, and
        # replaced by a new one before the request uses it. What neither
        # sees, a host gone silent, the health check's deadline answers.
        if dbapi_connection.closed or peer_closed(dbapi_connection.fileno()):
            raise exc.DisconnectionError("the database closed this pooled connection")


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
        begin = conn.info.get("servicehop_begin", "BEGIN")
        if begin:  # "": each statement on its own (Database.request, snapshot=False)
            # Straight to the driver: SQLAlchemy's execution path (events,
            # result set-up) costs more than the BEGIN itself.
            conn.connection.driver_connection.execute(begin)  # type: ignore[union-attr]


@dataclass
class _Scope:
    """The open transaction of a thread. ``depth`` 0: a read transaction
    kept open between the blocks of one request (see :meth:`Database.request`)."""

    connection: Connection
    mode: str
    transaction: Transaction
    depth: int = 0
    # A read scope whose statements each see their own moment (no snapshot).
    each_statement: bool = False
    # Write blocks begun in it (Database.write_block), and whether one failed.
    blocks: int = 0
    doomed: bool = False


@dataclass
class _Request:
    """One request on a thread: the connection its transactions share."""

    connection: Connection | None = None
    # Whether its reads share one snapshot (see Database.request).
    snapshot: bool = True


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
        it raises, so nothing is ever half-written. Inside :meth:`request`
        a read transaction that ended normally stays open instead, for the
        request's next read block to join; a write block commits it first.
        """
        if mode not in ("r", "w"):
            raise ValueError(f"invalid lock mode {mode!r}")
        scope: _Scope | None = getattr(self._local, "scope", None)
        if scope is not None and scope.depth == 0 and mode == "w":
            self._end(scope, failed=False)  # the request's kept read: done
            scope = None
        if scope is None:
            scope = self._begin(mode)
        elif mode == "w" and scope.mode != "w":
            raise RuntimeError("cannot upgrade a read transaction to a write")
        owner = scope.depth == 0
        scope.depth += 1
        failed = True
        try:
            yield scope.connection
            failed = False
        finally:
            scope.depth -= 1
            if owner:
                request: _Request | None = getattr(self._local, "request", None)
                if failed or mode == "w" or request is None:
                    self._end(scope, failed)

    def _begin(self, mode: str) -> _Scope:
        if mode == "w":
            self._writer.acquire()
        try:
            request: _Request | None = getattr(self._local, "request", None)
            conn = request.connection if request is not None else None
            if conn is None:
                conn = self.engine.connect()
                if request is not None:
                    request.connection = conn
            try:
                each_statement = mode == "r" and request is not None and not request.snapshot
                if self.backend == "sqlite":
                    conn.info["servicehop_begin"] = (
                        "BEGIN IMMEDIATE" if mode == "w" else "" if each_statement else "BEGIN")
                else:
                    # A write begins itself (BEGIN_WRITE): the driver, in
                    # autocommit, sends no BEGIN of its own, and still ends
                    # the transaction BEGIN_WRITE opened (psycopg commits or
                    # rolls back whatever transaction the server has open).
                    conn = conn.execution_options(isolation_level=(
                        "AUTOCOMMIT" if mode == "w" or each_statement else "REPEATABLE READ"))
                transaction = conn.begin()
                try:
                    if mode == "w" and self.backend == "postgresql":
                        direct.run_query(conn, BEGIN_WRITE)
                except BaseException:
                    transaction.rollback()
                    raise
            except BaseException:
                self._release(conn)
                raise
        except BaseException:
            if mode == "w":
                self._writer.release()
            raise
        scope = _Scope(conn, mode, transaction, each_statement=each_statement)
        self._local.scope = scope
        return scope

    def _end(self, scope: _Scope, failed: bool) -> None:
        """Commit (or roll back) the thread's transaction and let its
        connection go, unless the request holds it."""
        self._local.scope = None
        failed = failed or scope.doomed
        try:
            memo.clear(scope.connection)
            if failed:
                scope.transaction.rollback()
            else:
                scope.transaction.commit()
        except BaseException:
            failed = True
            raise
        finally:
            try:
                if failed:
                    self._release(scope.connection)
                else:
                    self._release(scope.connection, keep=True)
            finally:
                if scope.mode == "w":
                    self._writer.release()

    def _release(self, conn: Connection, keep: bool = False) -> None:
        """Back to the pool, unless the request holds it and it is sound
        (``keep``: its transaction ended normally)."""
        request: _Request | None = getattr(self._local, "request", None)
        if request is not None and request.connection is conn:
            if keep:
                return
            request.connection = None
        conn.close()

    @contextmanager
    def write_block(self) -> Iterator[Connection]:
        """Writes in the thread's write transaction that happen all or not at
        all while the transaction goes on. The transaction's first block
        needs no savepoint: if it fails, nothing else has been written and
        the whole transaction rolls back when it ends (whatever its block
        says), and no later block may write in it. Later blocks each get a
        savepoint. On PostgreSQL that saves a request writing once the
        SAVEPOINT and RELEASE round trips."""
        scope: _Scope | None = getattr(self._local, "scope", None)
        if scope is None or scope.mode != "w":
            raise RuntimeError("storage write outside of a write lock")
        if scope.doomed:
            raise RuntimeError("a write failed earlier in this transaction, which rolls back")
        conn = scope.connection
        first = scope.blocks == 0
        scope.blocks += 1
        try:
            if first:
                yield conn
            else:
                with conn.begin_nested():
                    yield conn
        except BaseException:
            scope.doomed = scope.doomed or first
            # What was read inside the block may have been undone with it.
            memo.forget(conn)
            raise

    @contextmanager
    def request(self, snapshot: bool = True) -> Iterator[None]:
        """One HTTP request on this thread: its transactions share one
        connection (one pool checkout instead of one per transaction), and
        its reads one read transaction: Radicale reads the login, the
        rights, the principal and then the answer each in a block of its
        own, which were four snapshots (on PostgreSQL each a BEGIN and a
        COMMIT, a round trip each) and are now one, ended when the request
        ends. A write block commits that read first and takes the write
        lock as always, so a request never holds a read open while it waits
        for the lock.

        ``snapshot=False``: a request whose reads need no common snapshot
        (a GET, whose item is one statement; a write, which reads only its
        login before the lock) runs each read statement on its own, without
        BEGIN and COMMIT. What must read several statements consistently
        there asks for :meth:`snapshot`. Nested calls join."""
        if getattr(self._local, "request", None) is not None:
            yield
            return
        request = _Request(snapshot=snapshot)
        self._local.request = request
        failed = True
        try:
            yield
            failed = False
        finally:
            scope: _Scope | None = getattr(self._local, "scope", None)
            try:
                if scope is not None and scope.depth == 0:
                    self._end(scope, failed)
                    scope = None
            finally:
                self._local.request = None
                # A block still open (a generator not run to its end) keeps
                # its connection; it goes back to the pool when the block ends.
                held = request.connection
                if held is not None and (scope is None or scope.connection is not held):
                    held.close()

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """A connection whose reads see one moment: the thread's transaction
        when it has one (a write, or the read of a request with a snapshot),
        else, in a read scope of single statements, a read transaction of
        its own on another pooled connection, ended with the block."""
        scope: _Scope | None = getattr(self._local, "scope", None)
        if scope is not None and not scope.each_statement:
            yield scope.connection
            return
        conn = self.engine.connect()
        try:
            if self.backend == "sqlite":
                conn.info["servicehop_begin"] = "BEGIN"
            else:
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                try:
                    yield conn
                finally:
                    memo.clear(conn)
        finally:
            conn.close()

    def in_write(self) -> bool:
        """Whether this thread's transaction is a write (it holds the write lock)."""
        scope: _Scope | None = getattr(self._local, "scope", None)
        return scope is not None and scope.mode == "w"

    def current(self) -> Connection | None:
        """The connection of the transaction open on this thread, if any."""
        scope: _Scope | None = getattr(self._local, "scope", None)
        return scope.connection if scope is not None else None

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
