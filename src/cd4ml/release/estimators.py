"""Estimators by name, and their safe storage (no pickle).

`algorithm: lightgbm` is LightGBM (regression, binary or multiclass objective, as the task asks),
stored as LightGBM's own text model. Any scikit-learn estimator the task accepts is named by import
path (`sklearn.ensemble.HistGradientBoostingRegressor`) and stored with skops, loading only names
that are classes of scikit-learn, NumPy or SciPy. A classifier is wrapped in `Classifier`: its
`predict` gives (n, k) class probabilities in the task's class order, calibrated when configured
(`Calibration`, stored as plain arrays).
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.metadata
import inspect
import sys
import threading
import weakref
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cd4ml.config import ModelConfig
from cd4ml.errors import ConfigError, ReleaseError
from cd4ml.task import Classification, Task

# Beyond skops's own defaults, a model file may name only classes of these packages: a name that is
# a function (builtins.eval, numpy.load) or lives elsewhere is refused, so loading never runs code.
TRUSTED_PACKAGES = ("sklearn", "numpy", "scipy")


class Predictor(Protocol):
    """Predictions in model space: (n,) for a regressor, (n, k) class probabilities for a `Classifier`."""

    def predict(self, X: np.ndarray) -> np.ndarray: ...


def make_estimator(model: ModelConfig, seed: int, task: Task, file: str | None = None) -> Any:
    """An unfitted estimator for `model.algorithm` with `model.params` (seeded), one that `task` accepts;
    `file`: the project file its config errors name."""
    params = dict(model.params)
    if model.algorithm == "lightgbm":
        # Deterministic histogram building makes the same data give the same trees.
        defaults = {"random_state": seed, "deterministic": True, "force_col_wise": True, "verbose": -1}
        if not isinstance(task, Classification):
            return LightGBMModel(**{**defaults, **params})
        k = len(task.classes)
        objective = {"objective": "binary"} if k == 2 else {"objective": "multiclass", "num_class": k}
        given = params.get("objective", objective["objective"])
        if given != objective["objective"]:
            raise ConfigError(f"objective {given!r} does not fit task {task.name!r} (LightGBM's is "
                              f"{objective['objective']!r}): leave it out", file=file, key="model.params")
        return Classifier(LightGBMModel(**{**defaults, **params, **objective}), k)
    module, _, name = model.algorithm.rpartition(".")
    if not module.startswith("sklearn."):
        raise ConfigError(f"unknown algorithm {model.algorithm!r}: use 'lightgbm' or a scikit-learn estimator's "
                          "import path, e.g. sklearn.ensemble.HistGradientBoostingRegressor (task: regression) or "
                          "sklearn.ensemble.HistGradientBoostingClassifier (binary, multiclass)",
                          file=file, key="model.algorithm")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise ConfigError(f"{model.algorithm!r} cannot be imported", file=file, key="model.algorithm") from None
    if not isinstance(cls, type):
        raise ConfigError(f"{model.algorithm!r} is not an estimator class: name a scikit-learn "
                          f"{'classifier' if isinstance(task, Classification) else 'regressor'} class",
                          file=file, key="model.algorithm")
    if "random_state" in inspect.signature(cls).parameters:
        params.setdefault("random_state", seed)
    try:
        estimator = cls(**params)
    except TypeError as exc:
        raise ConfigError(f"{model.algorithm}: {exc}", file=file, key="model.params") from None
    task.check_estimator(estimator, model.algorithm, file)
    return Classifier(estimator, len(task.classes)) if isinstance(task, Classification) else estimator


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


def fit(estimator: Any, X: np.ndarray | Handover, y: np.ndarray, categorical: list[int], algorithm: str) -> Any:
    """Fit on X (n, p) float64 and y (n,); LightGBM is told which columns are categorical codes.

    Params are only checked by the estimator when it fits: a bad one is a config error.
    """
    if isinstance(estimator, Classifier):
        fit(estimator.model, X, y, categorical, algorithm)
        return estimator
    is_lightgbm = isinstance(estimator, LightGBMModel)
    errors: tuple[type[Exception], ...] = (TypeError, ValueError)
    if is_lightgbm:
        errors += (import_lightgbm().basic.LightGBMError,)
    elif isinstance(X, Handover):
        X = X.take()
    try:
        if is_lightgbm:
            return estimator.fit(X, y, categorical_feature=categorical or "auto")
        return estimator.fit(X, y)
    except errors as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, TypeError):
            reason += " (is a value under model.params of the wrong type, say text for a number?)"
        elif "NaN" in str(exc) and isinstance(X, np.ndarray) and np.isnan(X).any():
            reason += (" The features have missing values (from nullable columns or feature steps): "
                       "use algorithm lightgbm or sklearn.ensemble.HistGradientBoostingRegressor (Classifier), "
                       "which accept them.")
        raise ConfigError(f"{algorithm} could not be fitted: {reason}", key="model.params") from None


def save(estimator: Any, folder: Path) -> dict[str, Any]:
    """Write the fitted estimator to `folder`; returns the metadata `load` needs."""
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(estimator, Classifier):
        meta: dict[str, Any] = {**save(estimator.model, folder), "classes": estimator.n_classes}
        if estimator.calibration is not None:
            np.savez(folder / CALIBRATION_FILE, **estimator.calibration.arrays)
            meta["calibration"] = estimator.calibration.method
        return meta
    if isinstance(estimator, LightGBMModel):
        estimator.booster_.save_model(str(folder / "model.txt"))
        return {"kind": "lightgbm", "file": "model.txt"}
    import skops.io as sio

    sio.dump(estimator, folder / "model.skops")
    return {"kind": "skops", "file": "model.skops"}


def load(folder: Path, meta: dict[str, Any], threads: int = 1) -> Predictor:
    """Read an estimator written by `save`. `threads`: LightGBM's threads per predict call (0: all cores)."""
    if "classes" in meta:
        calibration = None
        if "calibration" in meta:
            with np.load(folder / CALIBRATION_FILE, allow_pickle=False) as arrays:
                calibration = Calibration(meta["calibration"], {k: arrays[k] for k in arrays.files})
        model = load(folder, {k: v for k, v in meta.items() if k not in ("classes", "calibration")}, threads)
        return Classifier(model, int(meta["classes"]), calibration)
    path = folder / meta["file"]
    if meta["kind"] == "lightgbm":
        booster = import_lightgbm().Booster(model_file=str(path))
        return _Booster(booster, threads, _OneRow.open(booster, path))
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


class LightGBMModel:
    """A LightGBM model, trained through `lightgbm.train` (its objective among the params).

    Params are LightGBM's, under their scikit-learn names or native ones (`n_estimators` is the
    number of boosting rounds; `n_jobs` unset or negative counts cores as joblib does). With the
    same params it writes the same model file as `lightgbm.LGBMRegressor` (the tests compare
    them), without importing scikit-learn.
    """

    def __init__(self, **params: Any) -> None:
        self.params = params

    def fit(self, X: np.ndarray | Handover, y: np.ndarray,
            categorical_feature: list[int] | str = "auto") -> LightGBMModel:
        """Fit on X (n, p) and y (n,); the booster is `booster_`. A handed-over X is freed once binned."""
        lgb = import_lightgbm()
        params = dict(self.params)
        params["num_threads"] = _threads(params)
        rounds = params.pop("n_estimators", 100)
        train_set = lgb.Dataset(X.take() if isinstance(X, Handover) else X, y,
                                categorical_feature=categorical_feature, params=params)
        del X
        train_set.construct()  # LightGBM then drops its reference to X (free_raw_data)
        self.booster_ = lgb.train(params, train_set, num_boost_round=rounds)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions for X (n, p), on the threads the params name (all cores by default): (n,), or
        (n, k) class probabilities of a multiclass objective."""
        return self.booster_.predict(X)


class _Booster:
    """A LightGBM booster behind the estimator `predict` interface."""

    def __init__(self, booster: Any, threads: int, one_row: _OneRow | None = None) -> None:
        self.booster = booster
        self.threads = threads
        self.one_row = one_row

    def predict(self, X: np.ndarray) -> np.ndarray:
        # Serving uses one thread: a service scales with worker processes, and OpenMP's start-up per
        # call costs more than a single-row prediction (197 us -> 46 us per row on a busy 2-core machine).
        # Each row's prediction is the same whatever the thread count.
        if self.one_row is not None and X.shape == (1, self.one_row.n_features):
            return self.one_row.predict(X)
        return self.booster.predict(X, num_threads=self.threads)


def contributions(estimator: Any, X: np.ndarray) -> np.ndarray:
    """Each feature's share of each row's raw score, as LightGBM computes it (`pred_contrib`, TreeSHAP):
    (n, k, p + 1), k = 1 for a regressor or a binary classifier, else one per class; the last entry is
    the base value, and a row's entries sum to its raw score (before the link, the target transform's
    inverse and any calibration). ValueError for a model that is not a loaded LightGBM booster."""
    model = estimator.model if isinstance(estimator, Classifier) else estimator
    if not isinstance(model, _Booster):
        raise ValueError(f"explanations need a LightGBM model; this release's is {type(model).__name__}")
    raw = model.booster.predict(X, pred_contrib=True, num_threads=model.threads)
    return raw.reshape(len(X), -1, X.shape[1] + 1)


class _OneRow:
    """One row predicted through LightGBM's C API for single rows (`LGBM_BoosterPredictForMatSingleRowFast`).

    `Booster.predict` builds a predictor and parses its parameters on every call: about 40 us of the
    60 us a one-record request spent in LightGBM here. The C API's single-row path sets that up once,
    on its own booster handle loaded from the same model file, and runs the same trees on the same row
    (the service tests compare a record predicted alone with the same record in a batch, bit for bit).
    Its buffers are one per handle, hence the lock. `open` gives None when LightGBM's library or its
    symbols are not found: `Booster.predict` answers then.
    """

    def __init__(self, lib: ctypes.CDLL, model_file: Path, n_features: int, n_outputs: int) -> None:
        self._lib = lib
        self.n_features = n_features
        self.n_outputs = n_outputs
        self._handle = ctypes.c_void_p()
        self._fast = ctypes.c_void_p()
        iterations = ctypes.c_int()
        self._check(lib.LGBM_BoosterCreateFromModelfile(str(model_file).encode(), ctypes.byref(iterations),
                                                        ctypes.byref(self._handle)))
        weakref.finalize(self, _OneRow._free, lib, self._fast, self._handle)
        # predict type 0 (normal: probabilities for a classifier), all iterations, float64 rows, 1 thread
        self._check(lib.LGBM_BoosterPredictForMatSingleRowFastInit(
            self._handle, 0, 0, -1, 1, n_features, b"num_threads=1", ctypes.byref(self._fast)))
        self._out_len = ctypes.c_int64()
        self._lock = threading.Lock()

    @classmethod
    def open(cls, booster: Any, model_file: Path) -> _OneRow | None:
        try:
            dist = importlib.metadata.distribution("lightgbm")
            found = [f for f in dist.files or () if f.name.startswith("lib_lightgbm.")]
            lib = ctypes.CDLL(str(dist.locate_file(found[0])))  # the library LightGBM loaded: same file
            return cls(lib, model_file, booster.num_feature(), booster.num_model_per_iteration())
        except (IndexError, OSError, AttributeError, RuntimeError, importlib.metadata.PackageNotFoundError):
            return None

    @staticmethod
    def _check(code: int) -> None:
        if code != 0:
            raise RuntimeError("LightGBM's single-row C API failed")

    @staticmethod
    def _free(lib: ctypes.CDLL, fast: ctypes.c_void_p, handle: ctypes.c_void_p) -> None:
        if fast.value:
            lib.LGBM_FastConfigFree(fast)
        if handle.value:
            lib.LGBM_BoosterFree(handle)

    def predict(self, X: np.ndarray) -> np.ndarray:
        row = np.ascontiguousarray(X[0], dtype=np.float64)
        out = np.empty(self.n_outputs, dtype=np.float64)
        with self._lock:
            self._check(self._lib.LGBM_BoosterPredictForMatSingleRowFast(
                self._fast, row.ctypes.data_as(ctypes.c_void_p), ctypes.byref(self._out_len),
                out.ctypes.data_as(ctypes.c_void_p)))
        return out if self.n_outputs == 1 else out.reshape(1, -1)  # Booster.predict's shapes


CALIBRATION_FILE = "calibration.npz"


class Classifier:
    """A classifier behind the `predict` interface: (n, k) class probabilities, columns in the task's
    class order (rows sum to 1), calibrated when a `Calibration` is attached.

    The model is fitted on class indices 0..k-1: a LightGBM model (in training or a loaded booster) or
    a scikit-learn classifier (`predict_proba`, whose `classes_` are the indices it saw).
    """

    def __init__(self, model: Any, n_classes: int, calibration: Calibration | None = None) -> None:
        self.model = model
        self.n_classes = n_classes
        self.calibration = calibration

    def raw_proba(self, X: np.ndarray) -> np.ndarray:
        """Uncalibrated class probabilities (n, k)."""
        model = self.model
        if isinstance(model, (LightGBMModel, _Booster)):
            p = model.predict(X)
            return np.column_stack([1.0 - p, p]) if p.ndim == 1 else p
        proba = model.predict_proba(X)
        # A class missing from the training rows gets probability 0: the rest still sum to 1.
        out = np.zeros((len(proba), self.n_classes), dtype=np.float64)
        out[:, np.asarray(model.classes_, dtype=np.int64)] = proba
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        p = self.raw_proba(X)
        return p if self.calibration is None else self.calibration.apply(p)


class Calibration:
    """A fitted map from a classifier's probabilities to calibrated ones, kept as plain arrays.

    Binary: the positive class's probability is mapped (the other is 1 - it); multiclass: each class
    one-vs-rest, then each row renormalised. `isotonic` keeps the step function's knots (`x<j>`,
    `y<j>`), applied by linear interpolation as scikit-learn's IsotonicRegression does; `sigmoid`
    (Platt) keeps `a`, `b` of 1 / (1 + exp(-(a * logit(p) + b))) per mapped class.
    """

    METHODS = ("isotonic", "sigmoid")

    def __init__(self, method: str, arrays: dict[str, np.ndarray]) -> None:
        if method not in self.METHODS:
            raise ReleaseError(f"unknown calibration {method!r}")
        self.method = method
        self.arrays = arrays

    @staticmethod
    def _columns(k: int) -> list[int]:
        return [1] if k == 2 else list(range(k))

    @classmethod
    def fit(cls, method: str, p: np.ndarray, y: np.ndarray) -> Calibration:
        """Fit on probabilities `p` (n, k) of rows whose class indices are `y` (n,)."""
        arrays: dict[str, np.ndarray] = {}
        columns = cls._columns(p.shape[1])
        if method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            for j in columns:
                iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p[:, j], y == j)
                arrays[f"x{j}"], arrays[f"y{j}"] = iso.X_thresholds_, iso.y_thresholds_
        else:
            ab = np.array([_platt(_logit(p[:, j]), y == j) for j in columns])
            arrays["a"], arrays["b"] = ab[:, 0], ab[:, 1]
        return cls(method, arrays)

    def apply(self, p: np.ndarray) -> np.ndarray:
        k = p.shape[1]
        q = np.empty_like(p, dtype=np.float64)
        for i, j in enumerate(self._columns(k)):
            if self.method == "isotonic":
                q[:, j] = np.interp(p[:, j], self.arrays[f"x{j}"], self.arrays[f"y{j}"])
            else:
                q[:, j] = 1.0 / (1.0 + np.exp(-(self.arrays["a"][i] * _logit(p[:, j]) + self.arrays["b"][i])))
        if k == 2:
            q[:, 0] = 1.0 - q[:, 1]
            return q
        total = q.sum(axis=1, keepdims=True)
        # A row every class's map sends to 0 has no calibrated information left: uniform.
        return np.divide(q, total, out=np.full_like(q, 1.0 / k), where=total > 0)


def calibrate(estimator: Classifier, method: str, X: np.ndarray, y: np.ndarray) -> None:
    """Fit `estimator`'s calibration on rows it was not fitted on: X (n, p), class indices y (n,)."""
    estimator.calibration = Calibration.fit(method, estimator.raw_proba(X), y)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1.0 - 1e-12)
    return np.log(p) - np.log1p(-p)


def _platt(f: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    """Platt's (a, b) for scores f and bool labels: log loss against his smoothed targets."""
    from scipy.optimize import minimize

    n_pos = float(positive.sum())
    t = np.where(positive, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (len(f) - n_pos + 2.0))

    def loss(ab: np.ndarray) -> tuple[float, np.ndarray]:
        z = ab[0] * f + ab[1]
        # log(1 + exp(z)) - t z, and its gradient (sigmoid(z) - t) along f and 1.
        value = float(np.sum(np.logaddexp(0.0, z) - t * z))
        g = 1.0 / (1.0 + np.exp(-z)) - t
        return value, np.array([np.dot(g, f), g.sum()])

    res = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
    return float(res.x[0]), float(res.x[1])
