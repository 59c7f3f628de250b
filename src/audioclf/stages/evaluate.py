"""evaluate: score the exported model once on the whole test clips; log into the train run.

python -m audioclf.stages.evaluate train.eval_batch_size=1
"""

from __future__ import annotations

import json
from pathlib import Path

from accelerate import Accelerator
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

from audioclf import evaluation, tracking
from audioclf.data.store import load_splits, write_json
from audioclf.dvc_stages import MODEL_STAGE, data_stages
from audioclf.stages import run_stage
from audioclf.training.data import make_loader
from audioclf.training.loop import predict


def evaluate(cfg: DictConfig) -> None:
    """Write paths.metrics, paths.per_class, paths.predictions and paths.confusion_png."""
    test = load_splits(cfg.paths.features, "featurize", names=("test",))["test"]
    model_dir = Path(cfg.paths.model)
    extractor = AutoFeatureExtractor.from_pretrained(model_dir)
    model = AutoModelForAudioClassification.from_pretrained(model_dir, use_safetensors=True)
    loader = make_loader(
        test,
        extractor,
        batch_size=cfg.train.eval_batch_size,
        crop_samples=None,
        shuffle=False,
    )
    accelerator = Accelerator()
    model, loader = accelerator.prepare(model, loader)
    logits, references = predict(accelerator, model, loader)
    if not accelerator.is_main_process:
        return
    names = test.features["label"].names
    predictions = logits.argmax(axis=1)
    summary, per_class = evaluation.compute_metrics(predictions, references, names)
    matrix = evaluation.confusion_matrix(predictions, references, len(names))
    write_json(cfg.paths.metrics, summary)
    write_json(cfg.paths.per_class, per_class)
    evaluation.write_predictions(
        Path(cfg.paths.predictions), test["path"], predictions, references, names
    )
    evaluation.write_confusion_png(Path(cfg.paths.confusion_png), matrix, names)

    run = tracking.read_run_file(Path(cfg.paths.run))
    tracking.configure(cfg.tracking)
    client = MlflowClient()
    client.log_batch(
        run["run_id"],
        metrics=[tracking.metric(f"test/{k}", v) for k, v in summary.items()],
    )
    for artifact in (
        cfg.paths.metrics,
        cfg.paths.per_class,
        cfg.paths.predictions,
        cfg.paths.confusion_png,
    ):
        client.log_artifact(run["run_id"], artifact, "evaluation")
    client.log_dict(
        run["run_id"], evaluation.as_table(matrix, names), "evaluation/confusion_matrix.json"
    )
    # dvc.lock again, now with the train stage locked (its model, code and params hashes)
    stages = (*data_stages(Path.cwd()), MODEL_STAGE)
    tracking.log_lineage(run["run_id"], stages, tag_stages=(MODEL_STAGE,))
    print(json.dumps(summary, indent=2))


def main() -> None:
    run_stage(evaluate)


if __name__ == "__main__":
    main()
