"""A release logged to the active MLflow run as a pyfunc model ("models from code": `mlflow_entry.py`,
no pickled Python objects) and registered as a new version of the model."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pandas as pd


def log_release(release_dir: Path, model_name: str, example: pd.DataFrame, pred: np.ndarray,
                requirements: list[str]) -> str:
    """Log and register the release; `example`: a few input rows, `pred`: their predictions (the
    signature's output). Returns the registered version."""
    import mlflow
    from mlflow.models import infer_signature

    # MLflow prints "Registered model ..." lines to stderr; cd4ml reports the version itself.
    with contextlib.redirect_stderr(io.StringIO()):
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(Path(__file__).with_name("mlflow_entry.py")),
            artifacts={"release": str(release_dir)}, signature=infer_signature(example, pred),
            input_example=example, pip_requirements=requirements, registered_model_name=model_name,
        )
    return str(info.registered_model_version)
