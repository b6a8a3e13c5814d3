"""Opening windows from an opening-time calendar (servicehop_caldav.booking.opening)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from servicehop_caldav.booking.model import Interval, Window
from servicehop_caldav.booking.opening import OpeningProblem, expand_windows

OSLO = ZoneInfo("Europe/Oslo")
STAFF = {"anna@example.org": "anna", "bob@example.org": "bob", "cara@example.org": "cara"}
ALL = frozenset(STAFF.values())

OSLO_VTIMEZONE = """BEGIN:VTIMEZONE
TZID:Europe/Oslo
BEGIN:STANDARD
DTSTART:19701025T030000
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
TZNAME:CET
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:19700329T020000
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
TZNAME:CEST
END:DAYLIGHT
END:VTIMEZONE"""


def cal(*events: str, vtimezone: str | None = OSLO_VTIMEZONE) -> str:
    """One CalDAV object: a VCALENDAR with the given VEVENT bodies (CRLF, as stored)."""
    parts = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//servicehop//test//EN"]
    if vtimezone:
        parts.append(vtimezone)
    for body in events:
        parts += ["BEGIN:VEVENT", "DTSTAMP:20250101T000000Z", body.strip(), "END:VEVENT"]
    parts.append("END:VCALENDAR")
    return "\r\n".join("\r\n".join(parts).splitlines()) + "\r\n"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def expand(
    *objects: str,
    start: datetime,
    end: datetime,
    timezone: ZoneInfo = OSLO,
    problems: list[OpeningProblem] | None = None,
) -> list[Window]:
    sink = problems if problems is not None else []
    windows = expand_windows(
        objects,
        timezone=timezone,
        start=start,
        end=end,
        staff_by_email=STAFF,
        all_staff=ALL,
        on_problem=sink.append,
    )
    if problems is None:
        assert sink == [], sink
    return windows


def spans(windows: list[Window]) -> list[tuple[datetime, datetime]]:
    return [(w.interval.start, w.interval.end) for w in windows]


# Week of Monday 2025-03-17 (CET, UTC+1): Mon-Fri 08-16 for anna and bob, Saturday 10-14 for cara.
WEEKDAYS = """UID:weekdays
SUMMARY:Open
DTSTART;TZID=Europe/Oslo:20250317T080000
DTEND;TZID=Europe/Oslo:20250317T160000
RRULE:FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR
ATTENDEE;CN=Anna;PARTSTAT=ACCEPTED:mailto:anna@example.org
ATTENDEE;CN=Bob:MAILTO:Bob@Example.ORG"""
SATURDAY = """UID:saturday
DTSTART;TZID=Europe/Oslo:20250322T100000
DTEND;TZID=Europe/Oslo:20250322T140000
RRULE:FREQ=WEEKLY;BYDAY=SA
ATTENDEE:mailto:cara@example.org"""
WEEK = (utc(2025, 3, 16, 23), utc(2025, 3, 23, 23))  # Oslo Monday 00:00 .. next Monday 00:00


def test_weekly_weekdays_and_saturday_with_their_own_staff() -> None:
    windows = expand(cal(WEEKDAYS), cal(SATURDAY), start=WEEK[0], end=WEEK[1])
    assert spans(windows) == [(utc(2025, 3, d, 7), utc(2025, 3, d, 15)) for d in range(17, 22)] + [
        (utc(2025, 3, 22, 9), utc(2025, 3, 22, 13))
    ]
    assert [w.staff for w in windows] == [frozenset({"anna", "bob"})] * 5 + [frozenset({"cara"})]
    assert all(w.interval.start.tzinfo is UTC and w.interval.end.tzinfo is UTC for w in windows)


def test_windows_sorted_and_overlapping_windows_kept_apart() -> None:
    evening = "UID:e\nDTSTART;TZID=Europe/Oslo:20250318T120000\nDTEND;TZID=Europe/Oslo:20250318T200000"
    windows = expand(cal(evening), cal(WEEKDAYS), start=utc(2025, 3, 18), end=utc(2025, 3, 19))
    assert spans(windows) == [
        (utc(2025, 3, 18, 7), utc(2025, 3, 18, 15)),
        (utc(2025, 3, 18, 11), utc(2025, 3, 18, 19)),
    ]
    assert [w.staff for w in windows] == [frozenset({"anna", "bob"}), ALL]


def test_windows_overlapping_the_span_are_returned_whole() -> None:
    windows = expand(cal(WEEKDAYS), start=utc(2025, 3, 17, 14), end=utc(2025, 3, 18, 8))
    assert spans(windows) == [
        (utc(2025, 3, 17, 7), utc(2025, 3, 17, 15)),
        (utc(2025, 3, 18, 7), utc(2025, 3, 18, 15)),
    ]
    # [start, end) is half-open: a window ending at start or starting at end is not returned.
    assert expand(cal(WEEKDAYS), start=utc(2025, 3, 17, 15), end=utc(2025, 3, 18, 7)) == []


def test_exdate_removes_one_day() -> None:
    body = WEEKDAYS + "\nEXDATE;TZID=Europe/Oslo:20250319T080000"
    windows = expand(cal(body), start=WEEK[0], end=WEEK[1])
    assert [w.interval.start.day for w in windows] == [17, 18, 20, 21]


def test_exdate_in_utc_matches_a_zoned_occurrence() -> None:
    body = WEEKDAYS + "\nEXDATE:20250319T070000Z"
    assert [w.interval.start.day for w in expand(cal(body), start=WEEK[0], end=WEEK[1])] == [17, 18, 20, 21]


def test_override_moves_one_occurrence() -> None:
    moved = """UID:weekdays
RECURRENCE-ID;TZID=Europe/Oslo:20250320T080000
DTSTART;TZID=Europe/Oslo:20250320T120000
DTEND;TZID=Europe/Oslo:20250320T180000
ATTENDEE:mailto:anna@example.org
ATTENDEE:mailto:bob@example.org"""
    windows = expand(cal(WEEKDAYS, moved), start=WEEK[0], end=WEEK[1])
    thursday = [w for w in windows if w.interval.start.day == 20]
    assert spans(thursday) == [(utc(2025, 3, 20, 11), utc(2025, 3, 20, 17))]
    assert len(windows) == 5


def test_override_moved_into_the_span_from_outside() -> None:
    moved = """UID:weekdays
RECURRENCE-ID;TZID=Europe/Oslo:20250324T080000
DTSTART;TZID=Europe/Oslo:20250322T080000
DTEND;TZID=Europe/Oslo:20250322T120000"""
    windows = expand(cal(WEEKDAYS, moved), start=utc(2025, 3, 22), end=utc(2025, 3, 23))
    assert spans(windows) == [(utc(2025, 3, 22, 7), utc(2025, 3, 22, 11))]


def test_override_attendees_replace_the_masters() -> None:
    only_cara = """UID:weekdays
RECURRENCE-ID;TZID=Europe/Oslo:20250318T080000
DTSTART;TZID=Europe/Oslo:20250318T080000
DTEND;TZID=Europe/Oslo:20250318T160000
ATTENDEE:mailto:cara@example.org"""
    nobody = """UID:weekdays
RECURRENCE-ID;TZID=Europe/Oslo:20250319T080000
DTSTART;TZID=Europe/Oslo:20250319T080000
DTEND;TZID=Europe/Oslo:20250319T160000"""
    windows = expand(cal(WEEKDAYS, only_cara, nobody), start=WEEK[0], end=WEEK[1])
    by_day = {w.interval.start.day: w.staff for w in windows}
    assert by_day == {
        17: frozenset({"anna", "bob"}),
        18: frozenset({"cara"}),
        19: ALL,  # an override without ATTENDEE names no staff: everybody is on duty
        20: frozenset({"anna", "bob"}),
        21: frozenset({"anna", "bob"}),
    }


def test_cancelled_override_does_not_open() -> None:
    cancelled = """UID:weekdays
RECURRENCE-ID;TZID=Europe/Oslo:20250318T080000
DTSTART;TZID=Europe/Oslo:20250318T080000
DTEND;TZID=Europe/Oslo:20250318T160000
STATUS:CANCELLED"""
    windows = expand(cal(WEEKDAYS, cancelled), start=WEEK[0], end=WEEK[1])
    assert [w.interval.start.day for w in windows] == [17, 19, 20, 21]


def test_cancelled_master_opens_nothing_except_an_override_with_its_own_status() -> None:
    master = WEEKDAYS + "\nSTATUS:CANCELLED"
    assert expand(cal(master), start=WEEK[0], end=WEEK[1]) == []
    confirmed = """UID:weekdays
RECURRENCE-ID;TZID=Europe/Oslo:20250319T080000
DTSTART;TZID=Europe/Oslo:20250319T080000
DTEND;TZID=Europe/Oslo:20250319T160000
STATUS:CONFIRMED"""
    windows = expand(cal(master, confirmed), start=WEEK[0], end=WEEK[1])
    assert spans(windows) == [(utc(2025, 3, 19, 7), utc(2025, 3, 19, 15))]


def test_tentative_and_transparent_events_open() -> None:
    body = WEEKDAYS + "\nSTATUS:TENTATIVE\nTRANSP:TRANSPARENT"
    assert len(expand(cal(body), start=WEEK[0], end=WEEK[1])) == 5


def test_rdate_adds_a_day_with_the_same_local_times() -> None:
    body = WEEKDAYS + "\nRDATE;TZID=Europe/Oslo:20250323T080000"
    windows = expand(cal(body), start=WEEK[0], end=WEEK[1])
    assert spans(windows)[-1] == (utc(2025, 3, 23, 7), utc(2025, 3, 23, 15))
    assert windows[-1].staff == frozenset({"anna", "bob"})
    assert len(windows) == 6


def test_rdate_period_has_its_own_end() -> None:
    body = """UID:p
DTSTART;TZID=Europe/Oslo:20250317T080000
DTEND;TZID=Europe/Oslo:20250317T160000
RDATE;VALUE=PERIOD:20250319T090000Z/20250319T100000Z"""
    windows = expand(cal(body), start=WEEK[0], end=WEEK[1])
    assert spans(windows) == [
        (utc(2025, 3, 17, 7), utc(2025, 3, 17, 15)),
        (utc(2025, 3, 19, 9), utc(2025, 3, 19, 10)),
    ]


def test_count_and_until() -> None:
    count = (
        "UID:c\nDTSTART;TZID=Europe/Oslo:20250317T080000\nDTEND;TZID=Europe/Oslo:20250317T090000\n"
        "RRULE:FREQ=DAILY;COUNT=3"
    )
    until = (
        "UID:u\nDTSTART;TZID=Europe/Oslo:20250317T100000\nDTEND;TZID=Europe/Oslo:20250317T110000\n"
        "RRULE:FREQ=DAILY;UNTIL=20250320T090000Z"  # = 10:00 Oslo on the 20th: inclusive
    )
    windows = expand(cal(count), cal(until), start=WEEK[0], end=WEEK[1])
    assert [(w.interval.start.day, w.interval.start.hour) for w in windows] == [
        (17, 7), (17, 9), (18, 7), (18, 9), (19, 7), (19, 9), (20, 9)
    ]  # fmt: skip


def test_floating_utc_and_tzid_times() -> None:
    floating = "UID:f\nDTSTART:20250317T080000\nDTEND:20250317T090000"
    in_utc = "UID:z\nDTSTART:20250317T080000Z\nDTEND:20250317T090000Z"
    new_york = (
        "UID:n\nDTSTART;TZID=America/New_York:20250317T080000\nDTEND;TZID=America/New_York:20250317T090000"
    )
    objects = (cal(floating, vtimezone=None), cal(in_utc, vtimezone=None), cal(new_york, vtimezone=None))
    day = (utc(2025, 3, 17), utc(2025, 3, 18))
    assert spans(expand(*objects, start=day[0], end=day[1])) == [
        (utc(2025, 3, 17, 7), utc(2025, 3, 17, 8)),  # floating: Oslo time
        (utc(2025, 3, 17, 8), utc(2025, 3, 17, 9)),  # UTC
        (utc(2025, 3, 17, 12), utc(2025, 3, 17, 13)),  # New York (EDT since 9 March)
    ]
    # Floating follows the department's time zone; the others do not move.
    london = expand(*objects, start=day[0], end=day[1], timezone=ZoneInfo("Europe/London"))
    assert spans(london)[:2] == [(utc(2025, 3, 17, 8), utc(2025, 3, 17, 9))] * 2


def test_known_tzid_without_vtimezone() -> None:
    body = "UID:k\nDTSTART;TZID=Europe/Oslo:20250317T080000\nDTEND;TZID=Europe/Oslo:20250317T160000"
    windows = expand(cal(body, vtimezone=None), start=WEEK[0], end=WEEK[1])
    assert spans(windows) == [(utc(2025, 3, 17, 7), utc(2025, 3, 17, 15))]


def test_custom_tzid_defined_by_its_vtimezone() -> None:
    vtimezone = OSLO_VTIMEZONE.replace("TZID:Europe/Oslo", "TZID:Kontoret")
    body = "UID:k\nDTSTART;TZID=Kontoret:20250317T080000\nDTEND;TZID=Kontoret:20250317T160000"
    windows = expand(cal(body, vtimezone=vtimezone), start=WEEK[0], end=WEEK[1])
    assert spans(windows) == [(utc(2025, 3, 17, 7), utc(2025, 3, 17, 15))]


def test_unknown_tzid_without_vtimezone_is_read_as_department_time_and_reported() -> None:
    body = "UID:x\nDTSTART;TZID=Nowhere/Atlantis:20250317T080000\nDTEND;TZID=Nowhere/Atlantis:20250317T160000"
    problems: list[OpeningProblem] = []
    windows = expand(cal(body, vtimezone=None), start=WEEK[0], end=WEEK[1], problems=problems)
    assert spans(windows) == [(utc(2025, 3, 17, 7), utc(2025, 3, 17, 15))]
    assert {(p.index, p.uid, p.code, p.skipped) for p in problems} == {(0, "x", "unknown-tzid", False)}


# Daylight saving in Europe/Oslo, 2025: Sunday 30 March 02:00 -> 03:00, Sunday 26 October 03:00 -> 02:00.


def daily(day: str, begin: str, end: str) -> str:
    """A daily window from ``day``, local Oslo times."""
    return (
        f"UID:daily-{begin}\nDTSTART;TZID=Europe/Oslo:{day}T{begin}\n"
        f"DTEND;TZID=Europe/Oslo:{day}T{end}\nRRULE:FREQ=DAILY"
    )


def test_dst_spring_daily_window_keeps_local_times() -> None:
    day, night = daily("20250328", "080000", "160000"), daily("20250328", "000000", "040000")
    windows = expand(cal(day), cal(night), start=utc(2025, 3, 28), end=utc(2025, 3, 31, 20))
    local = [(w.interval.start.astimezone(OSLO).hour, w.interval.end.astimezone(OSLO).hour) for w in windows]
    assert local == [(0, 4), (8, 16)] * 4
    hours = [w.interval.duration / timedelta(hours=1) for w in windows]
    # 29 Mar (CET), 30 Mar (change: the night window loses an hour), 31 Mar (CEST)
    assert hours[2:] == [4, 8, 3, 8, 4, 8]
    assert spans(windows)[4:6] == [
        (utc(2025, 3, 29, 23), utc(2025, 3, 30, 2)),
        (utc(2025, 3, 30, 6), utc(2025, 3, 30, 14)),
    ]


def test_dst_autumn_daily_window_keeps_local_times() -> None:
    day, night = daily("20251024", "080000", "160000"), daily("20251024", "000000", "040000")
    windows = expand(cal(day), cal(night), start=utc(2025, 10, 25, 12), end=utc(2025, 10, 27, 20))
    assert [w.interval.duration / timedelta(hours=1) for w in windows] == [8, 5, 8, 4, 8]
    assert spans(windows)[1:3] == [
        (utc(2025, 10, 25, 22), utc(2025, 10, 26, 3)),
        (utc(2025, 10, 26, 7), utc(2025, 10, 26, 15)),
    ]


def test_dst_floating_and_duration() -> None:
    floating = "UID:f\nDTSTART:20250329T000000\nDURATION:PT4H\nRRULE:FREQ=DAILY;COUNT=2"
    windows = expand(cal(floating, vtimezone=None), start=utc(2025, 3, 28), end=utc(2025, 4, 1))
    # DURATION is added on the local clock, like DTEND (see the module's docstring).
    assert spans(windows) == [
        (utc(2025, 3, 28, 23), utc(2025, 3, 29, 3)),
        (utc(2025, 3, 29, 23), utc(2025, 3, 30, 2)),
    ]


def test_window_starting_in_the_missing_hour() -> None:
    body = "UID:g\nDTSTART;TZID=Europe/Oslo:20250330T023000\nDTEND;TZID=Europe/Oslo:20250330T050000"
    windows = expand(cal(body), start=utc(2025, 3, 29), end=utc(2025, 3, 31))
    # 02:30 does not exist that night: read with the winter offset, it is 03:30 summer time.
    assert spans(windows) == [(utc(2025, 3, 30, 1, 30), utc(2025, 3, 30, 3))]


def test_duration_instead_of_dtend() -> None:
    body = "UID:d\nDTSTART;TZID=Europe/Oslo:20250317T080000\nDURATION:PT2H30M\nRRULE:FREQ=DAILY;COUNT=2"
    windows = expand(cal(body), start=WEEK[0], end=WEEK[1])
    assert spans(windows) == [(utc(2025, 3, d, 7), utc(2025, 3, d, 9, 30)) for d in (17, 18)]


def test_all_day_event_opens_the_whole_local_day() -> None:
    one = "UID:a\nDTSTART;VALUE=DATE:20250318\nDTEND;VALUE=DATE:20250319"
    two = "UID:b\nDTSTART;VALUE=DATE:20250320\nDTEND;VALUE=DATE:20250322\nTRANSP:TRANSPARENT"
    no_end = "UID:c\nDTSTART;VALUE=DATE:20250330"  # the day of the spring change: 23 hours
    windows = expand(cal(one, vtimezone=None), cal(two), cal(no_end), start=WEEK[0], end=utc(2025, 4, 1))
    assert spans(windows) == [
        (utc(2025, 3, 17, 23), utc(2025, 3, 18, 23)),
        (utc(2025, 3, 19, 23), utc(2025, 3, 21, 23)),
        (utc(2025, 3, 29, 23), utc(2025, 3, 30, 22)),
    ]
    assert all(w.staff == ALL for w in windows)


def test_attendees_matching_and_non_staff() -> None:
    mixed = """UID:m
DTSTART:20250317T080000Z
DTEND:20250317T090000Z
ATTENDEE:mailto:visitor@example.com
ATTENDEE:mailto: CARA@example.org"""
    outsiders = """UID:o
DTSTART:20250317T100000Z
DTEND:20250317T110000Z
ATTENDEE:mailto:visitor@example.com
ORGANIZER:mailto:anna@example.org"""
    windows = expand(cal(mixed), cal(outsiders), start=WEEK[0], end=WEEK[1])
    # Only staff attendees count; none at all (the organizer is no attendee) means all staff.
    assert [w.staff for w in windows] == [frozenset({"cara"}), ALL]


def test_staff_mapping_keys_are_normalised() -> None:
    windows = expand_windows(
        [cal(WEEKDAYS)],
        timezone=OSLO,
        start=WEEK[0],
        end=utc(2025, 3, 18),
        staff_by_email={"MAILTO:Anna@Example.org": "anna"},
        all_staff=frozenset({"anna", "zed"}),
    )
    assert [w.staff for w in windows] == [frozenset({"anna"})]


BAD_OBJECTS = {
    "unparsable": "this is not iCalendar",
    "empty": "",
    "not-a-calendar": "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:x\r\nEND:VCARD\r\n",
    "no-start": cal("UID:ns\nDTEND:20250317T100000Z"),
    "broken-dtstart": cal("UID:bd\nDTSTART:tomorrow\nDTEND:20250317T100000Z"),
    "broken-rrule": cal("UID:br\nDTSTART:20250317T080000Z\nDTEND:20250317T100000Z\nRRULE:FREQ=SOMETIMES"),
    "broken-exdate": cal(
        "UID:be\nDTSTART:20250317T080000Z\nDTEND:20250317T100000Z\nRRULE:FREQ=DAILY\nEXDATE:never"
    ),
    "end-before-start": cal("UID:eb\nDTSTART:20250317T100000Z\nDTEND:20250317T080000Z"),
    "negative-duration": cal("UID:nd\nDTSTART:20250317T100000Z\nDURATION:-PT2H"),
    "too-frequent": cal("UID:tf\nDTSTART:20250317T080000Z\nDTEND:20250317T080100Z\nRRULE:FREQ=SECONDLY"),
}


@pytest.mark.parametrize("name", sorted(BAD_OBJECTS))
def test_a_bad_object_is_skipped_and_reported_the_others_still_open(name: str) -> None:
    problems: list[OpeningProblem] = []
    good = cal(WEEKDAYS)
    windows = expand(good, BAD_OBJECTS[name], good, start=WEEK[0], end=WEEK[1], problems=problems)
    assert len(windows) == 10
    assert len(problems) == 1
    assert problems[0].index == 1 and problems[0].skipped and problems[0].code and problems[0].detail


def test_bad_object_codes() -> None:
    problems: list[OpeningProblem] = []
    expand(*BAD_OBJECTS.values(), start=WEEK[0], end=WEEK[1], problems=problems)
    assert [p.code for p in problems] == [
        "unparsable", "unparsable", "not-a-calendar", "no-start", "unreadable",
        "unreadable", "unreadable", "end-before-start", "end-before-start", "too-frequent",
    ]  # fmt: skip
    assert [p.index for p in problems] == list(range(len(BAD_OBJECTS)))
    assert problems[3].uid == "ns" and problems[0].uid is None


def test_zero_length_event_opens_nothing_and_is_reported() -> None:
    problems: list[OpeningProblem] = []
    body = "UID:zl\nDTSTART:20250317T080000Z"
    assert expand(cal(body), start=WEEK[0], end=WEEK[1], problems=problems) == []
    assert [(p.code, p.skipped) for p in problems] == [("zero-length", True)]


def test_problems_are_logged_without_contents_when_no_callback(caplog: pytest.LogCaptureFixture) -> None:
    secret = cal("UID:s\nSUMMARY:Private Person\nDTSTART:20250317T100000Z\nDTEND:20250317T080000Z")
    with caplog.at_level(logging.WARNING, logger="servicehop_caldav.booking.opening"):
        windows = expand_windows(
            ["garbage Private Person", secret],
            timezone=OSLO,
            start=WEEK[0],
            end=WEEK[1],
            staff_by_email=STAFF,
            all_staff=ALL,
        )
    assert windows == []
    assert [r.levelno for r in caplog.records] == [logging.WARNING] * 2
    assert "Private" not in caplog.text and "unparsable" in caplog.text and "end-before-start" in caplog.text


def test_thisandfuture_override_moves_later_occurrences() -> None:
    later = """UID:weekdays
RECURRENCE-ID;RANGE=THISANDFUTURE;TZID=Europe/Oslo:20250320T080000
DTSTART;TZID=Europe/Oslo:20250320T090000
DTEND;TZID=Europe/Oslo:20250320T170000"""
    windows = expand(cal(WEEKDAYS, later), start=WEEK[0], end=WEEK[1])
    assert [w.interval.start.hour for w in windows] == [7, 7, 7, 8, 8]


def test_orphan_override_without_master_opens() -> None:
    orphan = """UID:o
RECURRENCE-ID:20250318T070000Z
DTSTART:20250318T120000Z
DTEND:20250318T130000Z"""
    assert spans(expand(cal(orphan), start=WEEK[0], end=WEEK[1])) == [
        (utc(2025, 3, 18, 12), utc(2025, 3, 18, 13))
    ]


def test_arguments_must_be_aware_and_ordered() -> None:
    with pytest.raises(ValueError):
        expand_windows(
            [], timezone=OSLO, start=datetime(2025, 3, 17), end=WEEK[1], staff_by_email={}, all_staff=ALL
        )
    with pytest.raises(ValueError):
        expand_windows([], timezone=OSLO, start=WEEK[1], end=WEEK[0], staff_by_email={}, all_staff=ALL)


def test_windows_are_model_values() -> None:
    (window,) = expand(cal(SATURDAY), start=WEEK[0], end=WEEK[1])
    assert window == Window(Interval(utc(2025, 3, 22, 9), utc(2025, 3, 22, 13)), frozenset({"cara"}))


def test_floating_window_in_the_repeated_autumn_hour() -> None:
    # 02:30 floating is read as the first 02:30 (summer time, 00:30 UTC). The span ends at the
    # second 02:20 (winter time, 01:20 UTC): the window lies inside it, although by wall clock
    # 02:30 comes after 02:20 - the library compares floating times by wall clock.
    body = "UID:f\nDTSTART:20251026T023000\nDTEND:20251026T024000"
    windows = expand(cal(body, vtimezone=None), start=utc(2025, 10, 26, 0), end=utc(2025, 10, 26, 1, 20))
    assert spans(windows) == [(utc(2025, 10, 26, 0, 30), utc(2025, 10, 26, 0, 40))]
