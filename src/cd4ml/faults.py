"""Named crash points, so tests can kill a command exactly between two steps that must not come apart.

`CD4ML_CRASH_AT=<point>` makes the process kill itself with SIGKILL (no cleanup, no exit handlers)
when it reaches that point; unset, `crash_point` only reads one environment variable.
"""

from __future__ import annotations

import os
import signal

CRASH_AT = "CD4ML_CRASH_AT"


def crash_point(name: str) -> None:
    """Die here, as kill -9 would, if CD4ML_CRASH_AT names this point."""
    if os.environ.get(CRASH_AT) == name:
        os.kill(os.getpid(), signal.SIGKILL)
