"""The `export`, `import` and `backup` commands: an instance's data out and back in."""

from __future__ import annotations

import argparse
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], None]


def register(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    add_home: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add this module's commands to the parser (none yet)."""


COMMANDS: dict[str, Handler] = {}
