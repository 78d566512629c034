"""Time columns given as periods: an ISO 8601 week (`2024-W05`) or a month (`2024-05`).

A `week` or `month` column is a date column whose values are written as the period they start:
the week's Monday, the month's first day. Tables hold the dates (so time splits, steps, calendar
features and history features see dates, as for a `date` column); a request, an actuals record or a
data file gives the period's text, which `Period.start` reads at the door where text becomes a date
(ingest, request and actuals validation, the prediction store).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Period:
    """One kind of period: its name (the column type), its text's pattern and an example, and the
    `forecast.frequency` unit of one step (W: weeks from Monday, MS: months from their first day)."""

    name: str
    pattern: str
    example: str
    unit: str

    def start(self, value: Any) -> dt.date:
        """The date a period starts on, from its text; a date (or a midnight timestamp) that is a period's
        first day is taken as it is. Raises ValueError saying what was expected."""
        if isinstance(value, dt.datetime):
            if value.time() != dt.time(0) or value.tzinfo is not None:
                raise ValueError(f"expected a {self.name} ({self.example}), not a time of day: {value}")
            value = value.date()
        if isinstance(value, dt.date):
            if self.start(self.text(value)) != value:
                raise ValueError(f"{value} is not the first day of its {self.name} ({self.text(value)} starts on "
                                 f"{self.start(self.text(value))})")
            return value
        text = value.strip() if isinstance(value, str) else None
        match = re.fullmatch(self.pattern, text) if text is not None else None
        if match is None:
            raise ValueError(f"expected a {self.name} written {self.example}, got {str(value)[:40]!r}")
        year, number = int(match.group(1)), int(match.group(2))
        try:
            if self.name == "week":
                return dt.date.fromisocalendar(year, number, 1)
            return dt.date(year, number, 1)
        except ValueError:
            raise ValueError(f"{text} is no {self.name}: {year} has no {self.name} {number}") from None

    def starts(self, values: Any) -> "np.ndarray":
        """`start` of each value (n,) as datetime64[D], NaT where a value is missing or no period; each
        distinct value read once (a table holds few periods)."""
        import numpy as np
        import pandas as pd

        codes, distinct = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=True)
        days = np.array([self._start_or_none(v) for v in distinct.tolist()] + [None], dtype="datetime64[D]")
        return days[codes]  # the sentinel -1 reads the trailing NaT

    def _start_or_none(self, value: Any) -> dt.date | None:
        try:
            return self.start(value)
        except ValueError:
            return None

    def text(self, day: dt.date) -> str:
        """The period `day` falls in, written as the column gives it."""
        if self.name == "week":
            year, week, _ = day.isocalendar()
            return f"{year:04d}-W{week:02d}"
        return f"{day.year:04d}-{day.month:02d}"


PERIODS = {
    "week": Period("week", r"(\d{4})-W(\d{2})", "2024-W05", "W"),
    "month": Period("month", r"(\d{4})-(\d{2})", "2024-05", "MS"),
}
