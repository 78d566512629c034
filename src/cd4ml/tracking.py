"""Where MLflow tracking and the model registry live for a project.

Precedence: the MLFLOW_TRACKING_URI environment variable, then `tracking.uri`
in cd4ml.yaml, then the embedded default: a SQLite database and an artifact
folder under the project's `.cd4ml/`. Any MLflow server URI works unchanged.

The embedded store names its artifacts `cd4ml-state:/mlartifacts/...`, a location relative to the
folder that holds the store's database (an MLflow artifact-repository plugin, registered in
pyproject.toml), so a project folder can be moved, copied or checked out elsewhere.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from cd4ml import empty_store

if TYPE_CHECKING:
    from mlflow.store.artifact.artifact_repo import ArtifactRepository
    from mlflow.tracking import MlflowClient

    from cd4ml.config import Project

_EMBEDDED_DB = "mlflow.db"
_SQLITE = "sqlite:///"
STATE_SCHEME = "cd4ml-state"


def embedded_uri(project: Project) -> str:
    return f"{_SQLITE}{project.state_dir / _EMBEDDED_DB}"


# MLflow's set_tracking_uri writes MLFLOW_TRACKING_URI into os.environ (for child
# processes); only the value the user had before cd4ml touched it is a user choice.
_USER_URI = os.environ.get("MLFLOW_TRACKING_URI")


def tracking_uri(project: Project) -> str:
    uri = _USER_URI or project.config.tracking.uri or embedded_uri(project)
    if uri == embedded_uri(project):
        project.state_dir.mkdir(parents=True, exist_ok=True)
    return uri


def _quiet_mlflow() -> None:
    # MLflow's own INFO lines and deprecation chatter would drown cd4ml's narration.
    for name in ("mlflow", "alembic", "mlflow.store.db.utils"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module=r"mlflow\..*")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def connect(project: Project) -> "MlflowClient":
    """Point MLflow at the project's store and return a client for it."""
    uri = tracking_uri(project)
    if uri == embedded_uri(project):
        empty_store.seed(project.state_dir / _EMBEDDED_DB)
    return connect_uri(uri)


def import_mlflow() -> None:
    """Import MLflow (1-2 s), with its chatter turned down."""
    _quiet_mlflow()
    import mlflow  # noqa: F401


def connect_uri(uri: str) -> "MlflowClient":
    """Point MLflow at the store at `uri` and return a client for it."""
    import_mlflow()
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_name(project: Project) -> str:
    return project.config.tracking.experiment or project.config.project


def embedded_db(project: Project) -> Path | None:
    """The SQLite file of the embedded store, if the project uses it (it may not exist yet)."""
    if tracking_uri(project) == embedded_uri(project):
        return project.state_dir / _EMBEDDED_DB
    return None


def artifact_location(project: Project) -> str | None:
    """With the embedded store, artifacts go to `.cd4ml/mlartifacts`; with a server, the server decides."""
    if embedded_db(project) is not None:
        return f"{STATE_SCHEME}:/mlartifacts"
    return None


def state_artifact_repository(artifact_uri: str, tracking_uri: str | None = None,
                              registry_uri: str | None = None) -> "ArtifactRepository":
    """MLflow's local repository for a `cd4ml-state:/<path>` URI: `<path>` under the folder of the
    SQLite store in use: the tracking URI MLflow passes, else the one it was pointed at, else (in
    `mlflow ui`) the server's MLFLOW_BACKEND_STORE_URI."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    store = (tracking_uri or (mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None)
             or os.environ.get("MLFLOW_BACKEND_STORE_URI", ""))
    if not store.startswith(_SQLITE):
        raise MlflowException(f"{artifact_uri} lies in a cd4ml project's embedded store, but the tracking URI is "
                              f"{store or 'not set'}: open the project with cd4ml, or set MLFLOW_TRACKING_URI "
                              "(MLFLOW_BACKEND_STORE_URI for `mlflow ui`) to sqlite:///<project>/.cd4ml/mlflow.db")
    relative = unquote(urlsplit(artifact_uri).path).lstrip("/")
    if ".." in Path(relative).parts:
        raise MlflowException(f"{artifact_uri} leaves the project's state folder")
    folder = Path(store[len(_SQLITE):]).resolve().parent / relative  # `sqlite:///rel.db`: from the cwd
    return LocalArtifactRepository(folder.as_uri(), tracking_uri=tracking_uri, registry_uri=registry_uri)


def experiment_id(project: Project, client: "MlflowClient", name: str | None = None) -> str:
    """The id of an experiment (default: the project's), created on first use."""
    return ensure_experiment(client, name or experiment_name(project), artifact_location(project))


def ensure_experiment(client: "MlflowClient", name: str, location: str | None) -> str:
    """The id of the experiment `name`, created (artifacts at `location`) if there is none."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(name, artifact_location=location)
