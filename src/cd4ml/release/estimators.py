"""Estimators by name, and their safe storage (no pickle).

`algorithm: lightgbm` is LightGBM's regressor, stored as LightGBM's own text
model. Any scikit-learn regressor is named by import path
(`sklearn.ensemble.HistGradientBoostingRegressor`) and stored with skops,
loading only names that are classes of scikit-learn, NumPy or SciPy.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from cd4ml.config import ModelConfig
from cd4ml.errors import ConfigError, ReleaseError
from cd4ml.task import Task

# Beyond skops's own defaults, a model file may name only classes of these packages: a name that is
# a function (builtins.eval, numpy.load) or lives elsewhere is refused, so loading never runs code.
TRUSTED_PACKAGES = ("sklearn", "numpy", "scipy")


class Predictor(Protocol):
    def predict(self, X: np.ndarray) -> np.ndarray: ...


def make_estimator(model: ModelConfig, seed: int, task: Task, file: str | None = None) -> Any:
    """An unfitted estimator for `model.algorithm` with `model.params` (seeded), one that `task` accepts;
    `file`: the project file its config errors name."""
    params = dict(model.params)
    if model.algorithm == "lightgbm":
        # Deterministic histogram building makes the same data give the same trees.
        defaults = {"random_state": seed, "deterministic": True, "force_col_wise": True, "verbose": -1}
        return LightGBMRegressor(**{**defaults, **params})
    module, _, name = model.algorithm.rpartition(".")
    if not module.startswith("sklearn."):
        raise ConfigError(f"unknown algorithm {model.algorithm!r}: use 'lightgbm' or a scikit-learn "
                          "regressor's import path, e.g. sklearn.ensemble.HistGradientBoostingRegressor",
                          file=file, key="model.algorithm")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise ConfigError(f"{model.algorithm!r} cannot be imported", file=file, key="model.algorithm") from None
    if not isinstance(cls, type):
        raise ConfigError(f"{model.algorithm!r} is not an estimator class; only regressors are supported for now",
                          file=file, key="model.algorithm")
    if "random_state" in inspect.signature(cls).parameters:
        params.setdefault("random_state", seed)
    try:
        estimator = cls(**params)
    except TypeError as exc:
        raise ConfigError(f"{model.algorithm}: {exc}", file=file, key="model.params") from None
    task.check_estimator(estimator, model.algorithm, file)
    return estimator


class Handover:
    """A matrix passed on with its only reference: `take()` gives it out once.

    Whoever takes it can free it as soon as it is done with it: LightGBM bins X into its own
    training set (a fraction of X's size) and frees X before it trains, which a caller holding
    on to X would prevent.
    """

    def __init__(self, X: np.ndarray) -> None:
        self._X: np.ndarray | None = X

    def take(self) -> np.ndarray:
        X, self._X = self._X, None
        if X is None:
            raise RuntimeError("the matrix was already taken")
        return X


def fit(estimator: Any, X: np.ndarray | Handover, y: np.ndarray, categorical: list[int], algorithm: str,
        on_binned: Callable[[], None] | None = None) -> Any:
    """Fit on X (n, p) float64 and y (n,); LightGBM is told which columns are categorical codes.

    `on_binned` is called as training starts: for LightGBM once it has binned X (and freed a
    handed-over X), so what it starts does not add to the peak of binning; for other estimators
    just before they fit, with X alive. Params are only checked by the estimator when it fits:
    a bad one is a config error.
    """
    is_lightgbm = isinstance(estimator, LightGBMRegressor)
    errors: tuple[type[Exception], ...] = (TypeError, ValueError)
    if is_lightgbm:
        errors += (import_lightgbm().basic.LightGBMError,)
    elif isinstance(X, Handover):
        X = X.take()
    try:
        if is_lightgbm:
            return estimator.fit(X, y, categorical_feature=categorical or "auto", on_binned=on_binned)
        if on_binned is not None:
            on_binned()
        return estimator.fit(X, y)
    except errors as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, TypeError):
            reason += " (is a value under model.params of the wrong type, say text for a number?)"
        elif "NaN" in str(exc) and isinstance(X, np.ndarray) and np.isnan(X).any():
            reason += (" The features have missing values (from nullable columns or feature steps): "
                       "use algorithm lightgbm or sklearn.ensemble.HistGradientBoostingRegressor, "
                       "which accept them.")
        raise ConfigError(f"{algorithm} could not be fitted: {reason}", key="model.params") from None


def save(estimator: Any, folder: Path) -> dict[str, str]:
    """Write the fitted estimator to `folder`; returns the metadata `load` needs."""
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(estimator, LightGBMRegressor):
        estimator.booster_.save_model(str(folder / "model.txt"))
        return {"kind": "lightgbm", "file": "model.txt"}
    import skops.io as sio

    sio.dump(estimator, folder / "model.skops")
    return {"kind": "skops", "file": "model.skops"}


def load(folder: Path, meta: dict[str, str], threads: int = 1) -> Predictor:
    """Read an estimator written by `save`. `threads`: LightGBM's threads per predict call (0: all cores)."""
    path = folder / meta["file"]
    if meta["kind"] == "lightgbm":
        return _Booster(import_lightgbm().Booster(model_file=str(path)), threads)
    if meta["kind"] == "skops":
        import skops.io as sio

        untrusted = sio.get_untrusted_types(file=path)
        refused = [t for t in untrusted if not _trusted_class(t)]
        if refused:
            raise ReleaseError(f"{path}: refusing to load names that are not classes of "
                               f"{', '.join(TRUSTED_PACKAGES)}: {refused}")
        return sio.load(path, trusted=untrusted)
    raise ReleaseError(f"{path}: unknown estimator kind {meta['kind']!r}")


def _trusted_class(name: str) -> bool:
    """Whether `name` (module.Qualified) is a class defined in one of TRUSTED_PACKAGES."""
    import importlib

    module, _, attr = name.rpartition(".")
    if module.split(".")[0] not in TRUSTED_PACKAGES:
        return False
    try:
        found = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return False
    return isinstance(found, type) and (found.__module__ or "").split(".")[0] in TRUSTED_PACKAGES


def import_lightgbm() -> Any:
    """LightGBM, imported without its scikit-learn estimators: cd4ml uses only its native API.

    LightGBM imports scikit-learn when it is imported, for LGBMRegressor and friends: about 1 s
    of every run and of a service's start here, for nothing cd4ml uses. Only LightGBM's own view
    changes: scikit-learn stays importable for everything else (skops models). Once LightGBM is
    in the process, it is returned as it was imported. While LightGBM is imported, `import sklearn`
    fails in every thread: call this before starting threads that may import it.
    """
    with _LIGHTGBM_IMPORT:
        if "lightgbm" not in sys.modules and "sklearn" not in sys.modules:
            sys.modules["sklearn"] = None  # type: ignore[assignment]  # `import sklearn` raises ImportError meanwhile
            try:
                import lightgbm  # noqa: F401
            finally:
                if "sklearn" in sys.modules and sys.modules["sklearn"] is None:
                    del sys.modules["sklearn"]
    import lightgbm

    return lightgbm


_LIGHTGBM_IMPORT = threading.Lock()
# LightGBM's names for its thread count; the first one given wins, as in LGBMRegressor.
_THREAD_PARAMS = ("num_threads", "num_thread", "nthread", "nthreads", "n_jobs")


def _threads(params: dict[str, Any]) -> int:
    """Pop the thread-count params; the count LGBMRegressor would use (joblib's conventions):
    unset is the physical cores, a negative n is the logical cores + 1 + n (at least 1)."""
    given = [params.pop(name) for name in _THREAD_PARAMS if name in params]
    n = given[0] if given else None
    if n is not None and n >= 0:
        return int(n)
    import joblib

    if n is None:
        return int(joblib.cpu_count(only_physical_cores=True))
    return max(int(joblib.cpu_count()) + 1 + int(n), 1)


class LightGBMRegressor:
    """LightGBM's regressor, trained through `lightgbm.train`.

    Params are LightGBM's, under their scikit-learn names or native ones (`n_estimators` is the
    number of boosting rounds; `n_jobs` unset or negative counts cores as joblib does). With the
    same params it writes the same model file as `lightgbm.LGBMRegressor` (the tests compare
    them), without importing scikit-learn.
    """

    def __init__(self, **params: Any) -> None:
        self.params = params

    def fit(self, X: np.ndarray | Handover, y: np.ndarray, categorical_feature: list[int] | str = "auto",
            on_binned: Callable[[], None] | None = None) -> LightGBMRegressor:
        """Fit on X (n, p) and y (n,); the booster is `booster_`. A handed-over X is freed once binned,
        before `on_binned` is called."""
        lgb = import_lightgbm()
        params = dict(self.params)
        params["num_threads"] = _threads(params)
        rounds = params.pop("n_estimators", 100)
        train_set = lgb.Dataset(X.take() if isinstance(X, Handover) else X, y,
                                categorical_feature=categorical_feature, params=params)
        del X
        train_set.construct()  # LightGBM then drops its reference to X (free_raw_data)
        if on_binned is not None:
            on_binned()
        self.booster_ = lgb.train(params, train_set, num_boost_round=rounds)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions (n,) for X (n, p), on the threads the params name (all cores by default)."""
        return self.booster_.predict(X)


class _Booster:
    """A LightGBM booster behind the estimator `predict` interface."""

    def __init__(self, booster: Any, threads: int) -> None:
        self.booster = booster
        self.threads = threads

    def predict(self, X: np.ndarray) -> np.ndarray:
        # Serving uses one thread: a service scales with worker processes, and OpenMP's start-up per
        # call costs more than a single-row prediction (197 us -> 46 us per row on a busy 2-core machine).
        # Each row's prediction is the same whatever the thread count.
        return self.booster.predict(X, num_threads=self.threads)
