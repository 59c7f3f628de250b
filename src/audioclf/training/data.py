"""Feeding featurized clips to the model: random crops for training, whole clips for eval.

Training batches hold clips of similar length (:class:`LengthGroupedBatches`): a model whose
extractor takes no attention mask (wav2vec2-base, our tiny one) normalizes and mean-pools
over the zero padding, so a model trained on heavily padded batches scores an unpadded clip,
which is what ``transformers.pipeline`` and ``audioclf predict`` feed it, differently.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pyarrow.compute as pc
import soxr
import torch
from datasets import Dataset
from torch.utils.data import DataLoader

from audioclf.config import ConfigError
from audioclf.data.features import ModelInput


@dataclass(frozen=True)
class WaveAugment:
    """Waveform augmentations for training clips (``train.augment``); None switches one off.

    ``speed=(lo, hi)`` plays a clip at a random speed (resampling: pitch and tempo move
    together, as with another voice); ``shift_s`` delays its onset by up to that many seconds;
    ``gain_db=(lo, hi)`` scales it; ``noise_snr_db=(lo, hi)`` adds white noise at a random
    signal-to-noise ratio. Real recordings differ in all four; synthetic or few-speaker data
    does not show a model that variety.
    """

    speed: tuple[float, float] | None = None
    shift_s: float | None = None
    gain_db: tuple[float, float] | None = None
    noise_snr_db: tuple[float, float] | None = None

    @classmethod
    def from_config(cls, augment: Mapping[str, Any] | None) -> WaveAugment:
        augment = dict(augment or {})
        unknown = sorted(set(augment) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"train.augment has unknown key(s) {unknown}")
        pairs = ("speed", "gain_db", "noise_snr_db")
        return cls(
            **{k: tuple(v) if k in pairs and v is not None else v for k, v in augment.items()}
        )

    def apply(self, values: np.ndarray, rng: np.random.Generator, rate: int) -> np.ndarray:
        if self.speed:
            speed = float(rng.uniform(*self.speed))
            values = soxr.resample(values, speed, 1.0, quality="LQ").astype(np.float32)
        if self.shift_s:
            delay = int(rng.uniform(0, self.shift_s) * rate)
            values = np.concatenate([np.zeros(delay, dtype=np.float32), values])
        if self.gain_db:
            values = values * np.float32(10 ** (rng.uniform(*self.gain_db) / 20))
        if self.noise_snr_db:
            power = float(np.mean(np.square(values))) if values.size else 0.0
            snr = float(rng.uniform(*self.noise_snr_db))
            noise = rng.standard_normal(values.shape[0]) * np.sqrt(power / 10 ** (snr / 10))
            values = values + noise.astype(np.float32)
        return values.astype(np.float32, copy=False)


class CroppedClips(torch.utils.data.Dataset):
    """Clips of a featurized split as the model takes them (``model_input``, e.g.
    :class:`audioclf.data.features.ModelInput`), augmented (training only), then cropped.

    Clips longer than ``crop_samples`` are cropped at a random start. Augmentations and crops
    depend only on ``(seed, epoch, i)``, so a resumed run sees exactly what an uninterrupted
    run would have seen; without ``augment`` and ``crop_samples`` a clip is served as stored.
    """

    def __init__(
        self,
        split: Dataset,
        input_name: str,
        crop_samples: int | None,
        seed: int,
        augment: WaveAugment | None = None,
        rate: int = 16000,
        model_input: Callable[[np.ndarray], np.ndarray] | None = None,
    ):
        self.model_input = model_input
        self.split = split.with_format("numpy", columns=[input_name, "label"])
        self.input_name = input_name
        self.crop_samples = crop_samples
        self.seed = seed
        self.augment = augment
        self.rate = rate
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.split[index]
        values = row[self.input_name]
        if self.model_input is not None:
            values = self.model_input(values)
        rng = np.random.default_rng((self.seed, self.epoch, index))
        if self.augment:
            values = self.augment.apply(values, rng, self.rate)
        if self.crop_samples and values.shape[0] > self.crop_samples:
            start = int(rng.integers(0, values.shape[0] - self.crop_samples + 1))
            values = values[start : start + self.crop_samples]
        return {self.input_name: values, "label": int(row["label"])}


class LengthGroupedBatches(torch.utils.data.Sampler[list[int]]):
    """Shuffled batches of clips of similar length, the same for the same ``(seed, epoch)``.

    Each epoch shuffles the clips, sorts them by length within windows of ``window`` batches,
    cuts the windows into batches and shuffles the batches: batches stay random in content
    and order while a batch pads its clips by a fraction of the spread of one window.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, window: int = 16):
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.window = window
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng((self.seed, self.epoch))
        order = rng.permutation(len(self.lengths))
        span = self.batch_size * self.window
        batches = []
        for start in range(0, len(order), span):
            chunk = order[start : start + span]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches += [
                chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)
            ]
        for index in rng.permutation(len(batches)):
            yield batches[index].tolist()


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
    shuffle: bool,
    seed: int = 0,
    augment: WaveAugment | None = None,
) -> DataLoader:
    """A DataLoader over a featurized split: length-grouped shuffled batches, or in order.

    The shuffled batches are seeded by ``(seed, epoch)``; call ``batch_sampler.set_epoch``.
    ``augment`` is for training loaders only: evaluation sees clips as stored.
    """
    input_name = extractor.model_input_names[0]
    rate = int(extractor.sampling_rate)
    clips = CroppedClips(
        split, input_name, crop_samples, seed, augment, rate, model_input=ModelInput(extractor)
    )
    collate = PadCollator(extractor)
    if not shuffle:
        return DataLoader(clips, batch_size=batch_size, collate_fn=collate)
    lengths = clip_lengths(split, input_name)
    if crop_samples:
        lengths = np.minimum(lengths, crop_samples)
    batches = LengthGroupedBatches(lengths, batch_size, seed)
    return DataLoader(clips, batch_sampler=batches, collate_fn=collate)


def clip_lengths(split: Dataset, input_name: str) -> np.ndarray:
    """Samples per clip, from the Arrow list lengths (no audio is decoded to Python)."""
    column = split.with_format("arrow", columns=[input_name])[:][input_name]
    return pc.list_value_length(column).to_numpy()
