"""Data sources: a Hub-layout parquet repo (local replica or Hub id) and an audiofolder."""

from __future__ import annotations

import time
from pathlib import Path

import datasets
import pytest
from datasets import ClassLabel
from omegaconf import OmegaConf

from audioclf.config import ConfigError
from audioclf.data import sources
from audioclf.data.columns import AUDIO, LABEL, PROBLEM
from audioclf.data.sources import DataSourceError, load_audiofolder, load_hub, load_source
from audioclf.testing import (
    HUB_CLASSES,
    FolderItem,
    encode,
    folder_items,
    hub_rows,
    tone,
    write_audiofolder,
    write_hub_repo,
)

MINDS14 = "PolyAI/minds14"
MINDS14_REVISION = "40ce77cb32a384e4d50a568e1ec39ac804019d33"


@pytest.fixture
def hub_dir(tmp_path: Path) -> Path:
    return write_hub_repo(tmp_path / "hub", hub_rows())


def load_local(path: Path, **kwargs) -> datasets.Dataset:
    return load_hub(str(path), config_name="en-US", split="train", revision=None, **kwargs)


# --------------------------------------------------------------------------- Hub layout


def test_hub_replica_loads_with_label_names_from_parquet_metadata(hub_dir: Path) -> None:
    rows = hub_rows()
    ds = load_local(hub_dir)
    assert len(ds) == len(rows) == 4 * 6 * 2
    label = ds.features[LABEL]
    assert isinstance(label, ClassLabel)
    assert label.names == list(HUB_CLASSES)
    assert isinstance(ds.features[AUDIO], datasets.Audio)
    assert ds.features[AUDIO].decode is False
    # Every column of the source is kept, MInDS-14's and the extra speaker column.
    for column in ("path", "transcription", "english_transcription", "lang_id", "speaker"):
        assert column in ds.column_names
    assert ds.features["lang_id"].names == ["en-US"]
    # The audio bytes are embedded, unchanged, in the source's row order.
    for got, want in zip(ds, rows, strict=True):
        assert got[AUDIO]["bytes"] == want["audio"]["bytes"]
        assert got["path"] == want["path"]
        assert label.int2str(got[LABEL]) == HUB_CLASSES[want["intent_class"]]


def test_local_replica_and_hub_id_take_the_same_load_dataset_call(
    hub_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = datasets.load_dataset

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(sources.datasets, "load_dataset", spy)
    load_hub(str(hub_dir), config_name="en-US", split="train", revision="abc123")
    with pytest.raises(DataSourceError):
        load_hub(MINDS14, config_name="en-US", split="train", revision=MINDS14_REVISION)
    (local_args, local_kwargs), (hub_args, hub_kwargs) = calls
    assert local_args == (str(hub_dir), "en-US")
    assert hub_args == (MINDS14, "en-US")
    # Only the revision differs (a local directory has none, the Hub id is pinned) and the
    # local replica's cache, which is keyed by its content.
    local_cache = local_kwargs.pop("cache_dir")
    assert local_kwargs == {"split": "train", "revision": None}
    assert hub_kwargs == {"split": "train", "revision": MINDS14_REVISION, "cache_dir": None}
    assert Path(local_cache).is_relative_to(datasets.config.HF_DATASETS_CACHE)


def test_edited_or_same_named_replica_is_not_served_from_a_stale_cache(tmp_path: Path) -> None:
    # datasets' own cache key for a local repo is its name and card, not its files.
    first = write_hub_repo(tmp_path / "a" / "hub", hub_rows())
    assert len(load_local(first)) == 48
    other = write_hub_repo(tmp_path / "b" / "hub", hub_rows()[:40])
    assert len(load_local(other)) == 40
    rows = hub_rows()[:44]
    rows[0]["audio"] = {"bytes": encode(tone(999.0, 0.3)), "path": rows[0]["path"]}
    write_hub_repo(first, rows)
    reloaded = load_local(first)
    assert len(reloaded) == 44
    assert reloaded[0][AUDIO]["bytes"] == rows[0]["audio"]["bytes"]


def test_load_source_reads_the_hub_config(hub_dir: Path) -> None:
    data = OmegaConf.create(
        {
            "source": "hub",
            "path": str(hub_dir),
            "config_name": "en-US",
            "split_name": "train",
            "revision": None,
            "audio_column": "audio",
            "label_column": "intent_class",
        }
    )
    ds = load_source(data)
    assert ds.features[LABEL].names == list(HUB_CLASSES)
    assert len(ds) == 48


@pytest.mark.parametrize(
    ("kwargs", "column"),
    [({"label_column": "intent"}, "intent"), ({"audio_column": "sound"}, "sound")],
)
def test_hub_missing_column_names_the_column(hub_dir: Path, kwargs: dict, column: str) -> None:
    with pytest.raises(DataSourceError, match=rf"no column\(s\) \['{column}'\]") as info:
        load_local(hub_dir, **kwargs)
    assert "intent_class" in str(info.value)  # the available columns are listed


def test_hub_string_label_column_becomes_a_class_label(hub_dir: Path) -> None:
    ds = load_local(hub_dir, label_column="speaker")
    assert ds.features[LABEL].names == sorted({row["speaker"] for row in hub_rows()})


def test_hub_id_offline_fails_fast_naming_the_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    # conftest sets HF_HUB_OFFLINE=1 before datasets is imported: check that it took effect.
    assert datasets.config.HF_HUB_OFFLINE
    start = time.monotonic()
    with pytest.raises(DataSourceError) as info:
        load_hub(MINDS14, config_name="en-US", split="train", revision=MINDS14_REVISION)
    assert time.monotonic() - start < 20
    message = str(info.value)
    assert MINDS14 in message
    assert "offline" in message.lower()
    assert MINDS14_REVISION in message
    assert "data.path" in message  # says what to do instead


def test_missing_local_replica_is_a_data_source_error(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="nothing_here"):
        load_hub(str(tmp_path / "nothing_here"), config_name="en-US", split="train", revision=None)


def test_unknown_source_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"data\.source.*'ftp'"):
        load_source(OmegaConf.create({"source": "ftp", "path": "x"}))


# --------------------------------------------------------------------------- audiofolder


def test_audiofolder_labels_are_sorted_class_labels_and_extra_columns_kept(
    tmp_path: Path,
) -> None:
    items = folder_items()
    folder = write_audiofolder(tmp_path / "folder", items)
    ds = load_audiofolder(folder)
    assert len(ds) == len(items)
    assert ds.features[LABEL].names == ["no", "stop", "yes"]
    assert ds.features[AUDIO].decode is False
    assert {"speaker", "note", "transcription", "path", PROBLEM} <= set(ds.column_names)
    names = ds.features[LABEL].names
    for got, item in zip(ds, items, strict=True):
        assert got["path"] == item.file_name
        assert got[AUDIO]["bytes"] == (folder / item.file_name).read_bytes()
        assert names[got[LABEL]] == item.label
        assert got["speaker"] == item.speaker
        assert got["note"] == item.extra["note"]
        assert got[PROBLEM] is None


def test_audiofolder_label_names_fix_the_order(tmp_path: Path) -> None:
    folder = write_audiofolder(tmp_path / "folder", folder_items())
    ds = load_audiofolder(folder, label_names=["yes", "no", "stop", "maybe"])
    assert ds.features[LABEL].names == ["yes", "no", "stop", "maybe"]
    assert ds[0][LABEL] == 0  # the first item is a "yes"


def test_audiofolder_through_load_source(tmp_path: Path) -> None:
    folder = write_audiofolder(tmp_path / "folder", folder_items(), label_column="word")
    data = OmegaConf.create(
        {"source": "audiofolder", "path": str(folder), "label_column": "word", "label_names": None}
    )
    ds = load_source(data)
    assert ds.features[LABEL].names == ["no", "stop", "yes"]


def test_audiofolder_without_metadata_names_the_file(tmp_path: Path) -> None:
    folder = write_audiofolder(tmp_path / "folder", folder_items())
    (folder / "metadata.csv").unlink()
    with pytest.raises(DataSourceError, match=r"metadata\.csv not found") as info:
        load_audiofolder(folder)
    assert str(folder / "metadata.csv") in str(info.value)


def test_audiofolder_without_label_column_names_the_column(tmp_path: Path) -> None:
    folder = write_audiofolder(tmp_path / "folder", folder_items(), label_column="word")
    with pytest.raises(DataSourceError, match=r"no column\(s\) \['label'\]") as info:
        load_audiofolder(folder)
    assert "metadata.csv" in str(info.value)


def test_audiofolder_empty_metadata_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "metadata.csv").write_text("file_name,label\n", encoding="utf-8")
    with pytest.raises(DataSourceError, match="lists no files"):
        load_audiofolder(folder)


def test_audiofolder_keeps_missing_files_and_unknown_labels_as_problems(tmp_path: Path) -> None:
    items = folder_items()
    items[1] = FolderItem("clips/gone.wav", "no", "s0", None, {"note": "x"})
    items[2] = FolderItem(items[2].file_name, "maybe", "s0", items[2].data, {"note": "y"})
    folder = write_audiofolder(tmp_path / "folder", items)
    ds = load_audiofolder(folder, label_names=["no", "stop", "yes"])
    problems = ds[PROBLEM]
    assert problems[1] == f"file not found: {folder / 'clips/gone.wav'}"
    assert problems[2] == "unknown label 'maybe' in column 'label'"
    assert [p for i, p in enumerate(problems) if i not in (1, 2)] == [None] * (len(items) - 2)


def test_audiofolder_edited_file_is_not_served_from_a_stale_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DVC reruns download when a file changes; the reload must see the new bytes. The
    # generator's prepared output is reused from the datasets cache by key (even with
    # datasets.disable_caching(), as the stages run), so file contents must be in the key.
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    items = folder_items()
    folder = write_audiofolder(tmp_path / "folder", items)
    before = load_audiofolder(folder)[0][AUDIO]["bytes"]
    new = encode(tone(1234.0, 0.4, seed=99))
    (folder / items[0].file_name).write_bytes(new)
    after = load_audiofolder(folder)[0][AUDIO]["bytes"]
    assert before == items[0].data
    assert after == new
