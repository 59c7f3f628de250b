"""The inference core: a ``save_pretrained`` model folder, audio in, scores out.

No MLflow, no params.yaml: the model store (:mod:`audioclf.model_store`) finds model folders,
:mod:`audioclf.predict` and :mod:`audioclf.serving` put this to work. Recordings longer than
the model's window, and files read as streams, are scored by :mod:`audioclf.windows` on top of
this.

Scores equal those of ``transformers.pipeline("audio-classification", model=DIR)`` on the same
array at the model's rate: the same extractor and model, then softmax over the logits (sigmoid
for multi-label models, as the pipeline does). Clips at other rates are resampled with soxr
(:func:`audioclf.data.audio.resample`), stereo is averaged to mono. Loading registers the
project's CNN with transformers' Auto classes first, so its folders load like any other.

Batching never changes a score. A batch is padded to its longest clip, and padding changes the
output of models whose extractor returns no attention mask (``return_attention_mask=False``,
e.g. wav2vec2-base with group norm: the normalisations then see the zeros). So:

- the extractor returns an attention mask: clips are sorted by length, batched with padding,
  and the mask tells the model which samples are real (what such models are trained for);
- it does not: only clips of exactly the same length (at the model's rate) share a batch.

``batch_size`` bounds the clips per forward pass either way.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

from audioclf.data.audio import AudioError, resample
from audioclf.models.logmel_cnn import register_auto_classes

Prediction = list[dict[str, Any]]  # [{"label": str, "score": float}, ...], best first
Scored = TypeVar("Scored")


class ModelError(ValueError):
    """A model (directory or MLflow URI) cannot be used for classification."""


class Classifier:
    """A loaded model and its feature extractor."""

    def __init__(self, model_dir: Path | str, device: str | torch.device = "cpu"):
        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise ModelError(f"{model_dir} is not a model directory (no config.json)")
        register_auto_classes()
        try:
            self.extractor = AutoFeatureExtractor.from_pretrained(model_dir)
            model = AutoModelForAudioClassification.from_pretrained(model_dir, use_safetensors=True)
        except (OSError, ValueError, KeyError) as err:
            raise ModelError(f"{model_dir}: cannot load the model ({first_line(err)})") from err
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

    def length_at_model_rate(self, frames: int, rate: int) -> int:
        """Samples :meth:`prepare` makes of ``frames`` at ``rate`` (soxr rounds half up)."""
        if int(rate) == self.sampling_rate:
            return int(frames)
        return math.floor(frames * self.sampling_rate / int(rate) + 0.5)

    def prepare(self, samples: np.ndarray, rate: int) -> np.ndarray:
        """Mono float32 at the model's rate; ``samples`` is (frames,) or (frames, channels)."""
        samples = mono(samples)
        if samples.size == 0:
            raise AudioError("empty audio (no samples)")
        if int(rate) <= 0:
            raise AudioError(f"invalid sampling rate {rate}")
        out = resample(samples, int(rate), self.sampling_rate)
        if out.size == 0:
            raise AudioError(f"audio too short ({samples.size} samples at {rate} Hz)")
        return out

    def prepare_clips(self, clips: Sequence[tuple[np.ndarray, int]]) -> list[np.ndarray]:
        """:meth:`prepare` of ``(samples, sampling_rate)`` clips; raises :class:`AudioError`
        naming the clip's position if any clip is unusable."""
        arrays = []
        for n, (samples, rate) in enumerate(clips):
            try:
                arrays.append(self.prepare(samples, rate))
            except AudioError as err:
                raise AudioError(f"clip {n}: {err}") from err
        return arrays

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
                reason = first_line(err)
                results[batch[0]] = AudioError(f"the model cannot take this clip ({reason})")
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
        self, clips: Sequence[tuple[np.ndarray, int]], top_k: int | None = 5, batch_size: int = 8
    ) -> list[Prediction]:
        """Top-k labels with scores for each whole ``(samples, sampling_rate)`` clip.

        Raises :class:`AudioError` (naming the clip's position) if any clip is unusable.
        """
        scored = self.probabilities(self.prepare_clips(clips), batch_size)
        return [self.top(probs, top_k) for probs in clip_results(scored)]


def mono(samples: np.ndarray) -> np.ndarray:
    """Samples, (frames,) or (frames, channels), as mono float32; raises :class:`AudioError`
    for other shapes and for NaN or infinite samples."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1, dtype=np.float32)
    elif samples.ndim != 1:
        raise AudioError(f"audio must be (frames,) or (frames, channels), not {samples.shape}")
    if not np.isfinite(samples).all():
        raise AudioError("audio contains NaN or infinite samples")
    return samples


def clip_results(results: Sequence[Scored | Exception]) -> list[Scored]:
    """Each clip's result; raises :class:`AudioError` naming the first clip that failed."""
    checked: list[Scored] = []
    for n, result in enumerate(results):
        if isinstance(result, Exception):
            raise AudioError(f"clip {n}: {result}") from result
        checked.append(result)
    return checked


def first_line(err: BaseException) -> str:
    """The first line of an error message (MLflow and torch messages run over many lines)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
