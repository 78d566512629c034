"""One advisory lock file per shared resource, for commands that check and then write."""

from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive `flock` on `path` (created if missing) for the `with` block; waits for other holders.

    flock locks an open file description, so it also serialises threads of one process, and the
    kernel releases it when a holder dies (kill -9 leaves no stale lock).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield
