"""The data manifest: what the raw dataset is, where it came from, and a hash of every item.

It also says which groups (speakers) each split holds and whether validation shares them with
train (:func:`audioclf.data.split.describe_validation`): the train stage reports that beside
the validation figures it picks the model by.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

from datasets import DatasetDict
from omegaconf import DictConfig, OmegaConf

from audioclf.data.columns import LABEL
from audioclf.data.split import describe_validation


def dataset_digest(splits: DatasetDict) -> str:
    """One sha256 over every item's split, path and audio hash: the data's identity."""
    h = hashlib.sha256()
    for name in sorted(splits):
        for path, digest in zip(splits[name]["path"], splits[name]["sha256"], strict=True):
            h.update(f"{name}\t{path}\t{digest}\n".encode())
    return h.hexdigest()


def build_manifest(
    splits: DatasetDict, data: DictConfig, skipped: list[dict[str, str]]
) -> dict[str, Any]:
    """Everything an audit needs: source, revision, counts, label names, item hashes, skips."""
    names = splits["train"].features[LABEL].names
    validation = describe_validation(splits, data.split.get("group_by"))
    column = validation["group_column"]
    items = [
        {"split": split, "path": path, "label": names[label], "sha256": digest}
        for split in splits
        for path, label, digest in zip(
            splits[split]["path"], splits[split][LABEL], splits[split]["sha256"], strict=True
        )
    ]
    return {
        "source": data.source,
        "path": data.path,
        "config_name": data.get("config_name"),
        "split_name": data.get("split_name"),
        "revision": data.get("revision"),
        "digest": dataset_digest(splits),
        "label_names": list(names),
        "split": OmegaConf.to_container(data.split, resolve=True),
        "num_rows": {split: len(ds) for split, ds in splits.items()},
        "class_counts": {
            split: {names[k]: n for k, n in sorted(Counter(ds[LABEL]).items())}
            for split, ds in splits.items()
        },
        "groups": {
            split: sorted(set(ds[column])) if column else None for split, ds in splits.items()
        },
        "validation": validation,
        "items": items,
        "skipped": skipped,
    }
