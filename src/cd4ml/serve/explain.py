"""Explanations on request (`POST /predict?explain=true`): what each input contributed to a prediction.

LightGBM's own TreeSHAP (`pred_contrib`) splits each record's raw score into one share per feature and
a base value (the model's average raw score). A feature computed from one input column is summed under
that column (calendar parts and holiday flags under the time column, a lookup's attributes under their
key, an encoding of one input under it), so the answer speaks in the request's own terms; a feature
read from several inputs (`te__store_nbr__item_nbr`), from the series' history (`unit_sales_lag1`) or
made by a custom step keeps its own name. Shares and base add up to `raw`, the score before the link
(`link`: how `raw` becomes the prediction). Without the flag nothing of this runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cd4ml.config import COUNT_OBJECTIVES
from cd4ml.release.estimators import contributions
from cd4ml.release.package import Release
from cd4ml.task import Classification


def feature_sources(release: Release) -> list[str]:
    """Each feature's name in an explanation, in the feature matrix's order: the one input column it comes
    from, or its own name."""
    spec, names = release.spec, release.plan.feature_names
    source = {c: c for c in spec.inputs}
    for lookup in spec.lookups:
        source.update((c, lookup.key) for c in lookup.columns)
    source.update((part, spec.time_column) for part in spec.calendar)
    if spec.holidays:
        source.update(is_holiday=spec.time_column, is_holiday_eve=spec.time_column)
    encodings = spec.target_encodings
    for name, cols in zip(names[len(names) - len(encodings):], encodings):
        inputs = {source.get(c) for c in cols}
        if len(inputs) == 1 and None not in inputs:
            source[name] = inputs.pop()
    return [source.get(name, name) for name in names]


def link(release: Release) -> str:
    """How a raw score becomes the prediction: `identity`, `expm1` (target_transform log1p), `exp` (a
    poisson or tweedie objective), `logistic` (a binary classifier's log-odds of the positive class),
    `softmax` (a multiclass classifier's per-class scores)."""
    task = release.task
    if isinstance(task, Classification):
        return "logistic" if len(task.classes) == 2 else "softmax"
    if release.spec.target_transform == "log1p":
        return "expm1"
    objective = getattr(getattr(release.estimator, "booster", None), "params", {}).get("objective")
    return "exp" if objective in COUNT_OBJECTIVES else "identity"


def explain(release: Release, X: np.ndarray) -> list[dict[str, Any]]:
    """Each row's explanation (X: the (n, p) feature matrix the prediction was made from): `base`,
    `contributions` (name -> share, summed by `feature_sources`), `raw` and `link`; a multiclass model's
    per class (`classes`: class label -> that explanation). ValueError when the model cannot explain."""
    shares = contributions(release.estimator, X)  # (n, k, p + 1)
    sources = feature_sources(release)
    how = link(release)
    per_class = shares.shape[1] > 1
    out = []
    for row in shares:
        explained = [_one(values, sources, how) for values in row]
        if per_class:
            labels = release.task.class_names
            out.append({"link": how, "classes": {label: e for label, e in zip(labels, explained)}})
        else:
            out.append(explained[0])
    return out


def _one(values: np.ndarray, sources: list[str], how: str) -> dict[str, Any]:
    """One row's (and class's) shares (p + 1,) as an explanation."""
    summed: dict[str, float] = {}
    for name, share in zip(sources, values[:-1].tolist()):
        summed[name] = summed.get(name, 0.0) + share
    return {"base": float(values[-1]), "contributions": summed, "raw": float(values.sum()), "link": how}
