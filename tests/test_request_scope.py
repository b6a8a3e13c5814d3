"""One request, one connection and one read snapshot; reads remembered per transaction.

``Database.request`` (issue 5): the reads of a request share one transaction,
a write block first commits it, and nothing read is remembered past the
transaction that read it (``servicehop_caldav.db.memo``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, event

from servicehop_caldav.db.engine import Database, dispose_shared
from servicehop_caldav.db.migrate import ensure_schema
from servicehop_caldav.store import collections as store_collections
from servicehop_caldav.store import objects as store_objects
from servicehop_caldav.store.records import NewObject


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database.shared(database_url)
    ensure_schema(database)
    yield database
    dispose_shared(database_url)


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
        assert store_collections.get_path_and_parent(conn, "u/cal/a.ics", "u/cal")["u/cal"] == instance
        assert store_collections.get_path_and_parent(conn, "u/cal/a.ics", "u/cal")["u/cal"] == instance
        assert store_collections.get_instance(conn, "u/cal") == instance
        assert store_objects.get_object(conn, instance.calendar_id, "a.ics") is None
        assert store_objects.get_object(conn, instance.calendar_id, "a.ics") is None
        assert seen.count("SELECT") == 2
        # Known to be new: INSERT only, no UPDATE first.
        store_objects.put_object(conn, instance.calendar_id, "a.ics", _obj("a"), replacing=False)
        assert "UPDATE" in seen  # the revision
        assert [s for s in seen if s == "INSERT"] and seen.count("UPDATE") == 1
        # The write forgot both: the object and the revision are read again.
        assert store_objects.get_object(conn, instance.calendar_id, "a.ics") is not None
        again = store_collections.get_instance(conn, "u/cal")
        assert again is not None and again.state.revision == instance.state.revision + 1
    with db.transaction("r") as conn:  # another transaction remembers nothing
        before = len(seen)
        store_collections.get_instance(conn, "u/cal")
        assert len(seen) == before + 1


def test_a_rolled_back_savepoint_forgets_what_it_read(db: Database) -> None:
    """The storage plugin's savepoint: what was read inside it may be undone."""
    from sqlalchemy import delete

    from servicehop_caldav.db import memo
    from servicehop_caldav.db.schema import calendar_objects

    with db.transaction("w") as conn:
        instance = store_collections.create_instance(conn, "u/cal", {})
        store_objects.put_object(conn, instance.calendar_id, "a.ics", _obj("a"))
    with db.transaction("w") as conn:
        with pytest.raises(ZeroDivisionError):
            try:
                with conn.begin_nested():
                    conn.execute(delete(calendar_objects))
                    assert store_objects.get_object(conn, instance.calendar_id, "a.ics") is None
                    1 / 0  # noqa: B018
            except BaseException:
                memo.forget(conn)  # as radicale_storage_servicehop's Storage.writing
                raise
        assert store_objects.get_object(conn, instance.calendar_id, "a.ics") is not None
