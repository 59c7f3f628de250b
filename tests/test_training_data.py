"""Training-time data: seeded crops and speed perturbation, padding without changing clips."""

from __future__ import annotations

import numpy as np
from datasets import ClassLabel, Dataset, Features, List, Value

from audioclf.training.data import CroppedClips


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
    clips = CroppedClips(split, "input_values", crop_samples=None, seed=1, speed_range=(0.8, 1.25))
    lengths = set()
    for epoch in range(20):
        clips.set_epoch(epoch)
        lengths.add(len(clips[0]["input_values"]))
    assert len(lengths) > 10
    assert min(lengths) >= 8000 / 1.25 - 2 and max(lengths) <= 8000 / 0.8 + 2
