"""The train/test split: seeded, stratified by label, optionally grouped (no group in both)."""

from __future__ import annotations

import numpy as np
from datasets import Dataset, DatasetDict
from sklearn.model_selection import StratifiedGroupKFold

from audioclf.config import ConfigError
from audioclf.data.sources import LABEL


def split_dataset(
    ds: Dataset, *, test_size: float, seed: int, group_by: str | None = None
) -> DatasetDict:
    """Split into ``train`` and ``test``.

    Ungrouped: datasets' stratified ``train_test_split``. Grouped: the first fold of a
    shuffled ``StratifiedGroupKFold`` with ``round(1 / test_size)`` folds, which keeps every
    group on one side and the label mix of both sides close.
    """
    if not 0 < test_size < 1:
        raise ConfigError(f"data.split.test_size must be in (0, 1), got {test_size}")
    if group_by is None:
        parts = ds.train_test_split(
            test_size=test_size, stratify_by_column=LABEL, seed=seed, shuffle=True
        )
        return DatasetDict(train=parts["train"], test=parts["test"])
    if group_by not in ds.column_names:
        raise ConfigError(
            f"data.split.group_by: column {group_by!r} not in the dataset ({ds.column_names})"
        )
    groups = np.asarray(ds[group_by])
    n_splits = max(2, round(1 / test_size))
    if len(set(groups.tolist())) < n_splits:
        raise ConfigError(
            f"data.split.group_by={group_by!r}: {len(set(groups.tolist()))} groups cannot "
            f"give a test share of {test_size}"
        )
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    train_idx, test_idx = next(folds.split(np.zeros(len(ds)), ds[LABEL], groups))
    return DatasetDict(train=ds.select(np.sort(train_idx)), test=ds.select(np.sort(test_idx)))
