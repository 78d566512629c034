"""The project's own features: computed in training and, from a copy packaged
with each model, in serving.

Each function takes the batch (column name -> numpy array of length n) and
returns new columns of the same length. Keep this module self-contained
(numpy and the standard library): it is imported from a snapshot.
"""

import numpy as np


def value_features(batch):
    """Hours of use per unit of the monthly fee: customers who use little of what they pay for leave."""
    hours = np.asarray(batch["usage_hours"], dtype=np.float64)
    fee = np.asarray(batch["price"], dtype=np.float64)
    # A free month (fee 0) counts as a cent, so the ratio stays finite.
    return {"hours_per_fee": hours / np.maximum(fee, 0.01)}
