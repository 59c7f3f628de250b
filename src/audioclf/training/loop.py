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
from accelerate.utils import set_seed
from datasets import DatasetDict
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm
from transformers import get_scheduler

from audioclf.data.store import atomic_path, fingerprint
from audioclf.models import build_feature_extractor, build_model
from audioclf.training import checkpoints
from audioclf.training.checkpoints import TrainState
from audioclf.training.data import make_loader

log = logging.getLogger(__name__)

OnStart = Callable[[Accelerator, TrainState], None]


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
    """Quick monitoring metrics during training (the evaluate stage computes the full set)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return {
        "accuracy": float((logits.argmax(axis=1) == labels).mean()),
        "loss": float(-log_probs[np.arange(len(labels)), labels].mean()),
    }


def is_better(metric: str, value: float, best: float | None) -> bool:
    """Losses improve downwards, every other metric upwards."""
    if best is None:
        return True
    return value < best if "loss" in metric else value > best


def fit(
    cfg: DictConfig,
    splits: DatasetDict,
    *,
    checkpoint_dir: Path,
    model_dir: Path,
    log_with: str | None = None,
    on_start: OnStart | None = None,
) -> TrainState:
    """Train ``cfg.model`` on ``splits['train']``, evaluating on ``splits['test']``.

    Resumes from ``checkpoint_dir/last`` when it holds an unfinished run of the same config.
    ``on_start`` runs on every process once the Accelerator and state exist (it starts the
    trackers; the run id it records in ``state.run_id`` is kept for a resume). Writes a
    ``save_pretrained`` folder to ``model_dir`` on the main process; ends the trackers.
    """
    train = cfg.train
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
        speed_range=train.get("speed_perturb"),
    )
    test_loader = make_loader(
        splits["test"],
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
    model, optimizer, train_loader, test_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, test_loader, scheduler
    )

    config_hash = fingerprint(
        OmegaConf.to_container(cfg.model, resolve=True),
        OmegaConf.to_container(train, resolve=True),
        cfg.seed,
        {name: ds._fingerprint for name, ds in splits.items()},
        accelerator.num_processes,
    )
    state = checkpoints.resumable(checkpoint_dir, config_hash) if train.resume else None
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
    for epoch in range(state.epoch, train.epochs):
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
        last_epoch = state.epoch == train.epochs
        improved = False
        if state.epoch % train.eval_every_n_epochs == 0 or last_epoch:
            scores = eval_metrics(*predict(accelerator, model, test_loader))
            state.evals.append({"epoch": state.epoch, "step": state.global_step, **scores})
            accelerator.log({f"eval/{k}": v for k, v in scores.items()}, step=state.global_step)
            log.info("epoch %d: %s", state.epoch, scores)
            if is_better(metric, scores[metric], state.best_metric):
                state.best_metric, state.best_epoch, improved = scores[metric], state.epoch, True
        if improved:
            checkpoints.save(accelerator, checkpoint_dir, "best", state)
        if state.epoch % train.checkpoint_every_n_epochs == 0 or last_epoch:
            checkpoints.save(accelerator, checkpoint_dir, "last", state)

    if accelerator.is_main_process:
        checkpoints.mark_finished(checkpoint_dir)
        save_model(accelerator.unwrap_model(model), extractor, model_dir)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return state


def save_model(model: Any, extractor: Any, model_dir: Path) -> None:
    """A standard ``save_pretrained`` folder (safetensors, extractor config, label maps)."""
    with atomic_path(model_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        extractor.save_pretrained(tmp)
