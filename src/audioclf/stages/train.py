"""train: fine-tune ``model`` on the featurized data with Accelerate, tracked in MLflow.

The run it opens (:mod:`audioclf.tracking.train_run`) stays ``RUNNING`` until evaluate scores
the model and ends it (``FAILED``/``KILLED`` when train fails or is killed:
:mod:`audioclf.tracking.outcome`); torch's threads follow :mod:`audioclf.threads` (one share of
the cores per queued experiment running), its GPUs :mod:`audioclf.devices` (one share of the
visible GPUs per queued experiment, never one another stage holds).

python -m audioclf.stages.train train.epochs=2
accelerate launch -m audioclf.stages.train train.mixed_precision=bf16     # one GPU
ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 -m audioclf.stages.train
"""

from __future__ import annotations

import functools
from pathlib import Path

from accelerate import PartialState
from omegaconf import DictConfig

from audioclf.data.store import load_splits, write_json
from audioclf.devices import lease_devices
from audioclf.stages import run_stage
from audioclf.threads import thread_budget
from audioclf.tracking import artifacts, train_run
from audioclf.tracking.outcome import records_outcome
from audioclf.training.loop import fit
from audioclf.training.report import validation_summary, write_train_log


@records_outcome("train", opens_run=True)
def train(cfg: DictConfig) -> None:
    """Write paths.model, paths.checkpoints, paths.run, paths.train_log, paths.validation."""
    with lease_devices(cfg.launch.devices) as lease:  # held until the stage ends
        budget = thread_budget(cfg.train.get("num_threads"))
        threads = budget.apply()
        splits = load_splits(cfg.paths.features, "featurize", names=("train", "validation"))
        state = fit(
            cfg,
            splits,
            checkpoint_dir=Path(cfg.paths.checkpoints),
            model_dir=Path(cfg.paths.model),
            log_with="mlflow",
            on_start=functools.partial(
                train_run.start,
                cfg=cfg,
                threads=threads,
                threads_rule=budget.rule,
                device_tags=lease.tags("train"),
            ),
        )
        if not PartialState().is_main_process:
            return
        train_run.reopen(Path(cfg.paths.run))
        write_train_log(state, Path(cfg.paths.train_log))
        summary = validation_summary(state, Path(cfg.paths.manifest))
        write_json(cfg.paths.validation, summary)
        artifacts.log_validation_summary(state.run_id, summary)
        artifacts.log_training_outputs(
            state.run_id,
            cfg,
            manifest=Path(cfg.paths.manifest),
            train_log=Path(cfg.paths.train_log),
            checkpoints=Path(cfg.paths.checkpoints),
            label_names=splits["train"].features["label"].names,
        )


def main() -> None:
    run_stage(train)


if __name__ == "__main__":
    main()
