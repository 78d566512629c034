"""Code that was never released never runs: tampered release files, in the cache or in the registry's
artifact store, and a champion pointer aimed elsewhere, are refused before anything is imported."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from cd4ml.config import load_project
from cd4ml.data.table import TrainingTable
from cd4ml.release.registry import RELEASE_DIGEST, TAG, Registry
from cd4ml.train.split import time_split
from helpers import Service, cli, stored_release, train

pytestmark = pytest.mark.slow
RECORD = {"date": "2024-08-20", "store_nbr": 1, "item_nbr": 100003, "onpromotion": 0}


@pytest.fixture
def champion_shop(shop: Path) -> Path:
    """Version 1 trained in place, not copied: these tests count the release cache's folders, and a copy
    of a trained project also holds the cache of the folder it was trained in."""
    assert train(shop).promoted
    return shop


def _registry(root: Path) -> Registry:
    return Registry.for_project(load_project(root))


def _cache(root: Path) -> Path:
    return root / ".cd4ml" / "cache" / "releases"


def _plant(features: Path, marker: Path) -> None:
    """Append code that leaves `marker` behind if it ever runs."""
    features.write_text(features.read_text() + f"\nopen({str(marker)!r}, 'w').write('ran')\n")


def _cached_features(root: Path, version: str) -> Path:
    found = list((_cache(root) / "groceries-forecast").glob(f"v{version}-*/artifacts/release/code/features.py"))
    assert len(found) == 1, found
    return found[0]


def _stored_features(root: Path, version: str) -> Path:
    return stored_release(root, version) / "artifacts" / "release" / "code" / "features.py"


def test_a_tampered_cached_release_is_fetched_again_and_its_code_never_runs(champion_shop: Path,
                                                                            tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with Service(champion_shop) as service:
        service.wait_until("/ready", 200)
        honest = service.client.post("/predict", json=RECORD).json()["prediction"]
    _plant(_cached_features(champion_shop, "1"), marker)  # the copy the restart resumes from
    with Service(champion_shop) as service:
        service.wait_until("/ready", 200)
        assert service.client.post("/predict", json=RECORD).json()["prediction"] == honest
    assert not marker.exists()
    assert "ran" not in _cached_features(champion_shop, "1").read_text()  # fetched again, verified


def test_a_tampered_artifact_store_is_refused_by_the_service_and_the_gate(champion_shop: Path,
                                                                          tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    _plant(_stored_features(champion_shop, "1"), marker)
    for cached in (_cache(champion_shop) / "groceries-forecast").glob("v1-*"):
        shutil.rmtree(cached)
    with Service(champion_shop) as service:
        deadline = time.monotonic() + 30
        while not (service.client.get("/ready").json().get("last_error") or "") and time.monotonic() < deadline:
            time.sleep(0.1)
        ready = service.client.get("/ready")
        assert ready.status_code == 503 and "differ from the ones registered" in ready.json()["last_error"]
    # The gate cannot compare the candidate with a champion it will not load: the candidate is not promoted.
    proc = cli(champion_shop, "run", "--set", "model.params.n_estimators=61", check=3)
    assert "champion v1 could not be scored on this holdout: ReleaseError: version 1 of 'groceries-forecast'" \
        in " ".join(proc.stderr.split())
    assert "differ from the ones registered" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()


def test_a_pointer_to_another_folder_is_refused_or_corrected_by_the_registry(champion_shop: Path) -> None:
    assert train(champion_shop, "model.params.n_estimators=61").promoted  # version 2 is champion
    with Service(champion_shop) as service:
        service.wait_until("/ready", 200)
    pointer = next((_cache(champion_shop) / "groceries-forecast").glob("champion-*.json"))
    doc = json.loads(pointer.read_text())
    assert doc["version"] == "2" and doc["info"][RELEASE_DIGEST]
    registered_v2 = _registry(champion_shop).version("2").tags[f"{TAG}{RELEASE_DIGEST}"]
    v1_folder = _cached_features(champion_shop, "1").parent.parent
    v1_digest = _registry(champion_shop).version("1").tags[f"{TAG}{RELEASE_DIGEST}"]

    # Aimed at version 1's folder while claiming version 2 with version 2's digest, or outside the
    # cache: not resumed. Both fall back to the registry's verified copy.
    for folder in (str(v1_folder), "/tmp"):
        pointer.write_text(json.dumps({**doc, "folder": folder}))
        with Service(champion_shop) as service:
            service.wait_until("/ready", 200)
            assert service.client.get("/version").json()[RELEASE_DIGEST] == registered_v2
        assert "not resuming" in service.log_path.read_text()

    # Aimed at version 1 with version 1's digest, labelled 2: the registry's first answer corrects it.
    pointer.write_text(json.dumps({**doc, "folder": str(v1_folder), "info": {**doc["info"], RELEASE_DIGEST: v1_digest}}))
    project = load_project(champion_shop)
    frame, _ = TrainingTable.for_project(project).read()
    hold = time_split(frame, project.config.time_column, project.config.split)[1].head(20)
    expected_v2 = _registry(champion_shop).load("2", _cache(champion_shop)).predict_frame(hold)
    records = hold[["date", "store_nbr", "item_nbr", "onpromotion"]].assign(
        date=lambda f: f["date"].dt.strftime("%Y-%m-%d")).to_dict("records")
    with Service(champion_shop) as service:
        service.wait_until("/ready", 200)
        deadline = time.monotonic() + 20
        while service.client.get("/version").json()[RELEASE_DIGEST] != registered_v2:
            assert time.monotonic() < deadline, "the registry never replaced the mislabelled release"
            time.sleep(0.05)
        body = service.client.post("/predict", json=records).json()
        assert body["model_version"] == "2"
        np.testing.assert_array_equal(np.asarray(body["predictions"]), expected_v2)
