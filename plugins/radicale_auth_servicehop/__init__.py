"""Radicale auth plugin: logins from the servicehop directory.

Configure with::

    [auth]
    type = radicale_auth_servicehop
    delay = 1                  # Radicale's delay after a failed login
    cache_logins = True        # remember successful logins (see below)
    cache_successful_logins_expiry = 900

The users live in the database named by ``[storage] database_url`` (the
servicehop storage plugin's option). Passwords are salted Argon2id hashes
(``servicehop_caldav.passwords``), verified in constant time. A hash of an
earlier version (scrypt) or below today's cost is replaced at the user's next
successful login, when the password is known.

Every refusal looks and costs the same: an unknown user is verified against
a dummy hash, a disabled user's password is verified before the refusal,
and Radicale then applies its own failed-login delay and its constant
execution time for failed logins.

Radicale's own login cache is not used (Radicale turns it off for plugin
types, and it would also remember a failure after ``user enable`` and a
success after ``user disable`` or ``user passwd``). Instead this plugin
remembers, per user, a keyed digest of the last password that verified and
the hash it verified against; every request still reads the user's row, so
disabling a user or changing a password takes effect on the next request,
and only the hashing work is saved. Failures are never cached. A login
that is recalled reads the user's grants in the same statement and hands
them to the rights plugin for this request
(:mod:`servicehop_caldav.directory.grants`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time

from radicale import auth, config
from radicale.log import logger
from radicale_storage_servicehop import database_url_of

from servicehop_caldav.db.engine import Database
from servicehop_caldav.directory import grants
from servicehop_caldav.directory import store as directory
from servicehop_caldav.passwords import dummy_hash, hash_password, needs_rehash, verify_password
from servicehop_caldav.provisioning import ensure_provisioned
from servicehop_caldav.store import read_ahead


class Auth(auth.BaseAuth):
    """Checks logins against the directory's users."""

    def __init__(self, configuration: config.Configuration) -> None:
        super().__init__(configuration)
        self._db = Database.shared(database_url_of(configuration))
        # Radicale's cache stays off (see the module docstring); ours follows
        # the same options.
        self._cache_logins = False
        self._remember = bool(configuration.get("auth", "cache_logins"))
        self._remember_seconds = float(configuration.get("auth", "cache_successful_logins_expiry"))
        self._remember_key = secrets.token_bytes(32)
        # username -> (digest of the password, stored hash it matched, when)
        self._remembered: dict[str, tuple[bytes, str, float]] = {}
        self._remembered_lock = threading.Lock()
        logger.info(
            "servicehop auth: logins from the directory; successful logins remembered: %s",
            f"{self._remember_seconds:g} s" if self._remember else "no",
        )

    def _digest(self, username: str, password: str) -> bytes:
        return hmac.new(self._remember_key, f"{username}\0{password}".encode(),
                        hashlib.sha256).digest()

    def _recall(self, username: str, password: str, stored: str) -> bool:
        """True if this password verified against this very hash lately."""
        if not self._remember:
            return False
        with self._remembered_lock:
            entry = self._remembered.get(username)
        if entry is None:
            return False
        digest, hash_then, when = entry
        if time.monotonic() - when > self._remember_seconds:
            with self._remembered_lock:
                if self._remembered.get(username) is entry:
                    del self._remembered[username]
            return False
        return hmac.compare_digest(hash_then, stored) and hmac.compare_digest(
            digest, self._digest(username, password))

    def _store(self, username: str, password: str, stored: str) -> None:
        if not self._remember:
            return
        now = time.monotonic()
        with self._remembered_lock:
            for name in [n for n, e in self._remembered.items()
                         if now - e[2] > self._remember_seconds]:
                del self._remembered[name]
            self._remembered[username] = (self._digest(username, password), stored, now)

    def _login(self, login: str, password: str) -> str:
        grants.forget()
        # A login likely to be recalled reads its grants with it (one
        # statement); one verified anew may provision collections first.
        likely_recalled = self._remember and login in self._remembered
        with self._db.transaction("r") as conn:
            found = directory.credentials_of(conn, login, read_ahead.wanted(), with_grants=likely_recalled)
        if found is None:
            # Same work and the same answer as a wrong password.
            verify_password(password, dummy_hash())
            logger.debug("login refused: no such user")
            return ""
        stored, disabled, granted = found
        if disabled:
            verify_password(password, stored)
            logger.debug("login refused: user disabled")
            return ""
        if self._recall(login, password, stored):
            if granted is not None:
                grants.hand_over(login, granted)
            return login
        if not verify_password(password, stored):
            logger.debug("login refused: wrong password")
            return ""
        if needs_rehash(stored):
            stored = self._rehash(login, password, stored)
        self._store(login, password, stored)
        ensure_provisioned(self._db, login)
        return login

    def _rehash(self, login: str, password: str, stored: str) -> str:
        """The user's hash at today's cost, written unless the password
        changed meanwhile; the hash this login now matches."""
        new = hash_password(password)
        with self._db.transaction("w") as conn:
            if directory.upgrade_password_hash(conn, login, stored, new):
                logger.info("servicehop auth: a password hash was upgraded to the current cost")
                return new
        return stored
