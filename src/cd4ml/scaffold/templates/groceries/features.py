"""The project's own features: computed in training and, from a copy packaged
with each model, in serving.

Each function takes the batch (column name -> numpy array of length n) and
returns new columns of the same length. Keep this module self-contained
(numpy and the standard library): it is imported from a snapshot.
"""

import numpy as np


def payday_features(batch):
    """Public-sector wages are paid on the 15th and on the last day of the month."""
    days = np.asarray(batch["date"], dtype="datetime64[D]")
    day = (days - days.astype("datetime64[M]")).astype(np.int64) + 1
    month_end = (days + 1).astype("datetime64[M]") != days.astype("datetime64[M]")
    payday = (day == 15) | month_end
    day_before = days - 1
    prev_month_end = (day_before + 1).astype("datetime64[M]") != day_before.astype("datetime64[M]")
    after = ((day - 1) == 15) | prev_month_end
    return {"is_payday": payday.astype(np.int64), "after_payday": after.astype(np.int64)}
