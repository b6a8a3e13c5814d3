"""Texts for the views and the waiting list: free/busy periods, the
department's overview, and the recipient's waiting, expired and flagged events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import icalendar
import pytest

from servicehop_caldav.booking import events, texts
from servicehop_caldav.booking.events import (
    ANNOTATION,
    SEPARATOR,
    availability_text,
    confirmed_text,
    flagged_text,
    overview_text,
    recipient_notes,
    refused_text,
    waiting_expired_text,
    waiting_text,
)
from servicehop_caldav.booking.model import Interval

OSLO = ZoneInfo("Europe/Oslo")
START = datetime(2026, 6, 1, 8, tzinfo=UTC)
END = datetime(2026, 6, 1, 9, 30, tzinfo=UTC)
VISIT = Interval(START, END)
STAMP = datetime(2026, 5, 20, 12, 0, 5, tzinfo=UTC)
NOTES = "Ring på døra, nøkkel i postkassa.\nHunden er snill; ikke slipp den ut."
WAITING_EN = (
    "On the waiting list: no member of staff is free at this time yet. "
    "If a place becomes free at least 1 h before the visit, it is confirmed automatically."
)


def ics(*lines: str) -> str:
    body = "\r\n".join(("UID:booking-1", "DTSTAMP:20260501T080000Z", "DTSTART:20260601T100000Z") + lines)
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\n"
        f"BEGIN:VEVENT\r\n{body}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )


def escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


REQUEST = ics("SUMMARY:Dusj", f"DESCRIPTION:{escaped(NOTES)}", "X-CLIENT-THING:kept")


def calendar_of(text: str) -> icalendar.Calendar:
    calendar = icalendar.Calendar.from_ical(text)
    assert isinstance(calendar, icalendar.Calendar)
    return calendar


def event_of(text: str) -> icalendar.cal.Component:
    found = calendar_of(text).walk("VEVENT")
    assert len(found) == 1
    return found[0]


def server_part(text: str) -> str:
    description = str(event_of(text)["DESCRIPTION"])
    head, separator, _ = description.partition(f"\n{SEPARATOR}")
    assert separator, description
    return head


def availability(free: bool = True, language: str = "en", **changes: object) -> str:
    values: dict[str, object] = {
        "uid": "slot-1",
        "start": START,
        "end": END,
        "free": free,
        "language": language,
    }
    values.update(changes)
    return availability_text(**values)  # type: ignore[arg-type]


def overview(status: str = "confirmed", language: str = "en", **changes: object) -> str:
    values: dict[str, object] = {
        "uid": "overview-1",
        "booking_uid": "booking-1",
        "interval": VISIT,
        "service_name": "Dusj",
        "recipient_name": "Ola Nordmann",
        "staff_name": "Kari Hansen",
        "status": status,
        "notes": NOTES,
        "language": language,
        "stamp": STAMP,
    }
    values.update(changes)
    return overview_text(**values)  # type: ignore[arg-type]


# --- phrases -----------------------------------------------------------------

NEW_KEYS = (
    "free",
    "busy",
    "free_description",
    "waiting",
    "waiting_expired",
    "flagged",
    "flagged_prefix",
    "waiting_prefix",
    "flagged_category",
    "waiting_category",
    "staff_label",
)


def test_every_language_has_the_same_phrases() -> None:
    keys = set(texts.PHRASES["nb"])
    assert set(NEW_KEYS) <= keys
    for language in texts.LANGUAGES:
        assert set(texts.PHRASES[language]) == keys


@pytest.mark.parametrize("key", NEW_KEYS)
def test_new_phrases_differ_between_languages_and_fill_placeholders(key: str) -> None:
    nb = texts.phrase("nb", key, notice="1 t")
    en = texts.phrase("en", key, notice="1 h")
    assert nb != en
    assert "{" not in nb and "{" not in en
    assert texts.phrase("xx", key, notice="1 t") == nb


def test_phrase_values() -> None:
    assert texts.phrase("en", "waiting", notice="1 h") == WAITING_EN
    assert "minst 2 t før besøket" in texts.phrase("nb", "waiting", notice="2 t")
    assert texts.phrase("nb", "flagged_prefix") == "MÅ FØLGES OPP: "
    assert texts.phrase("en", "waiting_prefix") == "WAITING: "
    with pytest.raises(KeyError):
        texts.phrase("en", "waiting")  # the notice is missing
    with pytest.raises(KeyError):
        texts.phrase("en", "no-such-phrase")


# --- availability --------------------------------------------------------------


def test_free_period() -> None:
    text = availability(free=True, language="en")
    calendar = calendar_of(text)
    assert str(calendar["VERSION"]) == "2.0" and str(calendar["PRODID"]) == events.PRODID
    event = event_of(text)
    assert str(event["UID"]) == "slot-1"
    assert event["DTSTART"].dt == START and event["DTSTART"].dt.utcoffset() == timedelta(0)
    assert "DTSTART:20260601T080000Z" in text
    assert event["DTEND"].dt == END
    assert event["DTSTAMP"].dt == START
    assert str(event["SUMMARY"]) == "Free"
    assert str(event["TRANSP"]) == "TRANSPARENT"
    assert str(event["CLASS"]) == "PUBLIC"
    assert str(event["DESCRIPTION"]) == "Free time: book it in your bookings calendar."


def test_busy_period_in_nb_has_no_description() -> None:
    event = event_of(availability(free=False, language="nb"))
    assert str(event["SUMMARY"]) == "Opptatt"
    assert str(event["TRANSP"]) == "OPAQUE"
    assert "DESCRIPTION" not in event
    assert str(event_of(availability(free=True, language="nb"))["SUMMARY"]) == "Ledig"
    assert str(event_of(availability(free=False, language="de"))["SUMMARY"]) == "Opptatt"


def test_availability_contains_only_the_allowed_properties() -> None:
    for free in (True, False):
        event = event_of(availability(free=free))
        allowed = {"UID", "DTSTAMP", "DTSTART", "DTEND", "SUMMARY", "TRANSP", "CLASS", "DESCRIPTION"}
        assert set(event) <= allowed
        assert not event.subcomponents
        assert [c.name for c in calendar_of(availability(free=free)).subcomponents] == ["VEVENT"]


def test_availability_is_deterministic_and_in_utc() -> None:
    first = availability(free=False)
    assert availability(free=False) == first
    # The same instants given in another zone are the same text.
    assert availability(free=False, start=START.astimezone(OSLO), end=END.astimezone(OSLO)) == first
    assert "20260601T080000Z" in first and "TZID" not in first and "VTIMEZONE" not in first
    offset = timezone(timedelta(hours=-5))
    assert availability(start=START.astimezone(offset), end=END.astimezone(offset)) == availability()
    assert availability(start=START + timedelta(minutes=15)) != availability()


def test_availability_refuses_bad_times() -> None:
    with pytest.raises(ValueError):
        availability(start=END, end=START)
    with pytest.raises(ValueError):
        availability(start=datetime(2026, 6, 1, 8), end=datetime(2026, 6, 1, 9))


# --- the recipient's event: waiting, expired, flagged ----------------------------


def test_waiting_is_tentative_with_the_sentence_above_the_notes() -> None:
    text = waiting_text(REQUEST, language="en", notice="1 h")
    event = event_of(text)
    assert str(event["STATUS"]) == "TENTATIVE"
    assert str(event["SUMMARY"]) == "Dusj"
    assert server_part(text) == WAITING_EN
    assert str(event[ANNOTATION]) == WAITING_EN
    assert recipient_notes(text) == NOTES
    assert str(event["X-CLIENT-THING"]) == "kept"
    assert str(event["UID"]) == "booking-1"


def test_waiting_strips_a_not_booked_prefix_and_speaks_nb() -> None:
    refused = refused_text(REQUEST, language="nb", reasons=["Nei."], alternatives=[], timezone=OSLO)
    text = waiting_text(refused, language="nb", notice="1 t")
    event = event_of(text)
    assert str(event["SUMMARY"]) == "Dusj"
    assert server_part(text) == texts.phrase("nb", "waiting", notice="1 t")
    assert "Nei." not in str(event["DESCRIPTION"])
    assert recipient_notes(text) == NOTES


def test_waiting_again_replaces_the_server_part() -> None:
    once = waiting_text(REQUEST, language="en", notice="1 h")
    twice = waiting_text(once, language="en", notice="2 h")
    description = str(event_of(twice)["DESCRIPTION"])
    assert description.count(SEPARATOR) == 1
    assert description.count("On the waiting list") == 1
    assert "at least 2 h before" in description and "at least 1 h before" not in description
    assert recipient_notes(twice) == NOTES
    assert waiting_text(once, language="en", notice="1 h") == once


def test_waiting_then_confirmed_is_a_normal_confirmed_event() -> None:
    waiting = waiting_text(REQUEST, language="nb", notice="1 t")
    confirmed = confirmed_text(waiting, language="nb", staff_name="Kari")
    direct = confirmed_text(REQUEST, language="nb", staff_name="Kari")
    event = event_of(confirmed)
    assert str(event["STATUS"]) == "CONFIRMED"
    assert server_part(confirmed) == "Bekreftet: Kari kommer."
    assert str(event[ANNOTATION]) == "Bekreftet: Kari kommer."
    assert "venteliste" not in confirmed
    assert recipient_notes(confirmed) == NOTES
    assert confirmed == direct


def test_waiting_expired_is_cancelled_and_not_booked() -> None:
    waiting = waiting_text(REQUEST, language="en", notice="1 h")
    text = waiting_expired_text(waiting, language="en")
    event = event_of(text)
    assert str(event["STATUS"]) == "CANCELLED"
    assert str(event["SUMMARY"]) == "NOT BOOKED: Dusj"
    assert server_part(text) == "Not booked: no place became free in time."
    assert "waiting list" not in str(event["DESCRIPTION"])
    assert recipient_notes(text) == NOTES
    # Applied again (or in another language) the prefix is not doubled.
    again = waiting_expired_text(text, language="nb")
    assert str(event_of(again)["SUMMARY"]) == "IKKE BESTILT: Dusj"
    assert server_part(again) == texts.phrase("nb", "waiting_expired")
    assert recipient_notes(again) == NOTES


def test_waiting_expired_without_summary_still_says_not_booked() -> None:
    text = waiting_expired_text(ics(), language="en")
    assert str(event_of(text)["SUMMARY"]) == "NOT BOOKED:"
    assert recipient_notes(text) == ""


def test_flagged_keeps_summary_and_notes_and_confirming_again_restores() -> None:
    confirmed = confirmed_text(REQUEST, language="en", staff_name="Kari")
    flagged = flagged_text(confirmed, language="en")
    event = event_of(flagged)
    assert str(event["STATUS"]) == "TENTATIVE"
    assert str(event["SUMMARY"]) == "Dusj"
    assert server_part(flagged) == texts.phrase("en", "flagged")
    assert "Kari" not in str(event["DESCRIPTION"])  # the old confirmation is replaced
    assert recipient_notes(flagged) == NOTES
    assert flagged_text(flagged, language="en") == flagged

    again = confirmed_text(flagged, language="en", staff_name="Per")
    assert str(event_of(again)["STATUS"]) == "CONFIRMED"
    assert server_part(again) == "Confirmed: Per will come."
    assert "opening hours" not in again
    assert recipient_notes(again) == NOTES
    assert again == confirmed_text(REQUEST, language="en", staff_name="Per")


def test_flagged_without_summary_adds_none_and_nb() -> None:
    text = flagged_text(ics(), language="nb")
    event = event_of(text)
    assert "SUMMARY" not in event
    assert server_part(text).startswith("Åpningstiden er endret")


def test_notes_edited_by_the_recipient_survive() -> None:
    waiting = waiting_text(REQUEST, language="en", notice="1 h")
    # The recipient changes the notes below the separator in their client.
    edited = waiting.replace("Hunden er snill", "Katten er snill")
    assert recipient_notes(edited) == NOTES.replace("Hunden", "Katten")
    confirmed = confirmed_text(edited, language="en", staff_name=None)
    assert recipient_notes(confirmed) == NOTES.replace("Hunden", "Katten")


def test_malformed_input_raises_event_error() -> None:
    with pytest.raises(events.EventError):
        waiting_text("not a calendar", language="en", notice="1 h")
    with pytest.raises(events.EventError):
        flagged_text("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", language="en")


# --- the department's overview ---------------------------------------------------


def test_confirmed_overview() -> None:
    text = overview(status="confirmed", language="en")
    assert str(calendar_of(text)["PRODID"]) == events.PRODID
    event = event_of(text)
    assert str(event["UID"]) == "overview-1"
    assert event["DTSTAMP"].dt == STAMP
    assert event["DTSTART"].dt == START and event["DTEND"].dt == END
    assert str(event["SUMMARY"]) == "Dusj – Ola Nordmann (Kari Hansen)"
    assert str(event["STATUS"]) == "CONFIRMED"
    assert "CATEGORIES" not in event
    assert str(event["DESCRIPTION"]) == f"Staff: Kari Hansen\n\n{NOTES}"
    assert str(event["RELATED-TO"]) == "booking-1"
    assert str(event["TRANSP"]) == "OPAQUE"
    assert "ATTENDEE" not in event and "ORGANIZER" not in event


@pytest.mark.parametrize(
    ("status", "language", "prefix", "category"),
    [
        ("flagged", "en", "NEEDS ATTENTION: ", "Needs attention"),
        ("flagged", "nb", "MÅ FØLGES OPP: ", "Må følges opp"),
        ("waiting", "en", "WAITING: ", "Waiting"),
        ("waiting", "nb", "VENTER: ", "Venter"),
        ("waiting", "de", "VENTER: ", "Venter"),
    ],
)
def test_waiting_and_flagged_overview_stand_out(
    status: str, language: str, prefix: str, category: str
) -> None:
    event = event_of(overview(status=status, language=language, staff_name=None))
    assert str(event["SUMMARY"]) == f"{prefix}Dusj – Ola Nordmann"
    assert str(event["STATUS"]) == "TENTATIVE"
    assert [str(c) for c in event["CATEGORIES"].cats] == [category]
    assert str(event["DESCRIPTION"]) == NOTES


def test_overview_staff_label_in_nb_and_no_description_when_empty() -> None:
    event = event_of(overview(language="nb", notes=None))
    assert str(event["DESCRIPTION"]) == "Ansatt: Kari Hansen"
    bare = event_of(overview(staff_name=None, notes="  \n "))
    assert "DESCRIPTION" not in bare
    assert str(bare["SUMMARY"]) == "Dusj – Ola Nordmann"


def test_overview_times_are_utc_and_stamp_is_given() -> None:
    local = Interval(START.astimezone(OSLO), END.astimezone(OSLO))
    text = overview(interval=local, stamp=STAMP.astimezone(OSLO))
    assert text == overview()
    assert "TZID" not in text and "20260601T080000Z" in text and "20260520T120005Z" in text


def test_overview_refuses_unknown_status() -> None:
    for status in ("refused", "Confirmed", ""):
        with pytest.raises(ValueError, match="status"):
            overview(status=status)


def test_new_names_are_exported() -> None:
    for name in (
        "availability_text",
        "waiting_text",
        "waiting_expired_text",
        "flagged_text",
        "overview_text",
    ):
        assert name in events.__all__
