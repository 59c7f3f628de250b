"""The whole pipeline under real `dvc repro`, in a throwaway git + DVC repository."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from audioclf.data.store import load_splits
from audioclf.testing import (
    HUB_OVERRIDES,
    TINY_TRAIN_OVERRIDES,
    Project,
    dvc,
    make_dvc_repo,
    tree_hashes,
)

DATA_STAGES = ("download", "resample", "featurize")
STAGES = (*DATA_STAGES, "train", "evaluate")
OUTPUTS = ("data/raw", "data/manifest.json", "data/resampled", "data/features")


@pytest.fixture
def dvc_repo(tmp_path: Path) -> Project:
    """A git + DVC repository with this project's conf/, dvc.yaml, .dvc/config and code."""
    return make_dvc_repo(tmp_path / "repo")


def ran(output: str) -> set[str]:
    return {stage for stage in STAGES if f"Running stage '{stage}'" in output}


def skipped(output: str) -> set[str]:
    return {stage for stage in STAGES if f"Stage '{stage}' didn't change, skipping" in output}


def test_dvc_repro_runs_once_and_reruns_only_what_changed(dvc_repo: Project) -> None:
    repo = dvc_repo.root
    first = dvc(repo, "repro")
    assert ran(first) == set(STAGES), first
    lock = yaml.safe_load((repo / "dvc.lock").read_text(encoding="utf-8"))
    assert set(STAGES) <= set(lock["stages"])
    assert lock["stages"]["featurize"]["params"]["params.yaml"]["audio.max_duration_s"] == 20.0
    assert (repo / "models/final/model.safetensors").is_file()
    assert (repo / "mlflow.db").is_file(), "default store is <repo>/mlflow.db"
    assert list((repo / "mlartifacts").rglob("manifest.json")), "artifacts in <repo>/mlartifacts"
    metrics = dvc(repo, "metrics", "show", "--json")
    assert '"accuracy"' in metrics and '"f1_macro"' in metrics
    outputs = {p: tree_hashes(repo / p) for p in OUTPUTS}
    assert all(outputs.values())

    # Nothing changed: nothing runs, nothing is rewritten.
    second = dvc(repo, "repro")
    assert ran(second) == set(), second
    assert skipped(second) == set(STAGES), second
    assert {p: tree_hashes(repo / p) for p in OUTPUTS} == outputs

    # A train parameter changed: only train and evaluate run.
    dvc_repo.write_params(*HUB_OVERRIDES, *TINY_TRAIN_OVERRIDES, "train.learning_rate=0.002")
    third = dvc(repo, "repro")
    assert ran(third) == {"train", "evaluate"}, third
    assert {p: tree_hashes(repo / p) for p in OUTPUTS} == outputs

    # A featurize parameter changed: featurize and what follows run, the rest is kept.
    dvc_repo.write_params(
        *HUB_OVERRIDES,
        *TINY_TRAIN_OVERRIDES,
        "train.learning_rate=0.002",
        "audio.max_duration_s=0.35",
    )
    fourth = dvc(repo, "repro")
    assert ran(fourth) == {"featurize", "train", "evaluate"}, fourth
    assert skipped(fourth) == {"download", "resample"}, fourth
    after = {p: tree_hashes(repo / p) for p in OUTPUTS}
    assert {p: h for p, h in after.items() if p != "data/features"} == {
        p: h for p, h in outputs.items() if p != "data/features"
    }
    assert after["data/features"] != outputs["data/features"]
    features = load_splits(repo / "data/features", "featurize")
    assert max(len(v) for ds in features.values() for v in ds["input_values"]) == 2800
