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
from accelerate.utils import gather_object
from omegaconf import DictConfig

from audioclf import environment
from audioclf.models.build import weights_tags
from audioclf.tracking import artifacts, outcome, params, store, system_metrics, tags

# Set by Accelerate's launcher (torch's elastic agent) in each process: the machine's rank.
MACHINE_RANK_ENV = "GROUP_RANK"


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


def placement(accelerator: Accelerator) -> dict[str, str]:
    """Where the processes run, as the run's ``accelerate.*`` tags: how many processes on how
    many machines, and each process's device in process order (``cpu,cpu``; ``cuda:0,cuda:1``).
    Gathered from every process: call it on all of them."""
    placed = gather_object([(os.environ.get(MACHINE_RANK_ENV, "0"), str(accelerator.device))])
    return {
        "accelerate.num_processes": str(accelerator.num_processes),
        "accelerate.num_machines": str(len({machine for machine, _ in placed})),
        "accelerate.distributed_type": str(accelerator.distributed_type.value),
        "accelerate.mixed_precision": str(accelerator.mixed_precision),
        "accelerate.device": str(accelerator.device),
        "accelerate.devices": ",".join(device for _, device in placed),
    }


def start(
    accelerator: Accelerator,
    state: HoldsRun,
    cfg: DictConfig,
    *,
    threads: int,
    threads_rule: str,
    device_tags: dict[str, str],
) -> None:
    """Open the run (or resume ``state.run_id``) on every process, as training's ``on_start``.

    The main process then records the run's id in ``state`` and in ``paths.run``, and logs the
    datasets (``paths.manifest``), Accelerate's setup (:func:`placement`) and the environment.
    A checkpoint's weights file and commit are tags (:func:`audioclf.models.build.weights_tags`).
    ``threads`` and ``threads_rule``: torch's threads and the rule that chose them, as tags;
    ``device_tags``: the GPUs the stage leased (:meth:`audioclf.devices.Lease.tags`). The run
    logs system metrics (:mod:`audioclf.tracking.system_metrics`) until training ends it.
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
        **weights_tags(cfg.model),
        **device_tags,
    }
    placed = placement(accelerator)
    if accelerator.is_main_process:
        store.ensure_experiment(cfg.tracking)
    accelerator.wait_for_everyone()
    with system_metrics.sampled(cfg.tracking):
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
    artifacts.log_datasets(manifest, Path(cfg.paths.features))
    mlflow.set_tags(placed)
    described = environment.describe(
        accelerator.num_processes, accelerator.mixed_precision, str(accelerator.device)
    )
    artifacts.log_environment(run.info.run_id, described, environment.installed_packages())


def reopen(run_file: Path) -> None:
    """The run ``RUNNING`` again once training ended: Accelerate's ``end_training`` ended it
    ``FINISHED``, but it is no result before evaluate scored its model on test."""
    outcome.set_run_state(run_file, "train", outcome.RUNNING, "running")
