"""The largest answers are written as their rows are read, not after.

A PROPFIND of a calendar's etags and an initial sync-collection list every
member: at 10,000 events the answer is a few MiB, and the process's peak
memory (a benchmark goal) is whatever is alive at once while it is built.
Written from a list of the rows, through a list of pieces, a joined text
and then its bytes, that was twice the answer (PROPFIND) and four times it
(the sync, which listed the rows twice); written as each row is read, into
the encoded answer, it is the answer and a little more.

Measured with tracemalloc (what Python allocates, counted exactly, not a
clock): the peak while the application answers, above what was allocated
before, against the size of the answer it gave. The requests ask for no
gzip, so the answer is the uncompressed body the peak is compared with.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from radicale_storage_servicehop import object_of_text

from servicehop_caldav import propfind, report
from servicehop_caldav.db.engine import Database, dispose_shared
from servicehop_caldav.store import collections as store_collections
from servicehop_caldav.store import objects as store_objects
from tests.test_propfind_listing import ETAGS, Client, application, event
from tests.test_report_fast import sync

MEMBERS = 3000
# The answer itself, plus what one row, the encoder's chunk and the
# template cost; a list of every row alone is about as large as the answer.
ALLOWED = 1.4
SLACK = 200 * 1024


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[Client]:
    call = application(database_url, tmp_path)
    status, _, _ = call("MKCALENDAR", "/alice/cal/")
    assert status.startswith("201"), status
    make = object_of_text("alice/cal")
    with Database.shared(database_url).transaction("w") as conn:
        instance = store_collections.get_instance(conn, "alice/cal")
        assert instance is not None
        for number in range(MEMBERS):
            store_objects.put_object(conn, instance.calendar_id, f"event-{number:05d}.ics",
                                     make(event(f"event-{number:05d}", hour=number % 24)))
    yield call
    dispose_shared(database_url)


def peak_over_answer(call: Client, method: str, body: str) -> tuple[float, bytes]:
    """(peak allocated while answering / answer size, the answer), after
    one untimed request that fills the caches every request shares."""
    call(method, "/alice/cal/", body, depth="1")
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        status, _, answer = call(method, "/alice/cal/", body, depth="1")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status.startswith("207"), status
    return (peak - before - SLACK) / len(answer), answer


@pytest.mark.parametrize("method,body,fast", [
    ("PROPFIND", ETAGS, propfind),
    ("REPORT", sync(), report),
], ids=["propfind-etags", "initial-sync"])
def test_a_listing_of_every_member_peaks_near_its_answer(
    client: Client, monkeypatch: pytest.MonkeyPatch, method: str, body: str, fast: ModuleType
) -> None:
    taken: list[bool] = []
    original = fast.answer

    def spy(*args: object, **kwargs: object) -> object:
        result = original(*args, **kwargs)
        taken.append(result is not None)
        return result

    monkeypatch.setattr(fast, "answer", spy)
    ratio, answer = peak_over_answer(client, method, body)
    assert taken == [True, True]  # the fast path wrote it, both times
    assert answer.count(b"<response>") == MEMBERS + 1 - (method == "REPORT")
    assert ratio < ALLOWED, f"peak {ratio:.2f}x the {len(answer)}-byte answer"
