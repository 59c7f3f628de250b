"""Training samples/s: the train stage's loop (``fit``) vs a bare PyTorch loop, side by side.

Both train the same freshly seeded model (``model`` config) on the same clips with the same
batch size, crop, optimizer (AdamW), LR schedule and gradient clipping. Ours is
:func:`audioclf.training.loop.fit` itself (Accelerate, MLflow logging every
``train.log_every_n_steps``, tqdm, the ``CroppedClips``/``PadCollator`` data path); the bare
loop is a plain ``DataLoader`` over the same Arrow rows with default collation and nothing
else. Rounds alternate ours, bare, ours, bare ...; each arm runs ``warmup`` steps, then
``steps`` timed steps; the figure is the median over rounds of ours/bare.

Every clip is looped to at least the crop length first, so that every crop is exactly
``train.crop_s`` long and each step costs the same in both loops whatever clips it draws
(otherwise a batch costs as much as its longest clip, and the two loops' shuffles differ).
Step ends in ``fit`` are read from a global optimizer step hook.
"""

from __future__ import annotations

import gc
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from omegaconf import DictConfig

from audioclf.data.audio import as_float32
from benchmarks.common import reset_accelerate, start_mlflow
from benchmarks.measure import median

TARGET = 0.95


def _looped(split: Dataset, name: str, length: int) -> Dataset:
    def loop(batch: dict[str, list[Any]]) -> dict[str, list[np.ndarray]]:
        out = []
        for values in batch[name]:
            values = as_float32(values)
            out.append(np.resize(values, max(length, values.shape[0])))
        return {name: out}

    return split.with_format("numpy").map(loop, batched=True, batch_size=64).with_format(None)


class _BareClips(torch.utils.data.Dataset):
    """Random fixed-length crops straight from the Arrow rows."""

    def __init__(self, split: Dataset, name: str, crop: int, seed: int):
        self.rows = split.with_format("numpy", columns=[name, "label"])
        self.name, self.crop = name, crop
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        row = self.rows[index]
        values = row[self.name]
        start = int(self.rng.integers(0, values.shape[0] - self.crop + 1))
        return torch.from_numpy(values[start : start + self.crop]), int(row["label"])


def _bare(cfg: DictConfig, train: Dataset, name: str, crop: int) -> list[float]:
    """Step-end times of a bare loop: forward, backward, clip, AdamW, scheduler."""
    from accelerate.utils import set_seed
    from transformers import get_scheduler

    from audioclf.models.build import build_model

    t = cfg.train
    set_seed(cfg.seed)
    model = build_model(cfg.model, train.features["label"].names)
    model.train()
    loader = torch.utils.data.DataLoader(
        _BareClips(train, name, crop, cfg.seed),
        batch_size=t.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=t.learning_rate, weight_decay=t.weight_decay
    )
    scheduler = get_scheduler(
        t.lr_scheduler,
        optimizer,
        num_warmup_steps=int(t.warmup_ratio * len(loader)),
        num_training_steps=len(loader),
    )
    stamps = []
    for values, labels in loader:
        loss = model(**{name: values}, labels=labels).loss
        loss.backward()
        if t.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        stamps.append(time.perf_counter())
    return stamps


def _ours(cfg: DictConfig, splits: DatasetDict, scratch: Path) -> list[float]:
    """Step-end times of ``fit`` (one epoch over the subset), from a global step hook."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    from audioclf.training.loop import fit

    stamps: list[float] = []
    handle = register_optimizer_step_post_hook(lambda *_: stamps.append(time.perf_counter()))
    reset_accelerate()
    try:
        fit(
            cfg,
            splits,
            checkpoint_dir=scratch / "checkpoints",
            model_dir=scratch / "model",
            log_with="mlflow",
            on_start=start_mlflow("bench-throughput"),
        )
    finally:
        handle.remove()
        shutil.rmtree(scratch, ignore_errors=True)
    return stamps


def _rate(stamps: list[float], warmup: int, steps: int, batch: int) -> float:
    if len(stamps) < warmup + steps:
        raise RuntimeError(f"expected {warmup + steps} optimizer steps, saw {len(stamps)}")
    return steps * batch / (stamps[warmup + steps - 1] - stamps[warmup - 1])


def train_throughput(
    cfg: DictConfig,
    splits: DatasetDict,
    scratch: Path,
    *,
    rounds: int,
    warmup: int,
    steps: int,
) -> dict[str, Any]:
    from omegaconf import OmegaConf

    from audioclf.models.extractor import build_feature_extractor

    t = cfg.train
    name = build_feature_extractor(cfg.model).model_input_names[0]
    crop = int(t.crop_s * cfg.audio.sampling_rate)
    batch = int(t.batch_size) * int(t.gradient_accumulation_steps)
    rows = (warmup + steps) * batch
    train = splits["train"].shuffle(seed=cfg.seed)
    if len(train) < rows:  # small data (--smoke): repeat it
        train = train.select([i % len(train) for i in range(rows)])
    train = _looped(train.select(range(rows)), name, crop)
    subset = DatasetDict({"train": train, "validation": splits["test"].select(range(1))})
    ours_cfg = OmegaConf.merge(cfg, {"train": {"epochs": 1}})
    per_round = []
    step_ms: dict[str, list[float]] = {"ours": [], "bare": []}
    for r in range(rounds):
        gc.collect()
        ours_stamps = _ours(ours_cfg, subset, scratch / f"round{r}")
        gc.collect()
        bare_stamps = _bare(cfg, train, name, crop)
        ours = _rate(ours_stamps, warmup, steps, batch)
        bare = _rate(bare_stamps, warmup, steps, batch)
        per_round.append({"ours": round(ours, 2), "bare": round(bare, 2), "ratio": ours / bare})
        for key, stamps in (("ours", ours_stamps), ("bare", bare_stamps)):
            window = np.diff(stamps[warmup - 1 : warmup + steps])
            step_ms[key].append(1000 * float(np.median(window)))
    ratio = median([p["ratio"] for p in per_round])
    for p in per_round:
        p["ratio"] = round(p["ratio"], 3)
    return {
        "ratio": round(ratio, 3),
        "target": TARGET,
        "met": ratio >= TARGET,
        "ours_samples_per_s": round(median([p["ours"] for p in per_round]), 2),
        "bare_samples_per_s": round(median([p["bare"] for p in per_round]), 2),
        "rounds": per_round,
        "n": rounds,
        "warmup_steps": warmup,
        "timed_steps": steps,
        "batch_size": batch,
        "crop_s": float(t.crop_s),
        "samples": "clips of train.crop_s seconds",
        "order": "ours, bare, ours, bare ... (ratio per adjacent pair, median)",
        "steps_per_s_ours": round(median([p["ours"] for p in per_round]) / batch, 3),
        # a check that shrugs off load spikes: the median single step of each loop
        "median_step_ms": {k: round(median(v), 1) for k, v in step_ms.items()},
        "ratio_of_median_steps": round(median(step_ms["bare"]) / median(step_ms["ours"]), 3),
    }


def threads_probe(cfg: DictConfig, counts: list[int], steps: int = 8) -> dict[str, Any]:
    """Median time of one training step of the ``model`` config at each torch thread count.

    A synthetic batch (``train.batch_size`` x ``train.crop_s``), forward + backward + AdamW,
    after 3 warm-up steps. On a machine whose cores are busy with other work, more threads
    than free cores can make every step many times slower (each op waits for all threads).
    """
    from accelerate.utils import set_seed

    from audioclf.models.build import build_model

    before = torch.get_num_threads()
    t = cfg.train
    shape = (int(t.batch_size), int(t.crop_s * cfg.audio.sampling_rate))
    out: dict[str, Any] = {"batch": list(shape), "steps": steps}
    try:
        for count in counts:
            torch.set_num_threads(count)
            set_seed(cfg.seed)
            model = build_model(cfg.model, [str(i) for i in range(14)])
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
            values, labels = torch.randn(*shape), torch.randint(0, 14, (shape[0],))
            times = []
            for _ in range(3 + steps):
                start = time.perf_counter()
                model(input_values=values, labels=labels).loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                times.append(time.perf_counter() - start)
            out[f"step_ms_threads_{count}"] = round(1000 * median(times[3:]), 1)
    finally:
        torch.set_num_threads(before)
    return out
