"""Where runs go and what they carry, without training anything."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from audioclf.tracking import artifacts, store
from audioclf.tracking.params import flat_params
from audioclf.tracking.tags import dvc_lock_tags, git_tags


def test_default_store_is_the_user_repo_even_from_an_experiment_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_repo, copy = tmp_path / "repo", tmp_path / "repo/.dvc/tmp/exps/run/abc"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(user_repo))
    assert store.tracking_uri() == f"sqlite:///{user_repo.resolve()}/mlflow.db"
    assert store.artifact_location() == (user_repo.resolve() / "mlartifacts").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.tracking_uri())  # as set_tracking_uri does
    assert store.artifact_location() is not None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert store.tracking_uri() == "http://127.0.0.1:5000"
    assert store.artifact_location() is None


def test_params_are_flat_and_long_values_set_apart() -> None:
    cfg = OmegaConf.create(
        {
            "train": {"learning_rate": 0.001, "epochs": 3},
            "model": {"conv": [64, 64]},
            "labels": {"names": ["x" * 100] * 100},
        }
    )
    params, long_values = flat_params(cfg)
    assert params["train.learning_rate"] == "0.001"
    assert params["model.conv"] == "[64, 64]"
    assert "labels.names" not in params
    assert long_values == {"labels.names": ["x" * 100] * 100}


def test_dvc_lock_tags_name_each_data_output(tmp_path: Path) -> None:
    """The data stages are those of the dvc.yaml beside the lock: before `train`."""
    from audioclf.testing import REPO_ROOT

    (tmp_path / "dvc.yaml").write_text((REPO_ROOT / "dvc.yaml").read_text())
    lock = tmp_path / "dvc.lock"
    lock.write_text(
        "schema: '2.0'\nstages:\n  download:\n    cmd: x\n    outs:\n    - path: data/raw\n"
        "      md5: abc.dir\n  train:\n    cmd: y\n    outs:\n    - path: models/final\n"
        "      md5: def.dir\n"
    )
    assert dvc_lock_tags(lock) == {"dvc.download.data/raw": "abc.dir"}


@pytest.mark.parametrize("outer", [None, "sqlite:////elsewhere/mlflow.db"])
def test_a_temporary_store_leaves_the_process_pointing_where_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outer: str | None
) -> None:
    import mlflow

    from benchmarks.common import mlflow_store

    monkeypatch.chdir(tmp_path)
    if outer is None:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", outer)
    before = mlflow.get_tracking_uri()
    with mlflow_store(tmp_path / "store") as uri:
        assert mlflow.get_tracking_uri() == uri
    assert mlflow.get_tracking_uri() == before
    assert os.environ.get("MLFLOW_TRACKING_URI") == outer
    # A later change of the variable is honoured: no process-wide URI shadows it.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert mlflow.get_tracking_uri() == "http://127.0.0.1:5000"


def test_dirty_is_about_code_and_config_with_whole_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outputs are no dirt, nor is the params.yaml `dvc exp run` writes; paths keep every
    character (porcelain's leading space once ate the first one)."""
    from audioclf.testing import git

    for name in ("src/pkg/mod.py", "reports/mlflow_run.json", "params.yaml", "dvc.lock"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("v1\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "base")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    assert git_tags()["git.dirty"] == "false"

    for name in ("reports/mlflow_run.json", "dvc.lock", "params.yaml"):
        (tmp_path / name).write_text("v2\n")
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "new.yaml").write_text("a: 1\n")  # new, not yet committed
    tags = git_tags()
    assert tags["git.dirty"] == "true"
    assert tags["git.dirty_files"] == "conf/new.yaml, params.yaml"
    monkeypatch.setenv("DVC_EXP_NAME", "brisk-oryx")  # params.yaml written by dvc exp run
    assert git_tags()["git.dirty_files"] == "conf/new.yaml"
    (tmp_path / "conf" / "new.yaml").unlink()
    assert git_tags()["git.dirty"] == "false"
    (tmp_path / "src/pkg/mod.py").write_text("v2\n")
    assert git_tags()["git.dirty_files"] == "src/pkg/mod.py"


def test_a_run_logs_its_served_model_once(tmp_path: Path) -> None:
    """Evaluate logs and registers the model unless the run holds one: evaluating the same
    run again registers no second version."""
    import mlflow
    from mlflow.tracking import MlflowClient

    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context: Any, model_input: Any) -> Any:
            return model_input

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("t", artifact_location=(tmp_path / "a").as_uri())
    run_id = client.create_run(experiment).info.run_id
    with store.using_tracking_uri(uri):
        assert not artifacts.has_logged_model(run_id)
        with mlflow.start_run(run_id=run_id):
            mlflow.pyfunc.log_model(name="model", python_model=Echo())
        assert artifacts.has_logged_model(run_id)
