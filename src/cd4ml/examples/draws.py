"""What the simulated worlds share: random streams keyed by what they draw, and dates from options."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def keyed_rng(*key: int) -> np.random.Generator:
    """A generator seeded by `key` alone (e.g. tag, seed, day): a draw does not depend on which other
    draws were made before it, so a longer date range repeats a shorter one exactly."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(list(key))))


def option_timestamp(value: Any, name: str) -> pd.Timestamp:
    """The generator option `name` as a timestamp; ValueError naming it if it is no date."""
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a date, got {value!r}") from err
    if pd.isna(stamp):
        raise ValueError(f"{name} must be a date, got {value!r}")
    return stamp
