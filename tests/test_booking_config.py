"""servicehop.toml: department rules and service catalogues."""

from __future__ import annotations

from datetime import timedelta
from importlib import resources
from zoneinfo import ZoneInfo

import pytest

from servicehop_caldav.booking.config import ConfigError, parse_settings

EXAMPLE = """
[defaults]
horizon_days = 10
travel_buffer_minutes = 15

[departments.hjem]
on_reject = "refuse"
default_service = "Praktisk bistand"
services = [
    { name = "Praktisk bistand", minutes = 60 },
    { name = "Handling", minutes = 90 },
]

[departments.natt]
horizon_days = 3
"""


def test_the_shipped_template_gives_design_defaults() -> None:
    text = resources.files("servicehop_caldav.templates").joinpath("servicehop.toml").read_text()
    settings = parse_settings(text)
    rules = settings.for_department("anything").rules(ZoneInfo("Europe/Oslo"))
    assert rules.horizon == timedelta(days=14)
    assert rules.minimum_notice == timedelta(minutes=60)
    assert (rules.min_duration, rules.max_duration) == (timedelta(minutes=15), timedelta(hours=4))
    assert rules.travel_buffer == timedelta(0)
    assert settings.defaults.on_reject == "annotate" and settings.defaults.show_staff_names


def test_departments_override_defaults_and_name_services() -> None:
    settings = parse_settings(EXAMPLE)
    hjem, natt = settings.for_department("hjem"), settings.for_department("natt")
    assert (hjem.horizon_days, hjem.travel_buffer_minutes, hjem.on_reject) == (10, 15, "refuse")
    assert (natt.horizon_days, natt.travel_buffer_minutes, natt.on_reject) == (3, 15, "annotate")
    assert settings.for_department("other").horizon_days == 10
    assert hjem.service_for("handling") == hjem.services[1]
    assert hjem.service_for("  HANDLING ").duration == timedelta(minutes=90)  # type: ignore[union-attr]
    assert hjem.service_for("Vask av bil") == hjem.services[0]  # unknown: the default service
    assert hjem.service_for(None) == hjem.services[0]
    assert natt.service_for("anything") is None  # no catalogue at all


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[defaults]\nhorizon_days = 0", "defaults.horizon_days must be a whole number from 1"),
        ("[defaults]\nhorizon_days = true", "horizon_days must be a whole number"),
        ("[defaults]\nhorizon = 3", "unknown key 'horizon'"),
        ("[defaults]\non_reject = \"drop\"", 'on_reject must be "annotate" or "refuse"'),
        ("[defaults]\nmin_duration_minutes = 300", "min_duration_minutes is above max_duration_minutes"),
        ("[departments.a]\ndefault_service = \"X\"", "default_service 'X' is not in its services"),
        ("[departments.a]\nservices = [{ name = \"X\" }]",
         "services[1] must be { name = ..., minutes = ... }"),
        ("[departments.a]\nservices = [{ name = \"X\", minutes = 5 }, { name = \"x\", minutes = 6 }]",
         "service 'x' is named twice"),
        ("[departments]\na = 3", "departments.a must be a table"),
        ("[rules]\nx = 1", "unknown table [rules]"),
        ("[defaults\n", "servicehop.toml:"),
    ],
)
def test_mistakes_are_one_clear_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(text)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value).strip()
