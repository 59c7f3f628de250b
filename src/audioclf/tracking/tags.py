"""The tags that make a run auditable: its commit and dirt, its DVC experiment and sweep, the
data stages' hashes, and the names of the tags other modules write and read.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig

from audioclf.dvc_stages import data_stages

SWEEP_TAG = "sweep"
# `audioclf sweep` runs each trial as `dvc exp run` with these set (audioclf.hparams_search):
# the train stage nests its run under the sweep's parent run and names its Optuna trial.
PARENT_RUN_ENV = "AUDIOCLF_SWEEP_PARENT_RUN_ID"
TRIAL_ENV = "AUDIOCLF_SWEEP_TRIAL"
TRIAL_TAG = "optuna.trial"
STAGE_TAG = "pipeline.stage"
STAGE_STATUS_TAG = "pipeline.stage_status"
ERROR_TAG = "pipeline.error"
MODEL_DIGEST_TAG = "model.sha256"
CODE_PATHS = (
    "src/",
    "conf/",
    "scripts/",
    "dvc.yaml",
    "params.yaml",
    "pyproject.toml",
    "Makefile",
    ".dvc/config",
)


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout


def code_changes() -> list[str]:
    """Code and config files (:data:`CODE_PATHS`) that differ from the commit, or are new.

    Pipeline outputs (``dvc.lock``, ``reports/``...) are not code; nor is ``params.yaml`` under
    ``dvc exp run``, which writes it from ``conf/`` with the experiment's overrides (those are
    the run's params, and the experiment's git ref keeps them).
    """
    changed = (_git("diff", "--name-only", "-z", "HEAD") or "").split("\0")
    new = (_git("ls-files", "--others", "--exclude-standard", "-z") or "").split("\0")
    code = sorted({p for p in changed + new if p and p.startswith(CODE_PATHS)})
    if os.environ.get("DVC_EXP_NAME"):
        code = [p for p in code if p != "params.yaml"]
    return code


def git_tags() -> dict[str, str]:
    """Commit and whether the code or config differ from it (:func:`code_changes`)."""
    commit = (_git("rev-parse", "HEAD") or "").strip()
    if not commit:
        return {"git.commit": "unknown"}
    changed = code_changes()
    tags = {
        "git.commit": commit,
        "mlflow.source.git.commit": commit,
        "git.dirty": str(bool(changed)).lower(),
    }
    if changed:
        tags["git.dirty_files"] = ", ".join(changed)[:500]
    return tags


def dvc_lock_tags(
    lock_file: Path = Path("dvc.lock"), stages: tuple[str, ...] | None = None
) -> dict[str, str]:
    """The md5 of each data stage output recorded in ``dvc.lock``: which data made the model.

    ``stages``: the data stages of the ``dvc.yaml`` beside the lock file, unless given.
    """
    if not lock_file.is_file():
        return {}
    lock = yaml.safe_load(lock_file.read_text()) or {}
    tags = {}
    for stage in stages if stages is not None else data_stages(lock_file.parent):
        for out in lock.get("stages", {}).get(stage, {}).get("outs", []):
            tags[f"dvc.{stage}.{out['path']}"] = out.get("md5", "")
    return tags


def sweep_name(tracking: DictConfig | None = None) -> str | None:
    """The sweep a run belongs to: the MLflow tag ``sweep`` that groups a sweep's runs.

    ``tracking.sweep`` when set (``dvc exp run --queue -S tracking.sweep=NAME ...``), else,
    under ``dvc exp run``, ``baseline-<commit>``: every experiment queued from one commit.
    None for a plain ``dvc repro``.
    """
    if tracking is not None and tracking.get("sweep") is not None:
        return str(tracking.get("sweep"))
    if os.environ.get("DVC_EXP_NAME") and (baseline := os.environ.get("DVC_EXP_BASELINE_REV")):
        return f"baseline-{baseline[:7]}"
    return None


def dvc_tags(tracking: DictConfig | None = None) -> dict[str, str]:
    """The DVC experiment (and sweep) this run belongs to, under ``dvc exp run``."""
    tags = {}
    if name := os.environ.get("DVC_EXP_NAME"):
        tags["dvc.experiment"] = name
    if baseline := os.environ.get("DVC_EXP_BASELINE_REV"):
        tags["dvc.baseline_rev"] = baseline
    if sweep := sweep_name(tracking):
        tags[SWEEP_TAG] = sweep
    if parent := os.environ.get(PARENT_RUN_ENV):
        tags["mlflow.parentRunId"] = parent
    if trial := os.environ.get(TRIAL_ENV):
        tags[TRIAL_TAG] = trial
    return tags


def lineage_tags(
    manifest: dict[str, Any] | None = None, tracking: DictConfig | None = None
) -> dict[str, str]:
    """Everything needed to find the code and the data that produced a run."""
    tags = {**git_tags(), **dvc_tags(tracking), **dvc_lock_tags()}
    if manifest:
        tags["data.digest"] = manifest["digest"]
        tags["data.source"] = f"{manifest['source']}:{manifest['path']}"
        tags["data.revision"] = str(manifest.get("revision"))
    return tags
