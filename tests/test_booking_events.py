"""Booking events: reading a client's VEVENT, rewriting it, writing the visit."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
import pytest

from servicehop_caldav.booking import texts
from servicehop_caldav.booking.config import DepartmentSettings, Service
from servicehop_caldav.booking.events import (
    ANNOTATION,
    SEPARATOR,
    BookingEvent,
    EventError,
    Source,
    Unbookable,
    annotated,
    assignment_text,
    confirmed_text,
    flagged_text,
    normalised,
    parse,
    read_booking,
    recipient_notes,
    refused_change_text,
    refused_text,
    waiting_expired_text,
    waiting_text,
)
from servicehop_caldav.booking.model import Interval, Reason

OSLO = ZoneInfo("Europe/Oslo")
SETTINGS = DepartmentSettings(
    services=(Service("Dusj", timedelta(minutes=45)), Service("Tilsyn", timedelta(minutes=30))),
    default_service="Tilsyn",
)
NO_DEFAULT = DepartmentSettings(services=(Service("Dusj", timedelta(minutes=45)),))
ALTERNATIVE = Interval(datetime(2026, 6, 1, 12, tzinfo=UTC), datetime(2026, 6, 1, 13, tzinfo=UTC))


def ics(*lines: str, extra: str = "") -> str:
    body = "\r\n".join(("UID:booking-1", "DTSTAMP:20260501T080000Z") + lines)
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\n"
        f"BEGIN:VEVENT\r\n{body}\r\nEND:VEVENT\r\n{extra}END:VCALENDAR\r\n"
    )


def read(text: str, settings: DepartmentSettings = SETTINGS) -> BookingEvent | Unbookable:
    return read_booking(text, timezone=OSLO, settings=settings)


def booking(text: str) -> BookingEvent:
    result = read(text)
    assert isinstance(result, BookingEvent), result
    return result


def event_of(text: str) -> icalendar.cal.Component:
    events = icalendar.Calendar.from_ical(text).walk("VEVENT")
    assert len(events) == 1
    return events[0]


# --- reading ---------------------------------------------------------------


def test_floating_time_is_department_time_and_dtend_is_used() -> None:
    result = booking(ics("DTSTART:20260601T100000", "DTEND:20260601T110000", "SUMMARY:dusj"))
    assert result.uid == "booking-1"
    assert result.interval == Interval(
        datetime(2026, 6, 1, 8, tzinfo=UTC), datetime(2026, 6, 1, 9, tzinfo=UTC)
    )
    assert result.interval.start.tzinfo == UTC
    assert result.service.name == "Dusj"
    assert result.notes == "" and not result.annotated and result.status is None


def test_tzid_and_utc_are_honoured() -> None:
    zoned = booking(
        ics("DTSTART;TZID=America/New_York:20260601T100000", "DTEND:20260601T150000Z", "SUMMARY:Dusj")
    )
    assert zoned.interval.start == datetime(2026, 6, 1, 14, tzinfo=UTC)
    assert zoned.interval.end == datetime(2026, 6, 1, 15, tzinfo=UTC)


def test_custom_vtimezone_and_unknown_tzid() -> None:
    vtimezone = (
        "BEGIN:VTIMEZONE\r\nTZID:W. Europe Standard Time\r\n"
        "BEGIN:STANDARD\r\nDTSTART:16010101T030000\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\n"
        "RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10\r\nEND:STANDARD\r\n"
        "BEGIN:DAYLIGHT\r\nDTSTART:16010101T020000\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\n"
        "RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n"
    )
    result = booking(
        ics(
            "DTSTART;TZID=W. Europe Standard Time:20260601T100000",
            "DTEND;TZID=Nowhere/Zone:20260601T110000",
            "SUMMARY:Dusj",
            extra=vtimezone,
        )
    )
    # Summer time: UTC+2 from the VTIMEZONE; the unknown TZID is read as Oslo time.
    assert result.interval.start == datetime(2026, 6, 1, 8, tzinfo=UTC)
    assert result.interval.end == datetime(2026, 6, 1, 9, tzinfo=UTC)


def test_duration_and_default_duration() -> None:
    with_duration = booking(ics("DTSTART:20260601T100000Z", "DURATION:PT1H30M", "SUMMARY:Dusj"))
    assert with_duration.interval.duration == timedelta(minutes=90)
    dusj = booking(ics("DTSTART:20260601T100000Z", "SUMMARY:Dusj"))
    assert dusj.interval.duration == timedelta(minutes=45)
    unknown = booking(ics("DTSTART:20260601T100000Z", "SUMMARY:Something else"))
    assert unknown.service.name == "Tilsyn" and unknown.interval.duration == timedelta(minutes=30)


def test_duration_across_daylight_saving_is_elapsed_time() -> None:
    # 2026-10-25 01:30 Oslo (summer time) + 2 h elapsed = 02:30 winter time.
    result = booking(ics("DTSTART:20261025T013000", "DURATION:PT2H", "SUMMARY:Dusj"))
    assert result.interval.duration == timedelta(hours=2)
    assert result.interval.start == datetime(2026, 10, 24, 23, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("lines", "extra", "reason"),
    [
        (("DTSTART;VALUE=DATE:20260601", "SUMMARY:Dusj"), "", Reason.ALL_DAY),
        (("DTSTART:20260601T100000", "RRULE:FREQ=WEEKLY", "SUMMARY:Dusj"), "", Reason.RECURRING),
        (("DTSTART:20260601T100000", "RDATE:20260608T100000", "SUMMARY:Dusj"), "", Reason.RECURRING),
        (("DTSTART:20260601T100000", "RECURRENCE-ID:20260601T100000", "SUMMARY:Dusj"), "", Reason.RECURRING),
        (
            ("DTSTART:20260601T100000", "SUMMARY:Dusj"),
            "BEGIN:VEVENT\r\nUID:booking-1\r\nDTSTART:20260602T100000\r\nEND:VEVENT\r\n",
            Reason.RECURRING,
        ),
        (("SUMMARY:Dusj",), "", Reason.NO_TIME),
    ],
)
def test_unbookable_kinds(lines: tuple[str, ...], extra: str, reason: Reason) -> None:
    result = read(ics(*lines, extra=extra))
    assert isinstance(result, Unbookable)
    assert result.reason is reason and result.uid == "booking-1"


def test_unknown_service_without_default() -> None:
    result = read(ics("DTSTART:20260601T100000", "SUMMARY:Hagearbeid"), NO_DEFAULT)
    assert isinstance(result, Unbookable) and result.reason is Reason.UNKNOWN_SERVICE
    result = read(ics("DTSTART:20260601T100000"), NO_DEFAULT)
    assert isinstance(result, Unbookable) and result.reason is Reason.UNKNOWN_SERVICE


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("not a calendar", "unparsable"),
        ("", "unparsable"),
        ("BEGIN:VEVENT\r\nUID:x\r\nEND:VEVENT\r\n", "not-a-calendar"),
        ("BEGIN:VCALENDAR\r\nBEGIN:VTODO\r\nUID:x\r\nEND:VTODO\r\nEND:VCALENDAR\r\n", "no-event"),
        (
            "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:20260601T100000\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
            "no-uid",
        ),
        (ics("DTSTART:notadate", "SUMMARY:Dusj"), "bad-value"),
        (ics("DTSTART:20260601T100000", "DTEND;VALUE=DATE:20260602", "SUMMARY:Dusj"), "bad-value"),
        (ics("DTSTART:20260601T100000", "DTEND:20260601T110000", "DURATION:PT1H"), "bad-value"),
        (ics("DTSTART:20260601T100000", "DTEND:20260601T090000", "SUMMARY:Dusj"), "end-before-start"),
        (ics("DTSTART:20260601T100000", "DURATION:-PT1H", "SUMMARY:Dusj"), "end-before-start"),
        (ics("DTSTART:20260601T100000", "DTEND:20260601T100000", "SUMMARY:Dusj"), "zero-length"),
    ],
)
def test_malformed_text_raises_a_value_error_with_a_code(text: str, code: str) -> None:
    with pytest.raises(ValueError) as caught:
        read(text)
    assert isinstance(caught.value, EventError) and caught.value.code == code
    assert str(caught.value)


# --- rewriting the recipient's event ---------------------------------------

ORIGINAL = ics(
    "DTSTART;TZID=Europe/Oslo:20260601T100000",
    "DTEND;TZID=Europe/Oslo:20260601T110000",
    "SUMMARY:Dusj",
    "SEQUENCE:3",
    "DESCRIPTION:Nøkkel i postkassa\\, ring på; kode 1234\\nHund: Åsa",
    "X-APPLE-TRAVEL-ADVISORY-BEHAVIOR;X-P=1:AUTOMATIC",
    "X-ALT-DESC;FMTTYPE=text/html:<p>old</p>",
    "BEGIN:VALARM",
    "ACTION:DISPLAY",
    "DESCRIPTION:Reminder",
    "TRIGGER:-PT15M",
    "END:VALARM",
)
NOTES = "Nøkkel i postkassa, ring på; kode 1234\nHund: Åsa"


def refuse(text: str, language: str = "nb") -> str:
    return refused_text(
        text,
        language=language,
        reasons=["Ingen ansatte er ledige."],
        alternatives=[ALTERNATIVE],
        timezone=OSLO,
    )


def test_confirmed_keeps_everything_but_status_and_description() -> None:
    before, after = event_of(ORIGINAL), event_of(confirmed_text(ORIGINAL, language="nb", staff_name="Kari"))
    assert str(after["STATUS"]) == "CONFIRMED"
    assert str(after["DESCRIPTION"]) == f"Bekreftet: Kari kommer.\n{SEPARATOR}\n{NOTES}"
    for name in ("UID", "SUMMARY", "SEQUENCE", "X-APPLE-TRAVEL-ADVISORY-BEHAVIOR"):
        assert after[name] == before[name], name
    assert after["X-APPLE-TRAVEL-ADVISORY-BEHAVIOR"].params["X-P"] == "1"
    assert after["DTSTART"].dt == before["DTSTART"].dt and after["DTSTART"].params["TZID"] == "Europe/Oslo"
    assert after["DTEND"].dt == before["DTEND"].dt
    assert "X-ALT-DESC" not in after  # a stale rich-text copy would hide the decision
    alarms = after.walk("VALARM")
    assert len(alarms) == 1 and alarms[0]["TRIGGER"].dt == timedelta(minutes=-15)


def test_every_text_written_for_the_recipient_is_annotated_and_a_clients_is_not() -> None:
    """``annotated`` tells a client's own event from one the server wrote (the
    desk then compares the texts only for the latter)."""
    assert not annotated(ORIGINAL) and not annotated(parse(ORIGINAL))
    written = [
        confirmed_text(ORIGINAL, language="nb", staff_name="Kari"),
        refused_text(ORIGINAL, language="nb", reasons=["Nei."], alternatives=[], timezone=OSLO),
        waiting_text(ORIGINAL, language="en", notice="1 h"),
        flagged_text(ORIGINAL, language="en"),
    ]
    assert all(annotated(text) for text in written)
    assert annotated(ORIGINAL.replace("END:VEVENT", "x-servicehop-annotation:Set by hand\r\nEND:VEVENT"))


def test_confirmation_without_staff_name_and_without_notes() -> None:
    text = ics("DTSTART:20260601T100000", "SUMMARY:Dusj")
    after = event_of(confirmed_text(text, language="en", staff_name=None))
    assert str(after["DESCRIPTION"]) == f"Confirmed.\n{SEPARATOR}"
    assert booking(confirmed_text(text, language="en", staff_name=None)).notes == ""


def test_refused_has_prefix_reason_alternatives_and_notes() -> None:
    after = event_of(refuse(ORIGINAL))
    assert str(after["STATUS"]) == "CANCELLED"
    assert str(after["SUMMARY"]) == "IKKE BESTILT: Dusj"
    description = str(after["DESCRIPTION"])
    server, notes = description.split(f"\n{SEPARATOR}\n")
    assert server == texts.refusal_description(["Ingen ansatte er ledige."], [ALTERNATIVE], OSLO, "nb")
    assert notes == NOTES
    assert str(after[ANNOTATION]) == server
    assert len(after.walk("VALARM")) == 1


def test_round_trip_keeps_notes_once_and_never_doubles_the_prefix() -> None:
    text = ORIGINAL
    for step in range(3):
        text = refuse(text)
        text = refuse(text, "en")  # a refusal in another language replaces the prefix
        result = booking(text)
        assert result.notes == NOTES and result.annotated
        assert result.summary == "Dusj" and result.service.name == "Dusj"
        assert str(event_of(text)["SUMMARY"]) == "NOT BOOKED: Dusj"
        text = confirmed_text(text, language="nb", staff_name=f"Ansatt {step}")
        after = event_of(text)
        assert str(after["SUMMARY"]) == "Dusj" and str(after["STATUS"]) == "CONFIRMED"
        assert str(after["DESCRIPTION"]) == f"Bekreftet: Ansatt {step} kommer.\n{SEPARATOR}\n{NOTES}"
        assert recipient_notes(text) == NOTES
    assert str(event_of(text)["SEQUENCE"]) == "3"


def rebuild(event: icalendar.cal.Component) -> str:
    calendar = icalendar.Calendar()
    calendar.add("VERSION", "2.0")
    calendar.add_component(event)
    return calendar.to_ical().decode()


def test_recipient_edits_below_the_separator_are_their_notes() -> None:
    event = event_of(confirmed_text(ORIGINAL, language="nb", staff_name="Kari"))
    description = str(event.pop("DESCRIPTION")).replace(NOTES, "Ny kode: 9999")
    event.add("DESCRIPTION", description)
    assert booking(rebuild(event)).notes == "Ny kode: 9999"


def test_annotation_read_even_if_a_client_drops_value_text() -> None:
    text = confirmed_text(ORIGINAL, language="nb", staff_name="Ærlig, Ø; Å")
    assert "X-SERVICEHOP-ANNOTATION;VALUE=TEXT:Bekreftet: Ærlig\\, Ø\\; Å kommer." in text
    bare = text.replace("X-SERVICEHOP-ANNOTATION;VALUE=TEXT:", "X-SERVICEHOP-ANNOTATION:")
    event = event_of(bare)
    description = str(event.pop("DESCRIPTION")).replace(f"{SEPARATOR}\n", "")
    event.add("DESCRIPTION", description)
    assert booking(rebuild(event)).notes == NOTES


def test_separator_deleted_by_the_user_is_recovered_from_the_x_property() -> None:
    event = event_of(confirmed_text(ORIGINAL, language="nb", staff_name="Kari"))
    event.pop("DESCRIPTION")
    event.add("DESCRIPTION", "Bekreftet: Kari kommer.\r\nEndret notat")
    text = rebuild(event)
    assert booking(text).notes == "Endret notat"
    again = event_of(confirmed_text(text, language="nb", staff_name="Kari"))
    assert str(again["DESCRIPTION"]) == f"Bekreftet: Kari kommer.\n{SEPARATOR}\nEndret notat"


def test_separator_alone_is_enough_when_a_client_drops_x_properties() -> None:
    confirmed = confirmed_text(ORIGINAL, language="nb", staff_name="Kari")
    event = event_of(confirmed)
    event.pop(ANNOTATION)
    result = booking(rebuild(event))
    assert result.notes == NOTES and result.annotated


def test_refused_change_keeps_the_confirmed_booking_and_adds_the_reason() -> None:
    confirmed = confirmed_text(ORIGINAL, language="nb", staff_name="Kari")
    text = confirmed
    for _ in range(2):  # a second refused change replaces the first reason
        text = refused_change_text(
            text,
            language="nb",
            reasons=["Tidspunktet er utenfor åpningstiden."],
            alternatives=[],
            timezone=OSLO,
        )
    before, after = event_of(confirmed), event_of(text)
    for name in ("UID", "SUMMARY", "STATUS", "SEQUENCE", "X-APPLE-TRAVEL-ADVISORY-BEHAVIOR"):
        assert after[name] == before[name], name
    assert after["DTSTART"].dt == before["DTSTART"].dt and after["DTEND"].dt == before["DTEND"].dt
    refusal = texts.refusal_description(
        ["Tidspunktet er utenfor åpningstiden."], [], OSLO, "nb", changed=True
    )
    assert str(after["DESCRIPTION"]) == (f"{refusal}\n\nBekreftet: Kari kommer.\n{SEPARATOR}\n{NOTES}")
    assert len(after.walk("VALARM")) == 1
    back = event_of(confirmed_text(text, language="nb", staff_name="Kari"))
    assert str(back["DESCRIPTION"]) == str(before["DESCRIPTION"])


def test_refused_change_can_keep_the_notes_the_recipient_typed() -> None:
    confirmed = confirmed_text(ORIGINAL, language="nb", staff_name="Kari")
    typed = "Ny beskjed\n" + "x" * 50
    text = refused_change_text(confirmed, language="nb", reasons=["For lang."], alternatives=[],
                               timezone=OSLO, notes=typed)
    description = str(event_of(text)["DESCRIPTION"])
    assert description.endswith(f"Bekreftet: Kari kommer.\n{SEPARATOR}\n{typed}"), description
    assert str(event_of(text)["STATUS"]) == "CONFIRMED"


def test_refused_recurring_event_annotates_every_vevent() -> None:
    extra = (
        "BEGIN:VEVENT\r\nUID:booking-1\r\nRECURRENCE-ID:20260608T100000\r\n"
        "DTSTART:20260608T110000\r\nSUMMARY:Dusj\r\nEND:VEVENT\r\n"
    )
    text = refuse(ics("DTSTART:20260601T100000", "RRULE:FREQ=WEEKLY", "SUMMARY:Dusj", extra=extra))
    events = icalendar.Calendar.from_ical(text).walk("VEVENT")
    assert len(events) == 2
    assert all(str(e["SUMMARY"]) == "IKKE BESTILT: Dusj" for e in events)
    assert all(str(e["STATUS"]) == "CANCELLED" for e in events)
    assert "RRULE" in events[0]


def test_rewriting_malformed_text_raises() -> None:
    with pytest.raises(EventError):
        confirmed_text("nonsense", language="nb", staff_name=None)


# --- the staff member's visit ----------------------------------------------


def test_assignment_has_the_right_fields_and_escapes_special_characters() -> None:
    interval = Interval(datetime(2026, 6, 1, 10, tzinfo=OSLO), datetime(2026, 6, 1, 11, 30, tzinfo=OSLO))
    stamp = datetime(2026, 5, 1, 12, tzinfo=UTC)
    text = assignment_text(
        booking_uid="booking-1",
        assignment_uid="visit-1",
        interval=interval,
        service_name="Dusj, hjelp; stell",
        recipient_name="Åse Ødegård",
        address="Storgata 1, 0155 Oslo; 2. etg",
        phone="+47 912 34 567",
        notes="Nøkkel: boks 3,\nsi fra; ring først\\",
        language="nb",
        stamp=stamp,
    )
    raw = text.replace("\r\n ", "")
    assert "SUMMARY:Dusj\\, hjelp\\; stell – Åse Ødegård" in raw
    assert "ATTENDEE" not in raw and "ORGANIZER" not in raw
    calendar = icalendar.Calendar.from_ical(text)
    assert str(calendar["PRODID"]) == "-//servicehop-caldav//EN" and str(calendar["VERSION"]) == "2.0"
    event = event_of(text)
    assert str(event["UID"]) == "visit-1"
    assert str(event["RELATED-TO"]) == "booking-1"
    assert str(event["SUMMARY"]) == "Dusj, hjelp; stell – Åse Ødegård"
    assert str(event["LOCATION"]) == "Storgata 1, 0155 Oslo; 2. etg"
    assert str(event["DESCRIPTION"]) == "Telefon: +47 912 34 567\n\nNøkkel: boks 3,\nsi fra; ring først\\"
    assert str(event["STATUS"]) == "CONFIRMED"
    assert event["DTSTAMP"].dt == stamp
    assert event["DTSTART"].dt == datetime(2026, 6, 1, 8, tzinfo=UTC)
    assert event["DTEND"].dt == datetime(2026, 6, 1, 9, 30, tzinfo=UTC)
    assert "DTSTART:20260601T080000Z" in raw


def test_assignment_without_optional_fields_in_english() -> None:
    interval = Interval(datetime(2026, 6, 1, 8, tzinfo=UTC), datetime(2026, 6, 1, 9, tzinfo=UTC))
    text = assignment_text(
        booking_uid="b",
        assignment_uid="a",
        interval=interval,
        service_name="Shower",
        recipient_name="Ann",
        address=None,
        phone="123",
        notes=None,
        language="en",
    )
    event = event_of(text)
    assert "LOCATION" not in event
    assert str(event["DESCRIPTION"]) == "Phone: 123"
    assert event["DTSTAMP"].dt.tzinfo is not None
    bare = assignment_text(
        booking_uid="b",
        assignment_uid="a",
        interval=interval,
        service_name="Shower",
        recipient_name="Ann",
        address="  ",
        phone=None,
        notes="",
        language="en",
    )
    assert "DESCRIPTION" not in event_of(bare) and "LOCATION" not in event_of(bare)


def test_special_characters_survive_the_recipients_event() -> None:
    text = ics("DTSTART:20260601T100000", "SUMMARY:Dusj", "DESCRIPTION:a\\, b\\; c\\\\d\\næøå ÆØÅ")
    notes = "a, b; c\\d\næøå ÆØÅ"
    assert booking(text).notes == notes
    for rewritten in (confirmed_text(text, language="nb", staff_name="Ærlig, Ø; Å"), refuse(text)):
        assert recipient_notes(rewritten) == notes
    assert str(event_of(confirmed_text(text, language="nb", staff_name="Ærlig, Ø; Å"))[ANNOTATION]) == (
        "Bekreftet: Ærlig, Ø; Å kommer."
    )


def test_refused_event_without_summary_reads_back_without_prefix() -> None:
    text = refuse(ics("DTSTART:20260601T100000Z"))
    assert str(event_of(text)["SUMMARY"]) == "IKKE BESTILT:"
    result = booking(text)
    assert result.summary == "" and result.service.name == "Tilsyn" and result.status == "CANCELLED"


# --- one parse per PUT ---------------------------------------------------------


REWRITES: dict[str, Callable[[Source], str]] = {
    "confirmed": lambda source: confirmed_text(source, language="nb", staff_name="Kari"),
    "refused": lambda source: refused_text(source, language="nb", reasons=["Ingen ansatte er ledige."],
                                           alternatives=[ALTERNATIVE], timezone=OSLO),
    "waiting": lambda source: waiting_text(source, language="en", notice="1 h"),
    "waiting-expired": lambda source: waiting_expired_text(source, language="en"),
    "flagged": lambda source: flagged_text(source, language="nb"),
    "normalised": normalised,
}


@pytest.mark.parametrize("rewrite", REWRITES.values(), ids=REWRITES.keys())
def test_a_parsed_event_is_written_as_its_text_and_left_unchanged(rewrite: Callable[[Source], str]) -> None:
    """The desk parses the sent event once and hands the parse to each step:
    each writes what it writes from the text, and none changes the parse
    (the next step reads it)."""
    calendar = parse(ORIGINAL)
    before = calendar.to_ical()
    assert rewrite(calendar) == rewrite(ORIGINAL)
    assert calendar.to_ical() == before
    assert read_booking(calendar, timezone=OSLO, settings=SETTINGS) == read(ORIGINAL)
