"""The reference profile: what a release's world looked like, saved with the release.

Built at training time from the holdout (the rows the model did not train on, so its
predictions and residuals there are honest), stored as `profile.json` in the release
folder, and compared in production with windows of logged inputs, predictions and actuals.

Watched columns are the ones that come from outside (`ProjectConfig.monitored_columns`):
request inputs and lookup attributes, not the time column and not engineered features, which
are deterministic functions of them and of time (calendar features drift by definition).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from cd4ml.config import ProjectConfig
from cd4ml.monitor import drift
from cd4ml.monitor.outcomes import Outcomes, outcomes
from cd4ml.task import task_from_spec

PROFILE_FILE = "profile.json"


@dataclass(frozen=True)
class Holdout:
    """The holdout the profile was built from: its rows and the distinct days of the time column it spans."""

    rows: int
    days: int


@dataclass(frozen=True)
class ReleaseProfile:
    """A release's reference profile (`profile.json`): the holdout's `distributions`; the release's
    `target_transform` (its residuals' training space); `holdout` (None for a release packaged before
    it was recorded); a classifier's offline `outcomes` (None for others and older releases)."""

    distributions: drift.Profile
    target_transform: str
    holdout: Holdout | None
    outcomes: Outcomes | None

    def to_json(self) -> dict[str, Any]:
        """The stored document: the distributions' keys, then `outcomes`, `target_transform`, `holdout`."""
        return {**self.distributions.to_json(),
                **({"outcomes": self.outcomes.to_json()} if self.outcomes is not None else {}),
                "target_transform": self.target_transform,
                **({"holdout": {"rows": self.holdout.rows, "days": self.holdout.days}} if self.holdout else {})}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ReleaseProfile:
        holdout, offline = doc.get("holdout"), doc.get("outcomes")
        return cls(drift.Profile.from_json(doc), doc.get("target_transform", "none"),
                   Holdout(holdout["rows"], holdout["days"]) if holdout else None,
                   Outcomes(**offline) if offline else None)


def column_kinds(cfg: ProjectConfig) -> dict[str, str]:
    """{watched column: "numeric" | "categorical"}: ids, codes and text are categories, not quantities."""
    f = cfg.features
    as_category = set(f.categorical) | {c for group in f.target_encodings for c in group} | \
        {lk.key for lk in f.lookups}
    kinds = {}
    for name in cfg.monitored_columns:
        spec = cfg.schema_.columns[name]
        numeric = spec.type in ("int", "float") and spec.categories is None and name not in as_category
        kinds[name] = "numeric" if numeric else "categorical"
    return kinds


def segment_groups(cfg: ProjectConfig) -> list[list[str]]:
    """Column groups whose residual bias is watched as one segment: the target-encoding groups."""
    kinds = column_kinds(cfg)
    return [list(g) for g in cfg.features.target_encodings
            if len(g) > 1 and all(kinds.get(c) == "categorical" for c in g)]


def build_reference(cfg: ProjectConfig, columns: Mapping[str, np.ndarray], prediction: np.ndarray,
                    target: np.ndarray, spec: Mapping[str, Any], days: int) -> ReleaseProfile:
    """The profile of holdout rows: `columns` (watched columns, length n), predictions and encoded targets
    (`task.encode`, (n,)); a classifier's predictions are its (n, k) class probabilities, profiled as the
    answered class, each class's probability and the offline confusion matrix and calibration curve
    (`outcomes`). `days`: the distinct days of the time column the holdout spans."""
    # The run's own task: a decision threshold chosen on training data decides the offline confusion matrix.
    task = task_from_spec(spec["task"]) if "task" in spec else cfg.task
    kinds = column_kinds(cfg)
    watched = {c: np.asarray(columns[c]) for c in kinds}
    residual = task.residual(spec, target, prediction)
    if prediction.ndim == 2:
        decided = task.decide(prediction)
        names = np.asarray(task.class_names, dtype=object)  # classes as the service's answer names them
        distributions = drift.build_profile(watched, kinds, names[decided], names[target], residual,
                                            segment_groups(cfg), seed=cfg.seed,
                                            probabilities=dict(zip(names.tolist(), prediction.T)))
        offline = outcomes(names.tolist(), target, prediction, decided)
    else:
        distributions = drift.build_profile(watched, kinds, prediction, target, residual, segment_groups(cfg),
                                            seed=cfg.seed)
        offline = None
    # The holdout tells how much evidence a production window can be expected to hold (the accuracy
    # check's default minimum).
    return ReleaseProfile(distributions, spec["target_transform"], Holdout(len(prediction), int(days)), offline)


def rows_per_day(profile: ReleaseProfile | None) -> float | None:
    """Holdout rows per day of the time column, or None for a profile saved before it was recorded."""
    holdout = profile.holdout if profile else None
    return holdout.rows / holdout.days if holdout and holdout.days else None


def save(folder: Path, profile: ReleaseProfile) -> None:
    (folder / PROFILE_FILE).write_text(json.dumps(profile.to_json()), encoding="utf-8")


def load(folder: Path) -> ReleaseProfile | None:
    """The release's profile, or None for a release packaged before profiles existed."""
    path = folder / PROFILE_FILE
    return ReleaseProfile.from_json(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else None
