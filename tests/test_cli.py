"""The `servicehop-caldav` command, run as a user runs it (a subprocess)."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
from pathlib import Path

import caldav
import pytest

from tests.conftest import CLI, free_port, spawn_serve, wait_for_port


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=60, env=env
    )


def init(home: Path, *extra: str) -> str:
    """Create an instance; return the password it printed."""
    result = run_cli("init", "--home", str(home), *extra)
    assert result.returncode == 0, result.stderr
    match = re.search(r"login: demo\s+password: (\S+)", result.stdout)
    assert match, result.stdout
    return match.group(1)


def test_init_creates_the_instance(tmp_path: Path) -> None:
    home = tmp_path / "inst"
    init(home)
    for name in ("radicale.conf", "servicehop.toml", "servicehop.db", "key"):
        assert (home / name).is_file(), name
    assert not (home / "users.htpasswd").exists()  # logins live in the directory
    assert stat.S_IMODE((home / "key").stat().st_mode) == 0o600
    conf = (home / "radicale.conf").read_text()
    assert "type = radicale_storage_servicehop" in conf
    assert "type = radicale_auth_servicehop" in conf
    assert f"database_url = sqlite:///{home / 'servicehop.db'}" in conf


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    home = tmp_path / "inst"
    init(home)
    key_before = (home / "key").read_bytes()
    result = run_cli("init", "--home", str(home))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "already holds an instance" in result.stderr
    assert (home / "key").read_bytes() == key_before


def test_home_defaults_to_environment(tmp_path: Path) -> None:
    env = dict(os.environ, SERVICEHOP_HOME=str(tmp_path / "from-env"))
    result = run_cli("init", env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "from-env" / "radicale.conf").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "--home", "{tmp}/missing"], "no instance at"),
        (["verify", "--home", "{tmp}/missing"], "no instance at"),
        (["init", "--home", "{tmp}/x", "--database-url", "mysql://nobody@nowhere/x"], "unsupported database"),
        (["init", "--home", "{tmp}/y", "--database-url", "postgresql+psycopg://nobody@127.0.0.1:1/x"],
         "cannot open the database"),
    ],
)
def test_errors_are_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_cli(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.returncode == 1
    assert result.stderr.startswith("servicehop-caldav: error: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1


def test_serve_answers_caldav_and_verify_passes(tmp_path: Path) -> None:
    home = tmp_path / "inst"
    password = init(home)
    port = free_port()
    proc = spawn_serve(home, port)
    try:
        wait_for_port(port, lambda: None if proc.poll() is None else str(proc.communicate()))
        client = caldav.DAVClient(url=f"http://127.0.0.1:{port}/", username="demo", password=password)
        principal = client.principal()
        # `init` makes demo the admin of the demo department: its calendars
        # are provisioned, and the opening-time calendar is writable.
        calendars = {str(c.url).rstrip("/").rsplit("/", 1)[-1]: c for c in principal.calendars()}
        assert sorted(calendars) == ["opening-demo", "overview-demo"]
        calendars["opening-demo"].save_event(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\n"
            "UID:cli-1\r\nDTSTART:20261201T100000Z\r\nDTEND:20261201T110000Z\r\n"
            "SUMMARY:Open\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
        )
        assert [e.icalendar_component["uid"] for e in calendars["opening-demo"].events()] == ["cli-1"]
        bad = caldav.DAVClient(url=f"http://127.0.0.1:{port}/", username="demo", password="wrong")
        with pytest.raises(caldav.lib.error.AuthorizationError):
            bad.principal()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0
    result = run_cli("verify", "--home", str(home))
    assert result.returncode == 0, result.stderr
    assert "no problems found" in result.stdout


def test_serve_reports_a_busy_port(tmp_path: Path) -> None:
    home = tmp_path / "inst"
    init(home)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--home", str(home), "--port", str(port))
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_serve_refuses_broken_booking_rules_in_one_line(tmp_path: Path) -> None:
    home = tmp_path / "inst"
    init(home)
    (home / "servicehop.toml").write_text('[defaults]\nhorizon_days = "two weeks"\n')
    result = run_cli("serve", "--home", str(home), "--port", str(free_port()), "--log-level", "warning")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == (f"servicehop-caldav: error: {home / 'servicehop.toml'}: "
                    "defaults.horizon_days must be a whole number from 1 to 366"), result.stderr
    assert "Traceback" not in result.stderr
