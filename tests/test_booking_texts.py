"""The texts a recipient reads: complete in nb and en, times in local time."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from servicehop_caldav.booking import texts
from servicehop_caldav.booking.model import Interval, Reason

OSLO = ZoneInfo("Europe/Oslo")
VALUES = {"notice": "1 t", "horizon": 14, "min_duration": "15 min", "max_duration": "4 t",
          "weekly": "3 t", "max_notes": "4000"}


@pytest.mark.parametrize("language", texts.LANGUAGES)
def test_every_reason_has_a_sentence(language: str) -> None:
    assert set(texts.REASONS[language]) == set(Reason)
    for reason in Reason:
        sentence = texts.reason_text(reason, language, **VALUES)
        assert sentence.endswith(".") and "{" not in sentence


def test_languages_differ_and_unknown_falls_back_to_nb() -> None:
    nb = texts.reason_text(Reason.NO_STAFF_FREE, "nb")
    assert nb != texts.reason_text(Reason.NO_STAFF_FREE, "en")
    assert texts.reason_text(Reason.NO_STAFF_FREE, "de") == nb


def test_durations() -> None:
    assert texts.duration_text(90, "nb") == "1 t 30 min"
    assert texts.duration_text(60, "en") == "1 h"
    assert texts.duration_text(15, "en") == "15 min"


def test_times_are_local_across_daylight_saving() -> None:
    # 2026-03-29 is the last Sunday of March: Oslo moves from UTC+1 to UTC+2.
    before = Interval(datetime(2026, 3, 28, 9, tzinfo=UTC), datetime(2026, 3, 28, 10, tzinfo=UTC))
    after = Interval(datetime(2026, 3, 30, 9, tzinfo=UTC), datetime(2026, 3, 30, 10, tzinfo=UTC))
    assert texts.interval_text(before, OSLO, "nb") == "lør. 28.3. kl. 10:00–11:00"
    assert texts.interval_text(after, OSLO, "en") == "Mon 30 Mar 11:00–12:00"


def test_refusal_description_gives_reasons_and_alternatives() -> None:
    alt = Interval(datetime(2026, 12, 1, 9, tzinfo=UTC), datetime(2026, 12, 1, 10, tzinfo=UTC))
    text = texts.refusal_description(["A.", "B."], [alt], OSLO, "en", changed=True)
    assert text.splitlines() == [
        "The change was not made; the booking stands as before.",
        "A.", "B.", "Free times nearby:", "- Tue 1 Dec 10:00–11:00",
    ]
    assert texts.refusal_description(["A."], [], OSLO, "nb").splitlines()[-1] == (
        "Ingen ledige tider i nærheten."
    )


def test_confirmation_names_staff_only_when_given() -> None:
    assert texts.confirmation_line("nb", "Kari") == "Bekreftet: Kari kommer."
    assert texts.confirmation_line("en", None) == "Confirmed."
    assert texts.not_booked_prefix("en") == "NOT BOOKED: "
