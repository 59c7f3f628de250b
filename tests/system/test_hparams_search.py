"""`audioclf sweep`: an Optuna search whose trials are DVC experiments and child MLflow runs,
with workers in one process, in two clones that share only network services (a bare git
remote, a DVC remote, PostgreSQL and an MLflow server on 127.0.0.1), and under SLURM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from audioclf.testing import HUB_OVERRIDES, TINY_TRAIN_OVERRIDES, Project, dvc, git, make_dvc_repo
from tests.servers import (
    create_database,
    start_mlflow_server,
    start_postgres,
    stop_mlflow_server,
    stop_postgres,
)
from tests.slurm import start_slurm, stop_slurm

RECIPE = [*HUB_OVERRIDES, *TINY_TRAIN_OVERRIDES]
WORKSPACE_LEARNING_RATE = 0.003  # debug=fast's


def write_search(repo: Path, name: str, **search: object) -> None:
    folder = repo / "conf" / "hparams_search"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump({"overrides": RECIPE, **search}))


def env_for(repo: Path, **extra: str) -> dict[str, str]:
    venv_bin = Path(sys.executable).parent
    return {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(repo / "src"),
        "DVC_SITE_CACHE_DIR": str(repo.parent / f"{repo.name}-dvc-site-cache"),
        "DVC_NO_ANALYTICS": "1",
        **extra,
    }


def sweep_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "audioclf.cli", "sweep", *args]


def run_sweep(repo: Path, *args: str, timeout: float = 900, **env: str) -> str:
    """`audioclf sweep ARGS` in ``repo``; its output."""
    return run_in(repo, *sweep_command(*args), env=env, timeout=timeout)


def experiments_shown(repo: Path) -> dict[str, dict]:
    """`dvc exp show --json`: each experiment's name -> its params.yaml values."""
    shown = json.loads(dvc(repo, "exp", "show", "--json", stderr=False))
    return {
        rev["name"]: rev["data"]["params"]["params.yaml"]["data"]
        for baseline in shown
        for exp in baseline.get("experiments") or []
        for rev in exp["revs"]
    }


def children(client: MlflowClient, parent_id: str) -> list:
    experiment_id = client.get_run(parent_id).info.experiment_id
    return client.search_runs(
        [experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'"
    )


def parent_run(client: MlflowClient, study_name: str):
    (parent,) = client.search_runs(
        [client.get_experiment_by_name("audioclf").experiment_id],
        filter_string=f"tags.`sweep.role` = 'parent' AND tags.sweep = '{study_name}'",
    )
    return parent


@pytest.fixture
def reproduced_repo(tmp_path: Path) -> Project:
    """A committed repository whose whole pipeline ran at the workspace's params."""
    project = make_dvc_repo(tmp_path / "repo")
    dvc(project.root, "repro", timeout=600)
    git(project.root, "add", "-A")
    git(project.root, "commit", "-qm", "baseline: pipeline locked")
    return project


def test_a_tpe_search_with_two_workers_and_a_grid_through_the_workspace(
    reproduced_repo: Project,
) -> None:
    repo = reproduced_repo.root
    write_search(
        repo,
        "tpe4",
        objective="best_loss",
        direction="minimize",
        n_trials=4,
        sampler={"name": "tpe", "seed": 3, "n_startup_trials": 2},
        pruner={"name": "median", "n_startup_trials": 2, "n_warmup_steps": 1},
        space={
            "train.learning_rate": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True},
            "model.config.dropout": {"type": "float", "low": 0.0, "high": 0.5},
        },
    )
    output = run_sweep(repo, "tpe4", "--jobs", "2")
    assert "best: trial" in output, output

    study = optuna.load_study(study_name="tpe4", storage=f"sqlite:///{repo / 'optuna.db'}")
    trials = study.get_trials()
    assert len(trials) == 4
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}, trials
    names = {t.user_attrs["dvc_experiment"] for t in trials}
    assert len(names) == 4

    shown = experiments_shown(repo)
    assert names <= shown.keys(), shown.keys()
    for trial in trials:
        params = shown[trial.user_attrs["dvc_experiment"]]
        assert params["train"]["learning_rate"] == pytest.approx(
            trial.params["train.learning_rate"]
        )
        assert params["model"]["config"]["dropout"] == pytest.approx(
            trial.params["model.config.dropout"]
        )

    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    parent = parent_run(client, "tpe4")
    assert parent.info.status == "FINISHED"
    assert parent.data.params["space.train.learning_rate"] == "float[0.0001, 0.03] log"
    assert parent.data.params["space.model.config.dropout"] == "float[0.0, 0.5]"
    assert parent.data.params["search.objective"] == "best_loss"
    assert parent.data.params["search.n_trials"] == "4"
    assert parent.data.params["search.sampler"].startswith("name=tpe")
    kids = children(client, parent.info.run_id)
    assert len(kids) == 4
    by_run = {t.user_attrs["mlflow_run_id"]: t for t in trials}
    assert {k.info.run_id for k in kids} == by_run.keys()
    for kid in kids:
        trial = by_run[kid.info.run_id]
        assert kid.info.status == "FINISHED"
        assert kid.data.tags["optuna.state"] == trial.state.name
        assert kid.data.tags["dvc.experiment"] == trial.user_attrs["dvc_experiment"]
        assert kid.data.tags["optuna.trial"] == str(trial.number)
        if trial.state == TrialState.COMPLETE:
            assert kid.data.metrics["val_best/loss"] == pytest.approx(trial.value)
    complete = [k for k in kids if k.data.tags["optuna.state"] == "COMPLETE"]
    best_kid = min(complete, key=lambda k: k.data.metrics["val_best/loss"])
    assert parent.data.tags["best.run_id"] == best_kid.info.run_id
    assert float(parent.data.tags["best.value"]) == pytest.approx(
        best_kid.data.metrics["val_best/loss"]
    )
    assert parent.data.tags["best.params.train.learning_rate"] == str(
        by_run[best_kid.info.run_id].params["train.learning_rate"]
    )

    # A grid through the workspace's learning rate: DVC restores that point from its run cache
    # (nothing trains), and the sweep still shows it, linked to the run that made its outputs.
    workspace_run = json.loads((repo / "reports" / "mlflow_run.json").read_text())["run_id"]
    write_search(
        repo,
        "grid",
        objective="best_loss",
        direction="minimize",
        n_trials=2,
        sampler={"name": "grid"},
        space={
            "train.learning_rate": {
                "type": "categorical",
                "choices": [WORKSPACE_LEARNING_RATE, 0.001],
            }
        },
    )
    run_sweep(repo, "grid")
    grid_parent = parent_run(client, "grid")
    grid_kids = {
        k.data.params["train.learning_rate"]: k for k in children(client, grid_parent.info.run_id)
    }
    assert set(grid_kids) == {str(WORKSPACE_LEARNING_RATE), "0.001"}
    restored = grid_kids[str(WORKSPACE_LEARNING_RATE)]
    assert restored.data.tags["restored_from_run"] == workspace_run
    assert restored.info.status == "FINISHED"
    workspace_metrics = client.get_run(workspace_run).data.metrics
    assert restored.data.metrics["test/accuracy"] == workspace_metrics["test/accuracy"]
    trained = grid_kids["0.001"]
    assert "restored_from_run" not in trained.data.tags
    logs = repo / ".dvc" / "tmp" / "sweeps" / "grid"
    restored_log = (logs / f"{restored.data.tags['dvc.experiment']}.log").read_text()
    assert "Running stage 'train'" not in restored_log, restored_log
    trained_log = (logs / f"{trained.data.tags['dvc.experiment']}.log").read_text()
    assert "Running stage 'train'" in trained_log, trained_log


def git_env(home: Path) -> dict[str, str]:
    """A machine of its own: its HOME (so no shared git or DVC config) and a git identity."""
    home.mkdir(parents=True, exist_ok=True)
    return {
        "HOME": str(home),
        "GIT_AUTHOR_NAME": "worker",
        "GIT_AUTHOR_EMAIL": "worker@example.com",
        "GIT_COMMITTER_NAME": "worker",
        "GIT_COMMITTER_EMAIL": "worker@example.com",
    }


def run_in(repo: Path, *command: str, env: dict[str, str], timeout: float = 300) -> str:
    result = subprocess.run(
        command,
        cwd=repo,
        env=env_for(repo, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}{result.stderr}"
    return result.stdout


def clone_machine(origin: Path, root: Path, env: dict[str, str]) -> Path:
    """`git clone` of the bare remote and `dvc pull` of its data, as on a new machine."""
    subprocess.run(
        ["git", "clone", "-q", str(origin), str(root)], check=True, env=env_for(root, **env)
    )
    run_in(root, sys.executable, "-m", "dvc", "pull", "--with-deps", "featurize", env=env)
    return root


def wait_for(predicate, timeout_s: float, what: str, poll_s: float = 1.0):
    deadline = time.monotonic() + timeout_s
    while not (found := predicate()):
        assert time.monotonic() < deadline, f"not seen in {timeout_s} s: {what}"
        time.sleep(poll_s)
    return found


def test_two_clones_share_one_study_and_a_killed_worker_leaves_its_trial_failed(
    tmp_path: Path,
) -> None:
    """Two machines (clones with their own HOME and DVC cache) share nothing but a bare git
    remote, a DVC remote, and PostgreSQL + MLflow on 127.0.0.1; a third clone pulls every
    trial's experiment and audits one of them."""
    postgres = start_postgres()
    try:
        server = start_mlflow_server(postgres, tmp_path / "server")
        try:
            storage = create_database(postgres, "optuna")
            shared_study(tmp_path, storage, server.url, postgres.password)
        finally:
            stop_mlflow_server(server)
    finally:
        stop_postgres(postgres)


def shared_study(tmp_path: Path, storage: str, tracking_uri: str, password: str) -> None:
    origin, dvc_remote = tmp_path / "origin.git", tmp_path / "dvc-remote"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    alice = make_dvc_repo(tmp_path / "alice").root
    write_search(
        alice,
        "team6",
        overrides=[*RECIPE, "train.epochs=1"],
        objective="best_loss",
        direction="minimize",
        n_trials=6,
        heartbeat_s=5,  # a killed worker's trial is FAIL 10 s after its last beat
        sampler={"name": "random", "seed": 0},
        space={"train.learning_rate": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True}},
    )
    dvc(alice, "remote", "add", "-d", "team", str(dvc_remote))
    dvc(alice, "repro", "featurize")
    dvc(alice, "push")
    git(alice, "add", "-A")
    git(alice, "commit", "-qm", "data stages locked; the team6 search")
    git(alice, "push", "-q", str(origin), "HEAD:refs/heads/main")

    services = {"MLFLOW_TRACKING_URI": tracking_uri, "AUDIOCLF_OPTUNA_STORAGE": storage}
    machines = {}
    for name in ("one", "two"):
        env = {**git_env(tmp_path / f"home-{name}"), **services}
        machines[name] = (clone_machine(origin, tmp_path / name, env), env)
    workers = {}
    for index, (name, (repo, env)) in enumerate(machines.items()):
        log = (tmp_path / f"worker-{name}.log").open("w")
        workers[name] = subprocess.Popen(
            sweep_command("team6", "--git-remote", "origin", "--worker-index", str(index)),
            cwd=repo,
            env=env_for(repo, **env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    try:
        # Worker two is killed in its second trial, once that trial's run is training.
        wait_for(lambda: "team6" in optuna.get_all_study_names(storage), 300, "the study")
        study = optuna.load_study(study_name="team6", storage=storage)
        client = MlflowClient(tracking_uri)
        two = f":{workers['two'].pid}:"

        def second_trial_training():
            mine = [t for t in study.get_trials() if two in t.user_attrs.get("worker", "")]
            running = [t for t in mine if t.state == TrialState.RUNNING]
            if len(mine) < 2 or not running:
                return None
            experiment = client.get_experiment_by_name("audioclf")
            name = running[0].user_attrs.get("dvc_experiment")
            if experiment is None or name is None:
                return None
            runs = client.search_runs(
                [experiment.experiment_id], filter_string=f"tags.`dvc.experiment` = '{name}'"
            )
            return running[0] if runs else None

        doomed = wait_for(second_trial_training, 900, "worker two training its second trial", 2)
        os.killpg(workers["two"].pid, signal.SIGKILL)
        workers["two"].wait(timeout=30)
        assert workers["one"].wait(timeout=1200) == 0, (tmp_path / "worker-one.log").read_text()

    finally:
        for process in workers.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)

    trials = study.get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(complete) == 6, [(t.number, t.state) for t in trials]
    assert [t.number for t in failed] == [doomed.number]
    names = sorted(t.user_attrs["dvc_experiment"] for t in complete)
    assert len(set(names)) == 6
    assert len({t.user_attrs["worker"] for t in complete}) == 2  # both machines ran trials
    refs = git(alice, "ls-remote", str(origin), "refs/exps/*")
    assert sorted(line.rsplit("/", 1)[1] for line in refs.splitlines()) == names

    parent = client.search_runs(
        [client.get_experiment_by_name("audioclf").experiment_id],
        filter_string="tags.`sweep.role` = 'parent'",
    )[0]
    assert parent.info.status == "FINISHED"
    assert password not in json.dumps({**parent.data.params, **parent.data.tags})
    kids = {k.data.tags["dvc.experiment"]: k for k in children(client, parent.info.run_id)}
    assert {n for n in names} <= kids.keys()
    assert all(kids[n].info.status == "FINISHED" for n in names)
    killed = kids[doomed.user_attrs["dvc_experiment"]]
    assert killed.info.status == "FAILED" and killed.data.tags["optuna.state"] == "FAIL"

    # A third machine pulls the experiments from the remotes and audits one of them.
    env = {**git_env(tmp_path / "home-three"), **services}
    three = clone_machine(origin, tmp_path / "three", env)
    run_in(three, sys.executable, "-m", "dvc", "exp", "pull", "origin", *names, env=env)
    shown = json.loads(run_in(three, sys.executable, "-m", "dvc", "exp", "show", "--json", env=env))
    listed = {rev["name"] for b in shown for e in b.get("experiments") or [] for rev in e["revs"]}
    assert listed == set(names)
    audited = kids[names[0]].info.run_id
    report = json.loads(
        run_in(
            three,
            sys.executable,
            "-m",
            "audioclf.cli",
            "lineage",
            audited,
            "--verify",
            "--json",
            env=env,
        )
    )
    assert report["dvc_experiment"]["name"] == names[0]
    assert {c["status"] for c in report["verify"]["checks"]} <= {"ok", "in cache", "in git"}


def test_workers_submitted_as_a_slurm_array_join_one_study(tmp_path: Path) -> None:
    """`sbatch --array=0-1` on a one-node cluster on 127.0.0.1: each task one worker."""
    project = make_dvc_repo(tmp_path / "repo")
    repo = project.root
    dvc(repo, "repro", "featurize")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "data stages locked")
    write_search(
        repo,
        "slurm2",
        overrides=[*RECIPE, "train.epochs=1"],
        objective="best_loss",
        direction="minimize",
        n_trials=2,
        sampler={"name": "random", "seed": 0},
        space={"train.learning_rate": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True}},
    )
    script = repo / "sweep.sbatch"
    env = env_for(repo)
    script.write_text(
        "#!/bin/bash\n"
        f"export PATH={env['PATH']} PYTHONPATH={env['PYTHONPATH']} DVC_NO_ANALYTICS=1\n"
        f"cd {repo}\n"
        f"exec {sys.executable} -m audioclf.cli sweep slurm2\n"
    )
    cluster = start_slurm()
    try:
        job = cluster.run(
            "sbatch",
            "--parsable",
            "--array=0-1",
            "--cpus-per-task=1",
            f"--output={tmp_path}/slurm-%a.log",
            str(script),
        ).strip()
        cluster.wait_for_jobs(job, timeout_s=900)
    finally:
        stop_slurm(cluster)
    logs = "".join((tmp_path / f"slurm-{i}.log").read_text() for i in (0, 1))
    study = optuna.load_study(study_name="slurm2", storage=f"sqlite:///{repo / 'optuna.db'}")
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2, logs
    assert len({t.user_attrs["slurm_task"] for t in trials}) == 2, logs  # one per array task
    assert {t.user_attrs["dvc_experiment"] for t in trials} <= experiments_shown(repo).keys()
