"""One request, one connection and one read snapshot; reads remembered per transaction.

``Database.request`` (issue 5): the reads of a request share one transaction,
a write block first commits it, and nothing read is remembered past the
transaction that read it (``servicehop_caldav.db.memo``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, event

from servicehop_caldav.db.engine import BEGIN_WRITE, WRITE_LOCK_KEY, Database
from servicehop_caldav.store import collections as store_collections
from servicehop_caldav.store import objects as store_objects
from servicehop_caldav.store.records import NewObject


def _obj(uid: str, text: str = "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n") -> NewObject:
    return NewObject(uid=uid, etag=f'"{uid}{len(text)}"', name="VCALENDAR", component="VEVENT",
                     first_occurrence=0, last_occurrence=10, text=text)


def _statements(db: Database) -> list[str]:
    seen: list[str] = []

    @event.listens_for(db.engine, "before_cursor_execute")
    def _count(_c: Connection, _cur: object, statement: str, *_args: object) -> None:
        if "pg_advisory" not in statement:  # PostgreSQL's write lock
            seen.append(statement.split()[0].upper())

    return seen


def test_requests_after_a_burst_run_on_the_connection_returned_last(db: Database) -> None:
    """The pool is last in, first out: after a burst opened several
    connections, one request after another runs on the one returned last
    (awake, its statements prepared), not on each idle one in turn."""
    burst = [db.engine.connect() for _ in range(4)]
    drivers = [conn.connection.driver_connection for conn in burst]
    assert len({id(d) for d in drivers}) == 4
    for conn in burst:
        conn.close()
    used = []
    for _ in range(6):
        with db.request(), db.transaction("r") as conn:
            assert store_collections.get_instance(conn, "nobody/cal") is None
            used.append(conn.connection.driver_connection)
        with db.transaction("w") as conn:
            assert store_collections.get_instance(conn, "nobody/cal") is None
            used.append(conn.connection.driver_connection)
    assert all(d is drivers[-1] for d in used)


def test_reads_of_a_request_share_one_transaction_and_a_write_commits_them(db: Database) -> None:
    with db.transaction("w") as conn:
        store_collections.create_instance(conn, "u/cal", {})
    with db.request():
        with db.transaction("r") as first:
            transaction = first.get_transaction()
            assert store_collections.get_instance(first, "u/cal") is not None
        with db.transaction("r") as second:  # joins the kept read
            assert second is first and second.get_transaction() is transaction
        with db.transaction("w") as conn:  # the kept read is committed first
            assert conn.get_transaction() is not transaction
            instance = store_collections.get_instance(conn, "u/cal")
            assert instance is not None
            store_objects.put_object(conn, instance.calendar_id, "a.ics", _obj("a"))
        with db.transaction("r") as conn:  # a new snapshot: sees the write
            assert store_objects.get_object(conn, instance.calendar_id, "a.ics") is not None
    assert db.current() is None


def test_a_failed_read_block_ends_the_kept_transaction(db: Database) -> None:
    with db.request():
        with db.transaction("r") as conn:
            transaction = conn.get_transaction()
        with pytest.raises(ZeroDivisionError), db.transaction("r"):
            1 / 0  # noqa: B018
        assert db.current() is None
        with db.transaction("r") as conn:
            assert conn.get_transaction() is not transaction
    assert db.current() is None


def test_lookups_are_remembered_within_a_transaction_and_forgotten_by_writes(db: Database) -> None:
    with db.transaction("w") as conn:
        instance = store_collections.create_instance(conn, "u/cal", {})
    seen = _statements(db)
    with db.transaction("w") as conn:
        for _ in range(2):  # the path, its parent and the member: one statement, once
            found = store_objects.get_path_and_member(conn, "u/cal/a.ics", "u/cal", "a.ics")
            assert found == (None, instance, None)
        assert store_collections.get_instance(conn, "u/cal") == instance
        assert store_collections.get_instance(conn, "u/cal/a.ics") is None
        assert store_objects.get_object(conn, instance.calendar_id, "a.ics") is None
        assert seen.count("SELECT") == 1
        # Known to be new: INSERT only, no UPDATE first. On PostgreSQL the
        # object, its occurrence, the revision and the change row are one
        # statement (store/one_trip.py).
        before = len(seen)
        store_objects.put_object(conn, instance.calendar_id, "a.ics", _obj("a"), replacing=False)
        if db.backend == "postgresql":
            assert seen[before:] == ["WITH"]
        else:
            assert seen[before:] == ["INSERT", "UPDATE", "INSERT"]
        # The write forgot both: the object and the revision are read again.
        assert store_objects.get_object(conn, instance.calendar_id, "a.ics") is not None
        again = store_collections.get_instance(conn, "u/cal")
        assert again is not None and again.state.revision == instance.state.revision + 1
    with db.transaction("r") as conn:  # another transaction remembers nothing
        before = len(seen)
        store_collections.get_instance(conn, "u/cal")
        assert len(seen) == before + 1


def test_a_failed_later_write_block_is_undone_alone_and_forgets_what_it_read(db: Database) -> None:
    """Write blocks after the first get a savepoint: the transaction goes on."""
    from sqlalchemy import delete

    from servicehop_caldav.db.schema import calendar_objects

    with db.transaction("w") as conn:
        instance = store_collections.create_instance(conn, "u/cal", {})
        store_objects.put_object(conn, instance.calendar_id, "a.ics", _obj("a"))
    with db.transaction("w") as conn:
        with db.write_block():
            store_objects.put_object(conn, instance.calendar_id, "b.ics", _obj("b"))
        with pytest.raises(ZeroDivisionError), db.write_block():
            conn.execute(delete(calendar_objects))
            assert store_objects.get_object(conn, instance.calendar_id, "a.ics") is None
            1 / 0  # noqa: B018
        assert store_objects.get_object(conn, instance.calendar_id, "a.ics") is not None
        with db.write_block():
            store_objects.put_object(conn, instance.calendar_id, "c.ics", _obj("c"))
    with db.transaction("r") as conn:
        assert {o.href for o in store_objects.all_objects(conn, instance.calendar_id)} == {
            "a.ics", "b.ics", "c.ics"}


def test_a_failed_first_write_block_rolls_the_whole_transaction_back(db: Database) -> None:
    """The first block has no savepoint (no round trips for it): when it
    fails, its transaction rolls back even if the caller carries on, and
    nothing more can be written in it."""
    with db.transaction("w") as conn:
        instance = store_collections.create_instance(conn, "u/cal", {})
    seen = _statements(db)
    with db.transaction("w") as conn:  # ends normally: Radicale answers 400 and returns
        with pytest.raises(ValueError), db.write_block():
            store_objects.put_object(conn, instance.calendar_id, "a.ics", _obj("a"))
            raise ValueError("refused after a partial write")
        with pytest.raises(RuntimeError, match="rolls back"), db.write_block():
            pass
    assert "SAVEPOINT" not in seen
    with db.transaction("r") as conn:
        assert store_objects.get_object(conn, instance.calendar_id, "a.ics") is None
    # A block inside the first one that succeeds does not make it safe.
    with db.transaction("w") as conn:
        with pytest.raises(ValueError), db.write_block():
            store_objects.put_object(conn, instance.calendar_id, "b.ics", _obj("b"))
            with db.write_block():
                store_objects.put_object(conn, instance.calendar_id, "c.ics", _obj("c"))
            raise ValueError("refused after the inner block")
    with db.transaction("r") as conn:
        assert list(store_objects.all_objects(conn, instance.calendar_id)) == []
    with pytest.raises(RuntimeError, match="outside of a write lock"), db.write_block():
        pass
    with db.transaction("r"), pytest.raises(RuntimeError, match="outside of a write lock"), \
            db.write_block():
        pass


def _in_transaction(conn: Connection) -> bool:
    """Whether the driver's connection is inside a BEGIN ... COMMIT now."""
    driver: Any = conn.connection.driver_connection
    if hasattr(driver, "in_transaction"):  # sqlite3
        return bool(driver.in_transaction)
    from psycopg.pq import TransactionStatus

    return bool(driver.info.transaction_status != TransactionStatus.IDLE)


def test_a_writing_requests_reads_run_each_on_its_own(db: Database) -> None:
    """Database.request(snapshot=False): the login before the write lock needs
    no snapshot, so no BEGIN and COMMIT around it; reads are still
    remembered for the (implicit) transaction."""
    with db.transaction("w") as conn:
        store_collections.create_instance(conn, "u/cal", {})
    seen = _statements(db)
    with db.request(snapshot=False):
        with db.transaction("r") as conn:
            assert store_collections.get_instance(conn, "u/cal") is not None
            assert not _in_transaction(conn)
        with db.transaction("r") as conn:
            assert store_collections.get_instance(conn, "u/cal") is not None  # remembered
        assert seen == ["SELECT"]
        with db.transaction("w") as conn:
            instance = store_collections.get_instance(conn, "u/cal")
            assert instance is not None and _in_transaction(conn)
            store_objects.put_object(conn, instance.calendar_id, "a.ics", _obj("a"))
    with db.request():
        with db.transaction("r") as conn:
            assert store_collections.get_instance(conn, "u/cal") is not None
            assert _in_transaction(conn)


def test_a_snapshot_asked_for_in_single_statement_reads_sees_one_moment(db: Database) -> None:
    """A GET reads single statements (snapshot=False); a collection's members
    are read in Database.snapshot: a transaction of its own, on another
    connection, that does not see a write committed after its first read.
    Where the request has a snapshot, Database.snapshot is that one."""
    with db.transaction("w") as conn:
        instance = store_collections.create_instance(conn, "u/cal", {})
        store_objects.put_object(conn, instance.calendar_id, "a.ics", _obj("a"))
    other = Database(db.url)
    try:
        with db.request(snapshot=False), db.transaction("r") as single:
            with db.snapshot() as snap:
                assert store_objects.all_hrefs(snap, instance.calendar_id) == ["a.ics"]
                assert snap is not single and _in_transaction(snap)
                with other.transaction("w") as conn:  # another writer commits meanwhile
                    store_objects.put_object(conn, instance.calendar_id, "b.ics", _obj("b"))
                assert store_objects.all_hrefs(snap, instance.calendar_id) == ["a.ics"]
            assert not _in_transaction(single)
            assert store_objects.all_hrefs(single, instance.calendar_id) == ["a.ics", "b.ics"]
        with db.request(), db.transaction("r") as kept, db.snapshot() as snap:
            assert snap is kept
    finally:
        other.dispose()


def _frontend_round_trips(trace: str) -> list[str]:
    """The client's messages that each end a round trip (a simple Query, or
    the Sync closing an extended-protocol exchange), from a libpq trace."""
    return [line.split("\t", 3)[-1].strip() for line in trace.splitlines()
            if line.startswith("F\t") and line.split("\t")[2] in ("Query", "Sync")]


def _lock_taken_elsewhere(url: str) -> bool:
    """Whether the write lock is held by another session, asked from a new one."""
    other = Database(url)
    try:
        with other.engine.connect() as conn:
            free = conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({WRITE_LOCK_KEY})").scalar()
            if free:
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({WRITE_LOCK_KEY})")
            conn.rollback()
        return not free
    finally:
        other.dispose()


@pytest.mark.parametrize("backend", ["postgres"])
def test_a_postgresql_write_begins_and_takes_the_lock_in_one_round_trip(
    db: Database, tmp_path: Path
) -> None:
    """BEGIN and the write lock are one query (BEGIN_WRITE), not the driver's
    BEGIN and then the lock; the transaction still reads committed data,
    holds the lock to its end, and commits or rolls back as a whole."""
    from psycopg import pq

    with db.transaction("w") as conn:
        instance = store_collections.create_instance(conn, "u/cal", {})
        warm = store_collections.create_instance(conn, "u/warm", {})
    for href in ("w1.ics", "w2.ics"):  # psycopg prepares a statement on its second run: a trip of its own
        with db.transaction("w") as conn:
            store_objects.put_object(conn, warm.calendar_id, href, _obj(href))
    trace_path = tmp_path / "trace"
    with trace_path.open("w") as trace_file, db.request(snapshot=False):
        with db.transaction("w") as conn:
            pgconn = conn.connection.driver_connection.pgconn  # type: ignore[union-attr]
            assert _lock_taken_elsewhere(db.url)
            assert conn.exec_driver_sql("SHOW transaction_isolation").scalar() == "read committed"
            pgconn.trace(trace_file.fileno())
            pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
            store_objects.put_object(conn, instance.calendar_id, "a.ics", _obj("a"))
        with db.transaction("w") as conn:
            store_objects.put_object(conn, instance.calendar_id, "b.ics", _obj("b"))
        pgconn.untrace()
    trips = _frontend_round_trips(trace_path.read_text())
    begins = [t for t in trips if "BEGIN" in t]
    # The first write's statements and COMMIT, then the second write: its
    # BEGIN and lock in one query, its statements, its COMMIT.
    assert begins == [f'"{BEGIN_WRITE}"'], trips
    first_end = trips.index('"COMMIT"')
    assert trips[first_end + 1] == begins[0] and trips[-1] == '"COMMIT"', trips
    assert trips[:first_end] == trips[first_end + 2:-1] == ["Sync"] * first_end, trips
    assert not _lock_taken_elsewhere(db.url)
    with pytest.raises(ZeroDivisionError), db.transaction("w") as conn:
        store_objects.put_object(conn, instance.calendar_id, "c.ics", _obj("c"))
        1 / 0  # noqa: B018 - the failure under test
    assert not _lock_taken_elsewhere(db.url)
    with db.transaction("r") as conn:
        assert store_objects.all_hrefs(conn, instance.calendar_id) == ["a.ics", "b.ics"]


@pytest.mark.parametrize("backend", ["postgres"])
def test_a_postgresql_statement_is_prepared_on_its_second_run(db: Database) -> None:
    """A statement's second run on a connection uses a server-side prepared
    statement (parsed once, and on its way to one plan for all parameters),
    not its sixth; a write's BEGIN_WRITE, two statements, is never prepared
    and still works every time."""

    def prepared(conn: Connection) -> list[str]:
        return list(conn.exec_driver_sql(
            "SELECT statement FROM pg_prepared_statements WHERE statement LIKE 'SELECT calendar_instances.%%'"
        ).scalars())

    with db.request(snapshot=False):
        with db.transaction("r") as conn:
            assert store_collections.get_instance(conn, "nobody/a") is None
            assert prepared(conn) == []
        for n in range(3):
            with db.transaction("w") as conn:  # BEGIN_WRITE each time
                assert store_collections.get_instance(conn, f"nobody/{n}") is None
                assert len(prepared(conn)) == 1
