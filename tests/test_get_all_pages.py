"""A whole-calendar read (``Collection.get_all``) decrypts a page at a time.

Counted, not timed: a spy on the store's decryption tells how many objects
had been decrypted when each item reached Radicale. Reading the calendar
first and yielding afterwards had decrypted all 2,000 before the first.
"""

from __future__ import annotations

from pathlib import Path

import radicale_storage_servicehop as plugin
from radicale import config as radicale_config
from radicale_storage_servicehop import GET_ALL_PAGE, Storage

from servicehop_caldav.db.engine import dispose_shared
from servicehop_caldav.store import codec
from servicehop_caldav.store import collections as store_collections
from servicehop_caldav.store import objects as store_objects
from servicehop_caldav.store.records import NewObject
from tests.conftest import server_config

EVENTS = 2000
PATH = "alice/cal"


def _event(n: int) -> NewObject:
    uid = f"event-{n:05d}"
    text = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260301T{n % 24:02d}0000Z\r\n"
        f"DURATION:PT1H\r\nSUMMARY:event {n}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    start = 1772323200 + (n % 24) * 3600
    return NewObject(uid=uid, etag=f'"{n}"', name="VCALENDAR", component="VEVENT",
                     first_occurrence=start, last_occurrence=start + 3600, text=text)


def test_get_all_holds_one_page_of_decrypted_objects(database_url: str, tmp_path: Path) -> None:
    configuration = radicale_config.load()
    configuration.update(
        server_config(database_url, tmp_path / "server", 5232, {"storage": {"upkeep_interval": "-1"}}),
        "test", privileged=True,
    )
    storage = Storage(configuration)
    try:
        with storage.db.transaction("w") as conn:
            store_collections.create_instance(conn, "alice", {})
            instance = store_collections.create_instance(
                conn, PATH, {"tag": "VCALENDAR", "C:supported-calendar-component-set": "VEVENT"}
            )
            for n in range(EVENTS):
                store_objects.put_object(conn, instance.calendar_id, f"e{n:05d}.ics", _event(n))

        codec.decoded.reset()  # the count of objects decoded, from here
        ahead = []
        hrefs = []
        with storage.acquire_lock("r"):
            found = list(storage.discover(f"/{PATH}/", depth="0"))
            collection = found[0]
            assert isinstance(collection, plugin.Collection)
            for item in collection.get_all():
                hrefs.append(item.href)
                # Decrypted but not yet handed over: at most the rest of a page.
                ahead.append(codec.decoded.value - len(hrefs))
                assert f"UID:event-{int(item.href[1:6]):05d}" in item.serialize()
        assert hrefs == [f"e{n:05d}.ics" for n in range(EVENTS)]
        assert codec.decoded.value == EVENTS
        assert max(ahead) < GET_ALL_PAGE < EVENTS
    finally:
        dispose_shared(database_url)
