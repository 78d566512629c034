"""The prediction service over real HTTP: parity with the registry, live swaps, bad input, the log."""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cd4ml.config import load_project
from cd4ml.data.table import TrainingTable
from cd4ml.release.registry import Registry
from cd4ml.serve.predlog import read_events
from cd4ml.train.split import time_split
from helpers import GOOD_REQUEST as GOOD, Service, cli, commit_all, edit_yaml, stored_release, train

pytestmark = pytest.mark.slow
INPUTS = ["date", "store_nbr", "item_nbr", "onpromotion"]


def _holdout(root: Path, n: int = 200):
    project = load_project(root)
    frame, _ = TrainingTable.for_project(project).read()
    hold = time_split(frame, project.config.time_column, project.config.split)[1]
    return hold.sample(n=n, random_state=0).reset_index(drop=True)


def _records(frame) -> list[dict]:
    out = frame[INPUTS].copy()
    out["date"] = out["date"].dt.strftime("%Y-%m-%d")
    return out.to_dict("records")


def _registry(root: Path) -> Registry:
    return Registry.for_project(load_project(root))


def test_http_predictions_equal_the_registry_model(service: Service, served_shop: Path) -> None:
    import mlflow

    hold = _holdout(served_shop)
    resp = service.client.post("/predict", json=_records(hold))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model_version"] == "1" and len(body["predictions"]) == len(hold)
    uri = f"sqlite:///{served_shop / '.cd4ml' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)  # other tests' in-process commands may have pointed it elsewhere
    model = mlflow.pyfunc.load_model("models:/groceries-forecast@champion")
    expected = np.asarray(model.predict(hold[INPUTS]))
    np.testing.assert_array_equal(np.asarray(body["predictions"]), expected)
    single = service.client.post("/predict", json=_records(hold)[0]).json()
    assert single["prediction"] == expected[0] and single["fallback"] is False and single["request_id"]
    version = service.client.get("/version").json()
    assert version["model_version"] == "1" and version["data_version"] == 0 and len(version["git_commit"]) == 40
    assert service.client.get("/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]["anyOf"][0]["properties"].keys() >= set(INPUTS)


def _outside(values: list) -> object:
    """A value of the same type that is not among `values`."""
    return max(values) + 1 if isinstance(values[0], int) else "".join(map(str, values)) + "?"


def test_openapi_documents_what_the_service_enforces(service: Service, served_shop: Path) -> None:
    columns = load_project(served_shop).config.schema_.columns
    body = service.client.get("/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"]
    props = body["content"]["application/json"]["schema"]["anyOf"][0]["properties"]
    valid = _records(_holdout(served_shop, n=1))[0]
    documented = {"enum": 0, "minimum": 0, "maximum": 0}
    for name, prop in props.items():
        spec = columns[name]
        typed = [s for s in prop.get("anyOf", [prop]) if s.get("type") != "null"]
        assert len(typed) == 1, prop
        # An int column without a bound has int64's: numpy holds nothing larger.
        low, high = (-2 ** 63, 2 ** 63 - 1) if spec.type == "int" else (None, None)
        assert (typed[0].get("enum"), typed[0].get("minimum"), typed[0].get("maximum")) == \
            (spec.categories, low if spec.min is None else spec.min, high if spec.max is None else spec.max), name
        documented = {k: n + (k in typed[0]) for k, n in documented.items()}
        # What the schema documents is what /predict does: inside accepted, outside refused naming the field.
        cases = []
        if spec.categories:
            cases += [(v, 200) for v in spec.categories] + [(_outside(spec.categories), 422)]
        if spec.min is not None:
            cases += [(spec.min, 200), (spec.min - 1, 422)]
        if spec.max is not None:
            cases += [(spec.max, 200), (spec.max + 1, 422)]
        if spec.type == "int":
            cases += [(2 ** 63, 422), (-2 ** 63 - 1, 422), (10 ** 30, 422)]
        for value, status in cases:
            resp = service.client.post("/predict", json={**valid, name: value})
            assert resp.status_code == status, (name, value, resp.text)
            if status == 422:
                assert [e["field"] for e in resp.json()["errors"]] == [name]
    assert all(documented.values()), documented  # the example's schema has each kind: none was skipped


def _client_loop(service: Service, record: dict, stop: threading.Event, seen: list, errors: list) -> None:
    import httpx

    with httpx.Client(base_url=service.url, timeout=10) as client:
        while not stop.is_set():
            try:
                resp = client.post("/predict", json=record)
                if resp.status_code != 200:
                    errors.append(resp.status_code)
                else:
                    seen.append((time.monotonic(), resp.json()["model_version"]))
            except httpx.HTTPError as exc:  # a dropped connection is a failed request
                errors.append(repr(exc))


def _wait_for_version(seen: list, version: str, since: float, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(v == version and t >= since for t, v in list(seen)):
            return
        time.sleep(0.02)
    raise AssertionError(f"responses never showed version {version}")


def test_promote_and_rollback_under_load_lose_no_request(two_versions_shop: Path) -> None:
    champion_shop = two_versions_shop
    record = _records(_holdout(champion_shop, 1))[0]
    with Service(champion_shop, poll=0.5) as service:
        service.wait_until("/ready", 200)
        stop, seen, errors = threading.Event(), [], []
        clients = [threading.Thread(target=_client_loop, args=(service, record, stop, seen, errors))
                   for _ in range(4)]
        for c in clients:
            c.start()
        t0 = time.monotonic()
        cli(champion_shop, "promote", "2", "--reason", "load test", check=0)
        # Bounds for liveness only (a swap follows a poll interval after the alias moves); how fast is
        # the serving benchmark's business, not a test's.
        _wait_for_version(seen, "2", t0, timeout=60)
        t1 = time.monotonic()
        cli(champion_shop, "rollback", check=0)
        _wait_for_version(seen, "1", t1, timeout=60)
        time.sleep(0.5)
        stop.set()
        for c in clients:
            c.join()
    assert errors == []
    assert len(seen) > 100
    versions = [v for _, v in seen]
    assert versions[0] == "1" and "2" in versions and versions[-1] == "1"


def test_a_restart_resumes_the_last_champion_then_follows_the_registry(two_versions_shop: Path) -> None:
    champion_shop = two_versions_shop
    with Service(champion_shop) as service:  # first start on this host: the registry decides
        service.wait_until("/ready", 200)
        assert service.client.get("/ready").json()["registry_checked"] is True
        assert service.client.post("/predict", json=GOOD).json()["model_version"] == "1"
    cli(champion_shop, "promote", "2", "--reason", "moved while the service was down", check=0)
    db = champion_shop / ".cd4ml" / "mlflow.db"
    db.rename(db.with_suffix(".away"))
    db.mkdir()  # the registry cannot be read: SQLite cannot open a folder
    try:
        with Service(champion_shop) as service:
            service.wait_until("/ready", 200)
            assert service.client.post("/predict", json=GOOD).json()["model_version"] == "1"  # resumed
            # MLflow retries an unreadable store for about 100 s before it fails: without the resume the
            # service would answer nothing until then, and then still have no release.
            assert service.client.get("/ready").json()["registry_checked"] is False
    finally:
        db.rmdir()
        db.with_suffix(".away").rename(db)
    with Service(champion_shop) as service:  # resumes version 1, then the registry moves it to 2
        service.wait_until("/ready", 200)
        deadline = time.monotonic() + 20
        while service.client.post("/predict", json=GOOD).json()["model_version"] != "2":
            assert time.monotonic() < deadline, "never switched to the champion that moved while down"
            time.sleep(0.05)
        assert service.client.get("/ready").json()["registry_checked"] is True
    pointer = next((champion_shop / ".cd4ml" / "cache" / "releases" / "groceries-forecast").glob("champion-*.json"))
    assert json.loads(pointer.read_text())["version"] == "2"
    # The alias removed while the service was down: the remembered release goes once the registry says so.
    _registry(champion_shop).client.delete_registered_model_alias("groceries-forecast", "champion")
    with Service(champion_shop) as service:
        service.wait_until("/ready", 503, timeout=20)
        assert service.client.post("/predict", json=GOOD).status_code == 503


def test_a_release_that_cannot_load_is_not_switched_to_and_is_tried_again(two_versions_shop: Path) -> None:
    champion_shop, broken = two_versions_shop, "2"
    # Break version 2 where the service will fetch it from: the model file in the artifact store.
    model_file = stored_release(champion_shop, broken) / "artifacts" / "release" / "estimator" / "model.txt"
    assert model_file.is_file()
    good_model = model_file.read_text()
    model_file.write_text("this is not a LightGBM model\n")
    shutil.rmtree(champion_shop / ".cd4ml" / "cache")  # the gate's verified copy must not hide the damage
    record = _records(_holdout(champion_shop, 1))[0]
    with Service(champion_shop) as service:
        service.wait_until("/ready", 200)
        cli(champion_shop, "promote", broken, check=0)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not service.client.get("/ready").json()["last_error"]:
            time.sleep(0.1)
        ready = service.client.get("/ready").json()
        assert ready["model_version"] == "1" and "version 2 not switched to" in ready["last_error"]
        resp = service.client.post("/predict", json=record)
        assert resp.status_code == 200 and resp.json()["model_version"] == "1"
        # Repaired in the store, the version is loaded on a later try: the alias need not move again.
        model_file.write_text(good_model)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and service.client.get("/ready").json()["model_version"] != "2":
            time.sleep(0.1)
        ready = service.client.get("/ready").json()
        assert ready["model_version"] == "2" and ready["last_error"] is None
        # Broken again and rolled back to: the report clears once the live release is the champion again.
        cli(champion_shop, "promote", "1", check=0)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and service.client.get("/ready").json()["model_version"] != "1":
            time.sleep(0.1)
        model_file.write_text("this is not a LightGBM model\n")
        # Only version 2's cached copy: the running service writes its champion pointer beside it.
        cached = list((champion_shop / ".cd4ml" / "cache" / "releases").glob(f"*/v{broken}-*"))
        assert cached  # the copy loaded once version 2 was repaired
        for folder in cached:
            shutil.rmtree(folder)
        cli(champion_shop, "promote", broken, check=0)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not service.client.get("/ready").json()["last_error"]:
            time.sleep(0.1)
        cli(champion_shop, "rollback", check=0)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and service.client.get("/ready").json()["last_error"]:
            time.sleep(0.1)
        assert service.client.get("/ready").json()["last_error"] is None


def test_each_release_serves_with_its_own_feature_code(champion_shop: Path) -> None:
    payday = {"date": "2024-08-15", "store_nbr": 1, "item_nbr": 100003, "onpromotion": 0}
    days = [dict(payday, date=f"2024-08-{d:02d}") for d in range(10, 20)]
    registry = _registry(champion_shop)
    cache = champion_shop / ".cd4ml" / "cache" / "test"
    import pandas as pd

    frame = pd.DataFrame(days).assign(date=lambda f: pd.to_datetime(f["date"]))
    v1_offline = registry.load("1", cache).predict_frame(frame)
    features = champion_shop / "features.py"
    # New feature code under the same module name: every day is a payday.
    features.write_text(features.read_text().replace(
        'return {"is_payday": payday.astype(np.int64)', 'return {"is_payday": np.ones_like(day)'))
    commit_all(champion_shop, "every day is payday")
    second = train(champion_shop, "acceptance.champion_tolerance=1.0", "acceptance.slice_tolerance=100",
                   promote=False)
    v2_offline = registry.load(second.version, cache).predict_frame(frame)
    assert not np.array_equal(v1_offline, v2_offline)
    with Service(champion_shop) as service:
        service.wait_until("/ready", 200)

        def served(version: str) -> np.ndarray:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                body = service.client.post("/predict", json=days).json()
                if body["model_version"] == version:
                    return np.asarray(body["predictions"])
                time.sleep(0.1)
            raise AssertionError(f"version {version} never served")

        np.testing.assert_array_equal(served("1"), v1_offline)
        cli(champion_shop, "promote", second.version, check=0)
        np.testing.assert_array_equal(served(second.version), v2_offline)
        cli(champion_shop, "rollback", check=0)
        np.testing.assert_array_equal(served("1"), v1_offline)




@pytest.mark.parametrize(("case", "body", "status", "field", "reason"), [
    ("wrong type", {**GOOD, "store_nbr": "two"}, 422, "store_nbr", "valid integer"),
    ("wrong date", {**GOOD, "date": "20th of August"}, 422, "date", "valid date"),
    ("missing field", {k: v for k, v in GOOD.items() if k != "item_nbr"}, 422, "item_nbr", "Field required"),
    ("out of range", {**GOOD, "item_nbr": 999}, 422, "item_nbr", "greater than or equal to 100001"),
    ("not an allowed category", {**GOOD, "onpromotion": 2}, 422, "onpromotion", "not an allowed value"),
    ("unknown field", {**GOOD, "colour": "red"}, 422, "colour", "unknown field"),
    ("null in required field", {**GOOD, "onpromotion": None}, 422, "onpromotion", "valid integer"),
    ("not JSON", b"{\"date\": ", 422, None, "not valid JSON"),
    ("not a record", b"42", 422, None, "must be a record"),
    ("empty list", [], 422, None, "must be a record"),
    ("list with a bad record", [GOOD, {**GOOD, "onpromotion": 7}], 422, "onpromotion", "not an allowed value"),
    ("too many records", [GOOD] * 1001, 413, None, "exceed the limit of 1000"),
    ("body too large", b"[" + b" " * 2_000_001 + b"]", 413, None, "exceeds 2000000"),
])
def test_bad_input_gets_a_clear_4xx(service: Service, case, body, status, field, reason) -> None:
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    resp = service.client.post("/predict", headers={"content-type": "application/json"}, **kwargs)
    assert resp.status_code == status, resp.text
    doc = resp.json()
    text = doc["detail"] + " ".join(e["reason"] for e in doc.get("errors", []))
    assert reason in text
    if field:
        assert field in {e["field"] for e in doc["errors"]}
    if case == "list with a bad record":
        assert doc["errors"][0]["record"] == 1


def test_unknown_item_is_a_flagged_fallback(service: Service) -> None:
    # Item 100099 is allowed by the schema (min/max) but not in this small world's 40 items.
    resp = service.client.post("/predict", json={**GOOD, "item_nbr": 100099})
    assert resp.status_code == 200
    body = resp.json()
    assert body["fallback"] is True and body["unknown"] == ["item_nbr"] and np.isfinite(body["prediction"])


def test_unknown_item_is_rejected_when_policy_says_so(champion_shop: Path) -> None:
    edit_yaml(champion_shop, serving={"unknown_categories": "reject"})
    with Service(champion_shop) as service:
        service.wait_until("/ready", 200)
        resp = service.client.post("/predict", json=[GOOD, {**GOOD, "item_nbr": 100099}])
        assert resp.status_code == 422
        assert resp.json()["errors"] == [{"record": 1, "field": "item_nbr", "reason": "never seen in training",
                                          "value": 100099}]


def test_no_champion_is_a_clear_503(shop: Path) -> None:
    with Service(shop) as service:
        ready = service.client.get("/ready")
        assert ready.status_code == 503 and "no champion" in ready.json()["detail"]
        resp = service.client.post("/predict", json=GOOD)
        assert resp.status_code == 503 and "cd4ml run" in resp.json()["detail"]
        assert service.client.get("/health").status_code == 200


def test_prediction_log_holds_every_successful_prediction(champion_shop: Path) -> None:
    records = _records(_holdout(champion_shop, 50))
    served: dict[str, int] = {}
    with Service(champion_shop) as service:
        service.wait_until("/ready", 200)
        for i in range(30):
            body = records[i] if i % 2 else records[i: i + 7]
            resp = service.client.post("/predict", json=body)
            assert resp.status_code == 200
            served[resp.json()["request_id"]] = 1 if i % 2 else len(body)
        assert service.client.post("/predict", json={"bad": 1}).status_code == 422
        assert service.client.get("/ready").json()["predictions_dropped"] == 0
        assert service.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after a graceful shutdown
    events = list(read_events(champion_shop / ".cd4ml" / "predictions"))
    assert len(events) == sum(served.values())
    by_request: dict[str, int] = {}
    for e in events:
        by_request[e["request_id"]] = by_request.get(e["request_id"], 0) + 1
        assert e["model_version"] == "1" and e["latency_ms"] > 0 and set(e["inputs"]) == set(INPUTS)
    assert by_request == served


# -- micro-batching: requests merged into one feature + predict call answer as if alone ----------
NEW_STORE = {"date": "2024-08-20", "store_nbr": 99, "item_nbr": 100005, "onpromotion": 0,
             "city": "Quito", "state": "Pichincha", "store_type": "D", "cluster": 13}


def _requests(root: Path) -> list[list[dict]]:
    """Singles, a 10-record list, an unknown item, and a new store with its attributes."""
    records = _records(_holdout(root, 40))
    return [[r] for r in records[:30]] + [records[30:]] + [[{**GOOD, "item_nbr": 100099}], [NEW_STORE]]


def _in_own_loop(main):
    """`asyncio.run(main())` in a thread of its own: a session fixture (Playwright) may keep an event
    loop running in this one."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()


def test_merged_requests_answer_exactly_as_alone(served_shop: Path, tmp_path: Path) -> None:
    import asyncio

    from cd4ml.serve.batching import MicroBatcher
    from cd4ml.serve.schema import RequestSchema

    release = _registry(served_shop).load("1", tmp_path / "cache")
    schema = RequestSchema(load_project(served_shop).config)
    requests = [schema.validate(r) for r in _requests(served_shop)]
    alone = [release.predict_checked(schema.to_batch(rows)) for rows in requests]

    def merged(max_rows: int, offload_rows: int) -> tuple[list, int]:
        calls: list[int] = []
        batcher = MicroBatcher(max_rows, schema.to_batch, on_call=lambda: calls.append(1), offload_rows=offload_rows)

        async def all_at_once() -> list:
            try:
                return await asyncio.gather(*(batcher.predict(release, rows, schema.nulls(rows)) for rows in requests))
            finally:
                batcher.close()
        return _in_own_loop(all_at_once), len(calls)

    # offload_rows: 0 predicts every call inline, 1 every call on the worker thread, 8 some of each.
    for max_rows, want_calls, offload_rows in ((256, 2, 0), (256, 2, 1), (8, 7, 0), (8, 7, 8)):
        answers, calls = merged(max_rows, offload_rows)
        # Queued in one event-loop turn: one call for the rows that give only inputs, one for the new
        # store, which gives lookup attributes (other columns); with 8 rows a call, 6 + 1.
        assert calls == want_calls
        for (pred, unknown), answer in zip(alone, answers):
            np.testing.assert_array_equal(answer.predictions, pred)  # bit for bit
            assert set(answer.unknown) == set(unknown)
            for c in unknown:
                np.testing.assert_array_equal(answer.unknown[c], unknown[c])
            np.testing.assert_array_equal(answer.fallback, np.any(list(unknown.values()), axis=0))
    assert answers[-2].fallback.tolist() == [True] and answers[-1].fallback.tolist() == [True]
    assert answers[0].fallback.tolist() == [False]


def test_a_failing_merged_call_fails_only_the_request_that_cannot_be_predicted(served_shop: Path,
                                                                               tmp_path: Path) -> None:
    import asyncio

    from cd4ml.serve.batching import MicroBatcher
    from cd4ml.serve.schema import RequestSchema

    release = _registry(served_shop).load("1", tmp_path / "cache")
    schema = RequestSchema(load_project(served_shop).config)
    good = schema.validate([GOOD])
    broken = [{**good[0], "date": "not a date object"}]  # what to_batch cannot convert
    alone = release.predict_checked(schema.to_batch(good))[0]

    def merged(offload_rows: int) -> tuple[list, int]:
        calls: list[int] = []
        batcher = MicroBatcher(256, schema.to_batch, on_call=lambda: calls.append(1), offload_rows=offload_rows)

        async def at_once() -> list:
            try:
                return await asyncio.gather(batcher.predict(release, good, ()), batcher.predict(release, broken, ()),
                                            batcher.predict(release, good, ()), return_exceptions=True)
            finally:
                batcher.close()
        return _in_own_loop(at_once), len(calls)

    for offload_rows in (0, 1):  # inline and on the worker thread
        (first, bad, last), calls = merged(offload_rows)
        assert isinstance(bad, AttributeError)
        for answer in (first, last):
            np.testing.assert_array_equal(answer.predictions, alone)
        assert calls == 4  # the merged call, then each request alone


def test_a_release_packaged_before_the_one_pass_transform_still_answers(served_shop: Path, tmp_path: Path) -> None:
    """Releases keep their own feature code: one whose code has `unknown_inputs` instead of
    `transform_checked` (cd4ml before micro-batching) must serve the same answers."""
    from cd4ml.release.package import Release
    from cd4ml.serve.schema import RequestSchema

    current = _registry(served_shop).load("1", tmp_path / "cache")
    old = tmp_path / "old-release"
    shutil.copytree(current.folder, old)
    code = old / "code" / "_cd4ml_transforms.py"
    text = code.read_text(encoding="utf-8")
    assert "def transform_checked(" in text
    # The old method, as it was packaged (git: cecdbd5, src/cd4ml/features/transforms.py), reading
    # the spec as this copy of the module keeps it (a FeatureSpec; the old one kept the JSON dict).
    text = text.replace("def transform_checked(", "def _not_in_old_releases(").replace(
        "    def inverse_target(", '''    def unknown_inputs(self, batch):
        out = {}
        inputs = set(self.spec.inputs)
        for lk, table in zip(self.spec.lookups, self._lookups):
            if lk.key in inputs and lk.key in batch:
                out[lk.key] = ~table.find([batch[lk.key]])[1]
        for c, vocab in self._vocabs.items():
            if c in inputs and c in batch:
                unseen = vocab.codes(batch[c]) < 0
                out[c] = out[c] | unseen if c in out else unseen
        return out

    def inverse_target(''')
    code.write_text(text, encoding="utf-8")
    shutil.rmtree(old / "code" / "__pycache__", ignore_errors=True)
    packaged = Release(old)
    assert not hasattr(packaged.plan, "transform_checked")
    schema = RequestSchema(load_project(served_shop).config)
    for rows in (schema.validate(r) for r in _requests(served_shop)):
        batch = schema.to_batch(rows)
        (want, want_unknown), (got, got_unknown) = current.predict_checked(batch), packaged.predict_checked(batch)
        np.testing.assert_array_equal(got, want)
        assert {c: m.tolist() for c, m in got_unknown.items()} == {c: m.tolist() for c, m in want_unknown.items()}


def test_concurrent_clients_get_the_answers_of_sequential_ones(service: Service, served_shop: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    requests = [r[0] if len(r) == 1 else r for r in _requests(served_shop)]
    sequential = [service.client.post("/predict", json=body).json() for body in requests]
    with httpx.Client(base_url=str(service.client.base_url)) as client, ThreadPoolExecutor(16) as pool:
        for _ in range(3):
            concurrent = list(pool.map(lambda body: client.post("/predict", json=body).json(), requests))
            for seq, con in zip(sequential, concurrent):
                key = "prediction" if "prediction" in seq else "predictions"
                assert con[key] == seq[key] and con["fallback"] == seq["fallback"]
    metrics = {line.split(" ")[0]: float(line.split(" ")[1]) for line in service.client.get("/metrics").text.splitlines()
               if line.startswith(("cd4ml_predict_calls_total", "cd4ml_requests_total"))}
    requests_200 = sum(v for k, v in metrics.items() if k.startswith("cd4ml_requests_total") and '"200"' in k)
    assert 4 * len(requests) <= requests_200 and 0 < metrics["cd4ml_predict_calls_total"] <= requests_200
