"""Training samples/s and peak GPU memory of a wav2vec2 classifier, one arm per precision.

Batches are seeded random audio: a step's cost depends on the batch's shape only. Needs torch,
transformers and accelerate, nothing else of the project: a stock PyTorch image runs it, also
as each process of ``accelerate launch`` (:mod:`.launch`).
"""

from __future__ import annotations

import gc
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from transformers import Wav2Vec2ForSequenceClassification

from benchmarks.common import reset_accelerate
from benchmarks.gpu.settings import (
    NUM_LABELS,
    PRECISION_NAMES,
    PRECISIONS,
    SEED,
    Settings,
    wav2vec2_config,
)

log = logging.getLogger("benchmarks.gpu")


def build_classifier(settings: Settings) -> Any:
    """A randomly initialised ``Wav2Vec2ForSequenceClassification`` (feature encoder frozen as
    the recipe freezes it)."""
    model = Wav2Vec2ForSequenceClassification(wav2vec2_config(settings))
    if settings.freeze_feature_encoder:
        model.freeze_feature_encoder()
    return model


def random_batches(settings: Settings, count: int, seed: int, pin: bool) -> list[tuple[Any, Any]]:
    """``count`` seeded batches of unit-variance audio and labels, on the CPU."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        values = torch.randn(settings.batch_size, settings.samples_per_clip, generator=generator)
        labels = torch.randint(0, NUM_LABELS, (settings.batch_size,), generator=generator)
        batches.append((values.pin_memory(), labels.pin_memory()) if pin else (values, labels))
    return batches


def measure_training(settings: Settings, precision: str) -> dict[str, Any]:
    """Train ``settings.warmup_steps`` then ``timed_steps`` steps under Accelerate.

    Run on every process of an ``accelerate launch`` (each its own batches); the figures are
    the main process's clock over the timed steps, the global batch and the largest peak
    memory of any process. Each batch is copied to the device in the step, as a loader's is.
    """
    reset_accelerate()
    accelerator = Accelerator(mixed_precision=precision, cpu=settings.cpu)
    device = accelerator.device
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    set_seed(SEED)
    model = build_classifier(settings)
    parameters = sum(p.numel() for p in model.parameters())
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    batches = random_batches(settings, 4, SEED + accelerator.process_index, pin=cuda)

    def step(index: int) -> Any:
        values, labels = batches[index % len(batches)]
        values = values.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        loss = model(input_values=values, labels=labels).loss
        accelerator.backward(loss)
        if settings.max_grad_norm:
            accelerator.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def settle() -> None:
        if cuda:
            torch.cuda.synchronize(device)
        accelerator.wait_for_everyone()

    losses = [step(i) for i in range(settings.warmup_steps)]
    settle()
    start = time.perf_counter()
    losses += [step(settings.warmup_steps + i) for i in range(settings.timed_steps)]
    settle()
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) if cuda else 0
    reserved = torch.cuda.max_memory_reserved(device) if cuda else 0
    peaks = accelerator.gather(torch.tensor([peak, reserved], device=device).view(1, 2))
    loss_values = [float(x) for x in torch.stack(losses).float().cpu()]
    global_batch = settings.batch_size * accelerator.num_processes
    result = {
        "precision": PRECISION_NAMES.get(precision, precision),
        "device": str(device),
        "processes": accelerator.num_processes,
        "batch_per_process": settings.batch_size,
        "global_batch": global_batch,
        "timed_steps": settings.timed_steps,
        "warmup_steps": settings.warmup_steps,
        "elapsed_s": round(elapsed, 4),
        "samples_per_s": round(settings.timed_steps * global_batch / elapsed, 2),
        "audio_s_per_s": round(settings.timed_steps * global_batch * settings.crop_s / elapsed, 1),
        "step_ms": round(1000 * elapsed / settings.timed_steps, 2),
        "peak_gpu_memory_mb": round(float(peaks[:, 0].max()) / 2**20, 1) if cuda else None,
        "peak_gpu_reserved_mb": round(float(peaks[:, 1].max()) / 2**20, 1) if cuda else None,
        "parameters": parameters,
        "trainable_parameters": sum(p.numel() for p in trainable),
        "loss_first": round(loss_values[0], 4),
        "loss_last": round(loss_values[-1], 4),
        "losses_finite": all(math.isfinite(x) for x in loss_values),
    }
    accelerator.free_memory()
    return result


def throughput(settings: Settings, precisions: Sequence[str] = PRECISIONS) -> dict[str, Any]:
    """One arm per precision in this process; bf16 is skipped where the device lacks it."""
    arms: dict[str, Any] = {}
    for precision in precisions:
        name = PRECISION_NAMES.get(precision, precision)
        cuda = not settings.cpu and torch.cuda.is_available()
        if precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
            arms[name] = {"measured": False, "reason": "this GPU does not support bf16"}
            continue
        log.info("gpu: training %s on %s ...", name, "cpu" if settings.cpu else "the device")
        try:
            arms[name] = measure_training(settings, precision)
        finally:  # Accelerate's state is process-wide: leave none of this arm's behind
            reset_accelerate()
            gc.collect()
            if cuda:
                torch.cuda.empty_cache()
    return arms
