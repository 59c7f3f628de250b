"""The inference core: a ``save_pretrained`` model folder, audio in, scores out.

No MLflow, no params.yaml: the model store (:mod:`audioclf.model_store`) finds model folders,
:mod:`audioclf.predict` and :mod:`audioclf.serving` put this to work.

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

Recordings of any length are scored in windows (:class:`Window`). Attention costs grow with the
square of a clip's length, and a model trained on short crops scores a long clip as one blurred
average, so a clip longer than the window is cut into windows of ``window_s`` every ``hop_s``
(the last window aligned to the clip's end, so that every sample is scored), the windows are
scored in batches (all of one length: they may always share a batch) and the clip's scores are
the mean of the window probabilities. The mean, rather than the maximum or a vote, keeps the
scores a distribution that sums to one (softmax models), weighs every part of the clip alike and
does not let one loud window decide; per-window top-1 labels (``segments``) show where a long
recording changes class. A clip no longer than the window is scored whole, exactly as without
windows. :meth:`Classifier.score_stream` scores blocks of a file as they are read (the whole
recording is never held), with the same windows and the same scores as
:meth:`Classifier.score_arrays` on the decoded array.

The default window is the clip length the model was trained on, which the train stage records
in the extractor's ``preprocessor_config.json`` as :data:`WINDOW_ATTRIBUTE` (an attribute that
``save_pretrained``/``from_pretrained`` keep and ``transformers.pipeline`` ignores); the default
hop is half the window. A model without it (saved before it existed) scores whole clips unless
a window is given.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soxr
import torch
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

from audioclf.data.audio import AudioError, resample


class ModelError(ValueError):
    """A model (directory or MLflow URI) cannot be used for classification."""


class WindowError(ValueError):
    """A scoring window or hop that cannot be used (the message names the option)."""


Prediction = list[dict[str, Any]]  # [{"label": str, "score": float}, ...], best first
Segment = dict[str, Any]  # {"start_s", "end_s", "label", "score"}: one window's top-1 label

# The training clip length in seconds, the default window, in preprocessor_config.json.
WINDOW_ATTRIBUTE = "audioclf_window_s"
WINDOW_NAMES = ("window_s", "hop_s")


@dataclass(frozen=True)
class Window:
    """Score clips longer than ``seconds`` in windows of ``seconds`` every ``hop_s``."""

    seconds: float
    hop_s: float

    def samples(self, rate: int) -> tuple[int, int]:
        """Window and hop in samples at ``rate`` (each at least one sample)."""
        return max(1, round(self.seconds * rate)), max(1, round(self.hop_s * rate))


def resolve_window(
    default_s: float | None,
    window_s: float | None = None,
    hop_s: float | None = None,
    names: tuple[str, str] = WINDOW_NAMES,
) -> Window | None:
    """The window to score with, or None for whole clips; errors name ``names``' option.

    ``window_s`` None takes the model's ``default_s`` (None: whole clips), 0 asks for whole
    clips; ``hop_s`` None is half the window. A hop must be positive and at most the window
    (windows that leave gaps would leave samples unscored).
    """
    window_name, hop_name = names
    if window_s is not None:
        window_s = float(window_s)
        if not math.isfinite(window_s) or window_s < 0:
            raise WindowError(
                f"{window_name} must be >= 0 seconds (0: whole clips), not {window_s}"
            )
    seconds = default_s if window_s is None else window_s
    if not seconds:
        if hop_s is not None:
            why = "the model records no window" if window_s is None else f"{window_name} is 0"
            raise WindowError(
                f"{hop_name} needs a window, but {why} (whole clips): give {window_name}"
            )
        return None
    seconds = float(seconds)
    hop = seconds / 2 if hop_s is None else float(hop_s)
    if not math.isfinite(hop) or hop <= 0:
        raise WindowError(f"{hop_name} must be > 0 seconds, not {hop}")
    if hop > seconds:
        raise WindowError(
            f"{hop_name} ({hop:g} s) must not exceed the window ({seconds:g} s): "
            "windows would leave gaps"
        )
    return Window(seconds, hop)


def window_starts(length: int, window: int, hop: int) -> list[int]:
    """Starts of the windows over ``length`` samples: every ``hop``, then one that ends at the
    end (a clip no longer than ``window`` is one window, itself)."""
    if length <= window:
        return [0]
    return [*range(0, length - window, hop), length - window]


@dataclass
class ClipScores:
    """A clip's class probabilities (label order), the windows they average and, when asked,
    each window's top-1 label with its times."""

    probs: np.ndarray
    windows: int
    segments: list[Segment] | None = None


class _WindowMean:
    """The running mean of a clip's window probabilities, summed in float64 in window order."""

    def __init__(self, classifier: Classifier, length: int, keep_segments: bool):
        self.classifier = classifier
        self.length = length
        self.total = np.zeros(len(classifier.labels), dtype=np.float64)
        self.count = 0
        self.segments: list[Segment] | None = [] if keep_segments else None

    def add(self, start: int, probs: np.ndarray) -> None:
        self.total += probs
        self.count += 1
        if self.segments is not None:
            rate = self.classifier.sampling_rate
            best = int(np.argmax(probs))
            self.segments.append(
                {
                    "start_s": start / rate,
                    "end_s": (start + self.length) / rate,
                    "label": self.classifier.labels[best],
                    "score": float(probs[best]),
                }
            )

    def result(self) -> ClipScores:
        return ClipScores((self.total / self.count).astype(np.float32), self.count, self.segments)


class Classifier:
    """A loaded model and its feature extractor."""

    def __init__(self, model_dir: Path | str, device: str | torch.device = "cpu"):
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
        self.default_window_s = _recorded_window(self.extractor, model_dir)
        self.source = str(model_dir)  # where it came from (a URI for MLflow models)

    def window(
        self,
        window_s: float | None = None,
        hop_s: float | None = None,
        names: tuple[str, str] = WINDOW_NAMES,
    ) -> Window | None:
        """:func:`resolve_window` with this model's recorded window as the default."""
        return resolve_window(self.default_window_s, window_s, hop_s, names)

    def is_windowed(self, length: int, window: Window | None) -> bool:
        """Whether a clip of ``length`` samples at the model's rate is scored in windows."""
        return window is not None and length > window.samples(self.sampling_rate)[0]

    def length_at_model_rate(self, frames: int, rate: int) -> int:
        """Samples :meth:`prepare` makes of ``frames`` at ``rate`` (soxr rounds half up)."""
        if int(rate) == self.sampling_rate:
            return int(frames)
        return math.floor(frames * self.sampling_rate / int(rate) + 0.5)

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

    def score_arrays(
        self,
        arrays: Sequence[np.ndarray],
        window: Window | None = None,
        batch_size: int = 8,
        segments: bool = False,
    ) -> list[ClipScores | Exception]:
        """Scores of clips already at the model's rate (from :meth:`prepare`), windowed.

        Clips no longer than the window (all of them when ``window`` is None) go through
        :meth:`probabilities` together, exactly as without windows; the windows of the longer
        ones are scored together in batches of ``batch_size``, then averaged per clip. A clip
        the model cannot take (or one of whose windows it cannot) gets the exception instead.
        """
        results: list[Any] = [None] * len(arrays)
        whole = [i for i, a in enumerate(arrays) if not self.is_windowed(a.shape[0], window)]
        scored = self.probabilities([arrays[i] for i in whole], batch_size)
        for i, probs in zip(whole, scored, strict=True):
            if isinstance(probs, Exception):
                results[i] = probs
            else:
                results[i] = self._whole(probs, arrays[i], segments)
        long = [i for i in range(len(arrays)) if results[i] is None]
        if not long:
            return results
        length, hop = window.samples(self.sampling_rate)
        pieces, owners = [], []
        for i in long:
            for start in window_starts(arrays[i].shape[0], length, hop):
                pieces.append(arrays[i][start : start + length])
                owners.append((i, start))
        means = {i: _WindowMean(self, length, segments) for i in long}
        failed: dict[int, Exception] = {}
        for (i, start), probs in zip(owners, self.probabilities(pieces, batch_size), strict=True):
            if isinstance(probs, Exception):
                failed.setdefault(i, probs)
            else:
                means[i].add(start, probs)
        for i in long:
            results[i] = failed[i] if i in failed else means[i].result()
        return results

    def score_stream(
        self,
        blocks: Iterable[np.ndarray],
        rate: int,
        window: Window,
        batch_size: int = 8,
        segments: bool = False,
    ) -> ClipScores:
        """Scores of a recording read block by block, ``(frames,)`` or ``(frames, channels)``
        at ``rate``, in ``window``: the same windows, batches and scores as :meth:`prepare` and
        :meth:`score_arrays` on the whole recording (soxr's stream resampler gives the samples
        of its one-shot one), holding at most a window, a block and a batch of windows.

        Raises :class:`AudioError` for bad samples or a window the model cannot take.
        """
        length, hop = window.samples(self.sampling_rate)
        if int(rate) <= 0:
            raise AudioError(f"invalid sampling rate {rate}")
        resampler = None
        if int(rate) != self.sampling_rate:
            resampler = soxr.ResampleStream(
                int(rate), self.sampling_rate, 1, dtype="float32", quality="HQ"
            )
        buffer = np.zeros(0, dtype=np.float32)
        offset = 0  # position of buffer[0] in the recording, at the model's rate
        next_start = 0
        pending: list[tuple[int, np.ndarray]] = []
        mean = _WindowMean(self, length, segments)

        def score_pending() -> None:
            scored = self.probabilities([w for _, w in pending], batch_size)
            for (start, _), probs in zip(pending, scored, strict=True):
                if isinstance(probs, Exception):
                    raise probs
                mean.add(start, probs)
            pending.clear()

        def take(chunk: np.ndarray) -> None:
            nonlocal buffer, offset, next_start
            buffer = np.concatenate([buffer, chunk])
            end = offset + buffer.shape[0]
            while next_start + length < end:  # a later sample exists: not the last window
                at = next_start - offset
                pending.append((next_start, buffer[at : at + length].copy()))
                next_start += hop
                if len(pending) >= batch_size:
                    score_pending()
            keep_from = max(offset, min(next_start, end - length))
            buffer, offset = buffer[keep_from - offset :], keep_from

        for block in blocks:
            samples = _mono(block)
            take(resampler.resample_chunk(samples, last=False) if resampler else samples)
        if resampler is not None:
            take(resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
        total = offset + buffer.shape[0]
        if total == 0:
            raise AudioError("empty audio (no samples)")
        if total <= length:  # never reached a window's length: the whole clip, as it is
            [probs] = self.probabilities([buffer], 1)
            if isinstance(probs, Exception):
                raise probs
            return self._whole(probs, buffer, segments)
        pending.append((total - length, buffer[buffer.shape[0] - length :].copy()))
        score_pending()
        return mean.result()

    def _whole(self, probs: np.ndarray, clip: np.ndarray, segments: bool) -> ClipScores:
        """A clip scored in one piece, as one window covering it."""
        mean = _WindowMean(self, clip.shape[0], segments)
        mean.add(0, probs)
        return ClipScores(probs, 1, mean.segments)

    def score(
        self,
        clips: Sequence[tuple[np.ndarray, int]],
        window: Window | None = None,
        batch_size: int = 8,
        segments: bool = False,
    ) -> list[ClipScores]:
        """:meth:`score_arrays` of ``(samples, sampling_rate)`` clips; raises
        :class:`AudioError` naming the clip's position if any clip is unusable."""
        arrays = []
        for n, (samples, rate) in enumerate(clips):
            try:
                arrays.append(self.prepare(samples, rate))
            except AudioError as err:
                raise AudioError(f"clip {n}: {err}") from err
        results = self.score_arrays(arrays, window, batch_size, segments)
        for n, result in enumerate(results):
            if isinstance(result, Exception):
                raise AudioError(f"clip {n}: {result}") from result
        return results

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
        window: Window | None = None,
    ) -> list[Prediction]:
        """Top-k labels with scores for each ``(samples, sampling_rate)`` clip: whole clips,
        or clips longer than ``window`` in windows (:meth:`score`).

        Raises :class:`AudioError` (naming the clip's position) if any clip is unusable.
        """
        return [self.top(r.probs, top_k) for r in self.score(clips, window, batch_size)]


def _mono(block: np.ndarray) -> np.ndarray:
    """A block of samples as mono float32, checked as :meth:`Classifier.prepare` checks."""
    block = np.asarray(block, dtype=np.float32)
    if block.ndim == 2:
        block = block.mean(axis=1, dtype=np.float32)
    elif block.ndim != 1:
        raise AudioError(f"audio must be (frames,) or (frames, channels), not {block.shape}")
    if not np.isfinite(block).all():
        raise AudioError("audio contains NaN or infinite samples")
    return block


def _recorded_window(extractor: Any, model_dir: Path) -> float | None:
    """The training clip length the model folder records (None: not recorded)."""
    value = getattr(extractor, WINDOW_ATTRIBUTE, None)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ModelError(
            f"{model_dir}: {WINDOW_ATTRIBUTE} in preprocessor_config.json must be a positive "
            f"number of seconds, not {value!r}"
        )
    return float(value)


def first_line(err: BaseException) -> str:
    """The first line of an error message (MLflow and torch messages run over many lines)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
