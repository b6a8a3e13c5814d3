"""servicehop.toml as the running server sees it: read again when it changes.

An admin who edits the rules (a new service, a longer horizon) should not
have to restart the server. The file is checked (one ``stat``) on each
booking; a change that does not parse is logged and the last good settings
stay in force, so a typing mistake never stops bookings.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from servicehop_caldav.booking.config import ConfigError, Settings, load_settings, parse_settings

logger = logging.getLogger(__name__)


class SettingsFile:
    """The settings of one file (or the defaults when there is no file)."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        # Raises ConfigError at start: the server does not start on a bad file.
        self._settings = load_settings(path) if path is not None else parse_settings("")
        self._stamp = self._stat()

    def _stat(self) -> tuple[int, int] | None:
        if self._path is None:
            return None
        try:
            st = os.stat(self._path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def current(self) -> Settings:
        stamp = self._stat()
        if stamp == self._stamp or stamp is None or self._path is None:
            return self._settings
        with self._lock:
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self._settings = load_settings(self._path)
                    logger.info("booking rules read again from %s", self._path)
                except ConfigError as e:
                    logger.error("%s; the previous booking rules stay in force", e)
        return self._settings
