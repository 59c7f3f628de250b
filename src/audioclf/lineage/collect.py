"""The chain behind a run, read from its MLflow run and artifacts, as one JSON-able dict."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml
from dvc.utils.serialize import loads_yaml
from mlflow.exceptions import MlflowException

from audioclf.dvc_stages import stage_names
from audioclf.lineage.records import RUN_TAGS, LineageError
from audioclf.lineage.resolve import _client, find_repo, resolve
from audioclf.tracking.artifacts import CONFIG_ARTIFACT, ENVIRONMENT_ARTIFACT, LOCK_ARTIFACT
from audioclf.tracking.params import flatten, param_text
from audioclf.tracking.store import no_artifact_progress_bar, project_tracking_uri
from audioclf.tracking.tags import MODEL_DIGEST_TAG, SWEEP_TAG


def _download_text(client: Any, run_id: str, artifact: str) -> str | None:
    try:
        with tempfile.TemporaryDirectory() as tmp, no_artifact_progress_bar():
            local = client.download_artifacts(run_id, artifact, tmp)
            return Path(local).read_text(encoding="utf-8")
    except Exception:
        return None


def _lock_from_tags(tags: dict[str, str], pipeline: tuple[str, ...]) -> dict[str, Any]:
    """Older runs: the ``dvc.<stage>.<path>`` tags hold each locked output's md5."""
    stages: dict[str, Any] = {}
    for key, value in tags.items():
        stage, _, path = key[len("dvc.") :].partition(".")
        if key.startswith("dvc.") and path and (stage in pipeline or not pipeline):
            stages.setdefault(stage, {"outs": []})["outs"].append({"path": path, "md5": value})
    return stages


def _experiment_commit(repo: Path | None, name: str, baseline: str | None) -> str | None:
    """The commit of DVC experiment ``name`` (``refs/exps/<baseline>/<name>``) in ``repo``."""
    if repo is None:
        return None
    try:
        out = subprocess.run(
            ["git", "for-each-ref", "--format=%(refname) %(objectname)", "refs/exps"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    for line in out.splitlines():
        ref, _, sha = line.partition(" ")
        parts = ref.split("/")
        if parts[-1] == name and (not baseline or "".join(parts[2:-1]) == baseline):
            return sha
    return None


def _git_show(repo: Path, rev: str, path: str) -> str | None:
    try:
        return subprocess.run(
            ["git", "show", f"{rev}:{path}"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None


def collect(target: str, *, repo: Path | None = None, tracking_uri: str | None = None) -> dict:
    """The whole chain behind ``target``, as a JSON-serialisable dict."""
    repo = repo or find_repo(Path(target) if Path(target).is_dir() else Path.cwd())
    uri = tracking_uri or project_tracking_uri(repo)
    client = _client(uri)
    run_id, model = resolve(target, client, repo)

    try:
        run = client.get_run(run_id)
    except MlflowException as err:
        raise LineageError(f"run {run_id}: {err.message}") from err
    tags = run.data.tags
    experiment = client.get_experiment(run.info.experiment_id)
    warnings: list[str] = []

    if model["kind"] == "run":
        model["logged_models"] = [
            m.model_id for m in _search_logged_models(client, run.info.experiment_id, run_id)
        ]

    lock_text = _download_text(client, run_id, LOCK_ARTIFACT)
    if lock_text is not None:
        summary = _lock_summary(lock_text, _pipeline(repo))
        lock = {"source": f"artifact {LOCK_ARTIFACT}", **summary}
    else:
        stages = _lock_from_tags(tags, _pipeline(repo))
        lock = {"source": "run tags dvc.<stage>.<path>", "stages": stages}
        warnings.append("the run has no dvc.lock artifact: only output hashes from its tags")
    manifest_text = _download_text(client, run_id, "data/manifest.json")
    manifest = json.loads(manifest_text) if manifest_text else None
    if manifest is None:
        warnings.append("the run has no data/manifest.json artifact")
    config_text = _download_text(client, run_id, CONFIG_ARTIFACT)
    environment_text = _download_text(client, run_id, ENVIRONMENT_ARTIFACT)
    if environment_text is None:
        warnings.append("the run records no environment (environment/environment.json)")

    warnings += _consistency(lock, run.data.params, manifest_text)
    if model.get("sha256") and tags.get(MODEL_DIGEST_TAG) != model["sha256"]:
        warnings.append("the model directory's weights differ from the run's model.sha256")

    exp_name = tags.get("dvc.experiment")
    dvc_exp = None
    if exp_name:
        commit = _experiment_commit(repo, exp_name, tags.get("dvc.baseline_rev"))
        dvc_exp = {
            "name": exp_name,
            "baseline_rev": tags.get("dvc.baseline_rev"),
            "commit": commit,
            "run_file_names_this_run": None,
        }
        run_path = run.data.params.get("paths.run")
        if commit and repo and run_path:
            text = _git_show(repo, commit, run_path)
            dvc_exp["run_file_names_this_run"] = bool(text) and (
                json.loads(text).get("run_id") == run_id
            )

    return {
        "target": target,
        "model": model,
        "run": {
            "id": run_id,
            "name": run.info.run_name,
            "experiment_id": run.info.experiment_id,
            "experiment_name": experiment.name,
            "status": run.info.status,
            "start_time": run.info.start_time,
            "end_time": run.info.end_time,
            "tracking_uri": uri,
            "params": dict(sorted(run.data.params.items())),
            "metrics": dict(sorted(run.data.metrics.items())),
            "tags": {k: v for k, v in sorted(tags.items()) if k.startswith(RUN_TAGS)},
        },
        "code": {
            "git_commit": tags.get("git.commit"),
            "git_dirty": tags.get("git.dirty"),
            "dirty_files": tags.get("git.dirty_files"),
        },
        "sweep": tags.get(SWEEP_TAG),
        "dvc_experiment": dvc_exp,
        "dvc_lock": lock,
        "data": manifest,
        "config": yaml.safe_load(config_text) if config_text else None,
        "environment": json.loads(environment_text) if environment_text else None,
        "repo": str(repo) if repo else None,
        "warnings": warnings,
    }


def _search_logged_models(client: Any, experiment_id: str, run_id: str) -> list[Any]:
    try:
        return list(
            client.search_logged_models(
                experiment_ids=[experiment_id], filter_string=f"source_run_id = '{run_id}'"
            )
        )
    except Exception:
        return []


def _lock_summary(text: str, pipeline: tuple[str, ...]) -> dict[str, Any]:
    lock = loads_yaml(text) or {}  # YAML 1.2, as DVC writes it (`no` is a string)
    stages = {}
    for name, stage in (lock.get("stages") or {}).items():
        stages[name] = {
            "cmd": stage.get("cmd"),
            "deps": stage.get("deps", []),
            "outs": stage.get("outs", []),
            "params": stage.get("params", {}),
        }
    order = {name: i for i, name in enumerate(pipeline)}
    return {"stages": dict(sorted(stages.items(), key=lambda kv: order.get(kv[0], len(order))))}


def _pipeline(repo: Path | None) -> tuple[str, ...]:
    """The stages of the repository's dvc.yaml, in order (none known without one)."""
    try:
        return stage_names(repo) if repo is not None else ()
    except (OSError, ValueError):
        return ()


def _consistency(lock: dict, params: dict[str, str], manifest_text: str | None) -> list[str]:
    """Does the logged dvc.lock describe this run? (Stages run by hand leave it stale.)"""
    warnings = []
    for stage, entry in lock.get("stages", {}).items():
        locked: dict[str, str] = {}
        for values in (entry.get("params") or {}).values():
            locked.update({k: param_text(v) for k, v in flatten(values).items()})
        differ = sorted(k for k, v in locked.items() if k in params and params[k] != v)
        if differ:
            warnings.append(
                f"dvc.lock's {stage} stage was locked with other params than this run's "
                f"({', '.join(differ[:5])}): it may not describe this run"
            )
    if manifest_text is not None:
        md5 = hashlib.md5(manifest_text.encode("utf-8")).hexdigest()
        manifest_path = params.get("paths.manifest", "data/manifest.json")
        for out in lock.get("stages", {}).get("download", {}).get("outs", []):
            if out.get("path") == manifest_path and out.get("md5") not in (None, md5):
                warnings.append(
                    "dvc.lock's data manifest is not the one logged with the run: the data "
                    "stages' hashes may not describe this run"
                )
    return warnings
