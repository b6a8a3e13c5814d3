"""Radicale with our storage that dies in the middle of a whole-calendar PUT.

    python crash_server.py CONFIG_JSON KILL_AFTER

CONFIG_JSON is a file of Radicale configuration values ({section: {option:
value}}). The server runs normally, except that inside
``Storage.create_collection`` (a whole-calendar PUT) the process calls
``os._exit(137)`` right after the store has written the KILL_AFTER-th object
row: no rollback, no commit, no cleanup, the way a killed process ends.

On SQLite the page cache is made tiny so the rows already written in the open
transaction spill into the WAL file before the process dies; whoever opens the
database next must ignore those uncommitted frames.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any

import radicale_storage_servicehop as plugin
from radicale import config, server
from sqlalchemy import event
from sqlalchemy.engine import Engine

from servicehop_caldav.store import objects

EXIT_CODE = 137


def install(kill_after: int) -> None:
    inside = threading.local()
    rows = 0
    original_create = plugin.Storage.create_collection
    original_put = objects.put_object

    def create_collection(self: Any, *args: Any, **kwargs: Any) -> Any:
        inside.active = True
        try:
            return original_create(self, *args, **kwargs)
        finally:
            inside.active = False

    def put_object(*args: Any, **kwargs: Any) -> Any:
        nonlocal rows
        stored = original_put(*args, **kwargs)
        if getattr(inside, "active", False):
            rows += 1
            if rows >= kill_after:
                sys.stderr.write(f"crash_server: exiting after object row {rows}\n")
                sys.stderr.flush()
                os._exit(EXIT_CODE)
        return stored

    plugin.Storage.create_collection = create_collection  # type: ignore[method-assign]
    objects.put_object = put_object

    @event.listens_for(Engine, "connect")
    def _small_cache(dbapi_connection: Any, _record: Any) -> None:
        if type(dbapi_connection).__module__.startswith("sqlite3"):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA cache_size=8")  # pages: spill early
            cursor.close()


def main() -> None:
    config_file, kill_after = sys.argv[1], int(sys.argv[2])
    with open(config_file, encoding="utf-8") as f:
        values = json.load(f)
    install(kill_after)
    configuration = config.load()
    configuration.update(values, "crash_server", privileged=True)
    server.serve(configuration)


if __name__ == "__main__":
    main()
