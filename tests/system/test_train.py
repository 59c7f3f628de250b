"""The train and evaluate stages end to end: a model that loads in pipeline(), an MLflow run
on a real ``mlflow server`` with everything an audit needs, 2-process CPU training, and
kill-and-resume equality."""

from __future__ import annotations

import csv
import json
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from audioclf.data.store import load_splits
from audioclf.stages import run_stage
from audioclf.stages.evaluate import evaluate
from audioclf.stages.train import train
from audioclf.testing import HUB_DIR, VENV_BIN, Project, stage_env, train_process


@pytest.fixture
def mlflow_server(tmp_path: Path) -> str:
    """A real `mlflow server` on 127.0.0.1 with a sqlite store, stopped after the test."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = tmp_path / "server"
    store.mkdir()
    proc = subprocess.Popen(
        [
            str(VENV_BIN / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{store / 'mlflow.db'}",
            "--artifacts-destination",
            str(store / "artifacts"),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=store,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        import urllib.request

        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("mlflow server did not start") from None
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_train_evaluate_log_one_complete_mlflow_run(
    trained_project: Project, mlflow_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient
    from transformers import pipeline

    import audioclf.models.logmel_cnn  # noqa: F401  (registers the CNN, as README says)

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    sampled = "tracking.system_metrics_interval_s=0.2"  # system metrics in seconds-long stages
    run_stage(train, [sampled])
    trained_ms = time.time() * 1000
    # windows (0.25 s) shorter than every test clip (0.3-0.5 s), unlike the recorded 0.4 s crop
    run_stage(evaluate, ["evaluate.window_s=0.25", sampled])

    cfg = trained_project.cfg()
    model_dir = Path(cfg.paths.model)
    assert (model_dir / "model.safetensors").is_file()
    assert not list(model_dir.glob("*.bin"))
    classify = pipeline("audio-classification", model=str(model_dir))
    scores = classify(np.random.default_rng(0).standard_normal(4000).astype(np.float32), top_k=None)
    assert {s["label"] for s in scores} == {"abroad", "balance", "freeze", "pay_bill"}
    assert sum(s["score"] for s in scores) == pytest.approx(1.0, abs=1e-4)

    metrics = json.loads(Path(cfg.paths.metrics).read_text())
    assert {"accuracy", "f1_macro"} <= metrics.keys()
    assert metrics["num_test"] == len(Path(cfg.paths.predictions).read_text().splitlines()) - 1
    # What evaluate scored is what users are served: audioclf predict's scoring of the same
    # test clips (`audioclf predict --window-s 0.25`).
    from audioclf.data.audio import as_float32
    from audioclf.windows import WindowedClassifier

    test = load_splits(cfg.paths.resampled, "resample")["test"]
    classifier = WindowedClassifier(model_dir)
    assert classifier.default_window_s == cfg.train.crop_s == 0.4  # the train stage's record
    rate = cfg.audio.sampling_rate
    clips = [(as_float32(np.asarray(a)), rate) for a in test["array"]]
    scored = classifier.score(clips, classifier.window(0.25), batch_size=8)
    assert all(s.windows > 1 for s in scored)
    served = [classifier.labels[int(s.probs.argmax())] for s in scored]
    with open(cfg.paths.predictions, newline="") as table:
        evaluated = {row["path"]: row["predicted"] for row in csv.DictReader(table)}
    assert served == [evaluated[path] for path in test["path"]]

    run_id = json.loads(Path(cfg.paths.run).read_text())["run_id"]
    client = MlflowClient(mlflow_server)
    run = client.get_run(run_id)
    tags = run.data.tags
    assert run.data.params["train.learning_rate"] == "0.003"
    assert run.data.params["model.config.channels"] == "[8, 16]"
    assert run.data.params["data.path"] == HUB_DIR
    assert len(client.get_metric_history(run_id, "train/loss")) >= 3
    for key in ("val/accuracy", "val/loss", "val/f1_macro"):
        assert len(client.get_metric_history(run_id, key)) == 3, key
    assert not [key for key in run.data.metrics if key.startswith("eval/")]
    assert len(client.get_metric_history(run_id, "test/accuracy")) == 1
    validation = json.loads(Path(cfg.paths.validation).read_text())
    assert run.data.metrics["val_best/accuracy"] == pytest.approx(validation["best_accuracy"])
    assert tags["train.best_epoch"] == str(validation["best_epoch"])
    assert tags["train.stopped_early"] == "false"
    assert run.data.metrics["test/accuracy"] == pytest.approx(metrics["accuracy"])
    assert run.data.metrics["test/f1_macro"] == pytest.approx(metrics["f1_macro"])
    assert tags["data.digest"] == json.loads(Path(cfg.paths.manifest).read_text())["digest"]
    assert tags["git.commit"]
    assert tags["accelerate.num_processes"] == "1"
    assert (tags["evaluate.window_s"], tags["evaluate.hop_s"]) == ("0.25", "0.125")
    for stage in ("train", "evaluate"):  # the GPUs each stage leased (audioclf.devices)
        assert {f"{stage}.devices", f"{stage}.devices_rule"} <= tags.keys()
    # MLflow's system metrics, sampled while train ran and again while evaluate ran
    for key in ("cpu_utilization_percentage", "system_memory_usage_megabytes"):
        times = [m.timestamp for m in client.get_metric_history(run_id, f"system/{key}")]
        assert times and min(times) < trained_ms < max(times), key
    assert {"system/disk_usage_percentage", "system/network_receive_megabytes"} <= set(
        run.data.metrics
    )

    def artifacts(path: str = "") -> set[str]:
        found = set()
        for item in client.list_artifacts(run_id, path):
            found |= artifacts(item.path) if item.is_dir else {item.path}
        return found

    logged = artifacts()
    assert "data/manifest.json" in logged
    assert "config/label_maps.json" in logged
    assert "training/train_log.csv" in logged
    assert "evaluation/confusion_matrix.png" in logged
    assert "evaluation/confusion_matrix.json" in logged
    assert any(p.startswith("checkpoints/best/") and p.endswith(".safetensors") for p in logged)
    assert not any(p.startswith("checkpoints/last/") for p in logged)
    inputs = run.inputs.dataset_inputs
    assert inputs and inputs[0].dataset.digest == tags["data.digest"][:32]
    versions = client.search_model_versions("name='audioclf-intent'")
    assert [v.run_id for v in versions] == [run_id]


def test_two_process_cpu_training_gathers_every_test_clip(trained_project: Project) -> None:
    uri = f"sqlite:///{trained_project.root / 'mlflow.db'}"
    env = stage_env(uri, ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1")
    launch = [
        str(VENV_BIN / "accelerate"),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]
    for stage in ("train", "evaluate"):
        result = subprocess.run(
            [*launch, "-m", f"audioclf.stages.{stage}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]

    from mlflow.tracking import MlflowClient

    cfg = trained_project.cfg()
    run = MlflowClient(uri).get_run(json.loads(Path(cfg.paths.run).read_text())["run_id"])
    assert run.data.tags["accelerate.num_processes"] == "2"
    test_rows = json.loads(Path(cfg.paths.manifest).read_text())["num_rows"]["test"]
    predictions = Path(cfg.paths.predictions).read_text().splitlines()[1:]
    assert len(predictions) == test_rows
    assert len({line.split(",")[0] for line in predictions}) == test_rows
    assert json.loads(Path(cfg.paths.metrics).read_text())["num_test"] == test_rows


def test_killed_run_resumes_and_ends_like_an_uninterrupted_one(
    trained_project: Project, tmp_path: Path
) -> None:
    import shutil

    uri = f"sqlite:///{trained_project.root / 'mlflow.db'}"
    recipe = ("train.epochs=12", "train.checkpoint_every_n_epochs=1")
    twin = tmp_path / "twin"
    shutil.copytree(trained_project.root, twin)

    straight = train_process(twin, uri, *recipe)
    assert straight.wait(timeout=300) == 0, straight.stderr.read()[-3000:]

    killed = train_process(trained_project.root, uri, *recipe)
    state_file = trained_project.root / "models/checkpoints/last/train_state.json"
    deadline = time.monotonic() + 240
    while not state_file.is_file():
        assert killed.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    interrupted = json.loads(state_file.read_text())
    assert not interrupted["finished"] and interrupted["epoch"] < 12

    resumed = train_process(trained_project.root, uri, *recipe)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()[-3000:]
    assert "resuming from" in resumed.stderr.read()

    def final(root: Path) -> tuple[dict, dict]:
        state = json.loads((root / "models/checkpoints/last/train_state.json").read_text())
        return state, load_file(str(root / "models/final/model.safetensors"))

    (a_state, a_weights), (b_state, b_weights) = final(twin), final(trained_project.root)
    assert b_state["finished"] and b_state["epoch"] == 12
    assert b_state["run_id"] == interrupted["run_id"]
    assert [e["accuracy"] for e in b_state["evals"]] == [e["accuracy"] for e in a_state["evals"]]
    assert b_state["best_epoch"] == a_state["best_epoch"]
    np.testing.assert_allclose(
        [e["loss"] for e in b_state["evals"]], [e["loss"] for e in a_state["evals"]], rtol=1e-5
    )
    for name, tensor in a_weights.items():
        np.testing.assert_allclose(b_weights[name], tensor, rtol=1e-5, atol=1e-6)
