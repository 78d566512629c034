"""MLflow 'models from code' entry: the pyfunc flavour of a cd4ml release.

MLflow copies this file into every logged model and runs it at load time, so
`mlflow.pyfunc.load_model("models:/NAME@champion")` and `mlflow models serve`
work on cd4ml releases without pickling any Python object.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class Cd4mlPyfunc(PythonModel):
    def load_context(self, context) -> None:  # noqa: ANN001 - MLflow's type
        from cd4ml.release.package import Release

        self.release = Release(Path(context.artifacts["release"]))

    def predict(self, context, model_input: pd.DataFrame, params=None):  # noqa: ANN001
        return self.release.predict_frame(pd.DataFrame(model_input))


mlflow.models.set_model(Cd4mlPyfunc())
