"""Recordings of any length: windowed scores, streaming from files, segments, the CLI's flags,
the evaluate stage's scoring and the window the train stage records.

The models are the tiny random Wav2Vec2s of ``audioclf.testing.save_tiny_model`` (8 kHz),
saved as the train stage exports them, with a 0.5 s training clip length: its default window
(hop 0.25 s).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioclf.testing import (
    MASKED_MODEL,
    MODEL_LABELS,
    RATE,
    by_label,
    clips_at_model_rate,
    run_cli,
    save_tiny_model,
    tone,
)

WINDOW_S = 0.5
WINDOW = int(WINDOW_S * RATE)
HOP = WINDOW // 2


@pytest.fixture(scope="module")
def windowed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("windowed") / "final", window_s=WINDOW_S)


@pytest.fixture(scope="module")
def masked_windowed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("masked-windowed") / "final"
    return save_tiny_model(path, MODEL_LABELS, *MASKED_MODEL, seed=2, window_s=WINDOW_S)


@pytest.fixture(scope="module", params=["plain", "masked"])
def classifier(request: pytest.FixtureRequest, windowed_dir: Path, masked_windowed_dir: Path):
    from audioclf.windows import WindowedClassifier

    return WindowedClassifier(windowed_dir if request.param == "plain" else masked_windowed_dir)


def long_clip(seconds_each: float = 1.0, rate: int = RATE, channels: int = 1) -> np.ndarray:
    """Tones of five pitches one after the other: 10 windows' worth, labels that change."""
    freqs = (300.0, 900.0, 1500.0, 2400.0, 600.0)
    parts = [
        tone(f, seconds_each, seed=i, rate=rate, channels=channels) for i, f in enumerate(freqs)
    ]
    return np.concatenate(parts)


def one_by_one(classifier, clip: np.ndarray, starts: list[int]) -> np.ndarray:
    """Each window scored alone (batch 1), in order."""
    return np.stack([classifier.scores(clip[s : s + WINDOW], RATE) for s in starts])


# --------------------------------------------------------------------------- the window


def test_the_model_folder_records_its_window_and_the_pipeline_still_loads_it(
    windowed_dir: Path,
) -> None:
    from transformers import pipeline

    from audioclf.models.saved import WINDOW_ATTRIBUTE
    from audioclf.windows import Window, WindowedClassifier

    config = json.loads((windowed_dir / "preprocessor_config.json").read_text())
    assert config[WINDOW_ATTRIBUTE] == WINDOW_S
    classifier = WindowedClassifier(windowed_dir)
    assert classifier.default_window_s == WINDOW_S
    assert classifier.window() == Window(WINDOW_S, WINDOW_S / 2)
    pipe = pipeline("audio-classification", model=str(windowed_dir))
    clip = tone(900.0, 0.4, seed=2)
    mine = classifier.classify([(clip, RATE)], top_k=None, window=classifier.window())[0]
    for label, score in by_label(pipe(clip, top_k=None)).items():
        assert by_label(mine)[label] == pytest.approx(score, abs=1e-5)


def test_window_options_are_checked_and_errors_name_the_option() -> None:
    from audioclf.windows import Window, WindowError, resolve_window

    assert resolve_window(None) is None  # no recorded window: whole clips
    assert resolve_window(2.0) == Window(2.0, 1.0)
    assert resolve_window(2.0, 0) is None  # 0: whole clips
    assert resolve_window(None, 3.0, 3.0) == Window(3.0, 3.0)
    assert resolve_window(2.0, hop_s=0.5) == Window(2.0, 0.5)
    cases = {
        (2.0, None, 0.0): "hop_s must be > 0",
        (2.0, None, -1.0): "hop_s must be > 0",
        (2.0, None, 2.5): "hop_s (2.5 s) must not exceed the window (2 s)",
        (2.0, 1.0, 1.5): "hop_s (1.5 s) must not exceed the window (1 s)",
        (2.0, -1.0, None): "window_s must be >= 0",
        (2.0, float("nan"), None): "window_s must be >= 0",
        (None, None, 1.0): "hop_s needs a window, but the model records no window",
        (2.0, 0.0, 1.0): "hop_s needs a window, but window_s is 0",
    }
    for (default, window, hop), message in cases.items():
        with pytest.raises(WindowError, match=message.replace("(", r"\(").replace(")", r"\)")):
            resolve_window(default, window, hop)
    with pytest.raises(WindowError, match="--hop-s must be > 0"):
        resolve_window(2.0, None, 0.0, names=("--window-s", "--hop-s"))


def test_a_bad_recorded_window_is_a_model_error(tmp_path: Path) -> None:
    from audioclf.classifier import ModelError
    from audioclf.models.saved import WINDOW_ATTRIBUTE
    from audioclf.windows import WindowedClassifier

    path = save_tiny_model(tmp_path / "final")
    config_file = path / "preprocessor_config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, WINDOW_ATTRIBUTE: "two"}))
    with pytest.raises(ModelError, match=f"{WINDOW_ATTRIBUTE} in preprocessor_config.json"):
        WindowedClassifier(path)


def test_window_starts_cover_every_sample_and_end_at_the_end() -> None:
    from audioclf.windows import window_starts

    assert window_starts(100, 100, 50) == [0]
    assert window_starts(30, 100, 50) == [0]
    assert window_starts(200, 100, 50) == [0, 50, 100]
    assert window_starts(230, 100, 50) == [0, 50, 100, 130]
    assert window_starts(201, 100, 100) == [0, 100, 101]
    for length, window, hop in ((1000, 100, 30), (999, 64, 64), (5000, 300, 1)):
        starts = window_starts(length, window, hop)
        covered = np.zeros(length, dtype=bool)
        for start in starts:
            covered[start : start + window] = True
        assert covered.all() and starts[-1] + window == length
        assert all(0 < b - a <= hop for a, b in itertools.pairwise(starts))


# --------------------------------------------------------------------------- scores


def test_a_clip_no_longer_than_the_window_scores_exactly_as_before(classifier) -> None:
    """Bit-identical to the whole-clip path (:meth:`probabilities`, what predict used)."""
    clips = [c[:WINDOW] for c in clips_at_model_rate()]  # 0.31-0.5 s: one exactly a window
    assert max(c.shape[0] for c in clips) == WINDOW
    window = classifier.window()
    for batch_size in (1, 3, 8):
        before = classifier.probabilities(clips, batch_size)
        now = classifier.score_arrays(clips, window, batch_size, segments=True)
        for old, new, clip in zip(before, now, clips, strict=True):
            assert np.array_equal(old, new.probs) and new.windows == 1
            [segment] = new.segments
            assert segment["start_s"] == 0 and segment["end_s"] == clip.shape[0] / RATE
    pairs = [(c, RATE) for c in clips]
    assert classifier.classify(pairs, top_k=None, window=window) == classifier.classify(
        pairs, top_k=None
    )


def test_a_long_clip_scores_the_mean_of_its_windows(classifier) -> None:
    clip = long_clip()  # 5 s = 10 windows of 0.5 s
    expected_starts = list(range(0, clip.shape[0] - WINDOW + 1, HOP))  # ends exactly at 5 s
    windows = one_by_one(classifier, clip, expected_starts)
    for batch_size in (1, 8):
        [result] = classifier.score_arrays([clip], classifier.window(), batch_size, True)
        assert result.windows == len(expected_starts) == 19
        np.testing.assert_allclose(result.probs, windows.mean(axis=0), atol=1e-5)
        assert [s["start_s"] for s in result.segments] == [s / RATE for s in expected_starts]
        assert [s["end_s"] for s in result.segments] == [
            (s + WINDOW) / RATE for s in expected_starts
        ]
        assert [s["label"] for s in result.segments] == [
            classifier.labels[i] for i in windows.argmax(axis=1)
        ]
        np.testing.assert_allclose(
            [s["score"] for s in result.segments], windows.max(axis=1), atol=1e-5
        )
    assert len({s["label"] for s in result.segments}) > 1, "the windows should differ"
    whole = classifier.probabilities([clip], 1)[0]
    assert np.abs(whole - result.probs).max() > 1e-3, "windows should differ from one piece"


def test_the_last_window_ends_at_the_end_of_the_clip(classifier) -> None:
    clip = long_clip()[: int(2.3 * RATE)]  # 2.3 s: hops of 0.25 s do not end at the end
    [result] = classifier.score_arrays([clip], classifier.window(), 4, True)
    starts = [*range(0, clip.shape[0] - WINDOW, HOP), clip.shape[0] - WINDOW]
    assert [s["start_s"] for s in result.segments] == [s / RATE for s in starts]
    assert result.segments[-1]["end_s"] == pytest.approx(2.3)
    np.testing.assert_allclose(
        result.probs, one_by_one(classifier, clip, starts).mean(axis=0), atol=1e-5
    )


def test_short_and_long_clips_together_and_other_windows(classifier) -> None:
    from audioclf.windows import Window

    short, long = tone(600.0, 0.3, seed=9), long_clip(0.6)
    window = Window(1.0, 0.4)
    results = classifier.score([(short, RATE), (long, 16000)], window, batch_size=5)
    assert results[0].windows == 1
    assert np.array_equal(results[0].probs, classifier.probabilities([short], 1)[0])
    at_model_rate = classifier.prepare(long, 16000)  # 24000 samples said to be 16 kHz: 1.5 s
    starts = [0, 3200, 4000]
    expected = np.mean(
        [classifier.scores(at_model_rate[s : s + 8000], RATE) for s in starts], axis=0
    )
    assert results[1].windows == 3
    np.testing.assert_allclose(results[1].probs, expected, atol=1e-5)


# --------------------------------------------------------------------------- streaming


@pytest.mark.parametrize(
    ("rate", "channels", "subtype"),
    [(RATE, 1, "FLOAT"), (16000, 2, "PCM_16"), (44100, 1, "PCM_16")],
)
def test_streaming_a_file_equals_windowing_the_decoded_array(
    classifier, tmp_path: Path, rate: int, channels: int, subtype: str
) -> None:
    from audioclf.data.audio import decode

    path = tmp_path / "long.wav"
    sf.write(path, long_clip(0.9, rate=rate, channels=channels), rate, subtype=subtype)
    samples, file_rate = decode(path)
    window = classifier.window()
    [in_memory] = classifier.score_arrays(
        [classifier.prepare(samples, file_rate)], window, 8, segments=True
    )
    for blocksize in (1000, 65536):
        with sf.SoundFile(path) as handle:
            blocks = handle.blocks(blocksize=blocksize, dtype="float32", always_2d=True)
            streamed = classifier.score_stream(blocks, handle.samplerate, window, 8, True)
        assert streamed.windows == in_memory.windows > 10
        # soxr's stream resampler gives its one-shot samples: equal within float tolerance
        np.testing.assert_allclose(streamed.probs, in_memory.probs, atol=1e-6)
        assert [(s["start_s"], s["end_s"], s["label"]) for s in streamed.segments] == [
            (s["start_s"], s["end_s"], s["label"]) for s in in_memory.segments
        ]


def test_streaming_holds_a_window_not_the_recording(
    classifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each batch of windows is scored as soon as its samples are read, long before the
    recording ends: the stream never waits for (or holds) the whole recording."""
    from audioclf.windows import Window

    clip = long_clip(2.0)  # 10 s
    read_up_to: list[int] = []

    def blocks():
        for start in range(0, clip.shape[0], 800):
            read_up_to.append(start + 800)
            yield clip[start : start + 800]

    scored_when: list[int] = []
    probabilities = classifier.probabilities

    def noting_when(arrays, batch_size=8):
        scored_when.append(read_up_to[-1])
        return probabilities(arrays, batch_size)

    monkeypatch.setattr(classifier, "probabilities", noting_when)
    result = classifier.score_stream(blocks(), RATE, Window(WINDOW_S, WINDOW_S / 2), 4)
    assert result.windows == 39 and len(scored_when) == 10  # batches of 4 windows
    # the first batch (windows at 0 to 0.75 s) once the samples after 1.25 s were read
    assert scored_when[0] == 10400
    assert scored_when == sorted(scored_when) and scored_when[-2] < clip.shape[0]


def test_stream_errors_are_audio_errors(classifier) -> None:
    from audioclf.data.audio import AudioError
    from audioclf.windows import Window

    window = Window(WINDOW_S, WINDOW_S / 2)
    with pytest.raises(AudioError, match="empty audio"):
        classifier.score_stream(iter([]), RATE, window)
    bad = long_clip()
    bad[30000] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        classifier.score_stream([bad[:20000], bad[20000:]], RATE, window)
    tiny = Window(0.002, 0.001)  # 16-sample windows: shorter than the model's convolutions
    with pytest.raises(AudioError, match="cannot take this clip"):
        classifier.score_stream([long_clip()], RATE, tiny)


# --------------------------------------------------------------------------- the CLI


def write_long_files(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "short.wav": (tone(300.0, 0.4, seed=1), RATE),
        "long.flac": (long_clip(0.6, rate=16000, channels=2), 16000),
        "long8k.wav": (long_clip(0.5), RATE),
    }
    paths = {}
    for name, (samples, rate) in files.items():
        paths[name] = root / name
        sf.write(paths[name], samples, rate)
    return paths


def predict_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    """``audioclf predict ARGS... --json``, which must succeed: its report."""
    code, out, err = run_cli(capsys, "predict", *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_predict_scores_long_files_in_the_models_windows(
    windowed_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from audioclf.data.audio import decode
    from audioclf.windows import Window, WindowedClassifier

    files = write_long_files(tmp_path)
    names = ["long.flac", "long8k.wav", "short.wav"]
    report = predict_json(capsys, str(tmp_path), "--model", str(windowed_dir), "--top-k", "3")
    assert report["window"] == {"window_s": WINDOW_S, "hop_s": WINDOW_S / 2}
    preds = report["predictions"]
    assert [p["file"] for p in preds] == [str(files[n]) for n in names]
    assert [p["windows"] for p in preds] == [11, 9, 1]  # 3 s and 2.5 s in 0.5 s every 0.25 s
    assert all("segments" not in p for p in preds)
    classifier = WindowedClassifier(windowed_dir)
    expected = classifier.score([decode(files[n]) for n in names], Window(0.5, 0.25))
    for pred, want in zip(preds, expected, strict=True):
        assert by_label(pred["labels"]) == pytest.approx(
            by_label(classifier.top(want.probs, 3)), abs=1e-6
        )
    assert preds[2]["labels"] == classifier.classify([decode(files["short.wav"])], top_k=3)[0]

    # Other windows; --window-s 0: whole files, as before windows existed.
    long = (str(files["long.flac"]), "--model", str(windowed_dir))
    report = predict_json(capsys, *long, "--window-s", "1", "--hop-s", "0.5")
    assert report["predictions"][0]["windows"] == 5
    report = predict_json(capsys, *long, "--window-s", "0", "--top-k", "3")
    [whole] = report["predictions"]
    assert report["window"] is None and whole["windows"] == 1
    assert whole["labels"] == classifier.classify([decode(files["long.flac"])], top_k=3)[0]


def test_segments_in_json_and_table(
    windowed_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = write_long_files(tmp_path)
    args = (
        str(files["long8k.wav"]),
        str(files["short.wav"]),
        "--model",
        str(windowed_dir),
    )
    long, short = predict_json(capsys, *args, "--segments")["predictions"]
    times = [(s["start_s"], s["end_s"]) for s in long["segments"]]
    assert times == [(0.25 * k, 0.25 * k + 0.5) for k in range(9)]  # 2.5 s, covered end to end
    assert all(s["label"] in MODEL_LABELS and 0 < s["score"] <= 1 for s in long["segments"])
    assert [(s["start_s"], s["end_s"]) for s in short["segments"]] == [(0.0, 0.4)]

    code, table, _ = run_cli(capsys, "predict", *args, "--segments")
    assert code == 0
    labels_part, segments_part = table.split("\n\n")
    assert labels_part.splitlines()[0].split() == ["file", "rank", "label", "score"]
    rows = [line.split() for line in segments_part.splitlines()]
    assert rows[0] == ["file", "start_s", "end_s", "label", "score"]
    assert rows[1] == [
        str(files["long8k.wav"]),
        "0.000",
        "0.500",
        long["segments"][0]["label"],
        f"{long['segments'][0]['score']:.4f}",
    ]
    assert rows[9][:2] == ["2.000", "2.500"]  # continuation rows leave the file out
    assert rows[10][:3] == [str(files["short.wav"]), "0.000", "0.400"]
    assert len(rows) == 1 + 9 + 1
    code, table, _ = run_cli(capsys, "predict", *args)
    assert "start_s" not in table


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--hop-s", "0"), "argument --hop-s: must be > 0 seconds, not 0"),
        (("--hop-s", "-1"), "argument --hop-s: must be > 0 seconds, not -1"),
        (("--window-s", "-2"), "argument --window-s: must be >= 0 seconds, not -2"),
        (("--window-s", "two"), "argument --window-s: must be a number of seconds, not 'two'"),
        (("--hop-s", "0.6"), "--hop-s (0.6 s) must not exceed the window (0.5 s)"),
        (("--window-s", "1", "--hop-s", "2"), "--hop-s (2 s) must not exceed the window (1 s)"),
        (("--window-s", "0", "--hop-s", "1"), "--hop-s needs a window, but --window-s is 0"),
    ],
)
def test_bad_window_flags_are_one_clear_line(
    flags: tuple[str, ...],
    message: str,
    windowed_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clip = tmp_path / "a.wav"
    sf.write(clip, tone(300.0, 0.3), RATE)
    try:
        code, out, err = run_cli(capsys, "predict", str(clip), "--model", str(windowed_dir), *flags)
    except SystemExit as exit_:  # argparse's own checks
        code, (out, err) = exit_.code, capsys.readouterr()
    assert code == 2 and out == ""
    assert message in err and err.strip().splitlines()[-1].startswith("audioclf predict: error:")


def test_a_model_without_a_window_scores_whole_files_unless_given_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = save_tiny_model(tmp_path / "old")  # saved before models recorded their window
    files = write_long_files(tmp_path / "clips")
    report = predict_json(capsys, str(files["long8k.wav"]), "--model", str(old))
    assert report["window"] is None and report["predictions"][0]["windows"] == 1
    report = predict_json(
        capsys, str(files["long8k.wav"]), "--model", str(old), "--window-s", "0.5"
    )
    assert report["window"] == {"window_s": 0.5, "hop_s": 0.25}
    assert report["predictions"][0]["windows"] == 9
    code, _, err = run_cli(
        capsys, "predict", str(files["short.wav"]), "--model", str(old), "--hop-s", "1"
    )
    assert code == 2 and "--hop-s needs a window, but the model records no window" in err
    assert "give --window-s" in err


# --------------------------------------------------------------------------- evaluate, export


def test_evaluate_scores_stored_test_clips_as_predict_scores_them(windowed_dir: Path) -> None:
    from datasets import Dataset

    from audioclf.data.audio import as_float32, to_pcm16
    from audioclf.evaluation import score_split
    from audioclf.windows import WindowedClassifier

    classifier = WindowedClassifier(windowed_dir)
    clips = [tone(300.0, 0.3, seed=1), long_clip(0.4), tone(2400.0, 1.2, seed=3)]
    window = classifier.window()
    for stored in (clips, [to_pcm16(c) for c in clips]):  # float32 or 16-bit PCM storage
        as_read = [(as_float32(c), RATE) for c in stored]
        expected = np.stack([r.probs for r in classifier.score(as_read, window, 8)])
        split = Dataset.from_dict({"array": stored, "path": ["a", "b", "c"]})
        scores = score_split(classifier, split, RATE, window, batch_size=2, chunk=2)
        assert scores.shape == (3, len(MODEL_LABELS))
        np.testing.assert_allclose(scores, expected, atol=1e-6)
    split = Dataset.from_dict({"array": [clips[0], np.zeros(0, np.float32)], "path": ["a", "b"]})
    with pytest.raises(ValueError, match="test clip b: empty audio"):
        score_split(classifier, split, RATE, window, batch_size=2)


def test_the_exported_window_is_the_training_crop_or_the_longest_clip(tmp_path: Path) -> None:
    from datasets import Dataset
    from omegaconf import OmegaConf

    from audioclf.training.loop import trained_clip_s

    class Extractor:
        model_input_names = ("input_values",)
        sampling_rate = RATE

    split = Dataset.from_dict(
        {"input_values": [np.zeros(n, np.float32) for n in (800, 9600, 4000)]}
    )
    assert trained_clip_s(OmegaConf.create({"crop_s": 2.0}), split, Extractor()) == 2.0
    assert trained_clip_s(OmegaConf.create({"crop_s": None}), split, Extractor()) == 1.2
