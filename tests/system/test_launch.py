"""Training on several processes and machines under real `dvc repro`: the launch configuration
(conf/launch/) is locked, the MLflow run says what ran, validation sees every sample once, a
killed run resumes to the same end, and two "machines" on 127.0.0.1 train one model."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import yaml
from safetensors.numpy import load_file

from audioclf.testing import HUB_OVERRIDES, TINY_TRAIN_OVERRIDES, dvc, git, make_dvc_repo

STATE = Path("models/checkpoints/last/train_state.json")
MODEL = Path("models/final/model.safetensors")


def run_tags(repo: Path) -> dict[str, str]:
    from mlflow.tracking import MlflowClient

    run_id = json.loads((repo / "reports/mlflow_run.json").read_text())["run_id"]
    return MlflowClient(f"sqlite:///{repo / 'mlflow.db'}").get_run(run_id).data.tags


def locked_launch(repo: Path) -> dict:
    train = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["train"]
    assert train["cmd"] == "python -m audioclf.launch"
    return train["params"]["params.yaml"]["launch"]


def validation_rows(repo: Path) -> int:
    return json.loads((repo / "data/manifest.json").read_text())["num_rows"]["validation"]


def kill_tree_when(condition, timeout: float = 300) -> None:
    """SIGKILL every process this test started (dvc, the launcher, the training processes,
    which torch starts in sessions of their own) once ``condition()`` holds: a crash."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition to kill on never came"
        time.sleep(0.05)
    for child in psutil.Process().children(recursive=True):
        child.send_signal(signal.SIGKILL)


def unfinished_after_an_epoch(repo: Path) -> bool:
    try:
        state = json.loads((repo / STATE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return not state["finished"] and state["epoch"] >= 1


def test_dvc_repro_trains_two_cpu_processes_and_a_killed_run_resumes_to_the_same_end(
    tmp_path: Path,
) -> None:
    project = make_dvc_repo(tmp_path / "repo")
    project.write_params(
        *HUB_OVERRIDES, *TINY_TRAIN_OVERRIDES, "launch=cpu_processes", "train.epochs=6"
    )
    repo = project.root
    dvc(repo, "repro", "train")

    launch = locked_launch(repo)
    assert (launch["num_processes"], launch["num_machines"], launch["cpu"]) == (2, 1, True)
    tags = run_tags(repo)
    assert tags["accelerate.num_processes"] == "2"
    assert tags["accelerate.num_machines"] == "1"
    assert tags["accelerate.distributed_type"] == "MULTI_CPU"
    rows = validation_rows(repo)
    assert json.loads((repo / "reports/validation.json").read_text())["num_validation"] == rows
    straight = json.loads((repo / STATE).read_text())
    assert [e["samples"] for e in straight["evals"]] == [rows] * 6
    straight_weights = load_file(str(repo / MODEL))

    forced = threading.Thread(
        target=dvc, args=(repo, "repro", "-f", "train"), kwargs={"check": False}
    )
    forced.start()
    kill_tree_when(lambda: unfinished_after_an_epoch(repo))
    forced.join(timeout=60)
    interrupted = json.loads((repo / STATE).read_text())
    assert not interrupted["finished"] and interrupted["epoch"] < 6

    resumed_log = dvc(repo, "repro", "train")
    assert "resuming from" in resumed_log
    resumed = json.loads((repo / STATE).read_text())
    assert resumed["finished"] and resumed["run_id"] == interrupted["run_id"]
    assert resumed["best_epoch"] == straight["best_epoch"]
    for after, before in zip(resumed["evals"], straight["evals"], strict=True):
        assert after["samples"] == before["samples"] == rows
        assert after["accuracy"] == before["accuracy"]
        assert after["loss"] == pytest.approx(before["loss"], rel=1e-5)
    for name, tensor in load_file(str(repo / MODEL)).items():
        np.testing.assert_allclose(tensor, straight_weights[name], rtol=1e-5, atol=1e-6)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_machines_on_loopback_train_one_model_that_the_main_clone_locks(
    tmp_path: Path,
) -> None:
    """Machine 0 runs `dvc repro` in its clone; machine 1, a second clone that got the features
    with `dvc pull` from a local remote, runs the documented worker command. CPU, gloo."""
    main = make_dvc_repo(tmp_path / "machine0")
    main.write_params(
        *HUB_OVERRIDES,
        *TINY_TRAIN_OVERRIDES,
        "launch=machines",
        "launch.cpu=true",
        "launch.num_processes=2",
        "launch.main_process_ip=127.0.0.1",
        f"launch.main_process_port={free_port()}",
    )
    repo = main.root
    dvc(repo, "remote", "add", "-d", "shared", str(tmp_path / "remote"))
    dvc(repo, "repro", "featurize")
    dvc(repo, "push")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "pipeline up to featurize")
    worker_repo = tmp_path / "machine1"
    git(tmp_path, "clone", "-q", str(repo), str(worker_repo))
    dvc(worker_repo, "pull", "--with-deps", "featurize")
    assert (worker_repo / "data/features").is_dir()

    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(worker_repo / "src"),
    }
    log = tmp_path / "worker.log"
    with log.open("w") as worker_log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "audioclf.launch", "--machine-rank", "1"],
            cwd=worker_repo,
            env=env,
            stdout=worker_log,
            stderr=subprocess.STDOUT,
        )
        try:
            output = dvc(repo, "repro", "train", timeout=600)
            assert worker.wait(timeout=120) == 0, log.read_text()[-3000:]
        finally:
            if worker.poll() is None:
                worker.kill()
    assert "Running stage 'train'" in output

    launch = locked_launch(repo)
    assert (launch["num_processes"], launch["num_machines"], launch["cpu"]) == (2, 2, True)
    assert launch["main_process_ip"] == "127.0.0.1"
    tags = run_tags(repo)
    assert (tags["accelerate.num_machines"], tags["accelerate.num_processes"]) == ("2", "2")
    validation = json.loads((repo / "reports/validation.json").read_text())
    assert validation["num_validation"] == validation_rows(repo)
    assert (repo / MODEL).is_file() and not (worker_repo / MODEL).exists()
