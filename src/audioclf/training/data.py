"""Feeding featurized clips to the model: random crops for training, whole clips for eval."""

from __future__ import annotations

from typing import Any

import numpy as np
import soxr
import torch
from datasets import Dataset
from torch.utils.data import DataLoader


class CroppedClips(torch.utils.data.Dataset):
    """Clips of a featurized split, randomly sped up or slowed down, then cropped.

    ``speed_range=(lo, hi)`` plays each clip at a random speed in that range (resampling:
    pitch and tempo move together, as with another voice); clips longer than
    ``crop_samples`` are cropped at a random start. Both depend only on ``(seed, epoch, i)``,
    so a resumed run sees exactly what an uninterrupted run would have seen.
    """

    def __init__(
        self,
        split: Dataset,
        input_name: str,
        crop_samples: int | None,
        seed: int,
        speed_range: tuple[float, float] | None = None,
        min_samples: int | None = None,
    ):
        self.min_samples = min_samples
        self.split = split.with_format("numpy", columns=[input_name, "label"])
        self.input_name = input_name
        self.crop_samples = crop_samples
        self.seed = seed
        self.speed_range = tuple(speed_range) if speed_range else None
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.split[index]
        values = row[self.input_name]
        rng = np.random.default_rng((self.seed, self.epoch, index))
        if self.speed_range:
            speed = float(rng.uniform(*self.speed_range))
            values = soxr.resample(values, speed, 1.0, quality="LQ").astype(np.float32)
        if self.crop_samples and values.shape[0] > self.crop_samples:
            start = int(rng.integers(0, values.shape[0] - self.crop_samples + 1))
            values = values[start : start + self.crop_samples]
        if self.min_samples and values.shape[0] < self.min_samples:
            values = np.pad(values, (0, self.min_samples - values.shape[0]))
        return {self.input_name: values, "label": int(row["label"])}


class PadCollator:
    """Pad a batch with the feature extractor's own ``pad`` (attention mask only if it uses one)."""

    def __init__(self, extractor: Any):
        self.extractor = extractor
        self.input_name = extractor.model_input_names[0]

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.extractor.pad(
            {self.input_name: [item[self.input_name] for item in items]},
            padding=True,
            return_tensors="pt",
        )
        batch = dict(batch)
        batch["labels"] = torch.tensor([item["label"] for item in items], dtype=torch.long)
        return batch


def make_loader(
    split: Dataset,
    extractor: Any,
    *,
    batch_size: int,
    crop_samples: int | None,
    seed: int,
    shuffle: bool,
    speed_range: tuple[float, float] | None = None,
    min_samples: int | None = None,
) -> DataLoader:
    """A DataLoader over a featurized split; shuffling is seeded per epoch by Accelerate.

    ``min_samples`` zero-pads shorter clips at the end: a model trained on padded crops
    mean-pools over padding, so whole test clips are scored the same way.
    """
    clips = CroppedClips(
        split, extractor.model_input_names[0], crop_samples, seed, speed_range, min_samples
    )
    return DataLoader(
        clips,
        batch_size=batch_size,
        shuffle=shuffle,
        collate_fn=PadCollator(extractor),
        generator=torch.Generator().manual_seed(seed) if shuffle else None,
    )
