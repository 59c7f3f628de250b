"""The train stage in-process on tiny features: it never opens the test split, early stopping
exports the best model, and same-thread trainings give byte-identical models (the MLflow run of
train + evaluate, 2-process training and kill-and-resume are tests/system/test_train.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from audioclf.stages import run_stage
from audioclf.stages.train import train
from audioclf.testing import Project, train_process


def test_train_stage_never_opens_the_test_split(
    trained_project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Training reads train and validation only: it runs with the test split's files gone,
    and the datasets it loads come from those two folders."""
    import shutil

    import datasets

    cfg = trained_project.cfg()
    features = Path(cfg.paths.features)
    shutil.rmtree(features / "test")
    opened: list[str] = []
    load = datasets.Dataset.load_from_disk

    def recording_load(path: str, *args, **kwargs):
        opened.append(Path(path).name)
        return load(path, *args, **kwargs)

    monkeypatch.setattr(datasets.Dataset, "load_from_disk", recording_load)
    run_stage(train, ["train.epochs=1"])
    assert sorted(opened) == ["train", "validation"]
    assert (Path(cfg.paths.model) / "model.safetensors").is_file()


def test_early_stopping_stops_and_exports_the_best_model(
    trained_project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validation accuracy (scripted) peaks at epoch 2 and then falls: patience 2 stops the
    run after epoch 4, and models/final holds the epoch-2 weights, not the last ones."""
    from mlflow.tracking import MlflowClient

    from audioclf.training import loop

    scripted = iter([0.5, 0.8, 0.7, 0.6])
    real_metrics = loop.eval_metrics

    def scripted_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        return {**real_metrics(logits, labels), "accuracy": next(scripted)}

    monkeypatch.setattr(loop, "eval_metrics", scripted_metrics)
    run_stage(train, ["train.epochs=6", "train.early_stopping_patience=2"])

    cfg = trained_project.cfg()
    state = json.loads(Path(cfg.paths.checkpoints, "last", "train_state.json").read_text())
    assert state["epoch"] == 4 and state["stopped_early"] and state["best_epoch"] == 2
    assert [e["accuracy"] for e in state["evals"]] == [0.5, 0.8, 0.7, 0.6]
    exported = load_file(str(Path(cfg.paths.model, "model.safetensors")))
    best = load_file(str(Path(cfg.paths.checkpoints, "best", "model.safetensors")))
    last = load_file(str(Path(cfg.paths.checkpoints, "last", "model.safetensors")))
    assert exported.keys() == best.keys()
    for name, tensor in best.items():
        np.testing.assert_array_equal(exported[name], tensor)
    assert any(not np.array_equal(exported[name], last[name]) for name in best)
    validation = json.loads(Path(cfg.paths.validation).read_text())
    assert validation["best_accuracy"] == 0.8 and validation["stopped_early"] is True
    assert validation["epochs_trained"] == 4

    run_id = json.loads(Path(cfg.paths.run).read_text())["run_id"]
    run = MlflowClient(f"sqlite:///{trained_project.root / 'mlflow.db'}").get_run(run_id)
    assert run.data.tags["train.stopped_early"] == "true"
    assert run.data.tags["train.best_epoch"] == "2"
    # The runs table says what validation measures: speakers carved out of train, none shared.
    described = validation["validation"]
    assert described["group_column"] == "speaker" and described["shared_with_train"] == 0
    assert run.data.tags["validation.group_column"] == "speaker"
    assert run.data.tags["validation.shares_groups_with_train"] == "false"
    assert run.data.tags["validation.groups"] == str(described["validation_groups"])

    monkeypatch.setattr(loop, "eval_metrics", real_metrics)
    run_stage(train, ["train.epochs=3", "train.export=last"])
    exported = load_file(str(Path(cfg.paths.model, "model.safetensors")))
    last = load_file(str(Path(cfg.paths.checkpoints, "last", "model.safetensors")))
    for name, tensor in last.items():
        np.testing.assert_array_equal(exported[name], tensor)


def test_same_machine_threads_and_versions_give_byte_identical_models(
    trained_project: Project, tmp_path: Path
) -> None:
    """Two trainings of the same data, code and config with the same thread count (pinned by
    train.num_threads) write the same model bytes; the run records its environment."""
    import shutil

    from mlflow.tracking import MlflowClient

    twin = tmp_path / "twin"
    shutil.copytree(trained_project.root, twin)
    uri = f"sqlite:///{tmp_path / 'runs.db'}"
    for root in (trained_project.root, twin):
        process = train_process(root, uri, "train.num_threads=1")
        assert process.wait(timeout=300) == 0, process.stderr.read()[-3000:]
    model = Path("models/final/model.safetensors")
    assert (trained_project.root / model).read_bytes() == (twin / model).read_bytes()

    run_id = json.loads((twin / "reports/mlflow_run.json").read_text())["run_id"]
    client = MlflowClient(uri)
    tags = client.get_run(run_id).data.tags
    assert tags["env.torch_threads"] == "1"
    assert tags["env.torch"] and tags["env.transformers"] and tags["env.cpu"]
    logged = {item.path for item in client.list_artifacts(run_id, "environment")}
    assert logged == {"environment/environment.json", "environment/packages.txt"}
    packages = Path(client.download_artifacts(run_id, "environment/packages.txt", str(tmp_path)))
    assert any(line.startswith("torch==") for line in packages.read_text().splitlines())


def test_a_sweep_trial_that_its_pruner_stops_ends_early_and_says_pruned(
    trained_project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trial of `audioclf sweep` reports val/accuracy to its Optuna trial after each epoch;
    a pruner that wants 2.0 (never reached) stops it after the first evaluation. The pruner
    comes from the environment: Optuna's storage keeps none."""
    import optuna
    from mlflow.tracking import MlflowClient

    from audioclf.tracking.tags import TRIAL_ENV
    from audioclf.training import pruning

    storage = f"sqlite:///{trained_project.root / 'optuna.db'}"
    study = optuna.create_study(study_name="pruned", storage=storage)
    trial = study.ask()
    for name, value in (
        (pruning.STORAGE_ENV, storage),
        (pruning.STUDY_ENV, "pruned"),
        (TRIAL_ENV, str(trial.number)),
        (pruning.CURVE_ENV, "accuracy"),
        (pruning.PRUNER_ENV, json.dumps({"name": "threshold", "lower": 2.0})),
    ):
        monkeypatch.setenv(name, value)
    run_stage(train, ["train.epochs=3"])

    cfg = trained_project.cfg()
    validation = json.loads(Path(cfg.paths.validation).read_text())
    assert validation["pruned"] is True and validation["epochs_trained"] == 1
    reported = study.get_trials()[0].intermediate_values
    assert list(reported) == [1] and 0.0 <= reported[1] <= 1.0
    assert (Path(cfg.paths.model) / "model.safetensors").is_file()
    run_id = json.loads(Path(cfg.paths.run).read_text())["run_id"]
    run = MlflowClient(f"sqlite:///{trained_project.root / 'mlflow.db'}").get_run(run_id)
    assert run.data.tags["train.pruned"] == "true"
    assert run.data.tags["optuna.trial"] == str(trial.number)
