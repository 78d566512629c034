"""The "floor": the least a Python HTTP service can do to answer with this model.

FastAPI + uvicorn (same stack and settings as `cd4ml serve`) around the champion's
LightGBM booster, and nothing else: no validation, no feature computation per
request, no prediction log, no access log. The feature rows of the benchmark's
records (the single record and the 100 distinct batch records) are computed once at
startup with the release's own feature plan; each request parses the body with
orjson, finds each record's row with one dict lookup, predicts those rows with
`num_threads=1` and answers with orjson. A record it was not started with gets 422.

So floor req/s ~ the ceiling of HTTP + JSON + booster.predict on this machine, for
the same rows `cd4ml serve` predicts: LightGBM predicts 100 distinct rows about 2.5x
slower than 100 copies of one row, so a floor that repeats one row flatters itself.
Its answers are the right predictions (the benchmark checks them against `cd4ml serve`
to 1e-9, single and batch).

A binary classifier's booster gives P(positive class); the floor answers what `cd4ml serve`
answers for it: the decided class (P >= the release's threshold) and both probabilities,
`{"prediction": true, "probabilities": {"false": 0.18, "true": 0.82}}` (lists for a batch).

    MLFLOW_TRACKING_URI=sqlite:///PROJECT/.cd4ml/mlflow.db \
        python benchmarks/floor_app.py --port 8000 [--model groceries-forecast]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy / lightgbm load OpenMP

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402

import numpy as np  # noqa: E402
import orjson  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402  (module level: FastAPI resolves the annotations here)
from fastapi.responses import Response  # noqa: E402

if TYPE_CHECKING:
    from cd4ml.features.transforms import FeatureSpec
    from cd4ml.release.package import Release
    from cd4ml.task import Classification

# The day after the template's data: the day its release forecasts (history features) before actuals arrive.
DAY = "2024-12-30"
RECORD = {"date": DAY, "store_nbr": 3, "item_nbr": 100007, "onpromotion": 1}
BATCH = 100


def batch_records(n: int = BATCH) -> list[dict[str, Any]]:
    """n distinct, valid records (stores 1-10, items 100001-100100, of DAY)."""
    return [{"date": DAY, "store_nbr": 1 + i % 10, "item_nbr": 100001 + (i * 37) % 100,
             "onpromotion": i % 2} for i in range(n)]


def record_key(record: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(sorted(record.items()))


def build(model: str, records: list[dict[str, Any]]) -> tuple[Any, np.ndarray, dict[tuple[Any, ...], int], Release]:
    """Booster, the (len(records), p) float64 feature matrix of `records`, {record key: row}, the release."""
    import lightgbm as lgb
    import mlflow.artifacts

    from cd4ml.release.package import Release

    root = Path(mlflow.artifacts.download_artifacts(f"models:/{model}@champion"))
    folder = root / "artifacts" / "release"
    doc = json.loads((folder / "release.json").read_text(encoding="utf-8"))
    if "calibration" in doc["estimator"]:
        raise SystemExit("the floor answers the booster's own probabilities: train without model.calibration")
    booster = lgb.Booster(model_file=str(folder / "estimator" / doc["estimator"]["file"]))
    release = Release(folder)  # the feature rows, computed once by the release's own plan
    X = feature_rows(release, records)
    if X.shape != (len(records), booster.num_feature()):
        raise SystemExit(f"feature matrix has shape {X.shape}, the booster wants {booster.num_feature()} features")
    rows = {record_key(r): i for i, r in enumerate(records)}
    return booster, X, rows, release


DTYPES = {"date": "datetime64[D]", "datetime": "datetime64[us]", "int": np.int64, "float": np.float64,
          "bool": np.int64, "str": str}


def feature_rows(release: Release, records: list[dict[str, Any]]) -> np.ndarray:
    """The (len(records), p) float64 feature matrix of `records`, by the release's own feature plan (history
    features from its packaged history: what a service reads before any actual has come back)."""
    batch = {item["name"]: np.array([r[item["name"]] for r in records], dtype=DTYPES[item["type"]])
             for item in release.inputs}
    return np.ascontiguousarray(release.features_checked(batch)[0], dtype=np.float64)


Answer = Callable[[np.ndarray, bool], dict[str, Any]]  # feature rows, one record? -> the answer's fields


def regression_answer(booster: Any, spec: FeatureSpec) -> Answer:
    transform, clip_min = spec.target_transform, spec.clip_min

    def answer(rows: np.ndarray, one: bool) -> dict[str, Any]:
        raw = booster.predict(rows, num_threads=1)
        out = np.expm1(raw) if transform == "log1p" else raw
        pred = np.maximum(out, clip_min) if clip_min is not None else out
        return {"prediction": float(pred[0])} if one else {"predictions": pred}

    return answer


def binary_answer(booster: Any, task: Classification) -> Answer:
    (negative, positive), (no, yes), threshold = task.classes, task.class_names, task.threshold

    def answer(rows: np.ndarray, one: bool) -> dict[str, Any]:
        p = booster.predict(rows, num_threads=1).tolist()  # P(positive) per row
        labels = [positive if q >= threshold else negative for q in p]
        probabilities = [{no: 1.0 - q, yes: q} for q in p]
        if one:
            return {"prediction": labels[0], "probabilities": probabilities[0]}
        return {"predictions": labels, "probabilities": probabilities}

    return answer


def create_app(model: str, features_per_request: bool = False) -> FastAPI:
    """`features_per_request`: each request's feature rows are computed from its records by the release's
    plan (what any service of this model must do), not looked up among the rows computed at start-up."""
    from cd4ml.task import Classification

    booster, X, rows, release = build(model, [RECORD, *batch_records()])
    if release.task.name == "regression":
        answer = regression_answer(booster, release.spec)
    elif isinstance(release.task, Classification) and release.task.name == "binary":
        answer = binary_answer(booster, release.task)
    else:
        raise SystemExit(f"the floor serves regression and binary models, not {release.task.name}")
    answer(X[[0]], True)  # warm-up
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    def features(records: list[dict[str, Any]]) -> np.ndarray:
        if features_per_request:
            return feature_rows(release, records)
        return X[[rows[record_key(r)] for r in records]]

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        data = orjson.loads(await request.body())
        try:
            X_rows = features([data] if isinstance(data, dict) else data)
        except (KeyError, TypeError, AttributeError, ValueError):
            return Response(b'{"detail": "the floor knows only the benchmark records"}', status_code=422,
                            media_type="application/json")
        doc = answer(X_rows, isinstance(data, dict))
        return Response(orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")

    gc.collect()
    gc.freeze()  # everything loaded so far is permanent: keep it out of the GC's scans
    return app


def main() -> None:
    import uvicorn

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--model", default="groceries-forecast", help="registered model name (alias champion)")
    ap.add_argument("--features-per-request", action="store_true",
                    help="compute each request's feature rows from its records (default: look them up)")
    args = ap.parse_args()
    app = create_app(args.model, args.features_per_request)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
