"""Train, validation and test: seeded, stratified, grouped by speaker when asked, or as given."""

from __future__ import annotations

import re
from collections import Counter
from itertools import chain, combinations

import pytest
from datasets import ClassLabel, Dataset, Features, Value
from omegaconf import OmegaConf

from audioclf.config import ConfigError
from audioclf.data.columns import LABEL
from audioclf.data.manifest import build_manifest
from audioclf.data.split import SPLITS, describe_validation, split_dataset

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


def unbalanced_data(scale: int = 1) -> Dataset:
    """40 items per ``scale``: class a 20, b 10, c 5, d 5."""
    labels = [0] * 20 * scale + [1] * 10 * scale + [2] * 5 * scale + [3] * 5 * scale
    return Dataset.from_dict(
        {"id": list(range(len(labels))), LABEL: labels},
        features=Features({"id": Value("int64"), LABEL: ClassLabel(names=NAMES)}),
    )


def split(ds: Dataset, **kwargs):
    return split_dataset(ds, **{"validation_size": 0.1, **kwargs})


def ids(splits) -> tuple[list[int], ...]:
    return tuple(list(splits[name]["id"]) for name in SPLITS)


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_grouped_split_keeps_each_speaker_in_one_split(seed: int) -> None:
    ds = grouped_data(speakers=20)
    splits = split(ds, test_size=0.2, seed=seed, group_by="speaker")
    assert list(splits) == list(SPLITS)
    speakers = {name: set(part["speaker"]) for name, part in splits.items()}
    for a, b in combinations(SPLITS, 2):
        assert not speakers[a] & speakers[b], (a, b)
    assert set().union(*speakers.values()) == set(ds["speaker"])
    # 20 speakers, test share 0.2 and validation share 0.1: 4 and 2 speakers held out.
    assert len(speakers["test"]) == 4
    assert len(speakers["validation"]) == 2
    # No row lost or duplicated.
    assert sorted(chain.from_iterable(ids(splits))) == list(range(len(ds)))
    # Every class is in every split.
    for part in splits.values():
        assert set(part[LABEL]) == set(range(len(NAMES)))
        assert part.features[LABEL].names == NAMES


def test_grouped_split_is_seeded() -> None:
    ds = grouped_data()
    first = ids(split(ds, test_size=0.2, seed=3, group_by="speaker"))
    again = ids(split(ds, test_size=0.2, seed=3, group_by="speaker"))
    assert first == again
    others = [ids(split(ds, test_size=0.2, seed=s, group_by="speaker")) for s in (4, 5)]
    assert any(other != first for other in others)


def test_ungrouped_split_is_stratified() -> None:
    ds = unbalanced_data(scale=2)
    splits = split(ds, validation_size=0.2, test_size=0.2, seed=0)
    assert Counter(splits["test"][LABEL]) == {0: 8, 1: 4, 2: 2, 3: 2}
    assert Counter(splits["validation"][LABEL]) == {0: 8, 1: 4, 2: 2, 3: 2}
    assert Counter(splits["train"][LABEL]) == {0: 24, 1: 12, 2: 6, 3: 6}
    assert sorted(chain.from_iterable(ids(splits))) == list(range(len(ds)))


def test_ungrouped_split_is_seeded() -> None:
    ds = unbalanced_data()
    first = ids(split(ds, test_size=0.25, seed=11))
    assert ids(split(ds, test_size=0.25, seed=11)) == first
    assert ids(split(ds, test_size=0.25, seed=12)) != first


def with_column(ds: Dataset, values: list[str]) -> Dataset:
    return ds.add_column("part", values)


def test_split_column_is_used_as_given() -> None:
    ds = grouped_data(speakers=5)
    by_speaker = {"spk0": "test", "spk1": "validation", "spk2": "dev"}
    ds = with_column(ds, [by_speaker.get(s, "train") for s in ds["speaker"]])
    splits = split(ds, test_size=0.2, seed=0, group_by="speaker", column="part")
    assert set(splits["test"]["speaker"]) == {"spk0"}
    assert set(splits["validation"]["speaker"]) == {"spk1", "spk2"}  # "dev" means validation
    assert set(splits["train"]["speaker"]) == {"spk3", "spk4"}


@pytest.mark.parametrize("group_by", [None, "speaker"])
def test_a_missing_validation_part_is_carved_out_of_train(group_by: str | None) -> None:
    ds = grouped_data(speakers=20)
    held = {"spk0", "spk1", "spk2", "spk3"}
    ds = with_column(ds, ["test" if s in held else "train" for s in ds["speaker"]])
    splits = split(ds, validation_size=0.2, test_size=0.5, seed=0, group_by=group_by, column="part")
    assert set(splits["test"]["speaker"]) == held
    # A share of all items (0.2 x 160), out of the 128 training items.
    assert len(splits["validation"]) == 32
    assert Counter(splits["validation"][LABEL]) == Counter(
        {c: len(splits["validation"]) // len(NAMES) for c in range(len(NAMES))}
    )
    if group_by:
        assert not set(splits["validation"]["speaker"]) & set(splits["train"]["speaker"])
    assert sorted(chain.from_iterable(ids(splits))) == list(range(len(ds)))


def test_split_column_with_unknown_values_names_the_key_and_values() -> None:
    ds = with_column(grouped_data(speakers=2), ["train", "holdout"] * 8)
    with pytest.raises(ConfigError, match=r"data\.split\.column='part' holds \['holdout'\]"):
        split(ds, test_size=0.2, seed=0, column="part")


def test_split_column_missing_or_without_test_is_a_config_error() -> None:
    ds = grouped_data(speakers=2)
    with pytest.raises(ConfigError, match=r"data\.split\.column: column 'part' not in"):
        split(ds, test_size=0.2, seed=0, column="part")
    with pytest.raises(ConfigError, match=r"no item in 'test'"):
        split(with_column(ds, ["train"] * len(ds)), test_size=0.2, seed=0, column="part")


@pytest.mark.parametrize("key", ["test_size", "validation_size"])
@pytest.mark.parametrize("share", [0, 1, 1.5, -0.2])
def test_bad_share_names_the_key(key: str, share: float) -> None:
    kwargs = {"test_size": 0.2, "validation_size": 0.1, key: share}
    with pytest.raises(ConfigError, match=rf"data\.split\.{key}") as info:
        split_dataset(grouped_data(), seed=0, group_by="speaker", **kwargs)
    assert str(share) in str(info.value)


def test_shares_adding_up_to_one_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"validation_size \+ data\.split\.test_size"):
        split(grouped_data(), validation_size=0.5, test_size=0.5, seed=0)


def test_unknown_group_column_names_the_key_and_column() -> None:
    with pytest.raises(ConfigError, match=r"data\.split\.group_by.*'speeker'"):
        split(grouped_data(), test_size=0.2, seed=0, group_by="speeker")


def test_too_few_groups_for_a_share_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"test_size with data\.split\.group_by='speaker': 3"):
        split(grouped_data(speakers=3), test_size=0.2, seed=0, group_by="speaker")
    with pytest.raises(ConfigError, match=r"validation_size with .*group_by='speaker': 4 groups"):
        split(grouped_data(speakers=5), test_size=0.2, seed=0, group_by="speaker")


def suggested(err: pytest.ExceptionInfo, key: str) -> float:
    """The share an error message suggests for ``key``."""
    return float(re.search(rf"{re.escape(key)}=([0-9.]+) holds out", str(err.value)).group(1))


def test_too_few_groups_suggests_a_share_that_works() -> None:
    ds = grouped_data(speakers=3)
    with pytest.raises(ConfigError, match=r"data\.split\.test_size=0\.34 holds out one") as err:
        split(ds, test_size=0.2, seed=0, group_by="speaker")
    test_size = suggested(err, "data.split.test_size")
    # then 2 speakers are left to train on: validation must take one of them
    with pytest.raises(ConfigError, match=r"validation_size=0\.34 holds out one of the 2") as err:
        split(ds, test_size=test_size, seed=0, group_by="speaker")
    validation_size = suggested(err, "data.split.validation_size")
    splits = split(
        ds, validation_size=validation_size, test_size=test_size, seed=0, group_by="speaker"
    )
    assert [len(set(splits[name]["speaker"])) for name in SPLITS] == [1, 1, 1]


def test_too_few_groups_for_validation_suggests_a_share_of_all_items() -> None:
    # one speaker of four held out as test: 2 training speakers, 16 of 32 items each
    ds = grouped_data(speakers=4)
    held = {"spk0", "spk1"}
    ds = ds.add_column("part", ["test" if s in held else "train" for s in ds["speaker"]])
    key = "data.split.validation_size"
    with pytest.raises(ConfigError, match=rf"{re.escape(key)}=0\.25 holds out one of the 2") as err:
        split(ds, test_size=0.2, seed=0, group_by="speaker", column="part")
    splits = split(
        ds,
        validation_size=suggested(err, key),
        test_size=0.2,
        seed=0,
        group_by="speaker",
        column="part",
    )
    assert len(set(splits["validation"]["speaker"])) == 1
    assert len(set(splits["train"]["speaker"])) == 1


def test_one_group_cannot_be_split_and_says_to_switch_grouping_off() -> None:
    with pytest.raises(
        ConfigError, match=r"1 group cannot be split: set data\.split\.group_by=null"
    ):
        split(grouped_data(speakers=1), test_size=0.2, seed=0, group_by="speaker")


def test_validation_carved_without_grouping_says_it_shares_speakers_with_train() -> None:
    ds = grouped_data(speakers=5)
    ds = ds.add_column("part", ["test" if s == "spk0" else "train" for s in ds["speaker"]])
    splits = split(ds, validation_size=0.2, test_size=0.2, seed=0, column="part")
    described = describe_validation(splits, group_by=None)
    assert described["group_column"] == "speaker" and described["grouped_by"] is None
    assert described["validation_groups"] == described["shared_with_train"] == 4
    assert "validation shares speakers with train (4 of its 4 speakers" in described["note"]
    assert described["note"].endswith("data.split.group_by=speaker carves it out by speaker")


def test_validation_carved_by_speaker_shares_none() -> None:
    splits = split(grouped_data(speakers=20), test_size=0.2, seed=0, group_by="speaker")
    described = describe_validation(splits, group_by="speaker")
    assert described["shared_with_train"] == 0 and described["note"] is None
    assert described["validation_groups"] == 2


def test_data_without_a_group_column_has_nothing_to_say_about_groups() -> None:
    splits = split(unbalanced_data(), test_size=0.2, seed=0)
    assert describe_validation(splits, group_by=None) == {
        "group_column": None,
        "grouped_by": None,
        "note": None,
    }


def test_the_manifest_records_speakers_and_what_validation_shares() -> None:
    ds = grouped_data(speakers=5)
    ds = ds.add_column("part", ["test" if s == "spk0" else "train" for s in ds["speaker"]])
    ds = ds.add_column("path", [f"clip{i}.wav" for i in range(len(ds))])
    ds = ds.add_column("sha256", ["0" * 64] * len(ds))
    splits = split(ds, validation_size=0.2, test_size=0.2, seed=0, column="part")
    data = OmegaConf.create(
        {"source": "audiofolder", "path": "clips", "split": {"group_by": None, "column": "part"}}
    )
    manifest = build_manifest(splits, data, skipped=[])
    assert manifest["groups"]["test"] == ["spk0"]
    assert manifest["groups"]["validation"] == ["spk1", "spk2", "spk3", "spk4"]
    assert manifest["validation"] == describe_validation(splits, group_by=None)
