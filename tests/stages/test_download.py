"""The download stage: raw splits + a manifest that audits every item; bad input handled."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from itertools import chain
from pathlib import Path

import numpy as np
import pytest

from audioclf.data.columns import AUDIO, LABEL
from audioclf.data.store import load_splits
from audioclf.data.validate import BadAudioError
from audioclf.stages import run_stage
from audioclf.stages.download import download
from audioclf.testing import (
    FOLDER_DIR,
    HUB_CLASSES,
    HUB_DIR,
    HUB_OVERRIDES,
    HUB_PARQUET,
    HUB_SPEAKERS,
    REPO_ROOT,
    FolderItem,
    Project,
    corrupt_bytes,
    encode,
    folder_items,
    hub_rows,
    sha256,
    write_audiofolder,
    write_hub_repo,
)

RAW = "data/raw"
MANIFEST = "data/manifest.json"


def read_manifest() -> dict:
    return json.loads(Path(MANIFEST).read_text(encoding="utf-8"))


def recompute_digest(items: list[dict]) -> str:
    h = hashlib.sha256()
    for split in sorted({item["split"] for item in items}):
        for item in items:
            if item["split"] == split:
                h.update(f"{split}\t{item['path']}\t{item['sha256']}\n".encode())
    return h.hexdigest()


def check_manifest_matches_raw(manifest: dict) -> None:
    """num_rows, class_counts, label names, digest and item hashes agree with data/raw."""
    raw = load_splits(RAW, "download")
    assert list(raw) == ["train", "validation", "test"]
    assert manifest["num_rows"] == {name: len(ds) for name, ds in raw.items()}
    names = raw["train"].features[LABEL].names
    assert manifest["label_names"] == names
    for name, ds in raw.items():
        counts = manifest["class_counts"][name]
        assert sum(counts.values()) == len(ds)
        assert counts == {names[k]: n for k, n in sorted(Counter(ds[LABEL]).items())}
        items = [item for item in manifest["items"] if item["split"] == name]
        assert [item["path"] for item in items] == list(ds["path"])
        for item, row in zip(items, ds, strict=True):
            assert item["sha256"] == sha256(row[AUDIO]["bytes"])
            assert item["label"] == names[row[LABEL]]
    assert manifest["digest"] == recompute_digest(manifest["items"])


# --------------------------------------------------------------------------- good data


def test_hub_manifest_records_source_counts_and_item_hashes(hub_project: Project) -> None:
    download(hub_project.cfg())
    manifest = read_manifest()
    assert manifest["source"] == "hub"
    assert manifest["path"] == HUB_DIR
    assert manifest["config_name"] == "en-US"
    assert manifest["split_name"] == "train"
    assert manifest["revision"] is None
    assert manifest["label_names"] == list(HUB_CLASSES)
    assert manifest["split"] == {
        "validation_size": 0.2,
        "test_size": 0.2,
        "group_by": "speaker",
        "seed": 42,
        "column": None,
    }
    assert sum(manifest["num_rows"].values()) == 48
    assert manifest["skipped"] == []
    # Every item's hash is the sha256 of the audio file's bytes as the source holds them.
    source = {row["path"]: row["audio"]["bytes"] for row in hub_rows()}
    assert sorted(item["path"] for item in manifest["items"]) == sorted(source)
    for item in manifest["items"]:
        assert item["sha256"] == hashlib.sha256(source[item["path"]]).hexdigest()
    check_manifest_matches_raw(manifest)
    # Grouped by speaker: no voice on both sides, every class on both sides.
    raw = load_splits(RAW, "download")
    assert not set(raw["train"]["speaker"]) & set(raw["test"]["speaker"])
    for name in ("train", "test"):
        assert set(manifest["class_counts"][name]) == set(HUB_CLASSES)


def test_audiofolder_manifest_hashes_the_files(folder_project: Project) -> None:
    download(folder_project.cfg())
    manifest = read_manifest()
    folder = Path(FOLDER_DIR)
    assert manifest["source"] == "audiofolder"
    assert manifest["path"] == FOLDER_DIR
    assert manifest["label_names"] == ["no", "stop", "yes"]
    assert sum(manifest["num_rows"].values()) == len(folder_items())
    for item in manifest["items"]:
        assert item["sha256"] == hashlib.sha256((folder / item["path"]).read_bytes()).hexdigest()
    check_manifest_matches_raw(manifest)
    raw = load_splits(RAW, "download")
    assert {"speaker", "note", "duration_s", "sha256"} <= set(raw["train"].column_names)


def test_hub_datasets_own_splits_are_kept_through_the_split_column(project: Project) -> None:
    """split_name=null loads every split of the config; data.split.column=split keeps them,
    and a validation part the dataset lacks is carved out of its train split by speaker."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    root = project.root / HUB_DIR
    write_hub_repo(root, hub_rows())
    table = pq.read_table(root / HUB_PARQUET)
    held = pc.equal(table.column("speaker"), "speaker0")
    pq.write_table(table.filter(held), root / "en-US/test-00000-of-00001.parquet")
    pq.write_table(table.filter(pc.invert(held)), root / HUB_PARQUET)
    card = (root / "README.md").read_text()
    card = card.replace(
        "    path: en-US/train-*\n",
        "    path: en-US/train-*\n  - split: test\n    path: en-US/test-*\n",
    )
    (root / "README.md").write_text(card)
    project.write_params(*HUB_OVERRIDES, "data.split_name=null", "data.split.column=split")

    run_stage(download, [])
    manifest = read_manifest()
    check_manifest_matches_raw(manifest)
    assert manifest["groups"]["test"] == ["speaker0"]
    assert manifest["num_rows"]["test"] == 8
    train, validation = set(manifest["groups"]["train"]), set(manifest["groups"]["validation"])
    assert validation and not train & validation
    assert train | validation == set(HUB_SPEAKERS) - {"speaker0"}


def test_split_overrides_reach_the_manifest(hub_project: Project) -> None:
    run_stage(download, ["data.split.seed=7", "data.split.test_size=0.34"])
    manifest = read_manifest()
    assert manifest["split"] == {
        "validation_size": 0.2,
        "test_size": 0.34,
        "group_by": "speaker",
        "seed": 7,
        "column": None,
    }
    # 6 speakers, 3 folds: two speakers (16 clips) are held out for test; of the other four,
    # 0.2 x 48 clips for validation: 2 folds, two speakers.
    assert manifest["num_rows"] == {"train": 16, "validation": 16, "test": 16}
    groups = manifest["groups"]
    assert [len(groups[name]) for name in ("train", "validation", "test")] == [2, 2, 2]
    assert sorted(chain.from_iterable(groups.values())) == list(HUB_SPEAKERS)


# --------------------------------------------------------------------------- bad data

BAD_INDEX = 4  # an item of the folder fixture: "no" said by speaker s1
LABEL_NAMES = "data.label_names=[no,stop,yes]"


def spoil(folder: Path, kind: str) -> tuple[str, str]:
    """Make one audiofolder item bad; returns its file name and the expected reason."""
    items = folder_items()
    item = items[BAD_INDEX]
    file = folder / item.file_name
    if kind == "corrupt":
        file.write_bytes(corrupt_bytes())
        return item.file_name, "unreadable or corrupt audio"
    if kind == "empty":
        file.write_bytes(encode(np.zeros(0, dtype=np.float32), "WAV"))
        return item.file_name, "empty audio (no samples)"
    if kind == "silent":
        file.write_bytes(encode(np.zeros(2400, dtype=np.float32), "WAV"))
        return item.file_name, "silent audio"
    if kind == "unknown_label":
        items[BAD_INDEX] = FolderItem(item.file_name, "maybe", item.speaker, item.data, item.extra)
        write_audiofolder(folder, items)
        return item.file_name, "unknown label 'maybe'"
    if kind == "missing":
        file.unlink()
        return item.file_name, "file not found"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["corrupt", "empty", "silent", "unknown_label", "missing"])
def test_bad_item_fails_naming_it_and_keeps_the_good_outputs(
    folder_project: Project, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    run_stage(download, [LABEL_NAMES])
    good = folder_project.hashes(RAW, MANIFEST)
    entries = sorted(os.listdir("data"))
    name, reason = spoil(Path(FOLDER_DIR), kind)

    with pytest.raises(SystemExit) as exit_info:
        run_stage(download, [LABEL_NAMES])
    assert exit_info.value.code == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    line = next(line for line in errors[0].splitlines() if name in line)
    assert reason in line
    assert "data.on_bad_audio=skip" in errors[0]
    # The failed run left the previous good outputs exactly as they were, and no temp files.
    assert folder_project.hashes(RAW, MANIFEST) == good
    assert sorted(os.listdir("data")) == entries

    run_stage(download, [LABEL_NAMES, "data.on_bad_audio=skip"])
    manifest = read_manifest()
    [skipped] = manifest["skipped"]
    assert skipped["path"] == name
    assert reason in skipped["reason"]
    assert sum(manifest["num_rows"].values()) == len(folder_items()) - 1
    assert name not in {item["path"] for item in manifest["items"]}
    check_manifest_matches_raw(manifest)


def test_skipped_reasons_are_reproducible(folder_project: Project) -> None:
    # The manifest is a DVC output: the same bad input must give the same bytes.
    name, _ = spoil(Path(FOLDER_DIR), "corrupt")
    run_stage(download, ["data.on_bad_audio=skip"])
    first = Path(MANIFEST).read_bytes()
    run_stage(download, ["data.on_bad_audio=skip"])
    assert Path(MANIFEST).read_bytes() == first
    [skipped] = read_manifest()["skipped"]
    assert skipped["path"] == name
    assert " at 0x" not in skipped["reason"]  # no object address in the reason


def test_hub_bad_items_are_all_named(project: Project) -> None:
    rows = hub_rows()
    rows[3]["audio"] = {"bytes": corrupt_bytes(), "path": rows[3]["path"]}
    rows[8]["audio"] = {
        "bytes": encode(np.zeros(2400, dtype=np.float32)),
        "path": rows[8]["path"],
    }
    write_hub_repo(project.root / HUB_DIR, rows, force_labels={5: 7}, drop_bytes=[10])
    project.write_params(*HUB_OVERRIDES)
    expected = {
        rows[3]["path"]: "unreadable or corrupt audio",
        rows[5]["path"]: "unknown label 7",
        rows[8]["path"]: "silent audio",
        rows[10]["path"]: "no audio bytes",
    }
    with pytest.raises(BadAudioError, match="4 bad item") as info:
        download(project.cfg())
    lines = str(info.value).splitlines()
    for path, reason in expected.items():
        assert any(path in line and reason in line for line in lines), (path, reason)
    assert not Path(RAW).exists() and not Path(MANIFEST).exists()

    download(project.cfg("data.on_bad_audio=skip"))
    manifest = read_manifest()
    assert {s["path"]: s["reason"] for s in manifest["skipped"]}.keys() == expected.keys()
    for skipped in manifest["skipped"]:
        assert expected[skipped["path"]] in skipped["reason"]
    assert sum(manifest["num_rows"].values()) == 48 - 4
    check_manifest_matches_raw(manifest)


def test_bad_on_bad_audio_value_is_rejected(hub_project: Project) -> None:
    with pytest.raises(ValueError, match=r"data\.on_bad_audio.*'ignore'"):
        download(hub_project.cfg("data.on_bad_audio=ignore"))


# --------------------------------------------------------------------------- config errors


def test_hub_id_offline_fails_and_keeps_the_good_outputs(
    hub_project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    run_stage(download, [])
    good = hub_project.hashes(RAW, MANIFEST)
    hub_project.write_params("data=minds14")
    with pytest.raises(SystemExit):
        run_stage(download, [])
    [error] = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert "PolyAI/minds14" in error
    assert "offline" in error.lower()
    assert hub_project.hashes(RAW, MANIFEST) == good


def test_audiofolder_without_path_names_the_key(
    project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    project.write_params("data=audiofolder")
    with pytest.raises(SystemExit):
        run_stage(download, [])
    [error] = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert "'data.path'" in error


# --------------------------------------------------------------------------- the CLI


def test_cli_exits_non_zero_with_one_clear_line(folder_project: Project) -> None:
    name, reason = spoil(Path(FOLDER_DIR), "corrupt")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    result = subprocess.run(
        [sys.executable, "-m", "audioclf.stages.download", "data.split.seed=3"],
        cwd=folder_project.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert any(name in line and reason in line for line in result.stderr.splitlines())
    assert not Path(RAW).exists()
