"""Writing a file that other processes read while it changes."""

from __future__ import annotations

import os
import threading
from pathlib import Path


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` (UTF-8) in one step: a reader sees the old file or the new one, whole.

    The temporary file lies in the same folder (os.replace cannot cross file systems) and is named
    by process and thread, so two writers never share one; it is fsynced before the rename, so a
    crash right after cannot leave an empty file under the real name.
    """
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
