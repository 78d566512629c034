"""The public Python API: the loop driven from `import cd4ml` alone, as a notebook or an orchestrator's
task would, with the CLI's checks and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cd4ml
from cd4ml.data.table import TrainingTable
from cd4ml.train.split import time_split
from helpers import make_grocery_project


def test_the_loop_from_python(tmp_path: Path) -> None:
    project = cd4ml.load_project(make_grocery_project(tmp_path / "shop"))
    with pytest.raises(cd4ml.Cd4mlError, match="no champion yet"):
        cd4ml.score(project, None)

    assert cd4ml.ingest(project).version == 0
    result = cd4ml.run(project)
    assert isinstance(result, cd4ml.RunResult) and result.gate.passed and result.promoted
    assert cd4ml.run(project).skipped_as == result.run_id  # nothing changed: not trained again

    # Batch scoring with the champion reproduces the run's offline metric on its holdout.
    frame, _ = TrainingTable.for_project(project).read()
    hold = time_split(frame, project.config.time_column, project.config.split)[1]
    predicted = cd4ml.score(project, hold.drop(columns=["unit_sales"]))
    assert predicted.shape == (len(hold),)
    weights = np.where(hold["perishable"] == 1, 1.25, 1.0)
    nwrmsle = np.sqrt(np.average((np.log1p(predicted) - np.log1p(hold["unit_sales"])) ** 2, weights=weights))
    assert result.metrics["nwrmsle"] == pytest.approx(float(nwrmsle), rel=1e-12)
    assert str(cd4ml.Registry.for_project(project).champion().version) == result.version

    report = cd4ml.build_report(project)
    assert isinstance(report, cd4ml.MonitoringReport)
    assert report.retrain_due is False  # no traffic yet: nothing to judge, nothing due
    assert report.champion.version == result.version and report.to_json()["retrain_due"] is False


def test_api_errors_are_the_clis(tmp_path: Path) -> None:
    with pytest.raises(cd4ml.Cd4mlError) as raised:
        cd4ml.load_project(tmp_path / "nowhere")
    assert raised.value.exit_code == 2 and "cd4ml.yaml" in str(raised.value)
    assert sorted(dir(cd4ml)) == sorted(cd4ml.__all__)
    with pytest.raises(AttributeError, match="no attribute 'fit'"):
        cd4ml.fit  # noqa: B018
