"""A hyperparameter sweep as queued DVC experiments, each one MLflow run in the user's store;
in parallel (``dvc queue start -j 2``) every run lands, with its share of the cores, and a run
whose experiment failed or was killed ends FAILED or KILLED, never FINISHED."""

from __future__ import annotations

import contextlib
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

from audioclf import environment, threads
from audioclf.testing import HUB_OVERRIDES, TINY_TRAIN_OVERRIDES, Project, dvc, git, make_dvc_repo
from audioclf.tracking.outcome import stage_outcome
from audioclf.tracking.store import using_tracking_uri
from audioclf.tracking.tags import ERROR_TAG, STAGE_TAG, dvc_tags, sweep_name


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


# --------------------------------------------------------------------------- thread budget


def test_queued_experiments_share_the_cores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside an experiment copy, torch gets the cores divided by the copies some live process
    works in: a stale copy and DVC's own worker folder do not count."""
    repo = tmp_path / "repo"
    copies = repo / ".dvc" / "tmp" / "exps"
    ours, other, stale = (copies / name for name in ("tmpours", "tmpother", "tmpstale"))
    for copy in (ours, other, stale):
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
    others = [subprocess.Popen(sleep, cwd=folder) for folder in (other, copies / "celery")]
    try:
        shared = threads.thread_budget(None)
    finally:
        for process in others:
            process.kill()
            process.wait()
    assert shared.threads == max(1, cores // 2)
    assert shared.rule == f"queued experiment: {cores} cores / 2 running experiments"

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


# --------------------------------------------------------------------------- parallel queue

QUEUE_ACTIVE = ("Running", "Queued")


def queue_start(repo: Path, jobs: int) -> str:
    """`dvc queue start -j JOBS`, its output through a file: the workers it leaves behind keep
    the output open, so through a pipe (as :func:`dvc` reads it) it would end with them."""
    venv_bin = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(repo / "src"),
        "DVC_SITE_CACHE_DIR": str(repo.parent / "dvc-site-cache"),
        "DVC_NO_ANALYTICS": "1",
    }
    log = repo.parent / "queue-start.log"
    with log.open("w") as out:
        subprocess.run(
            [str(venv_bin / "dvc"), "queue", "start", "-j", str(jobs)],
            cwd=repo,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=120,
            check=True,
        )
    return log.read_text()


def wait_for_queue(repo: Path, timeout: float) -> str:
    """Poll `dvc queue status` until no task is running or queued; its last output."""
    deadline = time.monotonic() + timeout
    while True:
        status = dvc(repo, "queue", "status")
        tasks = [line.split() for line in status.splitlines()[1:] if line.strip()]
        if not any(task[-1] in QUEUE_ACTIVE for task in tasks if task):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(3)


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


@pytest.mark.slow
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
    status = wait_for_queue(repo, timeout=600)

    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment_id = client.get_experiment_by_name("audioclf").experiment_id

    runs = {
        r.info.run_name: r
        for r in client.search_runs([experiment_id], filter_string="tags.sweep = 'parallel'")
    }
    assert len(runs) == 5, (sorted(runs), status)
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
