"""The MLflow pyfunc: logged and registered in a real sqlite store, loaded, scored in-process,
and by the CLI from ``runs:/`` and ``models:/`` URIs.

One store for the module (creating a sqlite store takes seconds), holding the tiny random model
of ``audioclf.testing.save_tiny_model``; serving it over HTTP is tests/system/test_serving.py.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from audioclf.testing import (
    MODEL_LABELS,
    RegisteredModel,
    by_label,
    encode,
    register_tiny_model,
    run_cli,
    tone,
)

NAME = "audioclf-test"
ALIAS = "champion"
WINDOW_S = 1.0  # the logged model's training clip length: the test clips are shorter


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> RegisteredModel:
    """A sqlite store with one run whose model is registered as NAME, version 1, @ALIAS."""
    return register_tiny_model(tmp_path_factory.mktemp("mlflow"), NAME, ALIAS, WINDOW_S)


@pytest.fixture
def store(registered: RegisteredModel, monkeypatch: pytest.MonkeyPatch) -> RegisteredModel:
    """The registered store, named as users name it: MLFLOW_TRACKING_URI (MLflow resolves
    models:/, and a run's logged model, in the process's store whatever download_artifacts is
    given)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered.uri)
    return registered


def clip_bytes(seconds: float = 0.5, freq: float = 600.0) -> bytes:
    return encode(tone(freq, seconds, seed=11))


def test_runs_uri_resolves_to_the_logged_model(store: RegisteredModel) -> None:
    import mlflow

    folder = Path(mlflow.artifacts.download_artifacts(f"runs:/{store.run_id}/model"))
    assert (folder / "MLmodel").is_file()
    assert (folder / "artifacts" / "final" / "config.json").is_file()


def test_pyfunc_takes_bytes_base64_and_arrays(store: RegisteredModel) -> None:
    import mlflow

    from audioclf.classifier import Classifier
    from audioclf.data.audio import decode

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
    assert len(model.predict(pd.DataFrame({"audio": [data]}))["top_k"][0]) == len(MODEL_LABELS)
    with pytest.raises(Exception, match="row 0: unreadable or corrupt audio"):
        model.predict(pd.DataFrame({"audio": [b"not audio"]}))


def test_pyfunc_scores_long_arrays_in_the_registered_models_window(store: RegisteredModel) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    from audioclf.windows import Window, WindowedClassifier

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
    store: RegisteredModel,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
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
    store: RegisteredModel,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clip = tmp_path / "a.wav"
    clip.write_bytes(clip_bytes())
    code, out, err = run_cli(capsys, "predict", str(clip), "--model", uri)
    assert code == 2 and out == ""
    lines = [line for line in err.splitlines() if line.startswith("audioclf")]
    assert len(lines) == 1 and f"cannot resolve {uri}" in lines[0]
