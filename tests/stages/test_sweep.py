"""A sweep's pieces without a queue: its MLflow tag and param, each queued experiment's share of
the cores, and a stage's outcome as its run's status (FAILED or KILLED, never FINISHED, when the
stage failed or was killed). The queued sweeps themselves are tests/system/test_sweep.py."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from audioclf import threads
from audioclf.tracking.outcome import stage_outcome
from audioclf.tracking.store import using_tracking_uri
from audioclf.tracking.tags import dvc_tags, sweep_name


def test_sweep_tag_is_the_param_else_the_experiments_baseline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    named = OmegaConf.create({"sweep": "lr-grid"})
    unnamed = OmegaConf.create({"sweep": None})
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.delenv("DVC_EXP_BASELINE_REV", raising=False)
    assert sweep_name(unnamed) is None  # a plain `dvc repro`
    assert sweep_name(named) == "lr-grid"
    monkeypatch.setenv("DVC_EXP_NAME", "brisk-oryx")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "c9e5967eda9ce9d35cfc861e0a370d36883a09a6")
    assert sweep_name(unnamed) == "baseline-c9e5967"
    assert sweep_name(named) == "lr-grid"
    assert dvc_tags(named) == {
        "dvc.experiment": "brisk-oryx",
        "dvc.baseline_rev": "c9e5967eda9ce9d35cfc861e0a370d36883a09a6",
        "sweep": "lr-grid",
    }


def test_sweep_param_is_not_a_stage_param() -> None:
    """Naming a sweep changes no model: `dvc repro` stays a no-op when only the name changes."""
    import yaml

    from audioclf.testing import REPO_ROOT

    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    declared = [p for stage in stages.values() for p in stage.get("params", [])]
    assert not [p for p in declared if str(p).startswith("tracking")]


# --------------------------------------------------------------------------- thread budget


def test_queued_experiments_share_the_cores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside an experiment copy, torch gets the cores divided by the copies some live process
    works in (queued ones, and `dvc exp run --temp` ones under standalone/, as a sweep's
    trials run): a stale copy and DVC's own worker folder do not count."""
    repo = tmp_path / "repo"
    copies = repo / ".dvc" / "tmp" / "exps"
    ours, other, stale = (copies / name for name in ("tmpours", "tmpother", "tmpstale"))
    temp = copies / "standalone" / "tmptrial"
    for copy in (ours, other, stale, temp):
        (copy / ".dvc").mkdir(parents=True)
    (copies / "celery").mkdir()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(repo))
    monkeypatch.chdir(ours)
    cores = threads.usable_cores()

    alone = threads.thread_budget(None)
    assert alone == threads.ThreadBudget(
        cores, f"queued experiment: {cores} cores / 1 running experiments"
    )

    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    folders = (other, temp / "src", copies / "celery", copies / "standalone")
    (temp / "src").mkdir()
    others = [subprocess.Popen(sleep, cwd=folder) for folder in folders]
    try:
        shared = threads.thread_budget(None)
    finally:
        for process in others:
            process.kill()
            process.wait()
    assert shared.threads == max(1, cores // 3)
    assert shared.rule == f"queued experiment: {cores} cores / 3 running experiments"

    assert threads.thread_budget(3) == threads.ThreadBudget(3, "train.num_threads")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.thread_budget(None) == threads.ThreadBudget(None, "OMP_NUM_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.chdir(repo)  # a stage of the workspace: torch's default
    assert threads.thread_budget(None).threads is None


# --------------------------------------------------------------------------- run status


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A sqlite MLflow store and an experiment in it: (uri, experiment id)."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    return uri, MlflowClient(uri).create_experiment("outcomes")


def new_run(store: tuple[str, str], run_file: Path) -> str:
    """A RUNNING run, named by ``run_file`` as the train stage names its run."""
    from mlflow.tracking import MlflowClient

    uri, experiment_id = store
    run_id = MlflowClient(uri).create_run(experiment_id).info.run_id
    payload = {"run_id": run_id, "experiment_id": experiment_id, "tracking_uri": uri}
    run_file.write_text(json.dumps(payload))
    return run_id


def run_state(store: tuple[str, str], run_id: str) -> tuple[str, dict[str, str]]:
    from mlflow.tracking import MlflowClient

    run = MlflowClient(store[0]).get_run(run_id)
    return run.info.status, {k: v for k, v in run.data.tags.items() if k.startswith("pipeline.")}


def test_stage_outcomes_set_the_run_status(store: tuple[str, str], tmp_path: Path) -> None:
    run_file = tmp_path / "mlflow_run.json"
    run_id = new_run(store, run_file)

    def evaluate_stage(body) -> None:
        with stage_outcome("evaluate", run_file, opens_run=False):
            assert run_state(store, run_id)[1]["pipeline.stage_status"] == "running"
            body()

    def bad_key() -> None:
        raise ValueError("evaluate.window_s must be positive, not -1")

    with pytest.raises(ValueError):
        evaluate_stage(bad_key)
    assert run_state(store, run_id) == (
        "FAILED",
        {
            "pipeline.stage": "evaluate",
            "pipeline.stage_status": "failed",
            "pipeline.error": "evaluate: ValueError: evaluate.window_s must be positive, not -1",
        },
    )

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        evaluate_stage(interrupted)
    status, tags = run_state(store, run_id)
    assert status == "KILLED" and tags["pipeline.error"] == "evaluate: interrupted by SIGINT"

    before = signal.getsignal(signal.SIGTERM)

    def terminated() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the signal interrupts this

    with pytest.raises(SystemExit) as exited:
        evaluate_stage(terminated)
    assert exited.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before
    status, tags = run_state(store, run_id)
    assert status == "KILLED" and tags["pipeline.error"] == "evaluate: terminated by SIGTERM"

    def unreachable() -> None:
        raise ConnectionError("cannot reach postgresql://me:s3cret@db.example/runs")

    with pytest.raises(ConnectionError):
        evaluate_stage(unreachable)
    error = run_state(store, run_id)[1]["pipeline.error"]
    assert "s3cret" not in error and "postgresql://***@db.example/runs" in error

    evaluate_stage(lambda: None)  # evaluated again, successfully: a result, no error left
    assert run_state(store, run_id) == (
        "FINISHED",
        {"pipeline.stage": "evaluate", "pipeline.stage_status": "done"},
    )


def test_train_marks_only_its_own_run_and_leaves_it_unfinished(
    store: tuple[str, str], tmp_path: Path
) -> None:
    """A run file left by an earlier run is removed first: a train that fails before its run
    exists marks no run. A train that succeeds leaves its run RUNNING: not yet a result."""
    run_file = tmp_path / "mlflow_run.json"
    earlier = new_run(store, run_file)
    with (
        pytest.raises(FileNotFoundError),
        stage_outcome("train", run_file, opens_run=True),
    ):
        raise FileNotFoundError("data/features/train not found; run featurize first")
    assert not run_file.exists()
    assert run_state(store, earlier) == ("RUNNING", {})

    with stage_outcome("train", run_file, opens_run=True):
        trained = new_run(store, run_file)
    assert run_state(store, trained) == (
        "RUNNING",
        {"pipeline.stage": "train", "pipeline.stage_status": "done"},
    )


def test_a_stage_whose_copy_is_deleted_under_it_fails_its_open_run(
    store: tuple[str, str], tmp_path: Path
) -> None:
    """`dvc queue kill --force` kills DVC's executor and deletes the experiment's copy, run
    file included, under the train stage: the run it holds open in MLflow ends FAILED."""
    import mlflow

    copy = tmp_path / "copy"
    run_file = copy / "reports" / "mlflow_run.json"
    run_file.parent.mkdir(parents=True)
    with (
        using_tracking_uri(store[0]),
        pytest.raises(FileNotFoundError),
        stage_outcome("train", run_file, opens_run=True),
    ):
        run_id = mlflow.start_run(experiment_id=store[1]).info.run_id
        run_file.write_text(json.dumps({"run_id": run_id, "tracking_uri": store[0]}))
        shutil.rmtree(copy)
        (copy / "models").mkdir()  # the next checkpoint
    assert mlflow.active_run() is None  # ended: MLflow's exit hook cannot finish it
    status, tags = run_state(store, run_id)
    assert status == "FAILED" and tags["pipeline.error"].startswith("train: FileNotFoundError")


STAGE_PROCESS = """
import json, sys
from pathlib import Path
import mlflow
from audioclf.tracking.outcome import stage_outcome

uri, run_file, mode = sys.argv[1:]
mlflow.set_tracking_uri(uri)
with stage_outcome("train", Path(run_file), opens_run=True):
    run = mlflow.start_run()  # as Accelerate's tracker starts it
    payload = {"run_id": run.info.run_id, "tracking_uri": uri}
    Path(run_file).write_text(json.dumps(payload))
    if mode == "raise":
        raise RuntimeError("loss is nan")
    for step in range(1_000_000):  # as Accelerate logs, until signalled
        mlflow.log_metrics({"train/loss": 1.0, "train/learning_rate": 0.1}, step=step)
"""


def test_a_failed_or_killed_stage_process_leaves_its_run_failed_or_killed(
    store: tuple[str, str], tmp_path: Path
) -> None:
    """Stage processes holding their run open in MLflow's fluent API (as Accelerate does) that
    raise, or get a SIGTERM while they log metrics: MLflow's exit hook, which ends open runs
    FINISHED, does not get the last word. (`dvc queue kill`'s SIGINT: the queued sweep below.)"""
    expected = {
        "raise": ("FAILED", "train: RuntimeError: loss is nan"),
        "SIGTERM": ("KILLED", "train: terminated by SIGTERM"),
    }
    script = textwrap.dedent(STAGE_PROCESS)
    run_files = {mode: tmp_path / f"{mode}.json" for mode in expected}
    processes = {
        mode: subprocess.Popen(
            [sys.executable, "-c", script, store[0], str(run_files[mode]), mode],
            stderr=subprocess.PIPE,
            text=True,
        )
        for mode in expected
    }
    deadline = time.monotonic() + 120
    while not run_files["SIGTERM"].is_file():
        assert processes["SIGTERM"].poll() is None, processes["SIGTERM"].stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(1)  # into the logging loop
    processes["SIGTERM"].send_signal(signal.SIGTERM)
    for mode, (status, error) in expected.items():
        code = processes[mode].wait(timeout=120)
        assert code != 0, processes[mode].stderr.read()
        run_id = json.loads(run_files[mode].read_text())["run_id"]
        tags = {"pipeline.stage": "train", "pipeline.stage_status": status.lower()}
        assert run_state(store, run_id) == (status, {**tags, "pipeline.error": error})
    assert processes["SIGTERM"].returncode == 128 + signal.SIGTERM
