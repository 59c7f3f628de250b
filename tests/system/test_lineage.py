"""`audioclf lineage`: from a model back to the code and data that produced it, and --verify."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from audioclf.cli import main
from audioclf.testing import (
    HUB_DIR,
    HUB_PARQUET,
    Project,
    encode,
    git,
    hub_rows,
    tone,
    trained_dvc_repo,
    write_hub_repo,
)

RAW_ARROW = "data/raw/train/data-00000-of-00001.arrow"


@pytest.fixture(scope="module")
def trained_repo(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A committed git + DVC repo after one `dvc repro`: one MLflow run in <repo>/mlflow.db."""
    return trained_dvc_repo(tmp_path_factory.mktemp("lineage") / "repo")


@pytest.fixture
def in_repo(trained_repo: Project, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    monkeypatch.chdir(trained_repo.root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run_id = json.loads((trained_repo.root / "reports/mlflow_run.json").read_text())["run_id"]
    yield trained_repo.root, run_id


def lineage(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = main(["lineage", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_audit_by_run_id_registered_model_alias_and_model_dir(
    in_repo: tuple[Path, str], capsys: pytest.CaptureFixture
) -> None:
    repo, run_id = in_repo
    code, out, _ = lineage(capsys, run_id, "--json")
    assert code == 0
    report = json.loads(out)
    assert report["run"]["id"] == run_id
    assert report["run"]["experiment_name"] == "audioclf"
    assert report["run"]["params"]["train.learning_rate"] == "0.003"
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert report["run"]["metrics"]["test/accuracy"] == pytest.approx(metrics["accuracy"])
    assert report["code"] == {
        "git_commit": git(repo, "rev-parse", "HEAD").strip(),
        "git_dirty": "false",
        "dirty_files": None,
    }
    assert report["dvc_experiment"] is None  # a plain `dvc repro`
    # The whole dvc.lock up to train, with the hashes DVC locked in the workspace.
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    stages = report["dvc_lock"]["stages"]
    assert list(stages) == ["download", "resample", "featurize", "train"]
    for name, stage in stages.items():
        for kind in ("deps", "outs"):
            locked = {e["path"]: e["md5"] for e in lock[name][kind]}
            assert {e["path"]: e["md5"] for e in stage[kind]} == locked
    manifest = json.loads((repo / "data/manifest.json").read_text())
    data = report["data"]
    assert data["path"] == HUB_DIR and data["source"] == "hub"
    assert data["num_rows"] == manifest["num_rows"] and sum(data["num_rows"].values()) == 40
    assert data["class_counts"] == manifest["class_counts"]
    assert data["items"] == manifest["items"] and data["skipped"] == []
    assert report["warnings"] == []

    # The same chain from the registered model, by version and by alias, and from the model dir.
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{repo / 'mlflow.db'}"
    # The evaluate stage gave the first version both aliases (audioclf.registry).
    registered = MlflowClient(uri, registry_uri=uri).get_registered_model("audioclf-intent")
    assert {k: str(v) for k, v in registered.aliases.items()} == {"champion": "1", "candidate": "1"}
    for target in ("models:/audioclf-intent/1", "models:/audioclf-intent@champion"):
        code, out, _ = lineage(capsys, target, "--json")
        assert code == 0
        found = json.loads(out)
        assert found["run"]["id"] == run_id
        assert found["model"]["name"] == "audioclf-intent" and found["model"]["version"] == "1"
    code, out, _ = lineage(capsys, "models/final", "--json")
    assert code == 0 and json.loads(out)["run"]["id"] == run_id
    assert json.loads(out)["model"]["kind"] == "model directory"

    # The text form prints the chain down to the sha256 of every audio item.
    code, out, _ = lineage(capsys, "models:/audioclf-intent@champion")
    assert code == 0
    assert run_id in out and "aliases candidate, champion" in out and "data/raw" in out
    assert all(item["sha256"] in out for item in manifest["items"])
    code, _, err = lineage(capsys, "no-such-run")
    assert code == 2 and "no-such-run" in err


def test_verify_names_a_corrupted_raw_audio_item(
    in_repo: tuple[Path, str], capsys: pytest.CaptureFixture
) -> None:
    """Bit rot in the workspace alone: the DVC cache still holds the run's data (exit 0).
    In the cache too: verification fails, naming the file and the audio clip."""
    repo, run_id = in_repo
    code, out, _ = lineage(capsys, run_id, "--verify")
    assert code == 0, out
    assert out.rstrip().endswith("verify: OK")

    # Bit rot inside one clip's bytes in the raw data (the file stays a valid Arrow file).
    import datasets

    train = datasets.load_from_disk(str(repo / "data/raw"))["train"]
    row = train.cast_column("audio", datasets.Audio(decode=False))[3]
    arrow = repo / RAW_ARROW
    original = arrow.read_bytes()
    md5 = hashlib.md5(original).hexdigest()
    cached = repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    assert cached.read_bytes() == original
    at = original.find(row["audio"]["bytes"]) + len(row["audio"]["bytes"]) // 2
    assert at > 0
    rotten = original[:at] + bytes(8) + original[at + 8 :]
    for file in (arrow, cached):
        os.chmod(file, 0o644)
    try:
        arrow.unlink()  # its own bytes: as a hard link it would be the cache's file itself
        arrow.write_bytes(rotten)
        code, out, _ = lineage(capsys, run_id, "--verify", "--json")
        assert code == 0
        checks = json.loads(out)["verify"]["checks"]
        raw = next(c for c in checks if c["path"] == "data/raw")
        assert raw["status"] == "in cache" and "another version" in raw["detail"]
        assert [c["status"] for c in checks if c["kind"] == "raw item"] == ["skipped"]

        cached.write_bytes(rotten)
        code, out, err = lineage(capsys, run_id, "--verify", "--json")
    finally:
        arrow.write_bytes(original)
        cached.write_bytes(original)
    assert code == 1
    assert "stage 'download'" in err and RAW_ARROW in err and row["path"] in err
    checks = json.loads(out)["verify"]
    assert not checks["ok"]
    failed = [c for c in checks["checks"] if not c["status"].startswith(("ok", "in "))]
    assert failed[0]["files"] == [RAW_ARROW]
    assert "not intact in the DVC cache" in failed[0]["detail"]
    assert any(c["kind"] == "raw item" and row["path"] in c["path"] for c in failed)
    assert lineage(capsys, run_id, "--verify")[0] == 0  # restored


def test_verify_finds_a_changed_source_in_the_runs_commit(
    in_repo: tuple[Path, str], capsys: pytest.CaptureFixture
) -> None:
    repo, _ = in_repo
    source = repo / HUB_DIR
    backup = repo.parent / "tiny_hub.bak"
    shutil.copytree(source, backup)
    rows = hub_rows(speakers=("s1", "s2", "s3", "s4", "s5"))
    rows[5]["audio"]["bytes"] = encode(tone(300.0, 0.4, seed=99))  # one clip re-recorded
    write_hub_repo(source, rows)
    try:
        code, out, err = lineage(capsys, "models/final", "--verify")
    finally:
        shutil.rmtree(source)
        shutil.copytree(backup, source)
    # The run's source is intact in the commit it ran from: found there, with no checkout.
    commit = git(repo, "rev-parse", "HEAD").strip()
    assert code == 0, out + err
    assert f"in git     download  dep         {HUB_DIR}  intact in git commit {commit[:7]}" in out
    assert "the workspace holds another version" in out
    assert (repo / HUB_DIR / HUB_PARQUET).is_file()
