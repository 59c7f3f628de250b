"""`audioclf predict` and the Classifier: pipeline-equal scores, batching, files, errors, push.

The models are tiny random Wav2Vec2s saved with ``save_pretrained`` (no training): equality
with ``transformers.pipeline`` does not need a trained model (``audioclf.testing.save_tiny_model``,
whose classifier weights are scaled up so that scores are far from uniform).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioclf.testing import (
    MASKED_MODEL,
    MODEL_LABELS,
    RATE,
    Project,
    by_label,
    clips_at_model_rate,
    corrupt_bytes,
    encode,
    run_cli,
    save_tiny_model,
    tone,
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "final")


@pytest.fixture(scope="module")
def masked_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("masked") / "final"
    return save_tiny_model(path, MODEL_LABELS, *MASKED_MODEL, seed=2)


# --------------------------------------------------------------------------- scores


@pytest.mark.parametrize("which", ["model_dir", "masked_model_dir"])
def test_scores_equal_the_transformers_pipeline(which: str, request: pytest.FixtureRequest) -> None:
    from transformers import pipeline

    from audioclf.classifier import Classifier

    path = request.getfixturevalue(which)
    classifier = Classifier(path)
    assert classifier.uses_attention_mask == (which == "masked_model_dir")
    clips = clips_at_model_rate()
    ours = classifier.classify([(c, RATE) for c in clips], top_k=None, batch_size=8)
    pipe = pipeline("audio-classification", model=str(path))
    tops = set()
    for clip, mine in zip(clips, ours, strict=True):
        theirs = by_label(pipe(clip, top_k=None))
        assert set(theirs) == set(MODEL_LABELS) == set(by_label(mine))
        for label, score in theirs.items():
            assert by_label(mine)[label] == pytest.approx(score, abs=1e-5)
        assert [m["score"] for m in mine] == sorted((m["score"] for m in mine), reverse=True)
        tops.add(mine[0]["label"])
    assert len(tops) > 1, "the test model should not give every clip the same label"


@pytest.mark.parametrize("which", ["model_dir", "masked_model_dir"])
def test_batching_never_changes_scores(which: str, request: pytest.FixtureRequest) -> None:
    import torch

    from audioclf.classifier import Classifier

    classifier = Classifier(request.getfixturevalue(which))
    clips = clips_at_model_rate()
    one = classifier.probabilities(clips, batch_size=1)
    for batch_size in (2, 8):
        for a, b in zip(one, classifier.probabilities(clips, batch_size), strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5)
    if not classifier.uses_attention_mask:
        # Why equal lengths only: zero padding without a mask changes this model's scores.
        padded = classifier.extractor(clips, sampling_rate=RATE, padding=True, return_tensors="pt")
        with torch.no_grad():
            naive = classifier.model(**padded).logits.softmax(-1).numpy()
        assert max(np.abs(naive[i] - one[i]).max() for i in range(len(clips))) > 1e-4


def test_batches_group_equal_lengths_or_sort_with_a_mask(
    model_dir: Path, masked_model_dir: Path
) -> None:
    from audioclf.classifier import Classifier

    lengths = [5, 3, 5, 5, 3, 4]
    plain = list(Classifier(model_dir).batches(lengths, 2))
    assert plain == [[0, 2], [3], [1, 4], [5]]
    masked = list(Classifier(masked_model_dir).batches(lengths, 4))
    assert masked == [[1, 4, 5, 0], [2, 3]]


def test_other_rates_and_stereo_are_resampled_like_the_pipeline_input(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from transformers import pipeline

    from audioclf.data.audio import resample

    stereo = tone(500.0, 0.6, seed=7, channels=2, rate=16000)
    wav = tmp_path / "stereo16k.wav"
    sf.write(wav, stereo, 16000, subtype="FLOAT")
    code, out, _ = run_cli(capsys, "predict", str(wav), "--model", str(model_dir), "--json")
    assert code == 0
    [pred] = json.loads(out)["predictions"]
    assert pred["sampling_rate"] == 16000 and pred["duration_s"] == pytest.approx(0.6)
    at_model_rate = resample(stereo.mean(axis=1, dtype=np.float32), 16000, RATE)
    theirs = pipeline("audio-classification", model=str(model_dir))(at_model_rate, top_k=None)
    for label, score in by_label(theirs).items():
        assert by_label(pred["labels"])[label] == pytest.approx(score, abs=1e-5)


# --------------------------------------------------------------------------- the CLI


def write_clips(root: Path) -> dict[str, Path]:
    """WAV/FLAC/OGG/MP3 at several rates (one stereo), in nested folders, plus bad files."""
    files = {
        "a.wav": encode(tone(300.0, 0.5, seed=1)),
        "sub/b.flac": encode(tone(600.0, 0.4, seed=2, channels=2, rate=44100), "FLAC", 44100),
        "sub/deeper/c.ogg": encode(tone(900.0, 0.5, seed=3, rate=22050), "OGG", 22050),
        "bad.wav": corrupt_bytes(),
        "empty.wav": encode(np.zeros(0, dtype=np.float32)),
        "notes.txt": b"not audio",
    }
    paths = {}
    for name, data in files.items():
        paths[name] = root / name
        paths[name].parent.mkdir(parents=True, exist_ok=True)
        paths[name].write_bytes(data)
    paths["d.MP3"] = root / "d.MP3"
    sf.write(paths["d.MP3"], tone(440.0, 0.6, seed=4, rate=16000), 16000, format="MP3")
    return paths


def test_directory_is_searched_and_bad_files_are_reported(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clips = write_clips(tmp_path / "clips")
    missing = tmp_path / "missing.wav"
    code, out, err = run_cli(
        capsys,
        "predict",
        str(tmp_path / "clips"),
        str(missing),
        "--model",
        str(model_dir),
        "--json",
        "--top-k",
        "2",
        "--batch-size",
        "3",
    )
    assert code == 1
    report = json.loads(out)
    good = ["a.wav", "d.MP3", "sub/b.flac", "sub/deeper/c.ogg"]  # sorted, recursive, by suffix
    assert [p["file"] for p in report["predictions"]] == [str(clips[n]) for n in good]
    assert [p["sampling_rate"] for p in report["predictions"]] == [8000, 16000, 44100, 22050]
    assert all(len(p["labels"]) == 2 for p in report["predictions"])
    errors = {e["file"]: e["error"] for e in report["errors"]}
    assert set(errors) == {str(clips["bad.wav"]), str(clips["empty.wav"]), str(missing)}
    assert "corrupt" in errors[str(clips["bad.wav"])]
    assert "empty" in errors[str(clips["empty.wav"])]
    assert errors[str(missing)] == "no such file"
    for name in errors:  # each bad file is named on stderr too, one line each
        assert sum(name in line for line in err.splitlines()) == 1

    # The human-readable table: same files, same top label.
    code, table, _ = run_cli(capsys, "predict", str(tmp_path / "clips"), "--model", str(model_dir))
    assert code == 1
    lines = table.splitlines()
    assert lines[0].split() == ["file", "rank", "label", "score"]
    firsts = [line.split() for line in lines[1:] if not line.startswith(" ")]
    assert [row[0] for row in firsts] == [p["file"] for p in report["predictions"]]
    assert [row[2] for row in firsts] == [p["labels"][0]["label"] for p in report["predictions"]]
    assert len(lines) == 1 + 4 * 3  # top-k 5 capped at the 3 labels


def test_all_good_files_exit_0_and_match_the_classifier(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from audioclf.classifier import Classifier
    from audioclf.data.audio import decode

    clips = write_clips(tmp_path)
    files = [clips["a.wav"], clips["sub/b.flac"]]
    code, out, err = run_cli(
        capsys, "predict", *map(str, files), "--model", str(model_dir), "--json", "--top-k", "1"
    )
    assert code == 0 and err == ""
    report = json.loads(out)
    assert report["errors"] == [] and report["model"] == str(model_dir)
    expected = Classifier(model_dir).classify([decode(f) for f in files], top_k=1)
    assert [p["labels"] for p in report["predictions"]] == expected


def test_empty_or_broken_clips_raise_audio_errors(model_dir: Path) -> None:
    from audioclf.classifier import Classifier
    from audioclf.data.audio import AudioError

    classifier = Classifier(model_dir)
    with pytest.raises(AudioError, match="clip 1: empty audio"):
        classifier.classify([(tone(300.0, 0.3), RATE), (np.zeros(0, np.float32), RATE)])
    with pytest.raises(AudioError, match="NaN"):
        classifier.scores(np.full(800, np.nan, np.float32), RATE)
    with pytest.raises(AudioError, match="cannot take this clip"):  # shorter than the convs
        classifier.scores(np.ones(20, np.float32), RATE)


@pytest.mark.parametrize("case", ["missing", "file", "not-a-model", "no-labels", "no-store"])
def test_bad_model_is_one_clear_line(
    case: str,
    model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clip = tmp_path / "a.wav"
    clip.write_bytes(encode(tone(300.0, 0.3)))
    value, expected = {
        "missing": (str(tmp_path / "nope"), "no such model directory"),
        "file": (str(clip), "is not a directory"),
        "not-a-model": (str(tmp_path), "no config.json"),
        "no-labels": (str(tmp_path / "unlabelled"), "no label names"),
        "no-store": ("runs:/0123456789abcdef/model", "MLflow store"),
    }[case]
    if case == "no-labels":
        save_tiny_model(tmp_path / "unlabelled", None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    code, out, err = run_cli(capsys, "predict", str(clip), "--model", value)
    assert code == 2 and out == ""
    lines = [line for line in err.splitlines() if line.startswith("audioclf")]
    assert len(lines) == 1 and expected in lines[0] and "bad --model" in lines[0]


def test_default_model_is_paths_model_of_params(
    project: Project, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project.write_params()
    clip = project.root / "a.wav"
    clip.write_bytes(encode(tone(300.0, 0.3)))
    code, _, err = run_cli(capsys, "predict", "a.wav")
    assert code == 2 and "models/final not found" in err and "dvc repro" in err
    shutil.copytree(model_dir, project.root / "models" / "final")
    code, out, err = run_cli(capsys, "predict", "a.wav", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["model"] == str(project.root / "models" / "final")
    assert report["predictions"][0]["file"] == "a.wav"


def test_push_offline_fails_with_one_line(
    model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "push", str(model_dir), "someone/audioclf-intent")
    assert code == 1 and out == ""
    assert err.strip().count("\n") == 0
    assert "offline" in err and "HF_HUB_OFFLINE" in err
