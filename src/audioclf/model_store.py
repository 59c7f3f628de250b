"""The model store: which model folder a name means, and how an MLflow model URI becomes one.

Between the inference core (:mod:`audioclf.classifier`: a model folder in, scores out) and
what serves models (:mod:`audioclf.predict`, :mod:`audioclf.serving`). Where runs go is
:func:`audioclf.tracking.store.tracking_uri`; a logged model keeps its ``save_pretrained``
folder as the pyfunc artifact :data:`ARTIFACT`.
"""

from __future__ import annotations

import re
from pathlib import Path

import mlflow
import yaml
from mlflow.exceptions import MlflowException

from audioclf.classifier import ModelError, first_line
from audioclf.config import PARAMS_FILE, load_params
from audioclf.tracking.store import no_artifact_progress_bar, project_tracking_uri

ARTIFACT = "model_dir"
DEFAULT_MODEL = "models/final"
# A URI MLflow resolves (runs:/, models:/, mlflow-artifacts:/, s3://, file:// ...), not a path.
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")


def is_model_uri(text: str) -> bool:
    """A URI for MLflow, not a path (an existing path wins)."""
    return bool(_URI.match(text)) and not Path(text).exists()


def default_model_dir(root: Path | None = None) -> Path:
    """``paths.model`` of ``./params.yaml`` (what ``dvc repro`` writes), else models/final."""
    root = root or Path.cwd()
    if (root / PARAMS_FILE).is_file():
        try:
            return root / load_params(root=root).paths.model
        except Exception:  # an unreadable params.yaml: fall back to the documented default
            pass
    return root / DEFAULT_MODEL


def model_dir_in(folder: Path) -> Path:
    """The ``save_pretrained`` folder inside an MLflow pyfunc model (or ``folder`` itself)."""
    mlmodel = folder / "MLmodel"
    if not mlmodel.is_file():
        return folder
    flavor = (yaml.safe_load(mlmodel.read_text()) or {}).get("flavors", {})
    artifacts = flavor.get("python_function", {}).get("artifacts") or {}
    if ARTIFACT not in artifacts:
        raise ModelError(
            f"{folder} is an MLflow model without a '{ARTIFACT}' artifact (not logged by audioclf)"
        )
    return folder / artifacts[ARTIFACT]["path"]


def download_model(uri: str, dst: Path) -> Path:
    """Download the MLflow model ``uri`` into ``dst``; the folder it landed in.

    The store is ``MLFLOW_TRACKING_URI``, else the project's
    (:func:`audioclf.tracking.store.project_tracking_uri`).
    """
    tracking_uri = project_tracking_uri()
    if tracking_uri.startswith("sqlite:///"):
        store = Path(tracking_uri[len("sqlite:///") :])
        if not store.is_file():
            raise ModelError(
                f"cannot resolve {uri}: MLflow store {store} not found (set MLFLOW_TRACKING_URI)"
            )
    # Passed explicitly: mlflow.set_tracking_uri would also change this process's environment.
    with no_artifact_progress_bar():
        try:
            folder = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=uri,
                    dst_path=str(dst),
                    tracking_uri=tracking_uri,
                    registry_uri=tracking_uri,
                )
            )
        except (MlflowException, OSError, ValueError) as err:
            raise ModelError(f"cannot resolve {uri}: {first_line(err)}") from err
    if not folder.is_dir():
        raise ModelError(f"{uri} is a file, not a model")
    return folder
