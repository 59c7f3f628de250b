"""Classify audio with a pipeline model: a ``save_pretrained`` folder or an MLflow model.

Scores equal those of ``transformers.pipeline("audio-classification", model=DIR)`` on the same
array at the model's rate: the same extractor and model, then softmax over the logits (sigmoid
for multi-label models, as the pipeline does). Clips at other rates are resampled with soxr
(:func:`audioclf.data.audio.resample`), stereo is averaged to mono.

Batching never changes a score. A batch is padded to its longest clip, and padding changes the
output of models whose extractor returns no attention mask (``return_attention_mask=False``,
e.g. wav2vec2-base with group norm: the normalisations then see the zeros). So:

- the extractor returns an attention mask: clips are sorted by length, batched with padding,
  and the mask tells the model which samples are real (what such models are trained for);
- it does not: only clips of exactly the same length (at the model's rate) share a batch.

``batch_size`` bounds the clips per forward pass either way.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audioclf.data.audio import AudioError, decode, resample

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
DEFAULT_MODEL = "models/final"
# A URI MLflow resolves (runs:/, models:/, mlflow-artifacts:/, s3://, file:// ...), not a path.
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")


class ModelError(ValueError):
    """A model (directory or MLflow URI) cannot be used for classification."""


class HubError(RuntimeError):
    """Pushing to the Hugging Face Hub failed (offline, no access, network)."""


Prediction = list[dict[str, Any]]  # [{"label": str, "score": float}, ...], best first


class Classifier:
    """A loaded model and its feature extractor."""

    def __init__(self, model_dir: Path | str, device: str | torch.device = "cpu"):
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise ModelError(f"{model_dir} is not a model directory (no config.json)")
        try:
            self.extractor = AutoFeatureExtractor.from_pretrained(model_dir)
            model = AutoModelForAudioClassification.from_pretrained(model_dir, use_safetensors=True)
        except (OSError, ValueError, KeyError) as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelError(f"{model_dir}: cannot load the model ({reason})") from err
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        labels = self.model.config.id2label or {}
        if not labels or all(name == f"LABEL_{i}" for i, name in labels.items()):
            raise ModelError(
                f"{model_dir} has no label names in config.json (id2label is LABEL_0, LABEL_1, ...)"
            )
        self.labels = [labels[i] for i in range(len(labels))]
        self.sampling_rate = int(self.extractor.sampling_rate)
        self.uses_attention_mask = bool(getattr(self.extractor, "return_attention_mask", False))
        self.multi_label = self.model.config.problem_type == "multi_label_classification"
        self.source = str(model_dir)  # where it came from (a URI for MLflow models)

    # ------------------------------------------------------------------ inputs

    def prepare(self, samples: np.ndarray, rate: int) -> np.ndarray:
        """Mono float32 at the model's rate; ``samples`` is (frames,) or (frames, channels)."""
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim == 2:
            samples = samples.mean(axis=1, dtype=np.float32)
        elif samples.ndim != 1:
            raise AudioError(f"audio must be (frames,) or (frames, channels), not {samples.shape}")
        if samples.size == 0:
            raise AudioError("empty audio (no samples)")
        if not np.isfinite(samples).all():
            raise AudioError("audio contains NaN or infinite samples")
        if int(rate) <= 0:
            raise AudioError(f"invalid sampling rate {rate}")
        out = resample(samples, int(rate), self.sampling_rate)
        if out.size == 0:
            raise AudioError(f"audio too short ({samples.size} samples at {rate} Hz)")
        return out

    # ------------------------------------------------------------------ scoring

    def batches(self, lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
        """Indices of the clips that may share a forward pass (see the module docstring)."""
        batch_size = max(1, int(batch_size))
        if self.uses_attention_mask:
            order = sorted(range(len(lengths)), key=lambda i: lengths[i])
            groups = [order]
        else:
            by_length: dict[int, list[int]] = defaultdict(list)
            for i, length in enumerate(lengths):
                by_length[length].append(i)
            groups = list(by_length.values())
        for group in groups:
            for start in range(0, len(group), batch_size):
                yield group[start : start + batch_size]

    @torch.no_grad()
    def _forward(self, arrays: list[np.ndarray]) -> np.ndarray:
        inputs = self.extractor(
            arrays, sampling_rate=self.sampling_rate, padding=True, return_tensors="pt"
        )
        inputs = inputs.to(self.device).to(dtype=self.model.dtype)
        logits = self.model(**inputs).logits
        probs = logits.sigmoid() if self.multi_label else logits.softmax(dim=-1)
        return probs.float().cpu().numpy()

    def probabilities(
        self, arrays: Sequence[np.ndarray], batch_size: int = 8
    ) -> list[np.ndarray | Exception]:
        """Class scores for clips already at the model's rate (from :meth:`prepare`).

        A clip the model cannot take (e.g. shorter than its first convolution) gets the
        exception in its place instead of scores; the other clips are still scored.
        """
        results: list[Any] = [None] * len(arrays)
        for batch in self.batches([a.shape[0] for a in arrays], batch_size):
            try:
                probs = self._forward([arrays[i] for i in batch])
            except (RuntimeError, ValueError) as err:
                if len(batch) > 1:  # find the culprit(s): one at a time
                    for i in batch:
                        results[i] = self.probabilities([arrays[i]], 1)[0]
                    continue
                results[batch[0]] = AudioError(f"the model cannot take this clip ({_first(err)})")
                continue
            for i, row in zip(batch, probs, strict=True):
                results[i] = row
        return results

    def scores(self, samples: np.ndarray, rate: int) -> np.ndarray:
        """Class probabilities for one clip, in label order."""
        result = self.probabilities([self.prepare(samples, rate)], 1)[0]
        if isinstance(result, Exception):
            raise result
        return result

    def top(self, probs: np.ndarray, top_k: int | None = 5) -> Prediction:
        """Labels with scores, best first; ``top_k=None`` keeps every label."""
        k = len(self.labels) if top_k is None else max(1, min(int(top_k), len(self.labels)))
        order = np.argsort(-probs, kind="stable")[:k]
        return [{"label": self.labels[i], "score": float(probs[i])} for i in order]

    def classify(
        self,
        clips: Sequence[tuple[np.ndarray, int]],
        top_k: int | None = 5,
        batch_size: int = 8,
    ) -> list[Prediction]:
        """Top-k labels with scores for each ``(samples, sampling_rate)`` clip.

        Raises :class:`AudioError` (naming the clip's position) if any clip is unusable.
        """
        arrays = []
        for n, (samples, rate) in enumerate(clips):
            try:
                arrays.append(self.prepare(samples, rate))
            except AudioError as err:
                raise AudioError(f"clip {n}: {err}") from err
        results = []
        for n, probs in enumerate(self.probabilities(arrays, batch_size)):
            if isinstance(probs, Exception):
                raise AudioError(f"clip {n}: {probs}") from probs
            results.append(self.top(probs, top_k))
        return results


def _first(err: BaseException) -> str:
    """The first line of an error message (MLflow and torch messages run over many lines)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# ---------------------------------------------------------------------- models


def default_model_dir(root: Path | None = None) -> Path:
    """``paths.model`` of ``./params.yaml`` (what ``dvc repro`` writes), else models/final."""
    from audioclf.config import PARAMS_FILE, load_params

    root = root or Path.cwd()
    if (root / PARAMS_FILE).is_file():
        try:
            return root / load_params(root=root).paths.model
        except Exception:  # an unreadable params.yaml: fall back to the documented default
            pass
    return root / DEFAULT_MODEL


def _tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI``, else ``tracking.tracking_uri`` of params.yaml, else mlflow.db."""
    from audioclf import tracking

    cfg = None
    try:
        from audioclf.config import load_params

        cfg = load_params().get("tracking")
    except Exception:
        cfg = None
    return tracking.tracking_uri(cfg)


def _model_dir_in(folder: Path) -> Path:
    """The ``save_pretrained`` folder inside an MLflow pyfunc model (or ``folder`` itself)."""
    mlmodel = folder / "MLmodel"
    if mlmodel.is_file():
        import yaml

        flavor = (yaml.safe_load(mlmodel.read_text()) or {}).get("flavors", {})
        artifacts = flavor.get("python_function", {}).get("artifacts") or {}
        from audioclf.serving import ARTIFACT

        if ARTIFACT not in artifacts:
            raise ModelError(
                f"{folder} is an MLflow model without a '{ARTIFACT}' artifact "
                "(not logged by audioclf)"
            )
        return folder / artifacts[ARTIFACT]["path"]
    return folder


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
        return Classifier(_model_dir_in(path), device)
    text = str(source)
    if not _URI.match(text) or Path(text).exists():
        path = Path(text).expanduser()
        if not path.exists():
            raise ModelError(f"{path}: no such model directory")
        if not path.is_dir():
            raise ModelError(f"{path} is not a directory (a save_pretrained model folder)")
        return Classifier(_model_dir_in(path), device)
    return _load_mlflow(text, device)


@contextmanager
def _no_progress_bar() -> Iterator[None]:
    """MLflow's download progress bar off (it is read from the environment), then restored."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def _load_mlflow(uri: str, device: str) -> Classifier:
    import mlflow
    from mlflow.exceptions import MlflowException

    tracking_uri = _tracking_uri()
    if tracking_uri.startswith("sqlite:///"):
        store = Path(tracking_uri[len("sqlite:///") :])
        if not store.is_file():
            raise ModelError(
                f"cannot resolve {uri}: MLflow store {store} not found (set MLFLOW_TRACKING_URI)"
            )
    # Passed explicitly: mlflow.set_tracking_uri would also change this process's environment.
    with tempfile.TemporaryDirectory(prefix="audioclf-model-") as tmp, _no_progress_bar():
        try:
            folder = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=uri,
                    dst_path=tmp,
                    tracking_uri=tracking_uri,
                    registry_uri=tracking_uri,
                )
            )
        except (MlflowException, OSError, ValueError) as err:
            raise ModelError(f"cannot resolve {uri}: {_first(err)}") from err
        if not folder.is_dir():
            raise ModelError(f"{uri} is a file, not a model")
        try:
            classifier = Classifier(_model_dir_in(folder), device)
        except ModelError as err:
            raise ModelError(f"{uri}: {err}".replace(str(folder), "<model>")) from err
    classifier.source = uri
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
    from huggingface_hub import constants

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
        raise HubError(f"cannot push to {repo_id}: {_first(err)}") from err
    return f"{constants.ENDPOINT}/{repo_id}"
