"""evaluate: score the exported model once on the whole test clips; log into the train run.

Each test clip is scored as ``audioclf predict`` scores a file (:func:`evaluation.score_split`):
whole, or in windows of ``evaluate.window_s`` every ``evaluate.hop_s`` when longer (null: the
model's training clip length and half of it). Scoring runs on the main process only (a GPU when
there is one); under ``accelerate launch`` the other processes have nothing to do. Once its
test metrics are logged, the run's model is logged as the MLflow pyfunc and registered
(:func:`audioclf.serving.log_pyfunc_model`; once per run, however often it is evaluated), its
version tagged and described and the aliases moved (:mod:`audioclf.registry`).
The GPU it scores on is leased as train's are (:mod:`audioclf.devices`), and the run logs
system metrics while it scores (:mod:`audioclf.tracking.system_metrics`).

python -m audioclf.stages.evaluate evaluate.window_s=2.0
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import torch
from accelerate import PartialState
from mlflow.entities import RunTag
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from audioclf import evaluation, registry, serving
from audioclf.data.columns import LABEL
from audioclf.data.store import load_splits, write_json
from audioclf.devices import Lease, lease_devices
from audioclf.dvc_stages import MODEL_STAGE, data_stages
from audioclf.stages import run_stage
from audioclf.threads import thread_budget
from audioclf.tracking import artifacts, store, system_metrics
from audioclf.tracking.outcome import records_outcome
from audioclf.windows import WindowedClassifier


@records_outcome("evaluate", opens_run=False)
def evaluate(cfg: DictConfig) -> None:
    """Write paths.metrics, paths.per_class, paths.predictions and paths.confusion_png."""
    with lease_devices(cfg.launch.devices) as lease:  # before PartialState looks for CUDA
        state = PartialState()
        if state.is_main_process:
            score_and_log(cfg, state.device, lease)


def score_and_log(cfg: DictConfig, device: torch.device, lease: Lease) -> None:
    """Score the test split on ``device``, write the reports and log them into the train run
    (which logs system metrics meanwhile), with the model as the served pyfunc."""
    run_id = artifacts.read_run_file(Path(cfg.paths.run))["run_id"]
    store.configure(cfg.tracking)
    with system_metrics.sampled(cfg.tracking), mlflow.start_run(run_id=run_id):
        test = load_splits(cfg.paths.resampled, "resample", names=("test",))["test"]
        classifier = WindowedClassifier(Path(cfg.paths.model), device=device)
        window = classifier.window(
            cfg.evaluate.window_s, cfg.evaluate.hop_s, names=("evaluate.window_s", "evaluate.hop_s")
        )
        probs = evaluation.score_split(
            classifier, test, int(cfg.audio.sampling_rate), window, cfg.train.eval_batch_size
        )
        references = np.asarray(test[LABEL], dtype=np.int64)
        names = test.features[LABEL].names
        if names != classifier.labels:
            raise ValueError(
                f"{cfg.paths.model} labels {classifier.labels} are not the test split's {names}"
            )
        predictions = probs.argmax(axis=1)
        summary, per_class = evaluation.compute_metrics(predictions, references, names)
        matrix = evaluation.confusion_matrix(predictions, references, len(names))
        write_json(cfg.paths.metrics, summary)
        write_json(cfg.paths.per_class, per_class)
        evaluation.write_predictions(
            Path(cfg.paths.predictions), test["path"], predictions, references, names
        )
        evaluation.write_confusion_png(Path(cfg.paths.confusion_png), matrix, names)

        client = MlflowClient()
        client.log_batch(
            run_id,
            metrics=[artifacts.metric(f"test/{k}", v) for k, v in summary.items()],
            tags=[
                RunTag(k, v)
                for k, v in {**evaluation.window_tags(window), **lease.tags("evaluate")}.items()
            ],
        )
        for artifact in (
            cfg.paths.metrics,
            cfg.paths.per_class,
            cfg.paths.predictions,
            cfg.paths.confusion_png,
        ):
            client.log_artifact(run_id, artifact, "evaluation")
        client.log_dict(
            run_id, evaluation.as_table(matrix, names), "evaluation/confusion_matrix.json"
        )
        # dvc.lock again, now with the train stage locked (its model, code and params hashes)
        stages = (*data_stages(Path.cwd()), MODEL_STAGE)
        artifacts.log_lineage(run_id, stages, tag_stages=(MODEL_STAGE,))
    if not artifacts.has_logged_model(run_id):
        name = cfg.tracking.registered_model_name
        info = serving.log_pyfunc_model(run_id, Path(cfg.paths.model), name)
        if name:
            registry.record_version(
                name, str(info.registered_model_version), run_id, cfg.train.best_metric
            )
    print(json.dumps(summary, indent=2))


def main() -> None:
    thread_budget().apply()  # in a queued experiment, a share of the cores, as train
    run_stage(evaluate)


if __name__ == "__main__":
    main()
