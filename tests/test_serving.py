"""The MLflow pyfunc: logged and registered in a real sqlite store, loaded, served over HTTP.

One store for the module (creating a sqlite store takes seconds). The model is the tiny random
one of test_predict; ``mlflow models serve`` is started as soon as the store is ready when the
HTTP test is selected, so that it boots while the in-process tests run.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from audioclf.testing import encode, tone
from tests.test_predict import LABELS, by_label, run_cli, save_tiny_model

NAME = "audioclf-test"
ALIAS = "champion"
SERVE_TEST = "test_served_model_answers_over_http"
BOOT_TIMEOUT_S = 90
WINDOW_S = 1.0  # the logged model's training clip length: the test clips are shorter


@dataclass
class Store:
    uri: str
    run_id: str
    model_dir: Path
    server: subprocess.Popen | None = None
    port: int = 0
    log: Path | None = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(store: Store, tmp: Path) -> None:
    """``mlflow models serve`` on the registered alias, local env, in its own process group."""
    store.port = free_port()
    store.log = tmp / "serve.log"
    bin_dir = str(Path(sys.executable).parent)  # `mlflow models serve` execs uvicorn from PATH
    env = {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "MLFLOW_TRACKING_URI": store.uri,
        "HF_HUB_OFFLINE": "1",
    }
    with store.log.open("wb") as log:
        store.server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "models",
                "serve",
                "-m",
                f"models:/{NAME}@{ALIAS}",
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(store.port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_server(store: Store) -> None:
    if store.server is None or store.server.poll() is not None:
        return
    os.killpg(store.server.pid, signal.SIGTERM)  # the server and the uvicorn it started
    try:
        store.server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(store.server.pid, signal.SIGKILL)
        store.server.wait(timeout=10)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator:
    """A sqlite store with one run whose model is registered as NAME, version 1, @ALIAS."""
    from mlflow.tracking import MlflowClient

    from audioclf.serving import log_pyfunc_model
    from audioclf.tracking.store import using_tracking_uri

    tmp = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    model_dir = save_tiny_model(tmp / "final", window_s=WINDOW_S)
    client = MlflowClient(uri)
    experiment = client.create_experiment("t", artifact_location=(tmp / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    with using_tracking_uri(uri):  # the run's store, for the fluent log_model
        info = log_pyfunc_model(run_id, model_dir, NAME)
    assert info.registered_model_version == 1
    client.set_registered_model_alias(NAME, ALIAS, "1")
    result = Store(uri, run_id, model_dir)
    if any(item.name == SERVE_TEST for item in request.session.items):
        start_server(result, tmp)
    try:
        yield result
    finally:
        stop_server(result)


def clip_bytes(seconds: float = 0.5, freq: float = 600.0) -> bytes:
    return encode(tone(freq, seconds, seed=11))


# MLflow resolves models:/ (and a run's logged model) in the process's store whatever
# download_artifacts is given, so these tests name the store as users do: MLFLOW_TRACKING_URI.


def test_runs_uri_resolves_to_the_logged_model(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    folder = Path(mlflow.artifacts.download_artifacts(f"runs:/{store.run_id}/model"))
    assert (folder / "MLmodel").is_file()
    assert (folder / "artifacts" / "final" / "config.json").is_file()


def test_pyfunc_takes_bytes_base64_and_arrays(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    from audioclf.classifier import Classifier
    from audioclf.data.audio import decode

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    folder = mlflow.artifacts.download_artifacts(f"models:/{NAME}@{ALIAS}")
    model = mlflow.pyfunc.load_model(folder)
    data = clip_bytes()
    stereo = tone(1200.0, 0.4, seed=12, channels=2, rate=16000)
    frame = pd.DataFrame(
        {
            "audio": [data, base64.b64encode(data).decode(), None],
            "array": [None, None, stereo.tolist()],
            "sampling_rate": [None, None, 16000],
        }
    )
    out = model.predict(frame, params={"top_k": 2})
    expected = Classifier(store.model_dir).classify([decode(data), (stereo, 16000)], top_k=2)
    expected = [expected[0], expected[0], expected[1]]  # bytes, base64, array
    assert out["label"].tolist() == [e[0]["label"] for e in expected]
    for got, want in zip(out["top_k"], expected, strict=True):
        assert [g["label"] for g in got] == [w["label"] for w in want]
        assert by_label(got) == pytest.approx(by_label(want), abs=1e-5)
    assert out["score"].tolist() == pytest.approx([e[0]["score"] for e in expected], abs=1e-5)
    # Every label by default is top_k=5 capped at the 3 labels.
    assert len(model.predict(pd.DataFrame({"audio": [data]}))["top_k"][0]) == len(LABELS)
    with pytest.raises(Exception, match="row 0: unreadable or corrupt audio"):
        model.predict(pd.DataFrame({"audio": [b"not audio"]}))


def test_pyfunc_scores_long_arrays_in_the_registered_models_window(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    from audioclf.windows import Window, WindowedClassifier

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@{ALIAS}")
    stereo = np.concatenate(
        [tone(f, 1.5, seed=20 + i, channels=2, rate=16000) for i, f in enumerate((300, 1200, 2400))]
    )  # 4.5 s: 8 windows of 1 s every 0.5 s
    short = tone(500.0, 0.6, seed=23)
    frame = pd.DataFrame(
        {"array": [stereo.tolist(), short.tolist()], "sampling_rate": [16000, 8000]}
    )
    classifier = WindowedClassifier(store.model_dir)
    clips = [(stereo, 16000), (short, 8000)]

    out = model.predict(frame, params={"top_k": 3, "segments": True})
    expected = classifier.score(clips, Window(WINDOW_S, WINDOW_S / 2), segments=True)
    assert [len(s) for s in out["segments"]] == [8, 1] == [e.windows for e in expected]
    for got, want in zip(out["top_k"], expected, strict=True):
        assert by_label(got) == pytest.approx(by_label(classifier.top(want.probs, 3)), abs=1e-5)
    assert out["segments"][0][-1]["end_s"] == pytest.approx(4.5)
    assert [s["label"] for s in out["segments"][0]] == [s["label"] for s in expected[0].segments]
    assert "segments" not in model.predict(frame).columns

    whole = model.predict(frame, params={"window_s": 0.0, "top_k": 3})
    assert list(whole["top_k"]) == classifier.classify(clips, top_k=3)
    other = model.predict(frame, params={"window_s": 2.0, "hop_s": 2.0, "segments": True})
    assert [s["start_s"] for s in other["segments"][0]] == [0.0, 2.0, 2.5]
    with pytest.raises(MlflowException, match=r"hop_s \(3 s\) must not exceed the window"):
        model.predict(frame, params={"hop_s": 3.0})


@pytest.mark.parametrize("form", ["runs", "version", "alias"])
def test_cli_predicts_with_mlflow_models(
    form: str,
    store: Store,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    uri = {
        "runs": f"runs:/{store.run_id}/model",
        "version": f"models:/{NAME}/1",
        "alias": f"models:/{NAME}@{ALIAS}",
    }[form]
    clip = tmp_path / "a.flac"
    sf.write(clip, tone(700.0, 0.5, seed=13, rate=22050), 22050)
    code, out, err = run_cli(capsys, "predict", str(clip), "--model", uri, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["model"] == uri
    code, local, _ = run_cli(
        capsys, "predict", str(clip), "--model", str(store.model_dir), "--json"
    )
    assert report["predictions"] == json.loads(local)["predictions"]


@pytest.mark.parametrize(
    "uri", ["runs:/0123456789abcdef0123456789abcdef/model", f"models:/{NAME}@nope", "models:/x/7"]
)
def test_cli_bad_mlflow_model_is_one_line(
    uri: str,
    store: Store,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    clip = tmp_path / "a.wav"
    clip.write_bytes(clip_bytes())
    code, out, err = run_cli(capsys, "predict", str(clip), "--model", uri)
    assert code == 2 and out == ""
    lines = [line for line in err.splitlines() if line.startswith("audioclf")]
    assert len(lines) == 1 and f"cannot resolve {uri}" in lines[0]


def post(port: int, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def wait_for_ping(store: Store) -> None:
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    while time.monotonic() < deadline:
        if store.server.poll() is not None:
            pytest.fail(f"mlflow models serve exited:\n{store.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{store.port}/ping", timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    pytest.fail(
        f"mlflow models serve not up in {BOOT_TIMEOUT_S} s:\n{store.log.read_text()[-3000:]}"
    )


@pytest.mark.slow
def test_served_model_answers_over_http(store: Store) -> None:
    from audioclf.classifier import Classifier
    from audioclf.data.audio import decode

    assert store.server is not None
    wait_for_ping(store)
    data = clip_bytes(0.6, 1500.0)
    b64 = base64.b64encode(data).decode()
    status, answer = post(
        store.port,
        {"dataframe_split": {"columns": ["audio"], "data": [[b64]]}, "params": {"top_k": 3}},
    )
    assert status == 200, answer
    [expected] = Classifier(store.model_dir).classify([decode(data)], top_k=3)
    [row] = answer["predictions"]
    assert row["label"] == expected[0]["label"]
    assert by_label(row["top_k"]) == pytest.approx(by_label(expected), abs=1e-6)

    samples = np.round(tone(400.0, 0.3, seed=14, rate=16000), 5)
    status, answer = post(
        store.port,
        {"dataframe_records": [{"array": samples.tolist(), "sampling_rate": 16000}]},
    )
    assert status == 200, answer
    [expected] = Classifier(store.model_dir).classify([(samples, 16000)])
    assert answer["predictions"][0]["label"] == expected[0]["label"]

    status, answer = post(store.port, {"dataframe_split": {"columns": ["audio"], "data": [["%%"]]}})
    assert status == 400 and "row 0" in answer["message"]
