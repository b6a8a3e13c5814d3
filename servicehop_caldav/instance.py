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


@dataclass(frozen=True)
class Draft:
    """An instance being made (:func:`new_instance`): schema, key, settings
    and configuration are in place; its directory is still to be filled."""

    home: Path
    database_url: str
    # radicale.conf under a temporary name: Radicale can load it, while
    # `serve` and every other command still see no instance.
    pending_conf: Path
    tls_fingerprint: str | None = None

    @property
    def key_file(self) -> Path:
        return self.home / KEY_FILE


@contextmanager
def new_instance(home: Path, database_url: str | None = None, settings: str | None = None,
                 tls: bool = False, tls_names: Sequence[str] = ()) -> Iterator[Draft]:
    """Make a new instance directory around the block that fills it.

    Before the block: the directory, the database schema, the key, the
    servicehop.toml (``settings``, default the template) and radicale.conf
    under a temporary name. radicale.conf gets its name only when the block
    ends without error: its presence marks a complete instance, so an
    interrupted `init` or `demo` leaves nothing `serve` would run."""
    home = home.absolute()
    if (home / RADICALE_CONF).exists():
        raise InstanceError(f"{home} already holds an instance; not overwriting it")
    pending = home / (RADICALE_CONF + ".new")
    if pending.exists():
        raise InstanceError(f"{home} holds an instance that was never finished; remove it first")
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    url = database_url or f"sqlite:///{home / DATABASE}"
    db = Database(url)
    try:
        ensure_schema(db)
    finally:
        db.dispose()
    create_key_file(home / KEY_FILE)
    (home / SERVICEHOP_TOML).write_text(settings if settings is not None else _template(SERVICEHOP_TOML))
    conf = _template(RADICALE_CONF).replace("{home}", str(home)).replace("{database_url}", url)
    fingerprint = None
    if tls:
        conf, cert = tls_setup.set_up(home, conf, tls_names)
        fingerprint = tls_setup.fingerprint(cert)
    pending.write_text(conf)
    yield Draft(home, url, pending, fingerprint)
    os.replace(pending, home / RADICALE_CONF)


def new_password() -> str:
    """A generated login password (about 96 random bits, URL-safe characters)."""
    return secrets.token_urlsafe(12)


def init_instance(home: Path, database_url: str | None = None, user: str = "demo",
                  tls: bool = False, tls_names: Sequence[str] = ()) -> Created:
    """Create the instance directory, its database and its key, and the
    first user (an admin of the demo department) with a new password."""
    directory.check_slug("username", user)
    password = new_password()
    with new_instance(home, database_url, tls=tls, tls_names=tls_names) as draft:
        _add_first_user(draft.database_url, draft.key_file, user, password)
    return Created(Instance(draft.home), user, password, draft.tls_fingerprint)


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
