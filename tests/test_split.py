"""The train/test split: seeded, stratified, grouped by speaker when asked."""

from __future__ import annotations

from collections import Counter

import pytest
from datasets import ClassLabel, Dataset, Features, Value

from audioclf.config import ConfigError
from audioclf.data.sources import LABEL
from audioclf.data.split import split_dataset

NAMES = ["a", "b", "c", "d"]


def grouped_data(speakers: int = 10, per_pair: int = 2) -> Dataset:
    """Every speaker says every class ``per_pair`` times."""
    rows = [
        (f"spk{s}", c) for s in range(speakers) for c in range(len(NAMES)) for _ in range(per_pair)
    ]
    return Dataset.from_dict(
        {
            "id": list(range(len(rows))),
            "speaker": [s for s, _ in rows],
            LABEL: [c for _, c in rows],
        },
        features=Features(
            {"id": Value("int64"), "speaker": Value("string"), LABEL: ClassLabel(names=NAMES)}
        ),
    )


def unbalanced_data() -> Dataset:
    """40 items: class a 20, b 10, c 5, d 5."""
    labels = [0] * 20 + [1] * 10 + [2] * 5 + [3] * 5
    return Dataset.from_dict(
        {"id": list(range(len(labels))), LABEL: labels},
        features=Features({"id": Value("int64"), LABEL: ClassLabel(names=NAMES)}),
    )


def ids(splits) -> tuple[list[int], list[int]]:
    return list(splits["train"]["id"]), list(splits["test"]["id"])


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_grouped_split_keeps_each_speaker_on_one_side(seed: int) -> None:
    ds = grouped_data()
    splits = split_dataset(ds, test_size=0.2, seed=seed, group_by="speaker")
    train, test = set(splits["train"]["speaker"]), set(splits["test"]["speaker"])
    assert not train & test
    assert train | test == set(ds["speaker"])
    # 10 speakers, test share 0.2: two speakers are held out.
    assert len(test) == 2
    # No row lost or duplicated.
    train_ids, test_ids = ids(splits)
    assert sorted(train_ids + test_ids) == list(range(len(ds)))
    # Every class is on both sides.
    for part in splits.values():
        assert set(part[LABEL]) == set(range(len(NAMES)))
    assert splits["train"].features[LABEL].names == NAMES


def test_grouped_split_is_seeded() -> None:
    ds = grouped_data()
    first = ids(split_dataset(ds, test_size=0.2, seed=3, group_by="speaker"))
    again = ids(split_dataset(ds, test_size=0.2, seed=3, group_by="speaker"))
    assert first == again
    others = [ids(split_dataset(ds, test_size=0.2, seed=s, group_by="speaker")) for s in (4, 5)]
    assert any(other != first for other in others)


def test_ungrouped_split_is_stratified() -> None:
    ds = unbalanced_data()
    splits = split_dataset(ds, test_size=0.2, seed=0)
    assert Counter(splits["test"][LABEL]) == {0: 4, 1: 2, 2: 1, 3: 1}
    assert Counter(splits["train"][LABEL]) == {0: 16, 1: 8, 2: 4, 3: 4}
    train_ids, test_ids = ids(splits)
    assert sorted(train_ids + test_ids) == list(range(len(ds)))


def test_ungrouped_split_is_seeded() -> None:
    ds = unbalanced_data()
    first = ids(split_dataset(ds, test_size=0.25, seed=11))
    assert ids(split_dataset(ds, test_size=0.25, seed=11)) == first
    assert ids(split_dataset(ds, test_size=0.25, seed=12)) != first


@pytest.mark.parametrize("test_size", [0, 1, 1.5, -0.2])
def test_bad_test_size_names_the_key(test_size: float) -> None:
    with pytest.raises(ConfigError, match=r"data\.split\.test_size") as info:
        split_dataset(grouped_data(), test_size=test_size, seed=0, group_by="speaker")
    assert str(test_size) in str(info.value)


def test_unknown_group_column_names_the_key_and_column() -> None:
    with pytest.raises(ConfigError, match=r"data\.split\.group_by.*'speeker'"):
        split_dataset(grouped_data(), test_size=0.2, seed=0, group_by="speeker")


def test_too_few_groups_for_the_test_share_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"data\.split\.group_by='speaker': 3 groups"):
        split_dataset(grouped_data(speakers=3), test_size=0.2, seed=0, group_by="speaker")
