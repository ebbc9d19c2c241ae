"""Crash points for tests of a function as a process: exit at once, as a kill would stop it there.

Inactive unless FINFAAS_CRASH_ARM_DIR is set (tests only). A point fires once per arming: when the
file named after it exists in that folder, the file is removed and the process exits without
unwinding (os._exit), so nothing after the point is written or answered.
"""

from __future__ import annotations

import os
from pathlib import Path

CRASH_ARM_DIR_ENV = "FINFAAS_CRASH_ARM_DIR"
CRASH_EXIT_CODE = 70  # EX_SOFTWARE: what a test sees the process exit with


def crash_point(name: str) -> None:
    """Exit the process here if a test armed this point; otherwise do nothing."""
    folder = os.environ.get(CRASH_ARM_DIR_ENV)
    if not folder:
        return
    armed = Path(folder) / name
    try:
        armed.unlink()
    except FileNotFoundError:
        return
    os._exit(CRASH_EXIT_CODE)


def arm(folder: Path, name: str) -> None:
    """Make the next pass through point `name` of a process started with folder as its arm dir exit."""
    (folder / name).write_text("armed\n")
