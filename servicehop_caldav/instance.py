"""An instance directory: everything one servicehop-caldav installation needs.

::

    DIR/radicale.conf     Radicale's configuration, wired to our plugins
    DIR/servicehop.toml   departments' booking rules and instance settings
    DIR/servicehop.db     the embedded SQLite database (default)
    DIR/key               AES-256 key file, mode 0600
    DIR/users.htpasswd    logins (until the directory's auth plugin lands)
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from passlib.hash import sha512_crypt

from servicehop_caldav.db.engine import Database
from servicehop_caldav.db.migrate import ensure_schema
from servicehop_caldav.keyfile import create_key_file

RADICALE_CONF = "radicale.conf"
SERVICEHOP_TOML = "servicehop.toml"
DATABASE = "servicehop.db"
KEY_FILE = "key"
HTPASSWD = "users.htpasswd"


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


@dataclass(frozen=True)
class Created:
    instance: Instance
    user: str
    password: str


def init_instance(home: Path, database_url: str | None = None, user: str = "demo") -> Created:
    """Create the instance directory, its database and its key."""
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
    htpasswd = home / HTPASSWD
    htpasswd.write_text(f"{user}:{sha512_crypt.hash(password)}\n")
    os.chmod(htpasswd, 0o600)
    (home / SERVICEHOP_TOML).write_text(_template(SERVICEHOP_TOML))
    # Written last: its presence marks a complete instance.
    (home / RADICALE_CONF).write_text(
        _template(RADICALE_CONF).replace("{home}", str(home)).replace("{database_url}", url)
    )
    return Created(Instance(home), user, password)
