"""`servicehop-caldav department ...` and `user ...`, run as a user runs them
(a subprocess), on an instance of each backend; logins checked on the real
server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from requests.auth import HTTPBasicAuth

from tests.conftest import Server, start_instance_server

CLI = [sys.executable, "-m", "servicehop_caldav.cli"]
NON_ASCII_PASSWORD = "blåbær-Æøå-пароль"


def cli(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the command with ``--home`` last; ``stdin`` is fed as UTF-8.

    A session of its own: no controlling terminal, so a password prompt
    reads standard input instead of the terminal of whoever runs the tests.
    """
    return subprocess.run(
        [*CLI, *args, "--home", str(home)], input=stdin if stdin is not None else "",
        capture_output=True, text=True, encoding="utf-8", timeout=120, start_new_session=True,
    )


def ok(home: Path, *args: str, stdin: str | None = None) -> str:
    result = cli(home, *args, stdin=stdin)
    assert result.returncode == 0, result.stderr
    return result.stdout


def fails(home: Path, *args: str, message: str, stdin: str | None = None) -> None:
    result = cli(home, *args, stdin=stdin)
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith("servicehop-caldav: error: "), result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert message in result.stderr, result.stderr


def status(server: Server, username: str, password: str) -> int:
    return requests.request(
        "PROPFIND", f"{server.url}/{username}/", headers={"Depth": "0"},
        auth=HTTPBasicAuth(username.encode(), password.encode()), timeout=30,
    ).status_code


@pytest.fixture
def home(instance_home: Path) -> Path:
    ok(instance_home, "department", "add", "care", "--name", "Hjemmetjenester Sør",
       "--timezone", "Europe/Oslo", "--language", "nb")
    return instance_home


@pytest.fixture
def server(home: Path) -> Iterator[Server]:
    srv = start_instance_server(home)
    yield srv
    srv.stop()


def test_init_makes_the_first_admin(instance_home: Path) -> None:
    shown = ok(instance_home, "user", "show", "demo")
    assert "status:   active" in shown and "role:     admin in demo" in shown
    assert ok(instance_home, "department", "list").splitlines()[1].split() == [
        "demo", "Demo", "Europe/Oslo", "en"]


def test_init_checks_the_username_first(tmp_path: Path) -> None:
    fails(tmp_path / "inst", "init", "--user", "Not Valid", message="username 'Not Valid' must be")
    assert not (tmp_path / "inst").exists()


def test_departments(home: Path) -> None:
    out = ok(home, "department", "add", "night", "--name", "Night shift", "--language", "en")
    assert "added department night" in out
    lines = ok(home, "department", "list").splitlines()
    assert lines[0].split() == ["ID", "NAME", "TIME", "ZONE", "LANGUAGE"]
    rows = [line.split() for line in lines[1:]]
    assert rows == [["care", "Hjemmetjenester", "Sør", "Europe/Oslo", "nb"],
                    ["demo", "Demo", "Europe/Oslo", "en"],
                    ["night", "Night", "shift", "Europe/Oslo", "en"]]


def test_user_add_and_login(home: Path, server: Server) -> None:
    out = ok(home, "user", "add", "rita", "--role", "recipient", "--department", "care",
             "--name", "Rita Ås", "--email", "Rita@Example.org", "--address", "Storgata 1, 3256 Larvik",
             "--phone", "+47 400 00 000", "--weekly-minutes", "180", "--password-stdin",
             stdin=NON_ASCII_PASSWORD + "\n")
    assert "added user rita" in out
    assert status(server, "rita", NON_ASCII_PASSWORD) == 207
    assert status(server, "rita", NON_ASCII_PASSWORD + "\n") == 401
    shown = ok(home, "user", "show", "rita")
    for text in ("username: rita", "status:   active", "Rita Ås", "Rita@Example.org",
                 "Storgata 1, 3256 Larvik", "+47 400 00 000",
                 "role:     recipient in care (weekly entitlement 180 min)"):
        assert text in shown
    assert NON_ASCII_PASSWORD not in shown and "argon2" not in shown and "scrypt" not in shown


def test_second_role_needs_no_password(home: Path, server: Server) -> None:
    ok(home, "user", "add", "sam", "--role", "staff", "--department", "care", "--name", "Sam",
       "--email", "sam@example.org", "--password-stdin", stdin="sam-pw\n")
    out = ok(home, "user", "add", "sam", "--role", "recipient", "--department", "demo")
    assert "role recipient in demo added" in out
    out = ok(home, "user", "add", "sam", "--role", "staff", "--department", "demo",
             "--name", "Other Name", "--password-stdin", stdin="other-pw\n")
    assert "left as they were: --name, the password" in out
    shown = ok(home, "user", "show", "sam")
    assert "name:     Sam" in shown
    assert [line for line in shown.splitlines() if line.startswith("role:")] == [
        "role:     staff in care", "role:     recipient in demo", "role:     staff in demo"]
    assert status(server, "sam", "sam-pw") == 207
    assert status(server, "sam", "other-pw") == 401


def test_user_list(home: Path) -> None:
    for username, dept in (("ann", "care"), ("bo", "demo")):
        ok(home, "user", "add", username, "--role", "staff", "--department", dept, "--name",
           f"Name {username}", "--email", f"{username}@example.org", "--password-stdin", stdin="pw\n")
    ok(home, "user", "disable", "bo")
    listed = [line.split()[:2] for line in ok(home, "user", "list").splitlines()[1:]]
    assert [username for username, _id in listed] == ["ann", "bo", "demo"]
    # The directory's ids (the log's decision lines name people by them), in order of creation.
    assert [user_id for _username, user_id in listed] == ["2", "3", "1"]
    assert "id:       3  " in ok(home, "user", "show", "bo")
    care = ok(home, "user", "list", "--department", "care").splitlines()
    assert [line.split()[0] for line in care[1:]] == ["ann"]
    assert "staff@care" in care[1] and "Name ann" in care[1]
    demo = ok(home, "user", "list", "--department", "demo").splitlines()
    assert [line.split()[0] for line in demo[1:]] == ["bo", "demo"]
    assert demo[1].split()[-1] == "disabled" and demo[2].split()[-1] == "active"


def test_passwd_disable_enable(home: Path, server: Server) -> None:
    ok(home, "user", "add", "rita", "--role", "recipient", "--department", "care", "--name", "Rita",
       "--email", "rita@example.org", "--password-stdin", stdin="first-pw\n")
    assert status(server, "rita", "first-pw") == 207
    assert "password of rita changed" in ok(home, "user", "passwd", "rita", "--password-stdin",
                                            stdin="second-pw\n")
    assert status(server, "rita", "first-pw") == 401
    assert status(server, "rita", "second-pw") == 207
    ok(home, "user", "disable", "rita")
    assert "status:   disabled" in ok(home, "user", "show", "rita")
    assert status(server, "rita", "second-pw") == 401
    ok(home, "user", "enable", "rita")
    assert status(server, "rita", "second-pw") == 207


def test_password_prompt(home: Path, server: Server) -> None:
    # No terminal: getpass reads the two answers from standard input.
    result = cli(home, "user", "add", "pia", "--role", "staff", "--department", "care", "--name", "Pia",
                 "--email", "pia@example.org", stdin="one-pw\nanother-pw\n")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "servicehop-caldav: error: the two passwords differ; nothing changed")
    fails(home, "user", "show", "pia", message="no user 'pia'")
    result = cli(home, "user", "add", "pia", "--role", "staff", "--department", "care", "--name", "Pia",
                 "--email", "pia@example.org", stdin=f"{NON_ASCII_PASSWORD}\n{NON_ASCII_PASSWORD}\n")
    assert result.returncode == 0, result.stderr
    assert status(server, "pia", NON_ASCII_PASSWORD) == 207
    result = cli(home, "user", "passwd", "pia", stdin="new-pw\nnew-pw\n")
    assert result.returncode == 0, result.stderr
    assert status(server, "pia", "new-pw") == 207


def test_no_password_on_the_command_line(home: Path) -> None:
    result = cli(home, "user", "passwd", "demo", "--password", "secret")
    assert result.returncode == 2 and "unrecognized arguments" in result.stderr


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["department", "add", "care", "--name", "Again"], None, "department 'care' already exists"),
        (["department", "add", "mars", "--name", "Mars", "--timezone", "Mars/Olympus"], None,
         "unknown time zone 'Mars/Olympus'"),
        (["department", "add", "x", "--name", "X", "--language", "de"], None,
         "language must be one of nb, en"),
        (["department", "add", "Bad Id", "--name", "X"], None, "department id 'Bad Id' must be"),
        (["user", "add", "rita", "--role", "recipient", "--department", "nowhere", "--name", "R",
          "--email", "r@example.org", "--password-stdin"], "pw\n", "no department 'nowhere'"),
        (["user", "add", "rita", "--role", "boss", "--department", "care", "--name", "R",
          "--email", "r@example.org", "--password-stdin"], "pw\n",
         "role must be one of recipient, staff, admin"),
        (["user", "add", "Rita", "--role", "staff", "--department", "care", "--name", "R",
          "--email", "r@example.org", "--password-stdin"], "pw\n", "username 'Rita' must be"),
        (["user", "add", "../x", "--role", "staff", "--department", "care", "--name", "R",
          "--email", "r@example.org", "--password-stdin"], "pw\n", "username '../x' must be"),
        (["user", "add", "rita", "--role", "staff", "--department", "care", "--name", "R",
          "--email", "not-an-address", "--password-stdin"], "pw\n", "is not an e-mail address"),
        (["user", "add", "rita", "--role", "staff", "--department", "care", "--name", "R",
          "--email", "r@example.org", "--weekly-minutes", "60", "--password-stdin"], "pw\n",
         "--weekly-minutes belongs to a recipient role"),
        (["user", "add", "rita", "--role", "recipient", "--department", "care", "--name", "R",
          "--email", "r@example.org", "--weekly-minutes", "lots", "--password-stdin"], "pw\n",
         "--weekly-minutes must be a whole number"),
        (["user", "add", "rita", "--role", "staff", "--department", "care", "--password-stdin"], "pw\n",
         "a new user needs --name and --email"),
        (["user", "add", "rita", "--role", "staff", "--department", "care", "--name", "R",
          "--email", "r@example.org", "--password-stdin"], "\n", "the password must not be empty"),
        (["user", "add", "rita", "--role", "staff", "--department", "care", "--name", "R",
          "--email", "r@example.org"], "", "no password given"),
        (["user", "passwd", "nobody", "--password-stdin"], "pw\n", "no user 'nobody'"),
        (["user", "disable", "nobody"], None, "no user 'nobody'"),
        (["user", "enable", "nobody"], None, "no user 'nobody'"),
        (["user", "show", "nobody"], None, "no user 'nobody'"),
        (["user", "list", "--department", "nowhere"], None, "no department 'nowhere'"),
    ],
)
def test_errors_are_one_line(home: Path, args: list[str], stdin: str | None, message: str) -> None:
    if "--password-stdin" in args or stdin is None:
        fails(home, *args, stdin=stdin, message=message)
    else:  # a prompt: getpass may warn on stderr before the error line
        result = cli(home, *args, stdin=stdin)
        assert result.returncode == 1
        assert result.stderr.splitlines()[-1].startswith("servicehop-caldav: error: ")
        assert message in result.stderr and "Traceback" not in result.stderr
    fails(home, "user", "show", "rita", message="no user 'rita'")  # nothing half-made


def test_directory_commands_need_an_instance(tmp_path: Path) -> None:
    fails(tmp_path / "missing", "user", "list", message="no instance at")
    fails(tmp_path / "missing", "department", "add", "x", "--name", "X", message="no instance at")


def test_wrong_key_file_is_one_line(home: Path) -> None:
    key = home / "key"
    key.write_text("1:" + "A" * 43 + "=\n")
    fails(home, "user", "list", message="does not match this database")
