"""Encryption at rest, key rotation and refusal of a missing or wrong key.

Events go in through CalDAV to a running instance server; a person goes
into the directory. Then the raw database is read: SQLite's .db, -wal and
-shm files byte by byte (during and after serving), PostgreSQL's heap,
index and TOAST files (after CHECKPOINT, read as root), and every column
as SQL returns it. None of the personal plaintexts may be there, while the
clear index columns (UID, username) are: that proves the scan looks at the
right bytes. `rotate-key` must keep everything readable, leave the key
file with the new key only, survive an interruption, and leave a server
that kept running with the old key failing safe, never writing.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from servicehop_caldav import rotation
from servicehop_caldav.cli import main as cli_main
from servicehop_caldav.crypto import KeyError_, Keyring
from servicehop_caldav.db.engine import Database
from servicehop_caldav.db.schema import calendar_objects, key_checks, metadata, users
from servicehop_caldav.directory import store as directory
from servicehop_caldav.keyfile import create_key_file, load_keys, write_key_file
from servicehop_caldav.store.keycheck import bind_keyring
from tests.conftest import Server, free_port, spawn_serve, start_instance_server, start_server

ICS = {"Content-Type": "text/calendar; charset=utf-8"}

# Personal data that must never reach the disk in clear. Short, so that no
# iCalendar line is folded through one of them (which would hide it from a
# byte search even if it were stored in clear).
NAME = "Ingrid Øvrebø-Kvalsund"
ADDRESS = "Tollbodgata 17B, 3256 Larvik"
PHONE = "+47 912 34 567"
EMAIL = "ingrid.ovrebo@kvalsund.example"
SUMMARY = "Dusj og stell: Ingrid Øvrebø"
LOCATION = "Tollbodgata 17B"
DESCRIPTION = "Nøkkel i postkassen hos Kvalsund"
NEEDLES = [
    NAME, ADDRESS, PHONE, EMAIL, SUMMARY, LOCATION, DESCRIPTION,
    "Øvrebø", "Kvalsund", "Tollbodgata", "912 34 567", "kvalsund.example", "Nøkkel i postkassen",
]
USER = "ingrid"  # the username is a clear index column, by design
PASSWORD = "ingrid-pw"
UID = "visit-7d1c1b0e-clear-uid"  # UIDs are clear index columns, by design
BIG_UID = "visit-big-toasted"


def event(uid: str, extra: str = "") -> str:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//servicehop tests//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\n"
        "DTSTART:20270315T090000Z\r\nDTEND:20270315T100000Z\r\n"
        f"SUMMARY:{SUMMARY}\r\nLOCATION:{LOCATION}\r\nDESCRIPTION:{DESCRIPTION}\r\n"
        f"{extra}END:VEVENT\r\nEND:VCALENDAR\r\n"
    )


def big_event() -> str:
    """An event whose ciphertext PostgreSQL keeps out of line (TOAST)."""
    noise = base64.b64encode(secrets.token_bytes(6000)).decode()
    lines = "".join(f"X-NOISE-{i}:{noise[i * 60:(i + 1) * 60]}\r\n" for i in range(len(noise) // 60))
    return event(BIG_UID, lines)


# -- the instance -------------------------------------------------------------


def storage_of(home: Path) -> tuple[str, Path]:
    conf = (home / "radicale.conf").read_text()
    url = re.search(r"^database_url = (.*)$", conf, re.MULTILINE)
    key = re.search(r"^key_file = (.*)$", conf, re.MULTILINE)
    assert url and key
    return url.group(1).strip(), Path(key.group(1).strip())


def start(home: Path) -> Server:
    """The instance's own storage and key file; htpasswd logins and
    owner_only rights, so these tests do not depend on the directory's
    auth and rights plugins."""
    htpasswd = home / "test.htpasswd"
    htpasswd.write_text(f"{USER}:{PASSWORD}\n")
    server = start_instance_server(home, {
        "auth": {"type": "htpasswd", "htpasswd_filename": str(htpasswd),
                 "htpasswd_encryption": "plain"},
        "rights": {"type": "owner_only"},
    })
    server.passwords = {USER: PASSWORD}
    return server


def store_events(server: Server) -> None:
    session = server.session(USER)
    assert session.request("MKCALENDAR", f"{server.url}/{USER}/visits/").status_code == 201
    for uid, body in ((UID, event(UID)), (BIG_UID, big_event())):
        r = session.put(f"{server.url}/{USER}/visits/{uid}.ics", data=body.encode(), headers=ICS)
        assert r.status_code == 201, r.text


def assert_events_readable(server: Server) -> None:
    session = server.session(USER)
    for uid in (UID, BIG_UID):
        r = session.get(f"{server.url}/{USER}/visits/{uid}.ics")
        assert r.status_code == 200, r.status_code
        body = r.content.decode("utf-8")
        for value in (SUMMARY, LOCATION, DESCRIPTION, f"UID:{uid}"):
            assert value in body


def keyring_of(home: Path) -> Keyring:
    return Keyring.from_keys(load_keys(storage_of(home)[1]))


def add_person(home: Path) -> None:
    url, _ = storage_of(home)
    db = Database(url)
    keyring = keyring_of(home)
    try:
        bind_keyring(db, keyring)
        with db.transaction("w") as conn:
            directory.add_department(conn, "home-care", "Hjemmetjenesten")
            user_id = directory.add_user(conn, keyring, USER, PASSWORD, name=NAME, email=EMAIL,
                                         address=ADDRESS, phone=PHONE)
            directory.add_role(conn, user_id, "home-care", "recipient", 180)
    finally:
        db.dispose()


def assert_person_readable(home: Path) -> None:
    url, _ = storage_of(home)
    db = Database(url)
    keyring = keyring_of(home)
    try:
        with db.transaction("r") as conn:
            person = directory.get_person(conn, keyring, USER)
            assert person is not None
            assert (person.name, person.email, person.address, person.phone) == (
                NAME, EMAIL, ADDRESS, PHONE)
            assert directory.usernames_by_email(conn, keyring, EMAIL.upper()) == [USER]
    finally:
        db.dispose()


def key_ids(url: str) -> dict[str, set[int | None]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                "calendar_objects": set(conn.execute(select(calendar_objects.c.key_id)).scalars()),
                "users": set(conn.execute(select(users.c.key_id)).scalars()),
                "key_checks": set(conn.execute(select(key_checks.c.key_id)).scalars()),
            }
    finally:
        engine.dispose()


# -- reading the raw database -------------------------------------------------


def database_files(url: str) -> list[Path]:
    """The files that hold the database's tables, after a checkpoint on PostgreSQL."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        main = Path(str(parsed.database))
        return [p for p in (main, Path(f"{main}-wal"), Path(f"{main}-shm")) if p.exists()]
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("CHECKPOINT"))
            data_directory = Path(conn.execute(text("SHOW data_directory")).scalar_one())
            relations = conn.execute(text(
                """
                WITH ours AS (
                    SELECT c.oid, c.reltoastrelid FROM pg_class c
                    JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'i')
                )
                SELECT pg_relation_filepath(oid) FROM ours
                UNION SELECT pg_relation_filepath(reltoastrelid) FROM ours WHERE reltoastrelid <> 0
                UNION SELECT pg_relation_filepath(i.indexrelid) FROM ours
                      JOIN pg_index i ON i.indrelid = ours.reltoastrelid
                """
            )).scalars().all()
    finally:
        engine.dispose()
    files: list[Path] = []
    for relation in relations:
        main = data_directory / relation
        files.append(main)
        files.extend(sorted(main.parent.glob(main.name + ".[0-9]*")))  # 1 GB segments
    assert all(f.is_file() for f in files), files
    return files


def sql_values(url: str) -> Iterator[bytes]:
    """Every value of every table as SQL returns it, as bytes."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            for table in metadata.sorted_tables:
                for row in conn.execute(select(table)):
                    for value in row:
                        if isinstance(value, bytes | memoryview):
                            yield bytes(value)
                        else:
                            yield str(value).encode("utf-8")
    finally:
        engine.dispose()


def assert_no_plaintext(url: str, clear_markers: tuple[str, ...] = (UID, USER)) -> None:
    """No needle in the raw files or in SQL's answers; the clear index
    columns (``clear_markers``) are found, so the scan reads the right bytes."""
    files = database_files(url)
    raw = b"\n".join(f.read_bytes() for f in files)
    values = list(sql_values(url))
    for needle in NEEDLES:
        encoded = needle.encode("utf-8")
        assert encoded not in raw, f"{needle!r} in clear in {[str(f) for f in files]}"
        assert not any(encoded in v for v in values), f"{needle!r} in clear in a column"
    for marker in clear_markers:
        assert marker.encode() in raw, f"scan did not see the clear column value {marker!r}"
        assert any(marker.encode() in v for v in values)


def toast_file_size(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(
                "SELECT pg_relation_size(reltoastrelid) FROM pg_class "
                "WHERE oid = 'calendar_objects'::regclass")).scalar_one())
    finally:
        engine.dispose()


# -- tests --------------------------------------------------------------------


def test_no_plaintext_at_rest_and_rotation_keeps_everything_readable(
    instance_home: Path, backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url, key_file = storage_of(instance_home)
    server = start(instance_home)
    try:
        store_events(server)
        add_person(instance_home)
        assert_events_readable(server)
        # SQLite: while serving, before any checkpoint (the data sits in the WAL).
        assert_no_plaintext(url)
    finally:
        server.stop()
    assert_no_plaintext(url)
    if backend == "postgres":
        assert toast_file_size(url) > 0, "the big event should be stored out of line (TOAST)"
    old_keys = load_keys(key_file)
    assert list(old_keys) == [1]

    capsys.readouterr()
    assert cli_main(["rotate-key", "--home", str(instance_home)]) == 0
    out = capsys.readouterr().out
    assert "new key 2" in out
    assert "calendar_objects: 2 row(s) re-encrypted" in out
    assert re.search(r"users: \d+ row\(s\) re-encrypted", out)
    assert "retired key(s) 1" in out

    new_keys = load_keys(key_file)
    assert list(new_keys) == [2] and new_keys[2] != old_keys[1]
    assert len(key_file.read_text().splitlines()) == 1
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert not list(key_file.parent.glob(".key.*"))  # no temporary file left
    assert key_ids(url) == {"calendar_objects": {2}, "users": {2}, "key_checks": {2}}
    # The old key reads nothing any more.
    old = Keyring({2: old_keys[1]}, 2)
    engine = create_engine(url)
    with engine.connect() as conn:
        row = conn.execute(select(users.c.name_enc)).first()
    engine.dispose()
    assert row is not None
    with pytest.raises(KeyError_, match="does not decrypt"):
        old.decrypt(2, row.name_enc, b"users.name")

    server = start(instance_home)
    try:
        assert_events_readable(server)
        # A write after the rotation is encrypted under the new key.
        session = server.session(USER)
        r = session.put(f"{server.url}/{USER}/visits/after.ics", data=event("after").encode(),
                        headers=ICS)
        assert r.status_code == 201
    finally:
        server.stop()
    assert_person_readable(instance_home)
    assert_no_plaintext(url)
    assert key_ids(url)["calendar_objects"] == {2}


def test_interrupted_rotation_is_finished_by_a_rerun(
    instance_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url, key_file = storage_of(instance_home)
    server = start(instance_home)
    try:
        store_events(server)
        session = server.session(USER)
        for i in range(5):
            r = session.put(f"{server.url}/{USER}/visits/more-{i}.ics",
                            data=event(f"more-{i}").encode(), headers=ICS)
            assert r.status_code == 201
    finally:
        server.stop()
    add_person(instance_home)

    batches = {"n": 0}
    real = rotation._objects_batch

    def failing_after_first(*args: Any) -> tuple[int, int]:
        if batches["n"] == 1:
            raise RuntimeError("injected failure after the first batch")
        batches["n"] += 1
        return real(*args)

    monkeypatch.setattr(rotation, "TABLES", [(calendar_objects, failing_after_first),
                                             (users, rotation._users_batch)])
    with pytest.raises(RuntimeError, match="injected"):
        cli_main(["rotate-key", "--home", str(instance_home), "--batch-size", "3"])
    monkeypatch.undo()

    # Halfway: both keys in the file, the new one current; three rows moved.
    assert list(load_keys(key_file)) == [1, 2]
    engine = create_engine(url)
    with engine.connect() as conn:
        moved = conn.execute(select(calendar_objects.c.key_id)).scalars().all()
    engine.dispose()
    assert sorted(moved) == [1, 1, 1, 1, 2, 2, 2]
    assert key_ids(url)["key_checks"] == {1, 2}

    # A server started in between serves everything, old and new rows alike,
    # and finds people whose e-mail index is still under the old key.
    server = start(instance_home)
    try:
        assert_events_readable(server)
    finally:
        server.stop()
    assert_person_readable(instance_home)

    capsys.readouterr()
    assert cli_main(["rotate-key", "--home", str(instance_home), "--batch-size", "3"]) == 0
    out = capsys.readouterr().out
    assert "finished the interrupted rotation to key 2" in out  # no key 3
    assert "calendar_objects: 4 row(s) re-encrypted" in out
    assert list(load_keys(key_file)) == [2]
    assert key_ids(url) == {"calendar_objects": {2}, "users": {2}, "key_checks": {2}}
    server = start(instance_home)
    try:
        assert_events_readable(server)
    finally:
        server.stop()
    assert_person_readable(instance_home)
    assert_no_plaintext(url)

    # The next run is a new rotation again.
    assert cli_main(["rotate-key", "--home", str(instance_home)]) == 0
    assert "new key 3" in capsys.readouterr().out
    assert list(load_keys(key_file)) == [3]


def test_a_server_left_running_during_rotation_fails_safe(instance_home: Path) -> None:
    url, key_file = storage_of(instance_home)
    server = start(instance_home)
    try:
        store_events(server)
        session = server.session(USER)
        rotated = rotation.rotate(url, key_file)  # behind the running server's back
        assert rotated.key_id == 2 and rotated.reencrypted["calendar_objects"] == 2
        # It cannot read what is now under a key it does not hold ...
        assert session.get(f"{server.url}/{USER}/visits/{UID}.ics").status_code == 500
        # ... and refuses to write under its retired key.
        r = session.put(f"{server.url}/{USER}/visits/stale.ics", data=event("stale").encode(),
                        headers=ICS)
        assert r.status_code == 500
        r = session.put(f"{server.url}/{USER}/visits/{UID}.ics", data=event(UID).encode(),
                        headers=ICS)
        assert r.status_code == 500
    finally:
        server.stop()
    assert key_ids(url) == {"calendar_objects": {2}, "users": {2}, "key_checks": {2}}
    server = start(instance_home)  # restarted with the new key file: all well
    try:
        assert_events_readable(server)
        assert server.session(USER).get(f"{server.url}/{USER}/visits/stale.ics").status_code == 404
    finally:
        server.stop()


def test_rotation_encrypts_rows_stored_in_clear(database_url: str, tmp_path: Path) -> None:
    """A database filled by the plain storage (no key file) and later given a
    key: rotation encrypts the clear rows, and compaction leaves no clear
    text behind in the files."""
    server = start_server(database_url, tmp_path / "plain")
    try:
        session = server.session("alice")
        assert session.request("MKCALENDAR", f"{server.url}/alice/visits/").status_code == 201
        r = session.put(f"{server.url}/alice/visits/{UID}.ics", data=event(UID).encode(),
                        headers=ICS)
        assert r.status_code == 201
    finally:
        server.stop()
    raw = b"".join(f.read_bytes() for f in database_files(database_url))
    assert SUMMARY.encode() in raw  # in clear: the scan can see plaintext
    assert key_ids(database_url)["calendar_objects"] == {None}

    key_file = tmp_path / "key"
    create_key_file(key_file)
    rotated = rotation.rotate(database_url, key_file)
    assert rotated.reencrypted["calendar_objects"] == 1
    assert key_ids(database_url)["calendar_objects"] == {rotated.key_id}
    assert_no_plaintext(database_url, clear_markers=(UID,))

    server = start_server(database_url, tmp_path / "plain", {"storage": {"key_file": str(key_file)}})
    try:
        r = server.session("alice").get(f"{server.url}/alice/visits/{UID}.ics")
        assert r.status_code == 200 and SUMMARY in r.content.decode()
    finally:
        server.stop()


def test_rotation_with_the_wrong_key_file_changes_nothing(
    instance_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, key_file = storage_of(instance_home)
    write_key_file(key_file, {1: secrets.token_bytes(32)})
    before_key = key_file.read_bytes()
    before = key_ids(url)
    assert cli_main(["rotate-key", "--home", str(instance_home)]) == 1
    assert "does not match this database" in capsys.readouterr().err
    assert key_file.read_bytes() == before_key
    assert key_ids(url) == before


def test_key_file_is_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "key"
    create_key_file(path)
    first = load_keys(path)
    keys = {**first, 2: secrets.token_bytes(32)}
    write_key_file(path, keys)
    assert load_keys(path) == keys and list(load_keys(path)) == [1, 2]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["key"]


# -- a missing or wrong key stops `serve` -------------------------------------


def dump(url: str) -> list[tuple[str, list[tuple[Any, ...]]]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [(t.name, [tuple(r) for r in conn.execute(select(t))])
                    for t in metadata.sorted_tables]
    finally:
        engine.dispose()


def _random_key_file(path: Path, key_id: int) -> None:
    path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{key_id}:{base64.b64encode(secrets.token_bytes(32)).decode()}\n")


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "key file {key} is missing"),
        ("other key", "key 1 of the key file does not match this database: wrong key file"),
        ("other key id", "data is encrypted with key(s) 1, which the key file does not hold"),
        ("mode 0644", "key file {key} is readable by others: chmod 600 {key}"),
    ],
)
def test_serve_refuses_a_missing_or_wrong_key(instance_home: Path, case: str, message: str) -> None:
    url, key_file = storage_of(instance_home)
    if case == "missing":
        key_file.unlink()
    elif case == "other key":
        _random_key_file(key_file, 1)
    elif case == "other key id":
        _random_key_file(key_file, 3)
    else:
        os.chmod(key_file, 0o644)
    before = dump(url)
    sqlite_file = Path(str(make_url(url).database)) if url.startswith("sqlite") else None
    before_bytes = sqlite_file.read_bytes() if sqlite_file else b""
    port = free_port()
    proc = spawn_serve(instance_home, port)
    try:
        _, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        pytest.fail("serve started despite the bad key")
    assert proc.returncode == 1
    errors = [line for line in stderr.splitlines() if line.startswith("servicehop-caldav: error:")]
    assert errors == [f"servicehop-caldav: error: {message.format(key=key_file)}"], stderr
    assert "Traceback" not in stderr
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=2)
    assert dump(url) == before
    if sqlite_file:
        assert sqlite_file.read_bytes() == before_bytes
