"""Time to reach the target test accuracy: our recipe vs the HF audio-classification task guide.

Ours: :func:`audioclf.training.loop.fit` with ``train`` as configured (random crops of
``train.crop_s``, evaluation every ``train.eval_every_n_epochs`` on the whole test clips, batch
``train.eval_batch_size``), MLflow logging into a throwaway store.

The public recipe: ``transformers.Trainer`` as in the Hugging Face task guide "Audio
classification" (clips truncated to 1 s by the feature extractor, batch 32 x gradient
accumulation 4, learning rate 3e-5, 10 epochs, 10% warmup, evaluation every epoch), on the same
resampled audio, the same speaker-held-out test split (whole clips, batch 1) and the same
model size (the ``model`` config, built from scratch like ours).

Times are training seconds: wall time since the start of training minus the time spent in
evaluations (the recipes evaluate at different intervals). Both are also given with evaluations.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset, DatasetDict
from omegaconf import DictConfig

from benchmarks.common import reset_accelerate, start_mlflow

HF_RECIPE = {
    "truncate_s": 1.0,
    "per_device_train_batch_size": 32,
    "gradient_accumulation_steps": 4,
    "learning_rate": 3e-5,
    "num_train_epochs": 10,
    "warmup_ratio": 0.1,
}


EVALUATION = "whole test clips, batch 1"


class _OutOfTime(Exception):
    pass


class _Clock:
    """Evaluation records and training time (wall time minus time spent evaluating)."""

    def __init__(self, budget_s: float | None):
        self.budget_s = budget_s
        self.start = time.perf_counter()
        self.eval_s = 0.0
        self.evals: list[dict[str, Any]] = []

    def now(self) -> float:
        return time.perf_counter() - self.start

    def over_budget(self) -> bool:
        return self.budget_s is not None and self.now() > self.budget_s

    def record(self, epoch: float, began: float, ended: float, accuracy: float) -> None:
        train_s = began - self.eval_s
        self.eval_s += ended - began
        self.evals.append(
            {
                "epoch": round(float(epoch), 2),
                "train_s": round(train_s, 1),
                "wall_s": round(ended, 1),
                "accuracy": round(float(accuracy), 4),
            }
        )

    def summary(
        self, target: float | None, epochs_done: float, epochs_planned: float, **extra: Any
    ) -> dict[str, Any]:
        hit = next((e for e in self.evals if target and e["accuracy"] >= target), None)
        train_s = self.now() - self.eval_s
        return {
            "time_to_target_s": hit["train_s"] if hit else None,
            "wall_to_target_s": hit["wall_s"] if hit else None,
            "final_accuracy": self.evals[-1]["accuracy"] if self.evals else None,
            "best_accuracy": max((e["accuracy"] for e in self.evals), default=None),
            "train_s": round(train_s, 1),
            "eval_s": round(self.eval_s, 1),
            "epochs_done": round(epochs_done, 2),
            "epochs_planned": epochs_planned,
            # what the whole recipe would take here, from the time per epoch so far
            "projected_train_s": round(train_s / epochs_done * epochs_planned, 0)
            if epochs_done
            else None,
            **extra,
            "evals": self.evals,
        }


def _accuracy(model: Any, split: Dataset, name: str) -> float:
    """Whole clips, one at a time (as ``fit`` evaluates)."""
    import torch

    model.eval()
    rows = split.with_format("numpy", columns=[name, "label"])
    hits = 0
    with torch.no_grad():
        for row in rows:
            logits = model(**{name: torch.from_numpy(row[name])[None]}).logits
            hits += int(logits.argmax(-1).item() == int(row["label"]))
    return hits / len(rows)


def ours(
    cfg: DictConfig, splits: DatasetDict, scratch: Path, *, target: float | None, budget_s: float
) -> dict[str, Any]:
    """Our recipe through ``fit``, its evaluations timed through ``loop.predict``."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    from audioclf.training import loop

    seen: dict[str, Any] = {}
    original = loop.predict

    def timed_predict(accelerator, model, loader):
        began = clock.now()
        logits, labels = original(accelerator, model, loader)
        accuracy = float((logits.argmax(axis=1) == labels).mean())
        clock.record(seen["state"].epoch, began, clock.now(), accuracy)
        return logits, labels

    def on_start(accelerator, state) -> None:
        seen["accelerator"], seen["state"] = accelerator, state
        start_mlflow("bench-time-to-accuracy")(accelerator, state)

    def check_budget(*_: Any) -> None:
        if clock.over_budget():
            raise _OutOfTime

    stopped = False
    reset_accelerate()
    loop.predict = timed_predict
    handle = register_optimizer_step_post_hook(check_budget)
    clock = _Clock(budget_s)
    try:
        loop.fit(
            cfg,
            # timed against test accuracy: here the loop's evaluations run on the test split
            DatasetDict(train=splits["train"], validation=splits["test"]),
            checkpoint_dir=scratch / "checkpoints",
            model_dir=scratch / "model",
            log_with="mlflow",
            on_start=on_start,
        )
    except _OutOfTime:
        stopped = True
        began = clock.now()
        model = seen["accelerator"].unwrap_model(seen["accelerator"]._models[0])
        name = next(iter(n for n in splits["test"].column_names if n.startswith("input_")))
        accuracy = _accuracy(model, splits["test"], name)
        clock.record(seen["state"].epoch, began, clock.now(), accuracy)
    finally:
        loop.predict = original
        handle.remove()
        shutil.rmtree(scratch, ignore_errors=True)
    t = cfg.train
    steps_per_epoch = math.ceil(len(splits["train"]) / t.batch_size / t.gradient_accumulation_steps)
    return clock.summary(
        target,
        recipe=(
            f"audioclf fit: train={t.epochs} epochs, batch {t.batch_size}, lr {t.learning_rate:g} "
            f"{t.lr_scheduler}, crops {t.crop_s:g} s, eval every {t.eval_every_n_epochs} epochs"
        ),
        epochs_done=seen["state"].global_step / steps_per_epoch if "state" in seen else 0.0,
        epochs_planned=int(t.epochs),
        evaluation=EVALUATION,
        stopped_at_budget=stopped,
        budget_s=budget_s,
    )


def hf_trainer(
    cfg: DictConfig,
    resampled: DatasetDict,
    features: DatasetDict,
    scratch: Path,
    *,
    target: float | None,
    budget_s: float,
    epochs: float | None = None,
) -> dict[str, Any]:
    """The task guide's recipe with ``transformers.Trainer`` (CPU, no saving, no reporting)."""
    from accelerate.utils import set_seed
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from audioclf import metrics
    from audioclf.data.columns import LABEL
    from audioclf.data.features import ModelInput
    from audioclf.models.build import build_model
    from audioclf.models.extractor import build_feature_extractor

    extractor = build_feature_extractor(cfg.model)
    name = extractor.model_input_names[0]
    rate = int(cfg.audio.sampling_rate)
    max_length = int(HF_RECIPE["truncate_s"] * rate)

    def preprocess(batch: dict[str, Any]) -> dict[str, Any]:  # the guide's preprocess_function
        arrays = [np.asarray(a, dtype=np.float32) for a in batch["array"]]
        out = extractor(arrays, sampling_rate=rate, max_length=max_length, truncation=True)
        return {name: list(out[name]), "label": batch[LABEL]}

    source = resampled["train"]
    train = source.map(preprocess, batched=True, batch_size=64, remove_columns=source.column_names)
    model_input = ModelInput(extractor)
    test = (
        features["test"]
        .select_columns([name, "label"])
        .with_format("numpy", [name], True)
        .map(lambda row: {name: model_input(row[name])})
        .with_format(None)
    )
    accuracy = metrics.load("accuracy")
    marks: dict[str, float] = {}

    def compute_metrics(pred: Any) -> dict[str, float]:
        predictions = np.argmax(pred.predictions, axis=1)
        return accuracy.compute(predictions=predictions, references=pred.label_ids)

    class Clock(TrainerCallback):
        def on_epoch_end(self, args, state, control, **kwargs):
            marks["eval_began"] = clock.now()

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            began = marks.pop("eval_began", clock.now())
            clock.record(state.epoch, began, clock.now(), (metrics or {})["eval_accuracy"])

        def on_step_end(self, args, state, control, **kwargs):
            if clock.over_budget():
                marks["stopped"] = 1.0
                control.should_training_stop = True

    num_epochs = epochs or HF_RECIPE["num_train_epochs"]
    args = TrainingArguments(
        output_dir=str(scratch / "trainer"),
        eval_strategy="epoch",
        save_strategy="no",
        learning_rate=HF_RECIPE["learning_rate"],
        per_device_train_batch_size=HF_RECIPE["per_device_train_batch_size"],
        gradient_accumulation_steps=HF_RECIPE["gradient_accumulation_steps"],
        per_device_eval_batch_size=1,
        num_train_epochs=num_epochs,
        warmup_steps=HF_RECIPE["warmup_ratio"],  # a float below 1 is a ratio
        logging_steps=10,
        report_to=[],
        use_cpu=True,
        seed=int(cfg.seed),
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    reset_accelerate()
    set_seed(int(cfg.seed))
    model = build_model(cfg.model, features["train"].features["label"].names)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=test,
        processing_class=extractor,
        compute_metrics=compute_metrics,
        callbacks=[Clock()],
    )
    clock = _Clock(budget_s)
    try:
        trainer.train()
        if not clock.evals:
            began = clock.now()
            result = trainer.evaluate()
            clock.record(num_epochs, began, clock.now(), result["eval_accuracy"])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    steps_per_epoch = math.ceil(
        len(train)
        / HF_RECIPE["per_device_train_batch_size"]
        / HF_RECIPE["gradient_accumulation_steps"]
    )
    return clock.summary(
        target,
        recipe=(
            "HF Trainer (task guide): 1 s clips, batch 32 x accumulation 4, lr 3e-5 linear, "
            f"warmup 0.1, {num_epochs:g} epochs, eval every epoch"
        ),
        epochs_done=float(trainer.state.epoch or 0),
        epochs_planned=num_epochs,
        evaluation=EVALUATION,
        optimizer_steps=trainer.state.global_step,
        steps_per_epoch=steps_per_epoch,
        stopped_at_budget="stopped" in marks,
        budget_s=budget_s,
    )
