"""Training-time data: seeded crops and augmentations, padding without changing clips."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, Features, List, Value
from transformers import Wav2Vec2FeatureExtractor

from audioclf.config import ConfigError
from audioclf.training.data import (
    CroppedClips,
    LengthGroupedBatches,
    WaveAugment,
    clip_lengths,
    make_loader,
)

ALL_AUGMENTATIONS = WaveAugment(
    speed=(0.9, 1.1), shift_s=0.1, gain_db=(-6.0, 6.0), noise_snr_db=(10.0, 30.0)
)


def featurized(lengths: list[int]) -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset.from_dict(
        {
            "input_values": [rng.standard_normal(n).astype(np.float32) for n in lengths],
            "label": [i % 2 for i in range(len(lengths))],
        },
        features=Features(
            {"input_values": List(Value("float32")), "label": ClassLabel(names=["a", "b"])}
        ),
    )


def test_crops_depend_only_on_seed_epoch_and_index() -> None:
    split = featurized([3000, 1000, 5000])
    a = CroppedClips(split, "input_values", crop_samples=2000, seed=7)
    b = CroppedClips(split, "input_values", crop_samples=2000, seed=7)
    b.set_epoch(3)
    b.set_epoch(0)
    for i in range(3):
        np.testing.assert_array_equal(a[i]["input_values"], b[i]["input_values"])
    assert [len(a[i]["input_values"]) for i in range(3)] == [2000, 1000, 2000]
    a.set_epoch(1)
    assert not np.array_equal(a[2]["input_values"], b[2]["input_values"])
    source = split[2]["input_values"]
    window = b[2]["input_values"]
    starts = [
        s for s in range(len(source) - 2000 + 1) if np.array_equal(source[s : s + 2000], window)
    ]
    assert len(starts) == 1


def test_speed_perturbation_changes_length_within_range() -> None:
    split = featurized([8000])
    speed = WaveAugment(speed=(0.8, 1.25))
    clips = CroppedClips(split, "input_values", crop_samples=None, seed=1, augment=speed)
    lengths = set()
    for epoch in range(20):
        clips.set_epoch(epoch)
        lengths.add(len(clips[0]["input_values"]))
    assert len(lengths) > 10
    assert min(lengths) >= 8000 / 1.25 - 2 and max(lengths) <= 8000 / 0.8 + 2


@pytest.mark.parametrize(
    "augment",
    [
        WaveAugment(shift_s=0.2),
        WaveAugment(gain_db=(-12.0, 12.0)),
        WaveAugment(noise_snr_db=(5.0, 20.0)),
        ALL_AUGMENTATIONS,
    ],
)
def test_each_augmentation_is_seeded_by_seed_epoch_and_clip(augment: WaveAugment) -> None:
    split = featurized([4000, 4000])

    def view(seed: int, epoch: int, index: int) -> np.ndarray:
        clips = CroppedClips(split, "input_values", None, seed, augment=augment, rate=8000)
        clips.set_epoch(epoch)
        return clips[index]["input_values"]

    np.testing.assert_array_equal(view(3, 2, 1), view(3, 2, 1))
    original = np.asarray(split[1]["input_values"])
    changed = view(3, 2, 1)
    assert changed.shape != original.shape or not np.allclose(changed, original)
    for other in (view(4, 2, 1), view(3, 5, 1)):
        assert other.shape != changed.shape or not np.array_equal(other, changed)


def test_augmentations_change_what_they_say() -> None:
    rng = np.random.default_rng(0)
    clip = np.sin(np.arange(8000) / 5).astype(np.float32)
    delayed = WaveAugment(shift_s=0.25).apply(clip, rng, 8000)
    assert 8000 <= delayed.size <= 10000
    np.testing.assert_array_equal(delayed[delayed.size - 8000 :], clip)
    gained = WaveAugment(gain_db=(6.0, 6.0)).apply(clip, rng, 8000)
    np.testing.assert_allclose(gained, clip * 10 ** (6 / 20), rtol=1e-5)
    noisy = WaveAugment(noise_snr_db=(10.0, 10.0)).apply(clip, rng, 8000)
    snr = 10 * np.log10(np.mean(clip**2) / np.mean((noisy - clip) ** 2))
    assert snr == pytest.approx(10.0, abs=0.5)


def test_evaluation_loader_serves_clips_as_the_extractor_makes_them() -> None:
    """Augmentations belong to the training loader: evaluation sees stored clips through the
    extractor (featurize defers a waveform extractor to reading time), and nothing else."""
    split = featurized([800, 1200, 1000])
    extractor = Wav2Vec2FeatureExtractor(sampling_rate=8000, return_attention_mask=True)
    assert extractor.do_normalize
    loader = make_loader(split, extractor, batch_size=1, crop_samples=None, seed=0, shuffle=False)
    assert loader.dataset.augment is None
    for i, batch in enumerate(loader):
        stored = np.asarray(split[i]["input_values"], dtype=np.float32)
        expected = extractor(stored, sampling_rate=8000)["input_values"][0]
        assert abs(float(stored.mean())) > 1e-3 and abs(float(expected.mean())) < 1e-6
        np.testing.assert_array_equal(batch["input_values"][0].numpy(), expected)


def test_unknown_augmentation_key_names_it() -> None:
    with pytest.raises(ConfigError, match=r"train\.augment.*'reverb'"):
        WaveAugment.from_config({"speed": [0.9, 1.1], "reverb": 0.3})
    assert WaveAugment.from_config({"speed": [0.9, 1.1], "gain_db": None}) == WaveAugment(
        speed=(0.9, 1.1)
    )


def test_grouped_batches_cover_each_clip_once_and_depend_only_on_seed_and_epoch() -> None:
    lengths = np.random.default_rng(1).integers(8000, 16000, 300)
    a, b = LengthGroupedBatches(lengths, 16, seed=5), LengthGroupedBatches(lengths, 16, seed=5)
    epoch0 = list(a)
    assert len(epoch0) == len(a) == 19
    assert sorted(i for batch in epoch0 for i in batch) == list(range(300))
    b.set_epoch(4)
    b.set_epoch(0)
    assert list(b) == epoch0
    a.set_epoch(1)
    assert list(a) != epoch0


def test_grouped_batches_pad_far_less_than_random_batches() -> None:
    lengths = np.random.default_rng(2).integers(8000, 16000, 1792)

    def padding(batches: list[list[int]]) -> float:
        padded = sum(len(b) * lengths[b].max() for b in batches)
        return 1 - lengths.sum() / padded

    grouped = padding(list(LengthGroupedBatches(lengths, 16, seed=0)))
    shuffled = np.random.default_rng(0).permutation(1792)
    random = padding([shuffled[i : i + 16] for i in range(0, 1792, 16)])
    assert random > 0.2 and grouped < 0.02


def test_training_loader_batches_by_length_of_the_crop() -> None:
    lengths = [500, 3000, 900, 2600, 1000, 5000, 480, 2900]
    split = featurized(lengths)
    extractor = Wav2Vec2FeatureExtractor(sampling_rate=8000, return_attention_mask=False)
    loader = make_loader(split, extractor, batch_size=2, crop_samples=2000, seed=0, shuffle=True)
    np.testing.assert_array_equal(clip_lengths(split, "input_values"), lengths)
    widths = sorted(batch["input_values"].shape[1] for batch in loader)
    assert widths == [500, 1000, 2000, 2000]
    assert np.array_equal(clip_lengths(split.select([5, 0]), "input_values"), [5000, 500])
