"""The calendar workloads, the same raw HTTP against every server, every answer checked.

Each workload runs over persistent connections (``client.Session``) and
returns an :class:`Outcome`: the timings (the request and reading the whole
answer; the checks are not timed), or a rate for the concurrent writers, and
whether every answer was right. A wrong status or count fails the operation
(and the run), so a fast wrong answer is never reported as a figure.
"""

from __future__ import annotations

import math
import posixpath
import random
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit
from xml.sax.saxutils import escape

from bench import client
from bench.data import QUERY_END, QUERY_START, Event, new_event
from bench.servers import Running

DAV = "{DAV:}"
CALDAV = "{urn:ietf:params:xml:ns:caldav}"
XML_HEADERS = {"Content-Type": "application/xml; charset=utf-8"}
ICS_HEADERS = {"Content-Type": "text/calendar; charset=utf-8"}
TIMEOUT = 900  # seconds for one request: a cold 10,000-item cache is slow, never stuck

# Operation names: the rows of the table, the keys of the JSON.
PUT = "PUT new event"
PUT_BACK_TO_BACK = "PUT new event, 2nd of 2"
QUERY = "calendar-query 1 week"
MULTIGET = "multiget 100 hrefs"
SYNC_CHANGE = "sync after 1 change"
SYNC_INITIAL = "sync initial (all hrefs)"
PROPFIND = "PROPFIND depth 1 etags"
GET = "GET one event"
WRITERS = "concurrent writers"
CALENDAR_OPERATIONS = (
    PUT, PUT_BACK_TO_BACK, QUERY, MULTIGET, SYNC_CHANGE, SYNC_INITIAL, PROPFIND, GET, WRITERS)


class CheckFailed(Exception):
    """An answer was wrong: status, count or content."""


@dataclass
class Budget:
    """Repetitions of one timed operation: ``reps``, but stop after
    ``seconds`` once ``min_reps`` are done (a slow peer is time-boxed)."""

    reps: int
    seconds: float
    min_reps: int = 5


@dataclass
class Outcome:
    op: str
    status: str = "ok"  # ok | fail | n/a | not built
    samples_ms: list[float] = field(default_factory=list)
    rate: float | None = None  # per second, for throughput operations
    unit: str = "ms"
    errors: int = 0
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    def percentile(self, q: float) -> float | None:
        """Nearest-rank percentile of the samples."""
        if not self.samples_ms:
            return None
        ordered = sorted(self.samples_ms)
        return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]

    def as_json(self) -> dict[str, object]:
        return {
            "status": self.status, "unit": self.unit, "n": len(self.samples_ms),
            "p50_ms": self.percentile(50), "p95_ms": self.percentile(95),
            "samples_ms": [round(s, 3) for s in self.samples_ms],
            "rate_per_s": self.rate, "errors": self.errors, "detail": self.detail,
        }


def timed(
    session: client.Session, method: str, url: str, **kwargs: object
) -> tuple[float, client.Response]:
    """One request; milliseconds until the whole answer was read (and
    decoded, as any client would)."""
    started = time.perf_counter()
    response = session.request(method, url, **kwargs)  # type: ignore[arg-type]
    return (time.perf_counter() - started) * 1000, response


def expect(response: client.Response, *statuses: int) -> None:
    if response.status_code not in statuses:
        raise CheckFailed(
            f"{response.request.method} answered {response.status_code}, expected "
            f"{' or '.join(map(str, statuses))}: {response.text[:200]!r}"
        )


def measure(op: str, budget: Budget, step: Callable[[int], float], warm_up: bool = False) -> Outcome:
    """Run ``step(i)`` (returns milliseconds, raises CheckFailed) within ``budget``."""
    outcome = Outcome(op)
    started = time.monotonic()
    try:
        if warm_up:
            step(-1)
        for i in range(budget.reps):
            if i >= budget.min_reps and time.monotonic() - started > budget.seconds:
                outcome.detail = f"time-boxed: {i} of {budget.reps} repetitions in {budget.seconds:g} s"
                break
            outcome.samples_ms.append(step(i))
    except (CheckFailed, client.RequestError) as e:
        outcome.status, outcome.detail = "fail", f"{type(e).__name__}: {e}"
    return outcome


# -- multistatus -------------------------------------------------------------------


@dataclass
class DavResponse:
    path: str  # unquoted path of the href
    status: int  # 200 when a propstat is 200, else the response's (or first propstat's) status
    props: dict[str, str]  # properties of the 200 propstat, by Clark name


def _status_code(text: str | None) -> int:
    parts = (text or "").split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def parse_multistatus(body: bytes) -> tuple[list[DavResponse], str | None]:
    """The responses of a 207 and its sync-token, if any."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        raise CheckFailed(f"unreadable multistatus: {e}") from e
    if root.tag != f"{DAV}multistatus":
        raise CheckFailed(f"not a multistatus: {root.tag}")
    out = []
    for response in root.findall(f"{DAV}response"):
        href = unquote(urlsplit(response.findtext(f"{DAV}href", "")).path)
        status = _status_code(response.findtext(f"{DAV}status"))
        props: dict[str, str] = {}
        for propstat in response.findall(f"{DAV}propstat"):
            code = _status_code(propstat.findtext(f"{DAV}status"))
            if code == 200:
                status = 200
                prop_element = propstat.find(f"{DAV}prop")
                for prop in prop_element if prop_element is not None else ():
                    props[prop.tag] = prop.text or ""
            elif not status:
                status = code
        out.append(DavResponse(href, status, props))
    token = root.findtext(f"{DAV}sync-token")
    return out, token


def members(responses: Sequence[DavResponse], collection: str) -> list[DavResponse]:
    """The responses about resources in ``collection`` (not the collection itself)."""
    own = collection.rstrip("/")
    return [r for r in responses if r.path.rstrip("/") != own]


def names(responses: Sequence[DavResponse]) -> set[str]:
    return {posixpath.basename(r.path) for r in responses}


# -- request bodies --------------------------------------------------------------------

PROPFIND_ETAGS = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>'
)


def _ical(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def calendar_query(start: datetime, end: datetime) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">'
        "<d:prop><d:getetag/><c:calendar-data/></d:prop>"
        '<c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT">'
        f'<c:time-range start="{_ical(start)}" end="{_ical(end)}"/>'
        "</c:comp-filter></c:comp-filter></c:filter></c:calendar-query>"
    )


def multiget(paths: Sequence[str]) -> str:
    hrefs = "".join(f"<d:href>{escape(p)}</d:href>" for p in paths)
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<c:calendar-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">'
        f"<d:prop><d:getetag/><c:calendar-data/></d:prop>{hrefs}</c:calendar-multiget>"
    )


def sync_collection(token: str) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<d:sync-collection xmlns:d="DAV:"><d:sync-token>{escape(token)}</d:sync-token>'
        "<d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>"
    )


# -- the calendar workloads ----------------------------------------------------------------


@dataclass
class Target:
    """One server's benchmark calendar and what it must hold."""

    server: Running
    events: list[Event]
    week: set[str]  # names expected from the one-week query
    count: int  # resources the calendar holds now
    rng: random.Random
    session: client.Session = field(init=False)
    sync_token: str = ""

    def __post_init__(self) -> None:
        self.session = self.server.session()

    def url(self, name: str = "") -> str:
        return self.server.url + self.server.calendar + name

    def propfind_members(self, session: client.Session | None = None) -> tuple[float, list[DavResponse]]:
        ms, r = timed(session or self.session, "PROPFIND", self.url(),
                      data=PROPFIND_ETAGS, headers={**XML_HEADERS, "Depth": "1"})
        expect(r, 207)
        return ms, members(parse_multistatus(r.content)[0], self.server.calendar)

    def check_count(self, found: Sequence[DavResponse], what: str) -> None:
        if len(found) != self.count or len(names(found)) != self.count:
            raise CheckFailed(f"{what}: {len(found)} resources, expected {self.count}")
        missing = [r.path for r in found if r.status != 200 or not r.props.get(f"{DAV}getetag")]
        if missing:
            raise CheckFailed(f"{what}: no etag for {len(missing)} resources, e.g. {missing[0]}")


def warm_up(target: Target) -> float:
    """One untimed PROPFIND (builds stock Radicale's item cache and logs in)."""
    started = time.perf_counter()
    _, found = target.propfind_members()
    target.check_count(found, "warm-up PROPFIND")
    return time.perf_counter() - started


Step = Callable[[int], float]
"""One timed repetition of an operation on one server (its number; -1 is the
untimed warm-up): milliseconds, or CheckFailed when an answer is wrong."""


def interleaved(
    op: str, steps: Mapping[str, Step], budget: Budget, warm_up: bool = True,
    settle: Callable[[str], object] | None = None,
) -> dict[str, Outcome]:
    """``op`` on every server in turn, round after round, the order rotating
    each round: each server's figures come from the same seconds as its
    peers'. This machine changes pace by a third and more within a run (a
    fixed loop of Python took 155 to 324 ms from one ten seconds to the
    next), more than many of the differences measured; timed one server
    after another, minutes apart, a ratio measured the machine as much as
    the servers. Each server is time-boxed on its own (its steps' time past
    ``budget.seconds`` once ``budget.min_reps`` are done), so a slow peer
    does fewer rounds and the others go on. A server whose answer is wrong
    is left out of the rounds that follow (its outcome fails). ``settle``,
    given the server that answered last, waits until it is idle again (a
    server may go on working after its answer: ending the connection's
    thread, freeing a large answer), so no step is timed beside a peer's
    left-over work."""
    outcomes = {name: Outcome(op) for name in steps}
    spent = dict.fromkeys(steps, 0.0)
    live = list(steps)
    last: list[str] = []

    def run(name: str, i: int) -> None:
        if settle is not None and last:
            settle(last[0])
        last[:] = [name]
        started = time.monotonic()
        try:
            ms = steps[name](i)
        except (CheckFailed, client.RequestError) as e:
            outcomes[name].status, outcomes[name].detail = "fail", f"{type(e).__name__}: {e}"
            live.remove(name)
            return
        finally:
            spent[name] += time.monotonic() - started
        if i >= 0:
            outcomes[name].samples_ms.append(ms)

    if warm_up:
        for name in list(live):
            run(name, -1)
        spent = dict.fromkeys(steps, 0.0)
    for i in range(budget.reps):
        for name in [n for n in live if i >= budget.min_reps and spent[n] > budget.seconds]:
            outcomes[name].detail = f"time-boxed: {i} of {budget.reps} repetitions in {budget.seconds:g} s"
            live.remove(name)
        if not live:
            break
        shift = i % len(live)
        for name in live[shift:] + live[:shift]:
            run(name, i)
    for outcome in outcomes.values():
        if outcome.status == "ok" and len(steps) > 1:
            detail = f"interleaved with {len(steps) - 1} peer(s), one each per round"
            outcome.detail = f"{outcome.detail}; {detail}" if outcome.detail else detail
    return outcomes


def get_step(target: Target) -> Step:
    """One timed GET of a random event of ``target``, its answer checked."""
    def step(_i: int) -> float:
        event = target.rng.choice(target.events)
        ms, r = timed(target.session, "GET", target.url(event.href))
        expect(r, 200)
        if event.uid not in r.text:
            raise CheckFailed(f"GET {event.href}: the answer lacks UID {event.uid}")
        return ms

    return step


def propfind_step(target: Target) -> Step:
    def step(_i: int) -> float:
        ms, found = target.propfind_members()
        target.check_count(found, "PROPFIND depth 1")
        return ms

    return step


def query_step(target: Target) -> Step:
    body = calendar_query(QUERY_START, QUERY_END)

    def step(_i: int) -> float:
        ms, r = timed(target.session, "REPORT", target.url(), data=body,
                      headers={**XML_HEADERS, "Depth": "1"})
        expect(r, 207)
        responses = members(parse_multistatus(r.content)[0], target.server.calendar)
        found = [m for m in responses if m.status == 200]
        got = names(found)
        if got != target.week or len(found) != len(target.week):
            raise CheckFailed(
                f"week query: {len(found)} events, expected {len(target.week)} "
                f"({len(got - target.week)} unexpected, {len(target.week - got)} missing)"
            )
        empty = [m.path for m in found if "BEGIN:VEVENT" not in m.props.get(f"{CALDAV}calendar-data", "")]
        if empty:
            raise CheckFailed(f"week query: no calendar-data for {len(empty)} events")
        return ms

    return step


def multiget_step(target: Target, count: int = 100) -> Step:
    def step(_i: int) -> float:
        chosen = target.rng.sample(target.events, min(count, len(target.events)))
        body = multiget([target.server.calendar + e.href for e in chosen])
        ms, r = timed(target.session, "REPORT", target.url(), data=body,
                      headers={**XML_HEADERS, "Depth": "1"})
        expect(r, 207)
        found = {posixpath.basename(m.path): m for m in parse_multistatus(r.content)[0] if m.status == 200}
        wanted = {e.href: e for e in chosen}
        if set(found) != set(wanted):
            raise CheckFailed(f"multiget: {len(found)} of {len(wanted)} hrefs answered 200")
        wrong = [h for h, e in wanted.items()
                 if e.uid not in found[h].props.get(f"{CALDAV}calendar-data", "")]
        if wrong:
            raise CheckFailed(f"multiget: wrong calendar-data for {len(wrong)} hrefs, e.g. {wrong[0]}")
        return ms

    return step


def _sync(target: Target, token: str) -> tuple[float, list[DavResponse], str]:
    ms, r = timed(target.session, "REPORT", target.url(), data=sync_collection(token),
                  headers={**XML_HEADERS, "Depth": "0"})
    expect(r, 207)
    responses, new_token = parse_multistatus(r.content)
    if not new_token:
        raise CheckFailed("sync-collection answered no sync-token")
    return ms, members(responses, target.server.calendar), new_token


def sync_initial_step(target: Target) -> Step:
    def step(_i: int) -> float:
        ms, found, token = _sync(target, "")
        target.check_count(found, "initial sync")
        target.sync_token = token
        return ms

    return step


def sync_change_step(target: Target, reps: int) -> Step:
    """Change one event (untimed PUT, same times), then time the sync from
    the previous token: exactly that href must come back."""
    changed = target.rng.sample(target.events, min(len(target.events), reps + 1))

    def step(i: int) -> float:
        if not target.sync_token:
            _, _, target.sync_token = _sync(target, "")
        event = changed[(i + 1) % len(changed)]
        r = target.session.put(target.url(event.href), data=event.changed_text(i + 1).encode(),
                               headers=ICS_HEADERS, timeout=TIMEOUT)
        expect(r, 200, 201, 204)
        ms, found, token = _sync(target, target.sync_token)
        got = names(found)
        if got != {event.href} or len(found) != 1:
            raise CheckFailed(f"sync after one change: {len(found)} hrefs {sorted(got)[:3]}, "
                              f"expected exactly {event.href}")
        target.sync_token = token
        return ms

    return step


def _put_new(target: Target, tag: str, number: int) -> float:
    """PUT new event ``number`` of ``tag``; the milliseconds it took."""
    href, text = new_event(tag, number)
    ms, r = timed(target.session, "PUT", target.url(href), data=text.encode(),
                  headers={**ICS_HEADERS, "If-None-Match": "*"})
    expect(r, 201)
    target.count += 1
    return ms


def put_step(target: Target) -> Step:
    def step(i: int) -> float:
        return _put_new(target, "put", i + 1)

    return step


def put_back_to_back_step(target: Target) -> Step:
    """Two PUTs of new events, one right after the other; the second is
    timed. Interleaved, every server's timed request comes after a peer's
    work, its code and data gone cold in the CPU's caches: a PUT that
    costs milliseconds pays that in proportion, one of half a second does
    not. The second of two shows what the request costs the server warm."""
    def step(i: int) -> float:
        _put_new(target, "b2b", 2 * i + 1)
        return _put_new(target, "b2b", 2 * i + 2)

    return step


def op_writers(target: Target, writers: int, per_writer: int, seconds: float) -> Outcome:
    """``writers`` sessions PUT new events at once; events/s over the wall time.
    Afterwards a PROPFIND must find every event that was answered 201."""
    outcome = Outcome(f"{WRITERS}", unit="events/s")
    sessions = [target.server.session() for _ in range(writers)]
    for s in sessions:  # log in before the clock starts
        expect(s.request("PROPFIND", target.url(), data=PROPFIND_ETAGS,
                         headers={**XML_HEADERS, "Depth": "0"}, timeout=TIMEOUT), 207)
    barrier = threading.Barrier(writers + 1)
    lock = threading.Lock()
    written: list[int] = []
    problems: list[str] = []
    deadline: list[float] = []

    def writer(number: int, session: client.Session) -> None:
        barrier.wait()
        for j in range(per_writer):
            if j and time.monotonic() > deadline[0]:
                break
            href, text = new_event(f"w{number}", j + 1)
            try:
                r = session.put(target.url(href), data=text.encode(),
                                headers={**ICS_HEADERS, "If-None-Match": "*"}, timeout=TIMEOUT)
                ok, why = r.status_code == 201, f"status {r.status_code}"
            except client.RequestError as e:
                ok, why = False, f"{type(e).__name__}: {e}"
            with lock:
                if ok:
                    written.append(1)
                else:
                    problems.append(why)

    threads = [threading.Thread(target=writer, args=(n, s), daemon=True) for n, s in enumerate(sessions)]
    for t in threads:
        t.start()
    deadline.append(time.monotonic() + seconds)
    started = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    for s in sessions:
        s.close()
    target.count += len(written)
    outcome.rate = len(written) / wall if wall > 0 else None
    outcome.errors = len(problems)
    outcome.detail = f"{writers} writers, {len(written)} events in {wall:.2f} s"
    if problems:
        outcome.status = "fail"
        outcome.detail += f"; {len(problems)} errors, e.g. {problems[0]}"
        return outcome
    try:
        _, found = target.propfind_members()
        target.check_count(found, "PROPFIND after the concurrent writers")
    except (CheckFailed, client.RequestError) as e:
        outcome.status, outcome.detail = "fail", f"{outcome.detail}; {e}"
    return outcome


def run_calendar_workloads(
    targets: Mapping[str, Target], budget: Budget, writers: int, per_writer: int,
    log: Callable[[str], None],
) -> dict[str, dict[str, Outcome]]:
    """Every calendar workload but the GET on every server, reads first, then
    writes (the PUTs and the writers go into the full calendar). Each timed
    operation runs on all servers interleaved (:func:`interleaved`); the
    concurrent writers, a throughput over seconds, run on one server after
    another. The GET is timed afterwards the same way."""
    results: dict[str, dict[str, Outcome]] = {name: {} for name in targets}
    timed_steps: list[tuple[str, Callable[[Target], Step], bool]] = [
        (PROPFIND, propfind_step, True),
        (QUERY, query_step, True),
        (MULTIGET, multiget_step, True),
        (SYNC_INITIAL, sync_initial_step, True),
        (SYNC_CHANGE, lambda t: sync_change_step(t, budget.reps), True),
        (PUT, put_step, False),
        (PUT_BACK_TO_BACK, put_back_to_back_step, False),
    ]
    for op, make, warm in timed_steps:
        started = time.monotonic()
        outcomes = interleaved(op, {name: make(t) for name, t in targets.items()}, budget, warm_up=warm,
                               settle=lambda name: targets[name].server.wait_idle(quiet=0.05, share=0.1))
        log(f"  {op}, interleaved  [{time.monotonic() - started:.1f} s]")
        for name, outcome in outcomes.items():
            if op == QUERY and not outcome.failed:
                expected = f"{len(targets[name].week)} events expected"
                outcome.detail = f"{outcome.detail}; {expected}" if outcome.detail else expected
            results[name][op] = outcome
            log(f"    {targets[name].server.label:<24} {summary(outcome)}")
    log(f"  {WRITERS}, one server after another")
    for name, target in targets.items():
        started = time.monotonic()
        outcome = op_writers(target, writers, per_writer, budget.seconds)
        results[name][WRITERS] = outcome
        log(f"    {target.server.label:<24} {summary(outcome)}  [{time.monotonic() - started:.1f} s]")
    return results


def summary(outcome: Outcome) -> str:
    if outcome.status != "ok":
        return f"{outcome.status.upper()} {outcome.detail}"
    if outcome.rate is not None:
        return f"{outcome.rate:.1f} {outcome.unit}, {outcome.errors} errors ({outcome.detail})"
    p50, p95 = outcome.percentile(50), outcome.percentile(95)
    return f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, n={len(outcome.samples_ms)}"
