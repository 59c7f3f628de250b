"""The train stage fine-tuning a checkpoint: its MLflow run records which weights file it loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from audioclf.data.store import load_splits
from audioclf.models.build import build_model
from audioclf.models.extractor import build_feature_extractor
from audioclf.stages import run_stage
from audioclf.stages.download import download
from audioclf.stages.featurize import featurize
from audioclf.stages.resample import resample
from audioclf.stages.train import train
from audioclf.testing import (
    HUB_DIR,
    HUB_OVERRIDES,
    TINY_TRAIN_OVERRIDES,
    hub_rows,
    make_project,
    write_hub_repo,
)


def test_train_run_records_the_pickled_checkpoint_it_fine_tuned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    project = make_project(tmp_path / "project")
    monkeypatch.chdir(project.root)
    write_hub_repo(project.root / HUB_DIR, hub_rows())
    project.write_params(*HUB_OVERRIDES, *TINY_TRAIN_OVERRIDES)
    for stage in (download, resample, featurize):
        run_stage(stage, [])
    cfg = project.cfg()
    labels = load_splits(cfg.paths.features, "featurize", names=("train",))["train"]
    # The recipe's CNN saved as older Hub repositories hold a checkpoint: a pickled state dict.
    checkpoint = tmp_path / "pretrained"
    net = build_model(cfg.model, labels.features["label"].names)
    net.config.save_pretrained(checkpoint)
    torch.save(net.state_dict(), checkpoint / "pytorch_model.bin")
    build_feature_extractor(cfg.model).save_pretrained(checkpoint)

    run_stage(train, ["train.epochs=1", f"model.name_or_path={checkpoint}"])
    run_id = json.loads(Path(cfg.paths.run).read_text())["run_id"]
    tags = MlflowClient(f"sqlite:///{project.root / 'mlflow.db'}").get_run(run_id).data.tags
    assert tags["model.weights_file"] == "pytorch_model.bin"
    assert "model.revision" not in tags  # a local folder: no Hub commit to name
