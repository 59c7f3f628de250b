"""``audioclf predict``: classify audio files with a pipeline model, as a table or JSON.

The model is a ``save_pretrained`` folder or an MLflow model URI (:mod:`audioclf.model_store`);
scoring is the inference core's (:class:`audioclf.classifier.Classifier`), which equals
``transformers.pipeline("audio-classification")`` and never lets batching change a score.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from huggingface_hub import constants

from audioclf.classifier import Classifier, ModelError, first_line
from audioclf.data.audio import AudioError, decode
from audioclf.data.sources import AUDIO_SUFFIXES
from audioclf.model_store import default_model_dir, download_model, is_model_uri, model_dir_in

__all__ = ["Classifier", "HubError", "ModelError", "load_classifier", "predict_files"]


class HubError(RuntimeError):
    """Pushing to the Hugging Face Hub failed (offline, no access, network)."""


# ---------------------------------------------------------------------- models


def load_classifier(source: str | Path | None = None, device: str = "cpu") -> Classifier:
    """A :class:`Classifier` from a model directory or an MLflow model URI.

    ``source`` is a ``save_pretrained`` folder, a downloaded MLflow model folder, or a URI:
    ``runs:/RUN_ID/model``, ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` (the tracking
    store is ``MLFLOW_TRACKING_URI``, else the project's). ``None``: the pipeline's output,
    ``paths.model`` of ./params.yaml. Every failure is a :class:`ModelError`, one line.
    """
    if source is None:
        path = default_model_dir()
        if not path.is_dir():
            raise ModelError(f"{path} not found: run `dvc repro` first or pass --model")
        return Classifier(model_dir_in(path), device)
    text = str(source)
    if not is_model_uri(text):
        path = Path(text).expanduser()
        if not path.exists():
            raise ModelError(f"{path}: no such model directory")
        if not path.is_dir():
            raise ModelError(f"{path} is not a directory (a save_pretrained model folder)")
        return Classifier(model_dir_in(path), device)
    with tempfile.TemporaryDirectory(prefix="audioclf-model-") as tmp:
        folder = download_model(text, Path(tmp))
        try:
            classifier = Classifier(model_dir_in(folder), device)
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
    classifier: Classifier,
    inputs: Sequence[str | Path],
    top_k: int | None = 5,
    batch_size: int = 8,
    chunk: int = 256,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Predict every file (directories expanded); a bad file is reported, never fatal.

    Returns ``(predictions, errors)``: ``{"file", "sampling_rate", "duration_s", "labels"}``
    per good file in input order, ``{"file", "error"}`` per bad one. Files are decoded
    ``chunk`` at a time, so memory stays bounded for large directories.
    """
    files, bad = expand_inputs(inputs)
    errors = [{"file": str(path), "error": reason} for path, reason in bad]
    predictions: list[dict[str, Any]] = []
    for start in range(0, len(files), max(1, chunk)):
        ready: list[tuple[Path, int, float, np.ndarray]] = []
        for path in files[start : start + chunk]:
            try:
                samples, rate = decode(path)
                ready.append((path, rate, samples.size / rate, classifier.prepare(samples, rate)))
            except AudioError as err:
                errors.append({"file": str(path), "error": str(err)})
        scored = classifier.probabilities([r[3] for r in ready], batch_size)
        for (path, rate, duration, _), probs in zip(ready, scored, strict=True):
            if isinstance(probs, Exception):
                errors.append({"file": str(path), "error": str(probs)})
                continue
            predictions.append(
                {
                    "file": str(path),
                    "sampling_rate": rate,
                    "duration_s": round(duration, 3),
                    "labels": classifier.top(probs, top_k),
                }
            )
    return predictions, errors


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
    widths = [max(len(row[c]) for row in rows) for c in range(4)]
    lines = []
    for row in rows:
        lines.append(
            f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:<{widths[2]}}  "
            f"{row[3]:>{widths[3]}}".rstrip()
        )
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
    classifier = Classifier(model_dir)  # checks the folder and its label names first
    try:
        classifier.extractor.push_to_hub(repo_id, private=private, token=token)
        classifier.model.push_to_hub(repo_id, private=private, token=token)
    except Exception as err:  # HTTP, auth, connection errors all end the command the same way
        raise HubError(f"cannot push to {repo_id}: {first_line(err)}") from err
    return f"{constants.ENDPOINT}/{repo_id}"
