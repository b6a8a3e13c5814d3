"""Each department's booking rules and service catalogue, from servicehop.toml.

``[defaults]`` holds the rules every department starts from (the defaults of
DESIGN.md when a key is absent); ``[departments.<id>]`` overrides any of
them for one department and names its services. Every mistake in the file
is reported as one line naming the key, before the server serves anything.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from servicehop_caldav.booking.model import Rules


class ConfigError(ValueError):
    """servicehop.toml says something the engine cannot use."""


@dataclass(frozen=True)
class Service:
    name: str
    duration: timedelta


@dataclass(frozen=True)
class DepartmentSettings:
    """What servicehop.toml says about one department (time zone aside:
    that is the directory's)."""

    horizon_days: int = 14
    minimum_notice_minutes: int = 60
    min_duration_minutes: int = 15
    max_duration_minutes: int = 240
    travel_buffer_minutes: int = 0
    on_reject: Literal["annotate", "refuse"] = "annotate"
    show_staff_names: bool = True
    waiting_list: bool = False
    services: tuple[Service, ...] = ()
    default_service: str | None = None

    def rules(self, timezone: ZoneInfo) -> Rules:
        return Rules(
            timezone=timezone,
            horizon=timedelta(days=self.horizon_days),
            minimum_notice=timedelta(minutes=self.minimum_notice_minutes),
            min_duration=timedelta(minutes=self.min_duration_minutes),
            max_duration=timedelta(minutes=self.max_duration_minutes),
            travel_buffer=timedelta(minutes=self.travel_buffer_minutes),
        )

    def service_for(self, summary: str | None) -> Service | None:
        """The service a SUMMARY names (case-insensitive), else the default
        service; None when neither exists."""
        wanted = (summary or "").strip().casefold()
        for service in self.services:
            if service.name.casefold() == wanted:
                return service
        for service in self.services:
            if service.name == self.default_service:
                return service
        return None


@dataclass(frozen=True)
class Settings:
    defaults: DepartmentSettings
    departments: Mapping[str, DepartmentSettings]

    def for_department(self, department_id: str) -> DepartmentSettings:
        return self.departments.get(department_id, self.defaults)


LONGEST_BOOKING = timedelta(hours=24)
"""No booking lasts longer (the bound of ``max_duration_minutes``, which the
rules hold every confirmed booking to). Queries for the bookings overlapping
a span use it to bound their start from below as well as above, so they
read the bookings near the span, not every booking ever made before it."""
_LONGEST_MINUTES = int(LONGEST_BOOKING.total_seconds()) // 60

_INTEGERS = {
    "horizon_days": (1, 366),
    "minimum_notice_minutes": (0, 60 * 24 * 30),
    "min_duration_minutes": (1, _LONGEST_MINUTES),
    "max_duration_minutes": (1, _LONGEST_MINUTES),
    "travel_buffer_minutes": (0, 60 * 8),
}
_BOOLEANS = ("show_staff_names", "waiting_list")
_KNOWN = set(_INTEGERS) | set(_BOOLEANS) | {"on_reject", "services", "default_service"}


def _settings(where: str, table: Mapping[str, Any], base: DepartmentSettings) -> DepartmentSettings:
    unknown = sorted(set(table) - _KNOWN)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}")
    values: dict[str, Any] = {}
    for key, (low, high) in _INTEGERS.items():
        if key in table:
            value = table[key]
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ConfigError(f"{where}.{key} must be a whole number from {low} to {high}")
            values[key] = value
    for key in _BOOLEANS:
        if key in table:
            if not isinstance(table[key], bool):
                raise ConfigError(f"{where}.{key} must be true or false")
            values[key] = table[key]
    if "on_reject" in table:
        if table["on_reject"] not in ("annotate", "refuse"):
            raise ConfigError(f'{where}.on_reject must be "annotate" or "refuse"')
        values["on_reject"] = table["on_reject"]
    if "services" in table:
        values["services"] = _services(f"{where}.services", table["services"])
    if "default_service" in table:
        if not isinstance(table["default_service"], str):
            raise ConfigError(f"{where}.default_service must be a service name")
        values["default_service"] = table["default_service"]
    merged = DepartmentSettings(**{**base.__dict__, **values})
    if merged.min_duration_minutes > merged.max_duration_minutes:
        raise ConfigError(f"{where}: min_duration_minutes is above max_duration_minutes")
    names = [s.name for s in merged.services]
    if merged.default_service is not None and merged.default_service not in names:
        raise ConfigError(
            f"{where}.default_service {merged.default_service!r} is not in its services"
        )
    return merged


def _services(where: str, raw: Any) -> tuple[Service, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"{where} must be a list of {{ name = ..., minutes = ... }}")
    services: list[Service] = []
    seen: set[str] = set()
    for number, entry in enumerate(raw, 1):
        if not isinstance(entry, dict) or set(entry) != {"name", "minutes"}:
            raise ConfigError(f"{where}[{number}] must be {{ name = ..., minutes = ... }}")
        name, minutes = entry["name"], entry["minutes"]
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{where}[{number}].name must be a non-empty text")
        if not isinstance(minutes, int) or isinstance(minutes, bool) or not 1 <= minutes <= 1440:
            raise ConfigError(f"{where}[{number}].minutes must be a whole number from 1 to 1440")
        if name.casefold() in seen:
            raise ConfigError(f"{where}: service {name!r} is named twice")
        seen.add(name.casefold())
        services.append(Service(name.strip(), timedelta(minutes=minutes)))
    return tuple(services)


def parse_settings(text: str, source: str = "servicehop.toml") -> Settings:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: {e}") from e
    unknown = sorted(set(document) - {"defaults", "departments"})
    if unknown:
        raise ConfigError(f"{source}: unknown table [{unknown[0]}]")
    defaults = _settings(f"{source}: defaults", document.get("defaults", {}), DepartmentSettings())
    raw_departments = document.get("departments", {})
    if not isinstance(raw_departments, dict):
        raise ConfigError(f"{source}: [departments] must be a table of departments")
    departments: dict[str, DepartmentSettings] = {}
    for name, table in raw_departments.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: departments.{name} must be a table")
        departments[name] = _settings(f"{source}: departments.{name}", table, defaults)
    return Settings(defaults, departments)


def load_settings(path: Path) -> Settings:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from e
    return parse_settings(text, str(path))
