"""dvc.yaml's stage params are exactly the config keys each stage reads.

Each stage runs on a config whose every value is an interpolation through a recording
resolver: whatever way a stage reads a value (attribute, ``get``, ``OmegaConf.select``,
``to_container(resolve=True)``), the key is recorded. A key read but not declared would let
``dvc repro`` skip a stage whose output it changes; a key declared but never read reruns a
stage for nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from omegaconf import DictConfig, OmegaConf

from audioclf.launch import plan
from audioclf.stages.download import download
from audioclf.stages.evaluate import evaluate
from audioclf.stages.featurize import featurize
from audioclf.stages.resample import resample
from audioclf.stages.train import train
from audioclf.testing import REPO_ROOT, TINY_TRAIN_OVERRIDES, Project
from audioclf.tracking import artifacts
from audioclf.tracking import params as run_params


def launched_train(cfg: DictConfig) -> None:
    """dvc.yaml's train command: the launcher reads params.launch, then the stage runs."""
    plan(cfg)
    train(cfg)


STAGES = {
    "download": download,
    "resample": resample,
    "featurize": featurize,
    "train": launched_train,
    "evaluate": evaluate,
}
# Read, deliberately no stage param: where runs are logged and how a sweep is named change no
# output (test_sweep checks that no tracking key is declared); paths are deps and outs; the
# number of worker processes changes how the data stages work, not what they write.
UNDECLARED = ("tracking.", "paths.", "audio.num_proc")
# Declared, read only under another config than the fast default (a checkpoint's revision).
READ_ELSEWHERE = {"featurize": {"model.revision"}}
RESOLVER = "audioclf_test_read"


def recording(cfg: DictConfig, seen: set[str]) -> DictConfig:
    """A copy of ``cfg`` whose leaves record their dotted key in ``seen`` when read."""
    values: dict[str, Any] = {}

    def wrap(node: Any, prefix: str) -> Any:
        if isinstance(node, dict):
            return {k: wrap(v, f"{prefix}{k}.") for k, v in node.items()}
        key = prefix[:-1]
        values[key] = node
        return f"${{{RESOLVER}:{key}}}"

    def read(key: str) -> Any:
        seen.add(key)
        return values[key]

    OmegaConf.register_new_resolver(RESOLVER, read, replace=True)
    return OmegaConf.create(wrap(OmegaConf.to_container(cfg, resolve=True), ""))


def declared() -> dict[str, list[str]]:
    spec = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
    return {
        name: [str(p) for p in stage.get("params", [])] for name, stage in spec["stages"].items()
    }


def covers(param: str, key: str) -> bool:
    return key == param or key.startswith(f"{param}.")


@pytest.fixture(scope="module")
def reads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """The keys each stage reads, running the whole pipeline on the tiny Hub replica."""
    from audioclf.testing import HUB_DIR, HUB_OVERRIDES, hub_rows, make_project, write_hub_repo

    project: Project = make_project(tmp_path_factory.mktemp("params") / "project")
    mp = pytest.MonkeyPatch()
    mp.chdir(project.root)
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project.root / 'mlflow.db'}")
    write_hub_repo(project.root / HUB_DIR, hub_rows())
    project.write_params(*HUB_OVERRIDES, *TINY_TRAIN_OVERRIDES)
    # The train stage records the whole config in its MLflow run (params and an artifact):
    # that record is no DVC output, so it reads a plain copy.
    plain = project.cfg()
    flat_params, log_outputs = run_params.flat_params, artifacts.log_training_outputs
    mp.setattr(run_params, "flat_params", lambda cfg: flat_params(plain))
    mp.setattr(
        artifacts, "log_training_outputs", lambda run, cfg, **kw: log_outputs(run, plain, **kw)
    )
    found = {}
    try:
        for name, stage in STAGES.items():
            seen: set[str] = set()
            stage(recording(project.cfg(), seen))
            found[name] = seen
    finally:
        mp.undo()
    return found


@pytest.mark.parametrize("stage", list(STAGES))
def test_stage_params_are_exactly_what_the_stage_reads(
    reads: dict[str, set[str]], stage: str
) -> None:
    params = declared()[stage]
    read = {key for key in reads[stage] if not key.startswith(UNDECLARED)}
    undeclared = sorted(k for k in read if not any(covers(p, k) for p in params))
    unread = sorted(
        p
        for p in params
        if not any(covers(p, k) for k in read) and p not in READ_ELSEWHERE.get(stage, ())
    )
    assert not undeclared, f"dvc.yaml stage '{stage}' reads {undeclared} but does not declare them"
    assert not unread, f"dvc.yaml stage '{stage}' declares {unread} but never reads them"


def test_the_recorder_sees_every_way_of_reading(tmp_path: Path) -> None:
    seen: set[str] = set()
    cfg = recording(OmegaConf.create({"a": {"b": 1, "c": [1, 2]}, "d": {"e": "x"}, "f": 2}), seen)
    assert cfg.a.b == 1 and cfg.get("f") == 2
    assert OmegaConf.select(cfg, "d.e") == "x"
    assert seen == {"a.b", "f", "d.e"}
    OmegaConf.to_container(cfg.a, resolve=True)
    assert seen == {"a.b", "a.c", "f", "d.e"}
