"""Logins against the directory (radicale_auth_servicehop), on the real server.

Every refusal must be the same plain 401, whether the user is unknown,
disabled or gave a wrong password; the time of unknown-user and
wrong-password refusals is measured and printed (run with ``-s`` to see it
live; it is printed either way), never asserted.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from radicale import config as radicale_config
from radicale_auth_servicehop import Auth
from requests.auth import HTTPBasicAuth
from sqlalchemy import select, update

from servicehop_caldav import passwords
from servicehop_caldav.db.schema import users
from servicehop_caldav.directory import store as directory
from servicehop_caldav.instance import Instance
from tests.conftest import Server, start_instance_server
from tests.test_passwords import scrypt_hash

NON_ASCII_PASSWORD = "blåbær-Æøå-пароль"
PASSWORDS = {"rita": "rita-pw-1", "sam": "sam-pw-1", "nina": NON_ASCII_PASSWORD}


def add_people(home: Path) -> None:
    """rita (recipient), sam (staff), nina (recipient, non-ASCII password)."""
    with Instance(home).open() as (db, keyring):
        with db.transaction("w") as conn:
            directory.add_department(conn, "care", "Care", "Europe/Oslo", "en")
            for username, role in (("rita", "recipient"), ("sam", "staff"), ("nina", "recipient")):
                user_id = directory.add_user(conn, keyring, username, PASSWORDS[username],
                                             f"Person {username}", f"{username}@example.org")
                directory.add_role(conn, user_id, "care", role)


def set_disabled(home: Path, username: str, disabled: bool) -> None:
    with Instance(home).open() as (db, _keyring):
        with db.transaction("w") as conn:
            directory.set_disabled(conn, username, disabled)


@pytest.fixture
def server(instance_home: Path) -> Iterator[Server]:
    add_people(instance_home)
    srv = start_instance_server(instance_home)
    srv.passwords = dict(PASSWORDS)
    yield srv
    srv.stop()


def propfind(server: Server, username: str | bytes, password: str | bytes) -> requests.Response:
    """PROPFIND Depth 0 on the user's home, credentials sent as UTF-8."""
    name = username.encode() if isinstance(username, str) else username
    secret = password.encode() if isinstance(password, str) else password
    home = name.decode("utf-8", "replace")
    return requests.request("PROPFIND", f"{server.url}/{home}/", headers={"Depth": "0"},
                            auth=HTTPBasicAuth(name, secret), timeout=30)


def refusal(response: requests.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    """What a client can see of a refusal, less the Date header."""
    headers = sorted((k.lower(), v) for k, v in response.headers.items() if k.lower() != "date")
    return response.status_code, headers, response.content


def test_login_ok(server: Server) -> None:
    for username, password in PASSWORDS.items():
        assert propfind(server, username, password).status_code == 207, username


def test_refusals_are_one_plain_401(server: Server) -> None:
    wrong = propfind(server, "rita", "not-her-password")
    unknown = propfind(server, "nobody", "not-her-password")
    unknown_like_existing = propfind(server, "ritaa", "rita-pw-1")
    empty = propfind(server, "rita", "")
    set_disabled(server.folder, "sam", True)
    disabled_right = propfind(server, "sam", PASSWORDS["sam"])
    disabled_wrong = propfind(server, "sam", "wrong")
    first = refusal(wrong)
    assert first[0] == 401
    for other in (unknown, unknown_like_existing, empty, disabled_right, disabled_wrong):
        assert refusal(other) == first
    body = wrong.content.decode("utf-8", "replace").lower()
    for word in ("rita", "sam", "disabled", "unknown", "exist", "password"):
        assert word not in body
    assert all("rita" not in v.lower() for _, v in first[1])


def test_disabled_user_is_refused_until_enabled(server: Server) -> None:
    # Logged in first: the remembered login must not outlive the disabling.
    assert propfind(server, "sam", PASSWORDS["sam"]).status_code == 207
    set_disabled(server.folder, "sam", True)
    assert propfind(server, "sam", PASSWORDS["sam"]).status_code == 401
    set_disabled(server.folder, "sam", False)
    assert propfind(server, "sam", PASSWORDS["sam"]).status_code == 207


def test_non_ascii_password(server: Server) -> None:
    assert propfind(server, "nina", NON_ASCII_PASSWORD).status_code == 207
    assert propfind(server, "nina", "blabaer-AEoa-parol").status_code == 401
    assert propfind(server, "nina", NON_ASCII_PASSWORD.upper()).status_code == 401
    # The same characters in another encoding are another password.
    latin1 = "blåbær-Æøå".encode("latin-1")
    assert propfind(server, "nina", latin1).status_code == 401


def test_password_change_takes_effect_at_once(server: Server) -> None:
    assert propfind(server, "rita", "rita-pw-1").status_code == 207  # now remembered
    with Instance(server.folder).open() as (db, _keyring):
        with db.transaction("w") as conn:
            directory.set_password(conn, "rita", "rita-pw-2")
    assert propfind(server, "rita", "rita-pw-1").status_code == 401
    assert propfind(server, "rita", "rita-pw-2").status_code == 207


def stored_hash(home: Path, username: str, replace_by: str | None = None) -> str:
    """The user's stored password hash, after replacing it if asked."""
    with Instance(home).open() as (db, _keyring):
        with db.transaction("w") as conn:
            if replace_by is not None:
                conn.execute(update(users).where(users.c.username == username)
                             .values(password_hash=replace_by))
            return str(conn.execute(select(users.c.password_hash)
                                    .where(users.c.username == username)).scalar_one())


def test_older_and_cheaper_hashes_are_replaced_at_the_next_login(server: Server) -> None:
    with passwords.cheap_hashes():
        cheap = passwords.hash_password(PASSWORDS["sam"])
    for username, older in (("rita", scrypt_hash(PASSWORDS["rita"])), ("sam", cheap)):
        stored_hash(server.folder, username, replace_by=older)
        assert propfind(server, username, "wrong").status_code == 401
        assert stored_hash(server.folder, username) == older  # a refusal changes nothing
        assert propfind(server, username, PASSWORDS[username]).status_code == 207
        upgraded = stored_hash(server.folder, username)
        assert upgraded.startswith("$argon2id$v=19$m=7168,t=5,p=1$"), username
        assert passwords.verify_password(PASSWORDS[username], upgraded)
        assert propfind(server, username, PASSWORDS[username]).status_code == 207
        assert propfind(server, username, "wrong").status_code == 401
        assert stored_hash(server.folder, username) == upgraded  # once only


def test_login_needs_the_exact_username(server: Server) -> None:
    assert propfind(server, "Rita", "rita-pw-1").status_code == 401
    assert propfind(server, "rita ", "rita-pw-1").status_code == 401


def test_caldav_client_logs_in(server: Server) -> None:
    principal = server.client("rita").principal()
    assert principal.url is not None


def test_timing_of_refusals(server: Server, capsys: pytest.CaptureFixture[str], backend: str) -> None:
    """Unknown user vs wrong password ([auth] delay = 0): measured, not asserted."""
    rounds = 20
    kinds = {
        "unknown user": ("nobody", "some-password"),
        "wrong password": ("rita", "some-password"),
        "disabled user": ("sam", PASSWORDS["sam"]),
        "success": ("rita", "rita-pw-1"),
    }
    set_disabled(server.folder, "sam", True)
    session = requests.Session()
    # Warm up (connection, first dummy hash, remembered success).
    for username, password in kinds.values():
        session.request("PROPFIND", f"{server.url}/{username}/", headers={"Depth": "0"},
                        auth=(username, password), timeout=30)
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _ in range(rounds):
        for kind, (username, password) in kinds.items():  # interleaved
            started = time.perf_counter()
            response = session.request("PROPFIND", f"{server.url}/{username}/",
                                       headers={"Depth": "0"}, auth=(username, password), timeout=30)
            times[kind].append(time.perf_counter() - started)
            assert response.status_code == (207 if kind == "success" else 401)
    # The plugin alone, without Radicale's constant-time padding of failures.
    plugin = Auth(radicale_config.load([(str(server.folder / "radicale.conf"), False)]))
    plugin_times: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _ in range(rounds):
        for kind, (username, password) in kinds.items():
            started = time.perf_counter()
            result = plugin._login(username, password)
            plugin_times[kind].append(time.perf_counter() - started)
            assert result == (username if kind == "success" else "")
    with capsys.disabled():
        print(f"\nlogin timing on {backend}, {rounds} each, interleaved, [auth] delay = 0 (ms):")
        print(f"  {'':30}{'median':>8}{'mean':>8}{'min':>8}{'max':>8}{'stdev':>8}")
        for label, table in (("HTTP 401/207", times), ("plugin _login", plugin_times)):
            for kind, values in table.items():
                ms = [v * 1000 for v in values]
                print(f"  {label + ' ' + kind:30}{statistics.median(ms):8.1f}"
                      f"{statistics.mean(ms):8.1f}{min(ms):8.1f}{max(ms):8.1f}"
                      f"{statistics.stdev(ms):8.1f}")
