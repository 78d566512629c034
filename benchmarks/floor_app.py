"""The "floor": the least a Python HTTP service can do to answer with this model.

FastAPI + uvicorn (same stack and settings as `cd4ml serve`) around the champion's
LightGBM booster, and nothing else: no validation, no feature computation per
request, no prediction log, no access log. The feature row of one fixed record is
computed once at startup with the release's own feature plan; each request only
parses the body with orjson, counts its records, predicts that many copies of the
pre-computed row with `num_threads=1` and answers with orjson.

So floor req/s ~ the ceiling of HTTP + JSON + booster.predict on this machine.
The answer is the right prediction for the fixed record (the benchmark checks it
against `cd4ml serve` to 1e-9); for a list, every element is that same number.

    MLFLOW_TRACKING_URI=sqlite:///PROJECT/.cd4ml/mlflow.db \
        python benchmarks/floor_app.py --port 8000 [--model groceries-forecast]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy / lightgbm load OpenMP

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import orjson  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402  (module level: FastAPI resolves the annotations here)
from fastapi.responses import Response  # noqa: E402

RECORD = {"date": "2024-12-20", "store_nbr": 3, "item_nbr": 100007, "onpromotion": 1}
MAX_RECORDS = 1000


def build(model: str, record: dict) -> tuple[object, np.ndarray, str, float | None]:
    """Booster, a (MAX_RECORDS, p) float64 matrix of the record's feature row, target transform, clip."""
    import lightgbm as lgb
    import mlflow.artifacts

    from cd4ml.release.package import Release

    root = Path(mlflow.artifacts.download_artifacts(f"models:/{model}@champion"))
    folder = root / "artifacts" / "release"
    doc = json.loads((folder / "release.json").read_text(encoding="utf-8"))
    booster = lgb.Booster(model_file=str(folder / "estimator" / doc["estimator"]["file"]))
    # The feature row of the fixed record, computed once by the release's own plan.
    release = Release(folder)
    batch = {}
    for item in release.inputs:
        value = record[item["name"]]
        dtype = {"date": "datetime64[D]", "datetime": "datetime64[us]", "int": np.int64,
                 "float": np.float64, "bool": np.int64, "str": str}[item["type"]]
        batch[item["name"]] = np.array([value], dtype=dtype)
    x = np.ascontiguousarray(release.plan.transform(batch), dtype=np.float64)
    if x.shape != (1, booster.num_feature()):
        raise SystemExit(f"feature row has shape {x.shape}, the booster wants {booster.num_feature()} features")
    X = np.ascontiguousarray(np.repeat(x, MAX_RECORDS, axis=0))
    return booster, X, doc["spec"]["target_transform"], doc["spec"]["clip_min"]


def create_app(model: str) -> FastAPI:
    booster, X, transform, clip_min = build(model, RECORD)

    def predict_rows(n: int) -> np.ndarray:
        raw = booster.predict(X[:n], num_threads=1)
        out = np.expm1(raw) if transform == "log1p" else raw
        return np.maximum(out, clip_min) if clip_min is not None else out

    predict_rows(1)  # warm-up
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        data = orjson.loads(await request.body())
        if isinstance(data, dict):
            doc = {"prediction": float(predict_rows(1)[0])}
        else:
            doc = {"predictions": predict_rows(min(len(data), MAX_RECORDS))}
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
    args = ap.parse_args()
    app = create_app(args.model)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
