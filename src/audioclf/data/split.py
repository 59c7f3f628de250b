"""Train, validation and test: seeded, stratified by label, optionally grouped (no group in two).

Training picks its checkpoint and stops early on ``validation``; only the evaluate stage reads
``test``, once. A source that already says which item goes where (a column of an audiofolder's
``metadata.csv``, a Hub dataset's own splits) is taken as given; a missing validation part is
carved out of train by the same rule as a split made from scratch. Validation carved without
grouping from data that names its speakers shares them with train: :func:`describe_validation`
says so, for the manifest and the train stage's ``validation.json``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from datasets import Dataset, DatasetDict
from sklearn.model_selection import StratifiedGroupKFold

from audioclf.config import ConfigError
from audioclf.data.columns import LABEL

SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {"valid": "validation", "val": "validation", "dev": "validation"}
# The columns that say who recorded an item in common datasets (MInDS-14-style and audiofolder
# ``speaker``, LibriSpeech ``speaker_id``, Common Voice ``client_id``): without
# ``data.split.group_by``, the first of them a dataset has is the one validation is checked on.
GROUP_COLUMNS = ("speaker", "speaker_id", "client_id")


def split_dataset(
    ds: Dataset,
    *,
    validation_size: float,
    test_size: float,
    seed: int,
    group_by: str | None = None,
    column: str | None = None,
) -> DatasetDict:
    """Split into ``train``, ``validation`` and ``test``.

    ``validation_size`` and ``test_size`` are shares of all items. With ``column``, each item
    goes where that column says (``train``/``validation``/``test``) and only a missing
    validation part is carved out of train.
    """
    _check_share("data.split.validation_size", validation_size)
    if group_by is not None and group_by not in ds.column_names:
        raise ConfigError(
            f"data.split.group_by: column {group_by!r} not in the dataset ({ds.column_names})"
        )
    if column is not None:
        parts = _given_splits(ds, column)
    else:
        _check_share("data.split.test_size", test_size)
        if validation_size + test_size >= 1:
            raise ConfigError(
                "data.split.validation_size + data.split.test_size must be below 1, got "
                f"{validation_size} + {test_size}"
            )
        rest, test = hold_out(ds, test_size, seed, group_by, "data.split.test_size")
        parts = {"train": rest, "test": test}
    if "validation" not in parts:
        share = validation_size * len(ds) / len(parts["train"])
        if not 0 < share < 1:
            raise ConfigError(
                f"data.split.validation_size={validation_size} of {len(ds)} items cannot come "
                f"out of {len(parts['train'])} training items"
            )
        parts["train"], parts["validation"] = hold_out(
            parts["train"],
            share,
            seed,
            group_by,
            "data.split.validation_size",
            of_all=len(parts["train"]) / len(ds),
        )
    return DatasetDict({name: parts[name] for name in SPLITS})


def hold_out(
    ds: Dataset,
    share: float,
    seed: int,
    group_by: str | None,
    key: str,
    of_all: float = 1.0,
) -> tuple[Dataset, Dataset]:
    """``(rest, held)``: a stratified share of ``ds``, whole groups only when ``group_by``.

    Ungrouped: datasets' stratified ``train_test_split``. Grouped: the first fold of a
    shuffled ``StratifiedGroupKFold`` with ``round(1 / share)`` folds, which keeps every group
    on one side and the label mix of both sides close. ``of_all``: the share of the whole
    dataset ``ds`` is (``key``'s value is a share of the whole), for the share an error suggests.
    """
    if group_by is None:
        try:
            parts = ds.train_test_split(
                test_size=share, stratify_by_column=LABEL, seed=seed, shuffle=True
            )
        except ValueError as err:
            raise ConfigError(f"{key}: a share of {share:.3g} of {len(ds)} items: {err}") from err
        return parts["train"], parts["test"]
    groups = np.asarray(ds[group_by])
    n_splits = max(2, round(1 / share))
    n_groups = len(set(groups.tolist()))
    if n_groups < n_splits:
        raise ConfigError(
            f"{key} with data.split.group_by={group_by!r}: {n_groups} groups cannot give a "
            f"share of {share:.3g}; {_share_that_works(key, group_by, n_groups, of_all)}"
        )
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    rest, held = next(folds.split(np.zeros(len(ds)), ds[LABEL], groups))
    return ds.select(np.sort(rest)), ds.select(np.sort(held))


def _share_that_works(key: str, group_by: str, n_groups: int, of_all: float) -> str:
    """What to ask for instead: the smallest share (of the whole, two decimals) that holds out
    one of ``n_groups`` groups, or ``group_by: null`` when there are too few groups to split."""
    if n_groups < 2:
        return f"{n_groups} group cannot be split: set data.split.group_by=null"
    suggested = math.ceil(100 * of_all / n_groups) / 100
    if suggested >= of_all:
        return "too few groups to split: set data.split.group_by=null or add groups"
    return f"{key}={suggested:g} holds out one of the {n_groups} groups"


def describe_validation(splits: DatasetDict, group_by: str | None) -> dict[str, Any]:
    """What validation measures: whether its groups (speakers) also appear in train.

    The group column is ``group_by``, else the first of :data:`GROUP_COLUMNS` the data has.
    Validation carved out without grouping holds clips of speakers train has heard, so its
    accuracy overstates accuracy on new speakers: ``note`` says so and how to carve by group.
    """
    columns = splits["train"].column_names
    column = group_by or next((c for c in GROUP_COLUMNS if c in columns), None)
    if column is None or column not in splits["validation"].column_names:
        return {"group_column": None, "grouped_by": group_by, "note": None}
    train = set(splits["train"][column])
    validation = set(splits["validation"][column])
    shared = validation & train
    note = None
    if shared:
        note = (
            f"validation shares {column}s with train ({len(shared)} of its {len(validation)} "
            f"{column}s are in train): it measures {column}s heard in training, not new ones"
        )
        if group_by is None:
            note += f"; data.split.group_by={column} carves it out by {column}"
    return {
        "group_column": column,
        "grouped_by": group_by,
        "validation_groups": len(validation),
        "shared_with_train": len(shared),
        "note": note,
    }


def _given_splits(ds: Dataset, column: str) -> dict[str, Dataset]:
    if column not in ds.column_names:
        raise ConfigError(
            f"data.split.column: column {column!r} not in the dataset ({ds.column_names})"
        )
    names = np.asarray([SPLIT_ALIASES.get(str(v).strip(), str(v).strip()) for v in ds[column]])
    unknown = sorted(set(names.tolist()) - set(SPLITS))
    if unknown:
        raise ConfigError(
            f"data.split.column={column!r} holds {unknown}; each item must say one of {SPLITS}"
        )
    parts = {name: ds.select(np.flatnonzero(names == name)) for name in SPLITS}
    for required in ("train", "test"):
        if not len(parts[required]):
            raise ConfigError(f"data.split.column={column!r} puts no item in {required!r}")
    if not len(parts["validation"]):
        del parts["validation"]
    return parts


def _check_share(key: str, share: float) -> None:
    if share is None or not 0 < share < 1:
        raise ConfigError(f"{key} must be in (0, 1), got {share}")
