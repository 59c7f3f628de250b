"""``audioclf predict``: classify audio files with a pipeline model, as a table or JSON.

The model is a ``save_pretrained`` folder or an MLflow model URI (:mod:`audioclf.model_store`);
scoring is the inference core's (:class:`audioclf.classifier.Classifier`: it equals
``transformers.pipeline("audio-classification")`` and never lets batching change a score),
clips longer than the window in windows (:class:`audioclf.windows.WindowedClassifier`).

A file longer than the scoring window (the model's training clip length unless given) is never
decoded whole: it is read in blocks of :data:`BLOCK_FRAMES`, resampled as a stream and scored
window by window (:meth:`~audioclf.windows.WindowedClassifier.score_stream`), so memory is
bounded by the window, not by the recording. Shorter files are decoded whole and scored as
before.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from huggingface_hub import constants

from audioclf.classifier import Classifier, ModelError, first_line
from audioclf.data.audio import AudioError, decode
from audioclf.data.columns import AUDIO_SUFFIXES
from audioclf.model_store import default_model_dir, download_model, is_model_uri, model_dir_in
from audioclf.windows import ClipScores, Window, WindowedClassifier

__all__ = [
    "Classifier",
    "HubError",
    "ModelError",
    "WindowedClassifier",
    "load_classifier",
    "predict_files",
]

BLOCK_FRAMES = 1 << 16  # frames read at a time from a file scored in windows


class HubError(RuntimeError):
    """Pushing to the Hugging Face Hub failed (offline, no access, network)."""


# ---------------------------------------------------------------------- models


def load_classifier(source: str | Path | None = None, device: str = "cpu") -> WindowedClassifier:
    """A :class:`WindowedClassifier` from a model directory or an MLflow model URI.

    ``source`` is a ``save_pretrained`` folder, a downloaded MLflow model folder, or a URI:
    ``runs:/RUN_ID/model``, ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` (the tracking
    store is ``MLFLOW_TRACKING_URI``, else the project's). ``None``: the pipeline's output,
    ``paths.model`` of ./params.yaml. Every failure is a :class:`ModelError`, one line.
    """
    if source is None:
        path = default_model_dir()
        if not path.is_dir():
            raise ModelError(f"{path} not found: run `dvc repro` first or pass --model")
        return WindowedClassifier(model_dir_in(path), device)
    text = str(source)
    if not is_model_uri(text):
        path = Path(text).expanduser()
        if not path.exists():
            raise ModelError(f"{path}: no such model directory")
        if not path.is_dir():
            raise ModelError(f"{path} is not a directory (a save_pretrained model folder)")
        return WindowedClassifier(model_dir_in(path), device)
    with tempfile.TemporaryDirectory(prefix="audioclf-model-") as tmp:
        folder = download_model(text, Path(tmp))
        try:
            classifier = WindowedClassifier(model_dir_in(folder), device)
        except ModelError as err:
            raise ModelError(f"{text}: {err}".replace(str(folder), "<model>")) from err
    classifier.source = text
    return classifier


# ---------------------------------------------------------------------- files


def expand_inputs(inputs: Sequence[str | Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Files to predict (directories expanded recursively, sorted) and inputs that fail."""
    files: list[Path] = []
    errors: list[tuple[Path, str]] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(
                p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
            )
            if not found:
                errors.append((item, f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in directory"))
            files.extend(found)
        elif item.is_file():
            files.append(item)
        else:
            errors.append((item, "no such file"))
    return files, errors


def predict_files(
    classifier: WindowedClassifier,
    inputs: Sequence[str | Path],
    top_k: int | None = 5,
    batch_size: int = 8,
    chunk: int = 256,
    window: Window | None = None,
    segments: bool = False,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Predict every file (directories expanded); a bad file is reported, never fatal.

    Returns ``(predictions, errors)``: ``{"file", "sampling_rate", "duration_s", "windows",
    "labels"}`` (and ``"segments"`` when asked) per good file in input order, ``{"file",
    "error"}`` per bad one. Files are decoded ``chunk`` at a time, so memory stays bounded for
    large directories; a file longer than ``window`` is streamed (see the module docstring).
    """
    files, bad = expand_inputs(inputs)
    errors = [{"file": str(path), "error": reason} for path, reason in bad]
    predictions: list[dict[str, Any]] = []
    for start in range(0, len(files), max(1, chunk)):
        # [path, rate, duration_s, scores or error]; decoded files are scored together below
        outcomes: list[list[Any]] = []
        decoded: list[tuple[int, np.ndarray]] = []
        for path in files[start : start + chunk]:
            try:
                with _open(path) as handle:
                    rate, frames = handle.samplerate, handle.frames
                    length = classifier.length_at_model_rate(frames, rate)
                    if classifier.is_windowed(length, window):
                        scores = _stream(classifier, handle, window, batch_size, segments)
                        outcomes.append([path, rate, frames / rate, scores])
                        continue
                samples, rate = decode(path)
                decoded.append((len(outcomes), classifier.prepare(samples, rate)))
                outcomes.append([path, rate, samples.size / rate, None])
            except AudioError as err:
                outcomes.append([path, 0, 0.0, err])
        scored = classifier.score_arrays([a for _, a in decoded], window, batch_size, segments)
        for (n, _), result in zip(decoded, scored, strict=True):
            outcomes[n][3] = result
        for path, rate, duration, result in outcomes:
            if isinstance(result, Exception):
                errors.append({"file": str(path), "error": str(result)})
                continue
            prediction = {
                "file": str(path),
                "sampling_rate": rate,
                "duration_s": round(duration, 3),
                "windows": result.windows,
                "labels": classifier.top(result.probs, top_k),
            }
            if segments:
                prediction["segments"] = [_rounded(s) for s in result.segments or []]
            predictions.append(prediction)
    return predictions, errors


def _open(path: Path) -> sf.SoundFile:
    """An audio file opened for reading; errors read like :func:`decode`'s."""
    try:
        return sf.SoundFile(path)
    except sf.LibsndfileError as err:
        raise AudioError(f"unreadable or corrupt audio ({err.error_string})") from err
    except (RuntimeError, TypeError, ValueError) as err:
        raise AudioError(f"unreadable or corrupt audio ({err})") from err


def _stream(
    classifier: WindowedClassifier,
    handle: sf.SoundFile,
    window: Window,
    batch_size: int,
    segments: bool,
) -> ClipScores:
    """Score an open file block by block in ``window``."""
    blocks = handle.blocks(blocksize=BLOCK_FRAMES, dtype="float32", always_2d=True)
    try:
        return classifier.score_stream(blocks, handle.samplerate, window, batch_size, segments)
    except sf.LibsndfileError as err:
        raise AudioError(f"unreadable or corrupt audio ({err.error_string})") from err
    except RuntimeError as err:
        raise AudioError(f"unreadable or corrupt audio ({first_line(err)})") from err


def _rounded(segment: dict[str, Any]) -> dict[str, Any]:
    """A segment with its times in milliseconds precision (samples are finer than needed)."""
    return {**segment, "start_s": round(segment["start_s"], 3), "end_s": round(segment["end_s"], 3)}


def format_table(predictions: Sequence[dict[str, Any]]) -> str:
    """A human-readable table: one row per file and rank."""
    rows = [("file", "rank", "label", "score")]
    for pred in predictions:
        for rank, item in enumerate(pred["labels"], start=1):
            rows.append(
                (
                    pred["file"] if rank == 1 else "",
                    str(rank),
                    item["label"],
                    f"{item['score']:.4f}",
                )
            )
    return _aligned(rows, right=(1, 3))


def format_segments(predictions: Sequence[dict[str, Any]]) -> str:
    """Each file's windows with their times and top-1 label (``predict_files(segments=True)``)."""
    rows = [("file", "start_s", "end_s", "label", "score")]
    for pred in predictions:
        for n, segment in enumerate(pred.get("segments") or []):
            rows.append(
                (
                    pred["file"] if n == 0 else "",
                    f"{segment['start_s']:.3f}",
                    f"{segment['end_s']:.3f}",
                    segment["label"],
                    f"{segment['score']:.4f}",
                )
            )
    return _aligned(rows, right=(1, 2, 4))


def _aligned(rows: Sequence[tuple[str, ...]], right: tuple[int, ...]) -> str:
    """Columns two spaces apart, the ``right`` ones right-aligned."""
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            f"{cell:>{width}}" if c in right else f"{cell:<{width}}"
            for c, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


# ---------------------------------------------------------------------- Hub


def push_to_hub(
    model_dir: Path | str, repo_id: str, *, private: bool | None = None, token: str | None = None
) -> str:
    """Push a model directory (model + feature extractor) to the Hugging Face Hub.

    Off unless called (``audioclf push``). Raises :class:`HubError` with one line when offline
    (``HF_HUB_OFFLINE=1``), without access, or on network errors; returns the repo URL.
    """
    offline = constants.is_offline_mode() or os.environ.get("HF_HUB_OFFLINE", "").lower() in (
        "1",
        "true",
        "yes",
        "on",
    )
    if offline:
        raise HubError("cannot push to the Hugging Face Hub: offline mode (HF_HUB_OFFLINE=1)")
    classifier = WindowedClassifier(model_dir)  # checks the folder as predict loads it first
    try:
        classifier.extractor.push_to_hub(repo_id, private=private, token=token)
        classifier.model.push_to_hub(repo_id, private=private, token=token)
    except Exception as err:  # HTTP, auth, connection errors all end the command the same way
        raise HubError(f"cannot push to {repo_id}: {first_line(err)}") from err
    return f"{constants.ENDPOINT}/{repo_id}"
