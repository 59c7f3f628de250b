"""From a target (run id, models:/ URI, model directory) to its MLflow run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from audioclf.config import load_params
from audioclf.lineage.records import LineageError
from audioclf.tracking.artifacts import model_digest
from audioclf.tracking.tags import MODEL_DIGEST_TAG


def find_repo(start: Path) -> Path | None:
    """The DVC repository containing ``start`` (a directory with ``.dvc/``), if any."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / ".dvc").is_dir():
            return folder
    return None


def _client(uri: str) -> Any:
    # Explicit URIs: mlflow.set_tracking_uri would export MLFLOW_TRACKING_URI to the process.
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _all_experiment_ids(client: Any) -> list[str]:
    return [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]


def _run_file(repo: Path | None) -> dict[str, Any]:
    if repo is None:
        return {}
    try:
        path = repo / load_params(root=repo).paths.run
        return json.loads(path.read_text()) if path.is_file() else {}
    except Exception:
        return {}


def resolve(target: str, client: Any, repo: Path | None) -> tuple[str, dict[str, Any]]:
    """The run id behind ``target`` and what the target is."""
    try:
        if target.startswith("models:/"):
            return _resolve_model_uri(target, client)
        if target.startswith("runs:/"):
            run_id = target[len("runs:/") :].split("/", 1)[0]
            return run_id, {"kind": "run", "uri": target}
        if Path(target).is_dir():
            return _resolve_model_dir(Path(target), client, repo)
        client.get_run(target)
        return target, {"kind": "run"}
    except MlflowException as err:
        raise LineageError(f"{target}: {err.message}") from err


def _resolve_model_uri(uri: str, client: Any) -> tuple[str, dict[str, Any]]:
    ref = uri[len("models:/") :].strip("/")
    if "@" in ref:
        name, alias = ref.split("@", 1)
        version = client.get_model_version_by_alias(name, alias)
    elif "/" in ref:
        name, number = ref.split("/", 1)
        version = client.get_model_version(name, number)
    else:  # an MLflow 3 logged model id, models:/m-...
        logged = client.get_logged_model(ref)
        if not logged.source_run_id:
            raise LineageError(f"{uri}: the logged model has no source run")
        return logged.source_run_id, {"kind": "logged model", "uri": uri, "model_id": ref}
    run_id = version.run_id
    if not run_id and getattr(version, "model_id", None):
        run_id = client.get_logged_model(version.model_id).source_run_id
    if not run_id:
        raise LineageError(f"{uri}: version {version.version} has no source run")
    info = {
        "kind": "registered model",
        "uri": uri,
        "name": version.name,
        "version": str(version.version),
        "aliases": list(getattr(version, "aliases", []) or []),
        "source": version.source,
        "model_id": getattr(version, "model_id", None),
    }
    return run_id, info


def _resolve_model_dir(path: Path, client: Any, repo: Path | None) -> tuple[str, dict[str, Any]]:
    """A model directory is found by its weights: the run tag ``model.sha256`` names them."""
    try:
        digest = model_digest(path)
    except FileNotFoundError as err:
        raise LineageError(f"{path} is not a model directory: {err}") from err
    info: dict[str, Any] = {"kind": "model directory", "path": str(path), "sha256": digest}
    runs = client.search_runs(
        _all_experiment_ids(client),
        filter_string=f"tags.`{MODEL_DIGEST_TAG}` = '{digest}'",
        order_by=["attributes.start_time DESC"],
    )
    ids = [r.info.run_id for r in runs]
    if not ids:
        raise LineageError(
            f"no MLflow run in this store logged a model with the weights of {path} "
            f"(sha256 {digest[:16]}...): is it the right store (--tracking-uri)?"
        )
    preferred = _run_file(find_repo(path) or repo).get("run_id")
    run_id = preferred if preferred in ids else ids[0]
    if len(ids) > 1:  # identical training runs give identical weights
        info["also_matching_runs"] = [i for i in ids if i != run_id]
    return run_id, info
