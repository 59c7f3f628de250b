"""Stage outputs: atomic writes, and fingerprints derived from content (read through the one
adapter over datasets' private attribute)."""

from __future__ import annotations

from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict

from audioclf.data.store import (
    atomic_path,
    dataset_fingerprint,
    fingerprint,
    load_splits,
    save_splits,
)


def test_saved_splits_carry_content_derived_fingerprints(tmp_path: Path) -> None:
    """The same content and key give the same fingerprints (and bytes) wherever saved."""

    def saved(folder: str, key: str, values: list[int]) -> dict[str, str]:
        splits = DatasetDict(
            train=Dataset.from_dict({"x": values}), test=Dataset.from_dict({"x": [3]})
        )
        save_splits(splits, tmp_path / folder, key=key)
        loaded = load_splits(tmp_path / folder, "a test")
        return {name: dataset_fingerprint(ds) for name, ds in loaded.items()}

    first = saved("a", "abc", [1, 2])
    assert saved("b", "abc", [1, 2]) == first
    assert first["train"] != first["test"]
    assert saved("c", fingerprint("other"), [1, 2])["train"] != first["train"]
    state = (tmp_path / "a" / "train" / "state.json").read_text()
    assert (tmp_path / "b" / "train" / "state.json").read_text() == state
    only = load_splits(tmp_path / "a", "a test", names=("test",))
    assert list(only) == ["test"] and only["test"]["x"] == [3]
    with pytest.raises(FileNotFoundError, match=r"no split\(s\) \['validation'\]"):
        load_splits(tmp_path / "a", "a test", names=("validation",))


def test_a_failed_write_keeps_the_previous_output(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("good")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "good"
