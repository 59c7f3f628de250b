"""Where runs go: the tracking URI, the experiment's artifact location, and the store's creation.

The default store is the user repository's sqlite ``mlflow.db``, absolute, so that queued DVC
experiments (which run in temporary copies of the repository) log into the user's store.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import mlflow
from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from audioclf.config import load_params, user_repo_root


def default_tracking_uri(root: Path | None = None) -> str:
    """The repository's sqlite store (absolute, so experiment copies share it)."""
    return f"sqlite:///{(root or user_repo_root()).resolve() / 'mlflow.db'}"


def tracking_uri(tracking: DictConfig | None = None, root: Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI``, else ``tracking.tracking_uri``, else the repo's sqlite store.

    The one place that decides where runs go. The default is absolute and built from
    ``DVC_ROOT`` (or ``root``), so queued DVC experiments (which run in temporary copies of the
    repository) log into the user's store, not into the copy.
    """
    configured = tracking.get("tracking_uri") if tracking is not None else None
    return os.environ.get("MLFLOW_TRACKING_URI") or configured or default_tracking_uri(root)


def project_tracking_uri(root: Path | None = None) -> str:
    """:func:`tracking_uri` for a project directory, from its ``params.yaml`` when readable
    (for commands run outside a stage: predict, lineage)."""
    cfg = None
    try:
        cfg = load_params(root=root).get("tracking")
    except Exception:  # no or an unreadable params.yaml: the environment and the default
        cfg = None
    return tracking_uri(cfg, root)


def artifact_location(tracking: DictConfig | None = None) -> str | None:
    """With the default store, new experiments keep artifacts in ``<user repo>/mlartifacts``.

    Another store (a server, say) decides for itself: None. (``mlflow.set_tracking_uri`` also
    sets ``MLFLOW_TRACKING_URI``, so the resolved URI is compared, not the variable.)
    """
    if tracking_uri(tracking) != default_tracking_uri():
        return None
    return (user_repo_root() / "mlartifacts").as_uri()


def configure(tracking: DictConfig | None = None) -> str:
    """Point MLflow at the store (touching nothing: a client would create a sqlite store)."""
    uri = tracking_uri(tracking)
    mlflow.set_tracking_uri(uri)
    return uri


@contextlib.contextmanager
def using_tracking_uri(uri: str) -> Iterator[str]:
    """Point this process's MLflow at ``uri`` for a while, then back where it was."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield uri
    finally:
        restore_tracking_uri(before)


def restore_tracking_uri(variable: str | None) -> None:
    """Forget MLflow's process-wide URI and put ``MLFLOW_TRACKING_URI`` back as it was.

    ``mlflow.set_tracking_uri`` sets a global that outranks the variable; ``""`` would mean
    ``./mlruns``, so None is what forgets it (and unsets the variable, restored after).
    """
    mlflow.set_tracking_uri(None)
    if variable is not None:
        os.environ["MLFLOW_TRACKING_URI"] = variable


@contextlib.contextmanager
def no_artifact_progress_bar() -> Iterator[None]:
    """MLflow's download progress bar off (it reads the environment), then as it was."""
    key = MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name
    before = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


@contextlib.contextmanager
def store_creation_lock(uri: str) -> Iterator[None]:
    """While held, no other process of this machine creates the same sqlite store.

    MLflow creates (and migrates) a fresh sqlite store's tables when a process first opens it,
    unlocked: two queued experiments opening a new ``mlflow.db`` at once leave one of them
    failed ("Online migration expected to match one row") and without a run. Other stores
    are created by their server: no lock.
    """
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        yield
        return
    database = Path(uri[len(prefix) :]).resolve()
    digest = hashlib.sha256(str(database).encode()).hexdigest()[:16]
    lock_file = Path(tempfile.gettempdir()) / f"audioclf-mlflow-store-{digest}.lock"
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_experiment(tracking: DictConfig) -> str:
    """The experiment's id, creating it without tags when it is new.

    Accelerate's tracker would create it with the first run's tags (commit, data hashes),
    which describe that run only; run tags go on runs.
    """
    with store_creation_lock(mlflow.get_tracking_uri()):
        client = MlflowClient()
        name = tracking.experiment_name
        found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location(tracking))
    except MlflowException:  # created meanwhile by a parallel run
        return client.get_experiment_by_name(name).experiment_id
