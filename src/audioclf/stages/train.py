"""train: fine-tune ``model`` on the featurized data with Accelerate, tracked in MLflow.

The run it opens stays ``RUNNING`` until evaluate ends it (``FAILED``/``KILLED`` when train
fails or is killed: :mod:`audioclf.tracking`); torch's threads follow
:mod:`audioclf.training.threads` (one share of the cores per queued experiment running).

python -m audioclf.stages.train train.epochs=2
accelerate launch -m audioclf.stages.train train.mixed_precision=bf16     # one GPU
ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 -m audioclf.stages.train
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
from accelerate import Accelerator, PartialState
from omegaconf import DictConfig

from audioclf import environment, serving, tracking
from audioclf.data.store import load_splits, write_json
from audioclf.stages import run_stage
from audioclf.training.checkpoints import TrainState
from audioclf.training.loop import fit
from audioclf.training.report import validation_summary, write_train_log
from audioclf.training.threads import thread_budget


@tracking.records_outcome("train", opens_run=True)
def train(cfg: DictConfig) -> None:
    """Write paths.model, paths.checkpoints, paths.run, paths.train_log, paths.validation."""
    budget = thread_budget(cfg.train.get("num_threads"))
    threads = budget.apply()
    splits = load_splits(cfg.paths.features, "featurize", names=("train", "validation"))
    manifest = json.loads(Path(cfg.paths.manifest).read_text())
    tracking.configure(cfg.tracking)
    params, long_values = tracking.flat_params(cfg)

    def start_tracking(accelerator: Accelerator, state: TrainState) -> None:
        tags = {
            **tracking.lineage_tags(manifest, cfg.tracking),
            tracking.STAGE_TAG: "train",
            tracking.STAGE_STATUS_TAG: "running",
            "train.threads": str(threads),
            "train.threads_rule": budget.rule,
        }
        if accelerator.is_main_process:
            tracking.ensure_experiment(cfg.tracking)
        accelerator.wait_for_everyone()
        accelerator.init_trackers(
            cfg.tracking.experiment_name,
            config=params,
            init_kwargs=tracking.tracker_kwargs(cfg, state.run_id, tags),
        )
        if accelerator.is_main_process:
            run = accelerator.get_tracker("mlflow", unwrap=True)
            state.run_id = run.info.run_id
            tracking.write_run_file(
                Path(cfg.paths.run), run.info.run_id, run.info.experiment_id, cfg.tracking
            )
            tracking.log_dataset(manifest)
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
            tracking.log_environment(run.info.run_id, described, environment.installed_packages())

    state = fit(
        cfg,
        splits,
        checkpoint_dir=Path(cfg.paths.checkpoints),
        model_dir=Path(cfg.paths.model),
        log_with="mlflow",
        on_start=start_tracking,
    )
    if not PartialState().is_main_process:
        return
    # Accelerate's end_training ended the run FINISHED: no result before evaluate.
    tracking.set_run_state(Path(cfg.paths.run), "train", tracking.RUNNING, "running")
    write_train_log(state, Path(cfg.paths.train_log))
    summary = validation_summary(state)
    write_json(cfg.paths.validation, summary)
    tracking.log_validation_summary(state.run_id, summary)
    tracking.log_training_outputs(
        state.run_id,
        cfg,
        manifest=Path(cfg.paths.manifest),
        train_log=Path(cfg.paths.train_log),
        checkpoints=Path(cfg.paths.checkpoints),
        long_values=long_values,
        label_names=splits["train"].features["label"].names,
    )
    serving.log_pyfunc_model(
        state.run_id, Path(cfg.paths.model), cfg.tracking.registered_model_name
    )


def main() -> None:
    run_stage(train)


if __name__ == "__main__":
    main()
