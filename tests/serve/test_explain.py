"""`POST /predict?explain=true` (issue 20): each record's raw score split into its inputs' shares (LightGBM's
TreeSHAP), through a real service; without the flag the answer is as before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cd4ml.release.estimators import contributions
from helpers import GOOD_REQUEST, Service


def test_an_explanation_adds_up_to_the_answer_in_the_requests_own_terms(champion_shop: Path) -> None:
    records = [GOOD_REQUEST, {**GOOD_REQUEST, "onpromotion": 1 - GOOD_REQUEST["onpromotion"]}]
    with Service(champion_shop) as service:
        service.wait_until("/ready", 200)
        plain = service.client.post("/predict", json=records).json()
        doc = service.client.post("/predict?explain=true", json=records).json()
        one = service.client.post("/predict", params={"explain": "1"}, json=GOOD_REQUEST).json()
        off = service.client.post("/predict", params={"explain": "false"}, json=GOOD_REQUEST).json()
        bad = service.client.post("/predict", params={"explain": "<b>yes</b>"}, json=GOOD_REQUEST)
        many = service.client.post("/predict?explain=true", json=[GOOD_REQUEST] * 101)
    assert doc["predictions"] == plain["predictions"] and "explanations" not in plain  # the same answers
    assert "explanation" not in off and bad.status_code == 400 and "is not true or false" in bad.text
    assert one["explanation"] == doc["explanations"][0]
    assert many.status_code == 413 and "at most 100" in many.text
    for explained, prediction in zip(doc["explanations"], doc["predictions"]):
        shares = explained["contributions"]
        assert explained["base"] + sum(shares.values()) == pytest.approx(explained["raw"], abs=1e-9)
        assert explained["link"] == "expm1" and max(np.expm1(explained["raw"]), 0.0) == pytest.approx(prediction)
        # Calendar parts are the date's, lookup attributes their key's; features of several inputs keep their names.
        assert {"date", "store_nbr", "item_nbr", "onpromotion"} <= set(shares)
        assert not {"dayofweek", "family", "city"} & set(shares)
        assert "te__store_nbr__item_nbr" in shares
    promoted = [e["contributions"]["onpromotion"] for e in doc["explanations"]]
    assert promoted[0] != promoted[1]  # the input that differs is credited differently


def test_a_model_without_tree_contributions_is_refused_saying_so() -> None:
    class Linear:
        def predict(self, X: np.ndarray) -> np.ndarray:
            return X.sum(axis=1)

    with pytest.raises(ValueError, match="explanations need a LightGBM model; this release's is Linear"):
        contributions(Linear(), np.zeros((1, 3)))
