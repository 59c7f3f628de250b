"""Write stage outputs so that a failed run never destroys a good one, and reruns are identical.

Datasets are saved with a fingerprint derived from their content and the stage's params (not
from file paths or times), so the same inputs give the same bytes and the same dvc.lock hashes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets
from datasets import Dataset, DatasetDict, DatasetInfo


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; replace ``target`` with it only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    tmp = tmp_dir / target.name
    try:
        yield tmp
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        tmp.replace(target)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def write_json(target: str | Path, payload: Any) -> None:
    """Write JSON atomically, with sorted keys so that equal content gives equal bytes."""
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def dataset_fingerprint(ds: Dataset) -> str:
    """The fingerprint ``datasets`` keeps for a dataset (for ours, set from content by
    :func:`save_splits`). datasets has no public accessor: this reads ``Dataset._fingerprint``,
    the one use of it here (pyproject bounds datasets below 6; tests/unit/test_store.py checks
    it)."""
    return ds._fingerprint


def save_splits(splits: DatasetDict, target: str | Path, key: str) -> None:
    """Save a DatasetDict atomically with clean metadata and content-derived fingerprints."""
    clean = DatasetDict()
    for name, ds in splits.items():
        ds = ds.flatten_indices() if ds._indices is not None else ds
        clean[name] = Dataset(
            ds.data,
            info=DatasetInfo(features=ds.features),
            fingerprint=fingerprint(key, name),
        )
    with atomic_path(target) as tmp:
        clean.save_to_disk(str(tmp))


def load_splits(path: str | Path, what: str, names: Sequence[str] | None = None) -> DatasetDict:
    """Load a stage output (only the splits ``names``, when given), naming the stage that
    makes it when it is missing. Splits not named are never opened: training reads no test."""
    path = Path(path)
    index = path / "dataset_dict.json"
    if not index.is_file():
        raise FileNotFoundError(f"{path} is not a saved dataset; run the {what} stage first")
    if names is None:
        return datasets.load_from_disk(str(path))
    saved = json.loads(index.read_text())["splits"]
    missing = [name for name in names if name not in saved]
    if missing:
        raise FileNotFoundError(
            f"{path} has no split(s) {missing} (it has {saved}); rerun the {what} stage"
        )
    return DatasetDict({name: Dataset.load_from_disk(str(path / name)) for name in names})
