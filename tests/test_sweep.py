"""A hyperparameter sweep as queued DVC experiments, each one MLflow run in the user's store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from audioclf import environment, tracking
from tests.datagen import HUB_OVERRIDES, TINY_TRAIN_OVERRIDES, Project, dvc, git, make_dvc_repo


def test_sweep_tag_is_the_param_else_the_experiments_baseline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    named = OmegaConf.create({"sweep": "lr-grid"})
    unnamed = OmegaConf.create({"sweep": None})
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.delenv("DVC_EXP_BASELINE_REV", raising=False)
    assert tracking.sweep_name(unnamed) is None  # a plain `dvc repro`
    assert tracking.sweep_name(named) == "lr-grid"
    monkeypatch.setenv("DVC_EXP_NAME", "brisk-oryx")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "c9e5967eda9ce9d35cfc861e0a370d36883a09a6")
    assert tracking.sweep_name(unnamed) == "baseline-c9e5967"
    assert tracking.sweep_name(named) == "lr-grid"
    assert tracking.dvc_tags(named) == {
        "dvc.experiment": "brisk-oryx",
        "dvc.baseline_rev": "c9e5967eda9ce9d35cfc861e0a370d36883a09a6",
        "sweep": "lr-grid",
    }


def test_sweep_param_is_not_a_stage_param() -> None:
    """Naming a sweep changes no model: `dvc repro` stays a no-op when only the name changes."""
    import yaml

    from tests.datagen import REPO_ROOT

    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    declared = [p for stage in stages.values() for p in stage.get("params", [])]
    assert not [p for p in declared if str(p).startswith("tracking")]


@pytest.fixture
def committed_repo(tmp_path: Path) -> Project:
    """A git + DVC repo whose data stages ran and are committed, as a sweep's baseline."""
    project = make_dvc_repo(tmp_path / "repo")
    dvc(project.root, "repro", "featurize")
    git(project.root, "add", "-A")
    git(project.root, "commit", "-qm", "baseline: data stages locked")
    return project


@pytest.mark.slow
def test_queued_sweep_gives_one_named_mlflow_run_per_experiment(
    committed_repo: Project, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from mlflow.tracking import MlflowClient

    from audioclf.cli import main

    repo = committed_repo.root
    # `dvc exp run -S` recomposes params.yaml from conf/: the tiny recipe goes in as overrides.
    recipe = [o for o in (*HUB_OVERRIDES, *TINY_TRAIN_OVERRIDES) if "learning_rate" not in o]
    sets = [arg for override in recipe for arg in ("-S", override)]
    grid = ("-S", "train.learning_rate=0.001,0.003", "-S", "tracking.sweep=lr-grid")
    queued = dvc(repo, "exp", "run", "--queue", *sets, *grid)
    assert queued.count("Queued experiment") == 2, queued
    ran = dvc(repo, "exp", "run", "--run-all", timeout=900)
    assert "Failed to reproduce" not in ran, ran[-3000:]
    assert "Running stage 'download'" not in ran, "data stages come from the baseline's cache"

    # dvc exp show: both experiments, their learning rates and test metrics.
    shown = json.loads(dvc(repo, "exp", "show", "--json", stderr=False))
    experiments = {}
    for baseline in shown:
        for exp in baseline.get("experiments") or []:
            for rev in exp["revs"]:
                data = rev["data"]
                params = data["params"]["params.yaml"]["data"]
                metrics = data["metrics"]["reports/metrics.json"]["data"]
                experiments[rev["name"]] = (rev["rev"], params, metrics)
    assert len(experiments) == 2, shown
    assert {p["train"]["learning_rate"] for _, p, _ in experiments.values()} == {0.001, 0.003}
    assert all({"accuracy", "f1_macro"} <= m.keys() for _, _, m in experiments.values())

    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    runs = client.search_runs(
        [client.get_experiment_by_name("audioclf").experiment_id],
        filter_string="tags.sweep = 'lr-grid'",
    )
    assert len(runs) == 2
    for run in runs:
        name = run.info.run_name
        rev, params, metrics = experiments[name]  # MLflow run name = DVC experiment name
        assert run.data.tags["dvc.experiment"] == name
        assert run.data.params["train.learning_rate"] == str(params["train"]["learning_rate"])
        assert run.data.metrics["test/accuracy"] == pytest.approx(metrics["accuracy"])
        assert run.data.metrics["test/f1_macro"] == pytest.approx(metrics["f1_macro"])
        # ...and the experiment's commit names its MLflow run.
        run_file = json.loads(git(repo, "show", f"{rev}:reports/mlflow_run.json"))
        assert run_file["run_id"] == run.info.run_id
        assert run_file["dvc_experiment"] == name and run_file["sweep"] == "lr-grid"
        # Artifacts live in the user's repo, not in the experiment's deleted temporary copy.
        assert run.info.artifact_uri.startswith((repo / "mlartifacts").as_uri())
        assert client.list_artifacts(run.info.run_id, "lineage")
    assert not list((repo / ".dvc" / "tmp" / "exps").glob("*/mlflow.db"))

    # The lineage of a sweep's run names its DVC experiment, whose commit names the run back.
    monkeypatch.chdir(repo)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["lineage", runs[0].info.run_id, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sweep"] == "lr-grid"
    assert report["dvc_experiment"]["name"] == runs[0].info.run_name
    assert report["dvc_experiment"]["commit"] == experiments[runs[0].info.run_name][0]
    assert report["dvc_experiment"]["run_file_names_this_run"] is True

    # Every run of the sweep is verifiable while the workspace holds neither model: each
    # path is found intact in the workspace, the DVC cache or the experiment's commit.
    assert not (repo / "models" / "final").exists()
    for run in runs:
        assert main(["lineage", run.info.run_id, "--verify", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        checks = {c["path"]: c for c in report["verify"]["checks"]}
        assert checks["models/final"]["status"] == "in cache"
        assert report["code"]["git_dirty"] == "false"  # the experiment's params.yaml is no dirt
        assert report["environment"]["torch"] and report["environment"]["torch_threads"] >= 1
        assert run.data.tags["env.transformers"] == report["environment"]["transformers"]
    experiment = client.get_experiment_by_name("audioclf")
    assert not [k for k in experiment.tags if k.startswith(("git.", "dvc.", "data."))]

    # Verified on another environment, the audit says what differs from the run's.
    real_describe = environment.describe
    monkeypatch.setattr(
        environment, "describe", lambda *a, **k: {**real_describe(*a, **k), "torch": "9.9.9"}
    )
    assert main(["lineage", runs[1].info.run_id, "--verify", "--json"]) == 0
    warnings = json.loads(capsys.readouterr().out)["warnings"]
    assert any("environment differs: torch:" in w and "-> 9.9.9" in w for w in warnings)
    monkeypatch.setattr(environment, "describe", real_describe)

    # One cached file of one run's model corrupted: that run fails, naming the file.
    run_id = runs[0].info.run_id
    main(["lineage", run_id, "--json"])
    model_out = next(
        out
        for stage in json.loads(capsys.readouterr().out)["dvc_lock"]["stages"].values()
        for out in stage.get("outs") or []
        if out["path"] == "models/final"
    )
    listing = json.loads((cache_file(repo, model_out["md5"])).read_text())
    weights = next(entry for entry in listing if entry["relpath"] == "model.safetensors")
    cached = cache_file(repo, weights["md5"])
    cached.chmod(0o644)
    cached.write_bytes(b"not the weights")
    assert main(["lineage", run_id, "--verify"]) == 1
    err = capsys.readouterr().err
    assert "models/final/model.safetensors" in err
    assert main(["lineage", runs[1].info.run_id, "--verify"]) == 0


def cache_file(repo: Path, md5: str) -> Path:
    """Where DVC keeps an object of its cache (``files/md5/ab/cdef...``)."""
    return repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
