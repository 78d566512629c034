"""Process-wide runtime settings of the `cd4ml` command, in one place.

Each is read by a library once, when it loads or first allocates, so each must be set before
that happens: the commands call these first. None of them changes a result, only speed or memory.

- `openmp_for_fit`: OpenMP's wait policy for LightGBM's fit, chosen from the machine's load.
- `return_freed_memory`: freed memory goes back to the system at once.
- `quick_gil_handoff`: a thread that waits for the GIL gets it within half a millisecond.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, MutableMapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Other processes busy on at least this many cores make the fit's threads sleep while they wait.
BUSY_CORES_FOR_PASSIVE = 0.5
#: How long the load is sampled (s). /proc/stat counts in 10 ms ticks: 0.2 s on 2 cores is 40 ticks.
LOAD_SAMPLE_SECONDS = 0.2
PROC_STAT = Path("/proc/stat")
_USER_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
#: GIL switch interval (s) once a service predicts on a worker thread; Python's default is 5 ms.
GIL_SWITCH_SECONDS = 0.0005


@dataclass(frozen=True)
class WaitPolicy:
    """What `openmp_for_fit` chose: `policy` is "PASSIVE", "default" (OpenMP's own: threads spin a
    while before they sleep) or the user's OMP_WAIT_POLICY; `busy_cores` is the other load measured
    (cores; None if not measured); `reason` says why, in a sentence."""

    policy: str
    busy_cores: float | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cpu_ticks(stat: Path) -> tuple[int, int]:
    """(busy, total) ticks of all CPUs since boot, from the first line of /proc/stat."""
    fields = [int(v) for v in stat.read_text(encoding="ascii").split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user time
    return total - idle, total


def busy_cores(seconds: float = LOAD_SAMPLE_SECONDS, stat: Path = PROC_STAT) -> float | None:
    """Cores busy over the next `seconds` (this process sleeps meanwhile, so the load is others');
    None where /proc/stat cannot be read (not Linux)."""
    try:
        busy0, total0 = _cpu_ticks(stat)
        time.sleep(seconds)
        busy1, total1 = _cpu_ticks(stat)
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return round((busy1 - busy0) / (total1 - total0) * (os.cpu_count() or 1), 2)


def choose_wait_policy(busy: float | None) -> WaitPolicy:
    """The policy for a fit next to `busy` cores of other work (None: unknown)."""
    if busy is None:
        return WaitPolicy("PASSIVE", None, "the machine's load cannot be read here: threads sleep, the safe choice")
    if busy >= BUSY_CORES_FOR_PASSIVE:
        return WaitPolicy("PASSIVE", busy, f"other processes keep {busy:g} cores busy: threads sleep while they "
                                           "wait, so they do not take turns from the threads with work")
    return WaitPolicy("default", busy, f"the machine is quiet ({busy:g} cores busy): OpenMP's default, "
                                       "threads spin briefly while they wait")


def openmp_for_fit(environ: MutableMapping[str, str] = os.environ,
                   measure: Callable[[], float | None] = busy_cores) -> WaitPolicy:
    """Set OMP_WAIT_POLICY for this process's LightGBM fits from the machine's load right now.

    libgomp reads the variable once, when it is loaded: when LightGBM is imported, at the start of a
    run. So call this before anything of the run starts (its own child processes would count as load)
    and before LightGBM's import. Spinning threads slow a fit down badly next to a busy process;
    sleeping ones cost a fit on a quiet machine (benchmarks/results/pipeline.md). Neither changes the
    model: the thread count, which does, stays as configured. `measure()` gives the busy cores (None: unknown).
    """
    given = [name for name in _USER_SETTINGS if name in environ]
    if given:
        return WaitPolicy(environ.get("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"), None, f"{given[0]} set by the user")
    if "lightgbm" in sys.modules:
        return WaitPolicy("unchanged", None, "LightGBM (and OpenMP) already loaded in this process")
    choice = choose_wait_policy(measure())
    if choice.policy == "PASSIVE":
        environ["OMP_WAIT_POLICY"] = "PASSIVE"
    log.info("OpenMP wait policy %s: %s", choice.policy, choice.reason)
    return choice


def return_freed_memory() -> None:
    """For commands that hold a whole table: freed memory goes back to the system at once.

    Arrow's own allocator (mimalloc) keeps freed pages counted in the process's memory, so Arrow
    uses the system allocator (unless ARROW_DEFAULT_MEMORY_POOL is set). glibc, by default, raises
    its threshold for mapping large blocks as they are freed (up to 32 MiB), so the columns a run
    frees stayed resident while the next large array was mapped fresh; here every block of 128 KiB
    or more is mapped and unmapped (the run's peak: benchmarks/results/pipeline.md). Both are read
    when first used: call this before anything reads data. Elsewhere than glibc, only the Arrow part
    applies.
    """
    import ctypes  # here, not at the top: `cd4ml --help` imports this module

    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_mmap_threshold = -3  # malloc.h; setting it also turns off glibc's dynamic adjustment
    libc.mallopt(m_mmap_threshold, 128 * 1024)


def quick_gil_handoff() -> None:
    """For a service whose worker thread predicts without the GIL (serve/batching.py): back from
    LightGBM, the thread needs the GIL for a moment to hand its answer over, and a busy event loop
    keeps it for up to the switch interval. Python's 5 ms is longer than predicting a 100-row call
    takes, and the worker would take its next call only after that wait."""
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
