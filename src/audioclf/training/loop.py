"""The training loop on Accelerate: the same code on CPU, one GPU or many processes.

Mixed precision and gradient accumulation come from ``train.*``; metrics are gathered across
processes with ``gather_for_metrics`` (no duplicated or dropped eval samples); logging, MLflow
and saving happen on the main process only.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object, set_seed
from datasets import Dataset, DatasetDict
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm
from transformers import get_scheduler

from audioclf import metrics
from audioclf.config import ConfigError
from audioclf.data.store import atomic_path, dataset_fingerprint, fingerprint
from audioclf.models.build import build_model
from audioclf.models.extractor import build_feature_extractor
from audioclf.models.saved import WINDOW_ATTRIBUTE
from audioclf.training import checkpoints
from audioclf.training.checkpoints import TrainState
from audioclf.training.data import WaveAugment, clip_lengths, make_loader
from audioclf.training.pruning import reporter_from_env

log = logging.getLogger(__name__)

OnStart = Callable[[Accelerator, TrainState], None]
EXPORTS = ("best", "last")


def make_accelerator(train: DictConfig, log_with: str | None = None) -> Accelerator:
    """An Accelerator configured from ``train.*`` (batches are seeded by the loaders)."""
    return Accelerator(
        mixed_precision=train.mixed_precision,
        gradient_accumulation_steps=train.gradient_accumulation_steps,
        log_with=log_with,
    )


@torch.no_grad()
def predict(
    accelerator: Accelerator, model: torch.nn.Module, loader: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels of every sample exactly once, gathered from all processes."""
    model.eval()
    logits, labels = [], []
    bar = tqdm(
        loader, desc="evaluating", leave=False, disable=not accelerator.is_local_main_process
    )
    for batch in bar:
        targets = batch.pop("labels")
        out = model(**batch).logits.float()
        out, targets = accelerator.gather_for_metrics((out, targets))
        logits.append(out.cpu().numpy())
        labels.append(targets.cpu().numpy())
    return np.concatenate(logits), np.concatenate(labels)


def eval_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Validation metrics during training (the evaluate stage computes the full set on test)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    predictions = logits.argmax(axis=1)
    f1 = metrics.load("precision_recall_f1").compute(
        predictions=predictions, references=labels, labels=list(range(logits.shape[1]))
    )
    return {
        "accuracy": float((predictions == labels).mean()),
        "loss": float(-log_probs[np.arange(len(labels)), labels].mean()),
        "f1_macro": float(f1["f1_macro"]),  # as the evaluate stage computes it on test
    }


def is_better(metric: str, scores: dict[str, float], best: dict[str, float] | None) -> bool:
    """Losses improve downwards, every other metric upwards; a tie goes to the lower loss.

    A small validation set saturates accuracy early: the tie-break keeps improving the choice.
    """
    if best is None:
        return True
    sign = -1.0 if "loss" in metric else 1.0
    if scores[metric] != best[metric]:
        return sign * scores[metric] > sign * best[metric]
    return metric != "loss" and scores["loss"] < best["loss"]


def evals_without_improvement(state: TrainState) -> int:
    """Evaluations since the best one (all of them when none was best yet)."""
    best = state.best_epoch
    return sum(1 for row in state.evals if best is None or row["epoch"] > best)


def fit(
    cfg: DictConfig,
    splits: DatasetDict,
    *,
    checkpoint_dir: Path,
    model_dir: Path,
    log_with: str | None = None,
    on_start: OnStart | None = None,
) -> TrainState:
    """Train ``cfg.model`` on ``splits['train']``, evaluating on ``splits['validation']``.

    The ``best`` checkpoint is chosen on validation (``train.best_metric``); with
    ``train.early_stopping_patience`` a run stops after that many evaluations without
    improvement. ``model_dir`` gets the best model (``train.export: best``) or the last one.
    Resumes from ``checkpoint_dir/last`` when it holds an unfinished run of the same config.
    ``on_start`` runs on every process once the Accelerator and state exist (it starts the
    trackers; the run id it records in ``state.run_id`` is kept for a resume). Writes a
    ``save_pretrained`` folder to ``model_dir`` on the main process; ends the trackers.
    """
    train = cfg.train
    if train.get("num_threads"):
        torch.set_num_threads(int(train.num_threads))
    if train.export not in EXPORTS:
        raise ConfigError(f"train.export must be one of {EXPORTS}, got {train.export!r}")
    accelerator = make_accelerator(train, log_with)
    set_seed(cfg.seed)
    label_names = splits["train"].features["label"].names
    extractor = build_feature_extractor(cfg.model)
    model = build_model(cfg.model, label_names)
    rate = int(cfg.audio.sampling_rate)
    crop = int(train.crop_s * rate) if train.crop_s else None
    train_loader = make_loader(
        splits["train"],
        extractor,
        batch_size=train.batch_size,
        crop_samples=crop,
        seed=cfg.seed,
        shuffle=True,
        augment=WaveAugment.from_config(train.get("augment")),
    )
    val_loader = make_loader(
        splits["validation"],
        extractor,
        batch_size=train.eval_batch_size,
        crop_samples=None,
        seed=cfg.seed,
        shuffle=False,
    )
    batches = train_loader.batch_sampler
    steps_per_epoch = math.ceil(len(train_loader) / train.gradient_accumulation_steps)
    total_steps = steps_per_epoch * train.epochs
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=train.learning_rate,
        weight_decay=train.weight_decay,
    )
    scheduler = get_scheduler(
        train.lr_scheduler,
        optimizer,
        num_warmup_steps=int(train.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
    model, optimizer, train_loader, val_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, val_loader, scheduler
    )

    config_hash = fingerprint(
        OmegaConf.to_container(cfg.model, resolve=True),
        OmegaConf.to_container(train, resolve=True),
        cfg.seed,
        {name: dataset_fingerprint(ds) for name, ds in splits.items()},
        accelerator.num_processes,
    )
    same_run(config_hash)
    state = checkpoints.resumable(checkpoint_dir, config_hash) if train.resume else None
    if not all(gather_object([state is not None])):
        state = None  # a machine without the checkpoint (paths.checkpoints not shared)
    if state is not None:
        accelerator.load_state(str(checkpoint_dir / "last"))
        log.info("resuming from %s after epoch %d", checkpoint_dir / "last", state.epoch)
    else:
        state = TrainState(config_hash=config_hash)
        if accelerator.is_main_process:
            checkpoints.clear(checkpoint_dir)
    if on_start is not None:
        on_start(accelerator, state)

    metric = train.best_metric
    patience = train.get("early_stopping_patience")
    reporter = reporter_from_env() if accelerator.is_main_process else None
    for epoch in range(state.epoch, train.epochs):
        if state.stopped_early:  # a resumed run that had already stopped
            break
        # Accelerate passes the epoch on to the crops and (one process) to the batches, which
        # it re-seeds with its own pass counter; wrapped for several processes, it cannot.
        train_loader.set_epoch(epoch)
        batches.set_epoch(epoch)
        model.train()
        window: list[torch.Tensor] = []
        bar = tqdm(
            train_loader,
            desc=f"epoch {epoch + 1}/{train.epochs}",
            disable=not accelerator.is_local_main_process,
            leave=False,
        )
        for batch in bar:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients and train.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), train.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            window.append(loss.detach())
            if not accelerator.sync_gradients:
                continue
            state.global_step += 1
            if state.global_step % train.log_every_n_steps == 0:
                mean_loss = accelerator.reduce(torch.stack(window).mean(), "mean").item()
                window.clear()
                row = {
                    "step": state.global_step,
                    "epoch": epoch + 1,
                    "loss": mean_loss,
                    "learning_rate": scheduler.get_last_lr()[0],
                }
                state.history.append(row)
                bar.set_postfix(loss=f"{mean_loss:.3f}")
                accelerator.log(
                    {"train/loss": mean_loss, "train/learning_rate": row["learning_rate"]},
                    step=state.global_step,
                )
        state.epoch = epoch + 1
        improved = False
        if state.epoch % train.eval_every_n_epochs == 0 or state.epoch == train.epochs:
            logits, labels = predict(accelerator, model, val_loader)
            scores = eval_metrics(logits, labels)
            evaluated = {"epoch": state.epoch, "step": state.global_step, "samples": len(labels)}
            state.evals.append({**evaluated, **scores})
            accelerator.log({f"val/{k}": v for k, v in scores.items()}, step=state.global_step)
            log.info("epoch %d: validation %s", state.epoch, scores)
            if is_better(metric, scores, state.best):
                state.best, state.best_epoch, improved = scores, state.epoch, True
            if patience is not None and evals_without_improvement(state) >= patience:
                state.stopped_early = True
                log.info(
                    "early stopping after epoch %d: val/%s has not improved for %d "
                    "evaluations (best %.4f at epoch %d)",
                    state.epoch,
                    metric,
                    patience,
                    state.best[metric],
                    state.best_epoch,
                )
            prune = reporter is not None and reporter.should_prune(state.epoch, scores)
            if any(gather_object([prune])):
                state.stopped_early = state.pruned = True
                log.info("the sweep's pruner stopped this trial after epoch %d", state.epoch)
        if improved:
            checkpoints.save(accelerator, checkpoint_dir, "best", state)
        last_epoch = state.epoch == train.epochs or state.stopped_early
        if state.epoch % train.checkpoint_every_n_epochs == 0 or last_epoch:
            checkpoints.save(accelerator, checkpoint_dir, "last", state)
        if state.stopped_early:
            break

    best_dir = checkpoint_dir / "best"
    # The main process alone exports, from the checkpoint on its machine (other machines need
    # no shared paths.checkpoints: theirs holds only their own RNG states).
    if accelerator.is_main_process:
        if train.export == "best" and state.best_epoch not in (None, state.epoch):
            accelerator.load_state(str(best_dir))
            log.info("exporting the best model (epoch %d) to %s", state.best_epoch, model_dir)
        checkpoints.mark_finished(checkpoint_dir)
        window_s = trained_clip_s(train, splits["train"], extractor)
        save_model(accelerator.unwrap_model(model), extractor, model_dir, window_s=window_s)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return state


def same_run(config_hash: str) -> None:
    """Every process, on every machine, trains the same config on the same data: a machine
    whose clone is at another commit or pulled other features fails here, not in a collective."""
    hashes = gather_object([config_hash])
    if len(set(hashes)) > 1:
        raise ConfigError(
            f"the processes differ in config or data (hashes {hashes}): every machine must run "
            "the same commit with the same `dvc pull`ed features"
        )


def trained_clip_s(train: DictConfig, split: Dataset, extractor: Any) -> float:
    """The clip length the model learned from, in seconds: ``train.crop_s``, or without a crop
    the longest training clip (featurize caps clips at ``audio.max_duration_s``; the data says
    how long they really are, and the train stage reads no param it does not declare)."""
    if train.crop_s:
        return float(train.crop_s)
    longest = int(clip_lengths(split, extractor.model_input_names[0]).max())
    return longest / int(extractor.sampling_rate)


def save_model(model: Any, extractor: Any, model_dir: Path, window_s: float | None = None) -> None:
    """A standard ``save_pretrained`` folder (safetensors, extractor config, label maps).

    ``window_s`` (the training clip length) goes into the extractor's config as the model's
    default scoring window (:data:`audioclf.models.saved.WINDOW_ATTRIBUTE`), so every copy of the
    folder (MLflow model, registered version) scores long recordings in windows of it.
    """
    if window_s is not None:
        setattr(extractor, WINDOW_ATTRIBUTE, float(window_s))
    with atomic_path(model_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        extractor.save_pretrained(tmp)
