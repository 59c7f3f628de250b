"""A hyperparameter sweep as queued DVC experiments, each one MLflow run in the user's store;
in parallel (``dvc queue start -j 2``) every run lands, with its share of the cores, and a run
whose experiment failed or was killed ends FAILED or KILLED, never FINISHED."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import pytest

from audioclf import environment, threads
from audioclf.testing import (
    HUB_OVERRIDES,
    TINY_TRAIN_OVERRIDES,
    Project,
    dvc,
    git,
    make_dvc_repo,
    queue_start,
    wait_for_queue,
)
from audioclf.tracking.tags import ERROR_TAG, STAGE_TAG


@pytest.fixture
def committed_repo(tmp_path: Path) -> Project:
    """A git + DVC repo whose data stages ran and are committed, as a sweep's baseline."""
    project = make_dvc_repo(tmp_path / "repo")
    dvc(project.root, "repro", "featurize")
    git(project.root, "add", "-A")
    git(project.root, "commit", "-qm", "baseline: data stages locked")
    return project


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


# --------------------------------------------------------------------------- parallel queue


def wait_for_training(repo: Path, experiment: str, timeout: float) -> None:
    """Until the queued ``experiment``'s train stage has its MLflow run: the run file it writes
    in the experiment's copy (a file, not the store, which the training stages keep busy)."""
    deadline = time.monotonic() + timeout
    while True:
        for run_file in (repo / ".dvc" / "tmp" / "exps").glob("*/reports/mlflow_run.json"):
            with contextlib.suppress(OSError, ValueError):
                if json.loads(run_file.read_text())["dvc_experiment"] == experiment:
                    return
        assert time.monotonic() < deadline, f"{experiment} never started training"
        time.sleep(0.5)


def test_parallel_queue_lands_every_run_and_ends_failed_and_killed_ones(
    committed_repo: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dvc queue start -j 2` on a fresh store: 3 experiments land FINISHED with their own
    params, test metrics and registered model; one whose train raises ends FAILED; one killed
    with `dvc queue kill` while it trains ends KILLED. No run is left RUNNING."""
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # the queue's thread rule decides
    repo = committed_repo.root
    recipe = [o for o in (*HUB_OVERRIDES, *TINY_TRAIN_OVERRIDES) if "learning_rate" not in o]
    sets = [arg for override in recipe for arg in ("-S", override)]
    sweep = ("-S", "tracking.sweep=parallel")
    lrs = ("0.001", "0.002", "0.003")
    queued = dvc(
        repo, "exp", "run", "--queue", *sets, *sweep, "-S", f"train.learning_rate={','.join(lrs)}"
    )
    assert queued.count("Queued experiment") == 3, queued
    # fails once trained, on a key only checked then (tracking.*: no stage param)
    bad = ("-S", "train.epochs=1", "-S", "tracking.log_checkpoints=bogus")
    dvc(repo, "exp", "run", "--queue", *sets, *sweep, *bad, "-n", "bad-checkpoints")
    dvc(repo, "exp", "run", "--queue", *sets, *sweep, "-S", "train.epochs=2000", "-n", "to-kill")
    assert not (repo / "mlflow.db").exists()  # the queued stages create the store at once

    assert "Started '2'" in queue_start(repo, 2)
    wait_for_training(repo, "to-kill", timeout=600)
    time.sleep(2)  # well inside the training loop
    assert "to-kill has been killed" in dvc(repo, "queue", "kill", "to-kill")
    tasks = wait_for_queue(repo, timeout=600)

    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment_id = client.get_experiment_by_name("audioclf").experiment_id

    runs = {
        r.info.run_name: r
        for r in client.search_runs([experiment_id], filter_string="tags.sweep = 'parallel'")
    }
    assert len(runs) == 5, (sorted(runs), tasks)
    killed, failed = runs.pop("to-kill"), runs.pop("bad-checkpoints")
    assert killed.info.status == "KILLED", killed.data.tags
    assert killed.data.tags[ERROR_TAG] == "train: interrupted by SIGINT"
    assert failed.info.status == "FAILED", failed.data.tags
    assert failed.data.tags[ERROR_TAG].startswith("train: ValueError: tracking.log_")
    for run in (killed, failed):
        assert not [k for k in run.data.metrics if k.startswith("test/")]

    assert sorted(run.data.params["train.learning_rate"] for run in runs.values()) == list(lrs)
    experiments = {
        rev["name"]: (rev["rev"], rev["data"]["params"]["params.yaml"]["data"])
        for baseline in json.loads(dvc(repo, "exp", "show", "--json", stderr=False))
        for exp in baseline.get("experiments") or []
        for rev in exp["revs"]
    }
    assert set(runs) <= set(experiments), experiments.keys()
    registered = {v.run_id for v in client.search_model_versions("name='audioclf-intent'")}
    cores = threads.usable_cores()
    rules = []
    for name, run in runs.items():
        assert run.info.status == "FINISHED", (name, run.data.tags)
        assert run.data.tags[STAGE_TAG] == "evaluate"
        assert {"test/accuracy", "test/f1_macro"} <= run.data.metrics.keys()
        assert run.info.run_id in registered
        rev, params = experiments[name]  # the experiment's commit names its run
        assert json.loads(git(repo, "show", f"{rev}:reports/mlflow_run.json"))["run_id"] == (
            run.info.run_id
        )
        assert run.data.params["train.learning_rate"] == str(params["train"]["learning_rate"])
        rule = run.data.tags["train.threads_rule"]
        running = int(rule.split(" / ")[1].split()[0])
        assert rule == f"queued experiment: {cores} cores / {running} running experiments"
        assert run.data.tags["train.threads"] == str(max(1, cores // running))
        assert run.data.tags["env.torch_threads"] == run.data.tags["train.threads"]
        rules.append(running)
    assert 2 in rules, rules  # the first two ran side by side, each with its share
    assert not client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'")
