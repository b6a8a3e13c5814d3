"""A new instance served on loopback, its admin logged in, one event stored:
the start of the tests that watch what a request of that event reads."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from servicehop_caldav.instance import Created, init_instance
from tests.conftest import Server, start_instance_server
from tests.helpers.robust import ICS, event

CALENDAR = "demo/opening-demo"  # init's admin's opening calendar


@dataclass
class Served:
    created: Created
    server: Server
    session: requests.Session  # logged in as init's admin (the PUT verified the password)
    url: str  # of the stored event, a.ics in CALENDAR


@contextmanager
def serving_one_event(tmp_path: Path, database_url: str, summary: str = "first") -> Iterator[Served]:
    created = init_instance(tmp_path / "instance", database_url)
    server = start_instance_server(created.instance.home)
    try:
        session = requests.Session()
        session.auth = (created.user, created.password)
        url = f"{server.url}/{CALENDAR}/a.ics"
        assert session.put(url, data=event("a", summary), headers=ICS).status_code == 201
        yield Served(created, server, session, url)
    finally:
        server.stop()
