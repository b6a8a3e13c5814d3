"""An instance directory: everything one servicehop-caldav installation needs.

::

    DIR/radicale.conf     Radicale's configuration, wired to our plugins
    DIR/servicehop.toml   departments' booking rules and instance settings
    DIR/servicehop.db     the embedded SQLite database (default)
    DIR/key               AES-256 key file, mode 0600
    DIR/tls-cert.pem      with `init --tls`: self-signed HTTPS certificate, and
    DIR/tls-key.pem       its private key, mode 0600

Logins, departments and roles live in the database (the directory).
"""

from __future__ import annotations

import configparser
import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from servicehop_caldav import tls as tls_setup
from servicehop_caldav.crypto import Keyring
from servicehop_caldav.db.engine import Database
from servicehop_caldav.db.migrate import ensure_schema
from servicehop_caldav.directory import store as directory
from servicehop_caldav.keyfile import create_key_file, load_keys
from servicehop_caldav.provisioning import ensure_provisioned
from servicehop_caldav.store.keycheck import bind_keyring

RADICALE_CONF = "radicale.conf"
SERVICEHOP_TOML = "servicehop.toml"
DATABASE = "servicehop.db"
KEY_FILE = "key"
# The department and role `init` gives the first user.
DEMO_DEPARTMENT = directory.Department("demo", "Demo", "Europe/Oslo", "en", None)
FIRST_USER_ROLE = "admin"


class InstanceError(RuntimeError):
    """The instance directory is missing, incomplete or already exists."""


def default_home() -> Path:
    return Path(os.environ.get("SERVICEHOP_HOME") or "instance")


def _template(name: str) -> str:
    return resources.files("servicehop_caldav.templates").joinpath(name).read_text()


@dataclass(frozen=True)
class Instance:
    home: Path

    @property
    def radicale_conf(self) -> Path:
        return self.home / RADICALE_CONF

    @property
    def key_file(self) -> Path:
        return self.home / KEY_FILE

    def check(self) -> None:
        """Refuse to run on a directory that `init` did not make."""
        if not self.radicale_conf.is_file():
            raise InstanceError(
                f"no instance at {self.home}: run `servicehop-caldav init --home {self.home}` first"
            )

    def storage_settings(self) -> tuple[str, str]:
        """``[storage] database_url`` and ``key_file`` of radicale.conf."""
        self.check()
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(self.radicale_conf, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError) as e:
            raise InstanceError(f"cannot read {self.radicale_conf}: {e}") from e
        url = parser.get("storage", "database_url", fallback="").strip()
        if not url:  # the storage plugin's default
            folder = parser.get("storage", "filesystem_folder", fallback="").strip()
            url = "sqlite:///" + os.path.join(os.path.abspath(os.path.expanduser(folder)),
                                              "servicehop.db")
        key_file = parser.get("storage", "key_file", fallback="").strip()
        if not key_file:
            raise InstanceError(f"{self.radicale_conf} names no [storage] key_file")
        return url, key_file

    @contextmanager
    def open(self) -> Iterator[tuple[Database, Keyring]]:
        """The instance's database (schema current) and its keyring, bound
        to each other; the database is closed when the block ends."""
        url, key_file = self.storage_settings()
        keyring = Keyring.from_keys(load_keys(Path(key_file)))
        db = Database(url)
        try:
            ensure_schema(db)
            bind_keyring(db, keyring)
            yield db, keyring
        finally:
            db.dispose()


@dataclass(frozen=True)
class Created:
    instance: Instance
    user: str
    password: str
    # SHA-256 fingerprint of the self-signed certificate (init --tls).
    tls_fingerprint: str | None = None


def init_instance(home: Path, database_url: str | None = None, user: str = "demo",
                  tls: bool = False, tls_names: Sequence[str] = ()) -> Created:
    """Create the instance directory, its database and its key, and the
    first user (an admin of the demo department) with a new password."""
    directory.check_slug("username", user)
    home = home.absolute()
    if (home / RADICALE_CONF).exists():
        raise InstanceError(f"{home} already holds an instance; not overwriting it")
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    url = database_url or f"sqlite:///{home / DATABASE}"
    db = Database(url)
    try:
        ensure_schema(db)
    finally:
        db.dispose()
    create_key_file(home / KEY_FILE)
    password = secrets.token_urlsafe(12)
    _add_first_user(url, home / KEY_FILE, user, password)
    (home / SERVICEHOP_TOML).write_text(_template(SERVICEHOP_TOML))
    conf = _template(RADICALE_CONF).replace("{home}", str(home)).replace("{database_url}", url)
    fingerprint = None
    if tls:
        conf, cert = tls_setup.set_up(home, conf, tls_names)
        fingerprint = tls_setup.fingerprint(cert)
    # Written last: its presence marks a complete instance.
    (home / RADICALE_CONF).write_text(conf)
    return Created(Instance(home), user, password, fingerprint)


def _add_first_user(url: str, key_file: Path, user: str, password: str) -> None:
    keyring = Keyring.from_keys(load_keys(key_file))
    db = Database(url)
    try:
        # One transaction: the key check, the department and the user, or nothing.
        with db.transaction("w") as conn:
            bind_keyring(db, keyring)
            dept = DEMO_DEPARTMENT
            if directory.get_department(conn, dept.id) is None:
                directory.add_department(conn, dept.id, dept.name, dept.timezone, dept.language)
            user_id = directory.add_user(conn, keyring, user, password, name=user,
                                         email=f"{user}@example.invalid")
            directory.add_role(conn, user_id, dept.id, FIRST_USER_ROLE)
        ensure_provisioned(db, user)
    finally:
        db.dispose()
