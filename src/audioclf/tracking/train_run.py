"""The train stage's MLflow run: opened through Accelerate's tracker once training is set up,
with the lineage tags, the config as params, the data input and the environment.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

import mlflow
from accelerate import Accelerator
from omegaconf import DictConfig

from audioclf import environment
from audioclf.tracking import artifacts, outcome, params, store, tags


class HoldsRun(Protocol):
    """What training keeps for a resume: the id of the run it logs into (None: a new run)."""

    run_id: str | None


def tracker_kwargs(cfg: DictConfig, run_id: str | None, tags: dict[str, str]) -> dict[str, Any]:
    """``init_kwargs`` for Accelerate's MLflow tracker: new run, or resume ``run_id``."""
    return {
        "mlflow": {
            "logging_dir": store.artifact_location(cfg.tracking),
            "run_id": run_id,
            "run_name": None if run_id else os.environ.get("DVC_EXP_NAME"),
            "tags": tags,
        }
    }


def start(
    accelerator: Accelerator,
    state: HoldsRun,
    cfg: DictConfig,
    *,
    threads: int,
    threads_rule: str,
) -> None:
    """Open the run (or resume ``state.run_id``) on every process, as training's ``on_start``.

    The main process then records the run's id in ``state`` and in ``paths.run``, and logs the
    dataset (``paths.manifest``), Accelerate's setup and the environment. ``threads`` and
    ``threads_rule``: torch's threads and the rule that chose them, as tags.
    """
    store.configure(cfg.tracking)
    config, _ = params.flat_params(cfg)
    manifest = json.loads(Path(cfg.paths.manifest).read_text())
    run_tags = {
        **tags.lineage_tags(manifest, cfg.tracking),
        tags.STAGE_TAG: "train",
        tags.STAGE_STATUS_TAG: "running",
        "train.threads": str(threads),
        "train.threads_rule": threads_rule,
    }
    if accelerator.is_main_process:
        store.ensure_experiment(cfg.tracking)
    accelerator.wait_for_everyone()
    accelerator.init_trackers(
        cfg.tracking.experiment_name,
        config=config,
        init_kwargs=tracker_kwargs(cfg, state.run_id, run_tags),
    )
    if not accelerator.is_main_process:
        return
    run = accelerator.get_tracker("mlflow", unwrap=True)
    state.run_id = run.info.run_id
    artifacts.write_run_file(
        Path(cfg.paths.run), run.info.run_id, run.info.experiment_id, cfg.tracking
    )
    artifacts.log_dataset(manifest)
    mlflow.set_tags(
        {
            "accelerate.num_processes": accelerator.num_processes,
            "accelerate.mixed_precision": accelerator.mixed_precision,
            "accelerate.device": str(accelerator.device),
        }
    )
    described = environment.describe(
        accelerator.num_processes, accelerator.mixed_precision, str(accelerator.device)
    )
    artifacts.log_environment(run.info.run_id, described, environment.installed_packages())


def reopen(run_file: Path) -> None:
    """The run ``RUNNING`` again once training ended: Accelerate's ``end_training`` ended it
    ``FINISHED``, but it is no result before evaluate scored its model on test."""
    outcome.set_run_state(run_file, "train", outcome.RUNNING, "running")
