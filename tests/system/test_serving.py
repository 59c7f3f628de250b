"""The registered pyfunc served over HTTP by ``mlflow models serve``, as a team deploys it.

The store holds the tiny random model of ``audioclf.testing.save_tiny_model`` (the in-process
tests of the same pyfunc are tests/stages/test_serving.py); the server runs in its own process
group, on the registered alias, with the local environment.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from audioclf.testing import RegisteredModel, by_label, encode, register_tiny_model, tone
from tests.servers import free_port, stop_group, wait_until_answers

NAME = "audioclf-test"
ALIAS = "champion"
BOOT_TIMEOUT_S = 90
WINDOW_S = 1.0  # the logged model's training clip length: the test clips are shorter


@dataclass
class ServedModel:
    registered: RegisteredModel
    server: subprocess.Popen | None = None
    port: int = 0
    log: Path | None = None


def start_server(served: ServedModel, tmp: Path) -> None:
    """``mlflow models serve`` on the registered alias, local env, in its own process group."""
    served.port = free_port()
    served.log = tmp / "serve.log"
    bin_dir = str(Path(sys.executable).parent)  # `mlflow models serve` execs uvicorn from PATH
    env = {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "MLFLOW_TRACKING_URI": served.registered.uri,
        "HF_HUB_OFFLINE": "1",
    }
    with served.log.open("wb") as log:
        served.server = subprocess.Popen(
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
                str(served.port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_server(served: ServedModel) -> None:
    if served.server is not None:
        stop_group(served.server)  # the server and the uvicorn it started


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedModel]:
    """A sqlite store whose model is registered as NAME, version 1, @ALIAS, being served."""
    result = ServedModel(register_tiny_model(tmp_path, NAME, ALIAS, WINDOW_S))
    start_server(result, tmp_path)
    try:
        yield result
    finally:
        stop_server(result)


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


def wait_for_ping(served: ServedModel) -> None:
    assert served.server is not None and served.log is not None
    url = f"http://127.0.0.1:{served.port}/ping"
    wait_until_answers(url, served.server, served.log, "mlflow models serve", BOOT_TIMEOUT_S)


def test_served_model_answers_over_http(served: ServedModel) -> None:
    from audioclf.classifier import Classifier
    from audioclf.data.audio import decode

    assert served.server is not None
    wait_for_ping(served)
    data = encode(tone(1500.0, 0.6, seed=11))
    b64 = base64.b64encode(data).decode()
    status, answer = post(
        served.port,
        {"dataframe_split": {"columns": ["audio"], "data": [[b64]]}, "params": {"top_k": 3}},
    )
    assert status == 200, answer
    [expected] = Classifier(served.registered.model_dir).classify([decode(data)], top_k=3)
    [row] = answer["predictions"]
    assert row["label"] == expected[0]["label"]
    assert by_label(row["top_k"]) == pytest.approx(by_label(expected), abs=1e-6)

    samples = np.round(tone(400.0, 0.3, seed=14, rate=16000), 5)
    status, answer = post(
        served.port,
        {"dataframe_records": [{"array": samples.tolist(), "sampling_rate": 16000}]},
    )
    assert status == 200, answer
    [expected] = Classifier(served.registered.model_dir).classify([(samples, 16000)])
    assert answer["predictions"][0]["label"] == expected[0]["label"]

    bad = {"dataframe_split": {"columns": ["audio"], "data": [["%%"]]}}
    status, answer = post(served.port, bad)
    assert status == 400 and "row 0" in answer["message"]

    # Malformed requests: the signature's types (checked by the server) and the pyfunc's own
    # check that a row holds audio; each answer names the field.
    for body, field in (
        ({"dataframe_records": [{"audio": 12}]}, "audio"),  # a number where bytes belong
        ({"dataframe_records": [{"array": "loud", "sampling_rate": 8000}]}, "array"),
        ({"dataframe_records": [{"sampling_rate": 8000}]}, "'audio'"),  # no audio at all
        ({"dataframe_split": {"columns": ["clip"], "data": [["x"]]}}, "'audio'"),
    ):
        status, answer = post(served.port, body)
        assert status == 400 and field in answer["message"], (body, answer)
