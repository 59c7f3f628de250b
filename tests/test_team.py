"""Working as a team: data and models shared through a DVC remote (a local folder here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from audioclf.cli import main
from tests.datagen import HUB_CLASSES, Project, dvc, encode, git, make_dvc_repo, tone


@pytest.mark.slow
def test_a_fresh_clone_pulls_everything_and_reproduces_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """`dvc push` from one clone, `dvc pull` in another: the pipeline is up to date there (no
    stage runs) and the pulled model predicts."""
    project: Project = make_dvc_repo(tmp_path / "alice")
    alice = project.root
    remote = tmp_path / "remote"
    git(alice, "add", "-A")
    git(alice, "commit", "-qm", "pipeline")
    dvc(alice, "repro", timeout=600)
    dvc(alice, "remote", "add", "-d", "shared", str(remote))
    dvc(alice, "push")
    git(alice, "add", "-A")
    git(alice, "commit", "-qm", "results")
    assert any(p.is_file() for p in remote.rglob("*"))

    bob = tmp_path / "bob"
    git(tmp_path, "clone", "-q", str(alice), str(bob))
    assert not (bob / "models" / "final").exists()
    dvc(bob, "pull")
    for path in ("data/features", "models/final/model.safetensors"):
        assert (bob / path).exists(), path
    status = dvc(bob, "status")
    assert "changed" not in status, status
    again = dvc(bob, "repro")
    assert "Running stage" not in again, again

    clip = tmp_path / "clip.wav"
    clip.write_bytes(encode(tone(440.0, 0.5, seed=3)))
    monkeypatch.chdir(bob)
    assert main(["predict", str(clip), "--json"]) == 0
    predictions = json.loads(capsys.readouterr().out)["predictions"]
    labels = predictions[0]["labels"]  # all four classes (top 5 of 4), best first
    assert {label["label"] for label in labels} == set(HUB_CLASSES)
    assert np.isclose(sum(label["score"] for label in labels), 1.0, atol=1e-4)
