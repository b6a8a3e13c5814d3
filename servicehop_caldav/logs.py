"""Logging of a serving process: Radicale's handler at the configured level."""

from __future__ import annotations

from radicale import config, log


def setup(configuration: config.Configuration) -> None:
    """Radicale's stream handler and level, as ``[logging]`` says."""
    log.setup()
    log.set_level(
        configuration.get("logging", "level"),
        configuration.get("logging", "backtrace_on_debug"),
        configuration.get("logging", "trace_filter"),
    )
