"""Recordings of any length: scored in windows, from memory or streamed from a file.

Attention costs grow with the square of a clip's length, and a model trained on short crops
scores a long clip as one blurred average, so a clip longer than the window (:class:`Window`)
is cut into windows of ``window_s`` every ``hop_s`` (the last window aligned to the clip's end,
so that every sample is scored), the windows are scored in batches by the inference core
(:class:`audioclf.classifier.Classifier`; all of one length, they may always share a batch) and
the clip's scores are the mean of the window probabilities. The mean, rather than the maximum or
a vote, keeps the scores a distribution that sums to one (softmax models), weighs every part of
the clip alike and does not let one loud window decide; per-window top-1 labels (``segments``)
show where a long recording changes class. A clip no longer than the window is scored whole,
exactly as without windows. :meth:`WindowedClassifier.score_stream` scores blocks of a file as
they are read (the whole recording is never held), with the same windows and the same scores
as :meth:`WindowedClassifier.score_arrays` on the decoded array.

The default window is the clip length the model was trained on, which the train stage records
in the model folder as :data:`audioclf.models.saved.WINDOW_ATTRIBUTE`; the default hop is half
the window. A model without it (saved before it existed) scores whole clips unless a window is
given.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soxr
import torch

from audioclf.classifier import Classifier, ModelError, Prediction, clip_results, mono
from audioclf.data.audio import AudioError
from audioclf.models.saved import WINDOW_ATTRIBUTE

Segment = dict[str, Any]  # {"start_s", "end_s", "label", "score"}: one window's top-1 label

WINDOW_NAMES = ("window_s", "hop_s")


class WindowError(ValueError):
    """A scoring window or hop that cannot be used (the message names the option)."""


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


class WindowedClassifier(Classifier):
    """A :class:`Classifier` that scores clips of any length in windows, the model folder's
    recorded window (``default_window_s``) unless given another."""

    def __init__(self, model_dir: Path | str, device: str | torch.device = "cpu"):
        super().__init__(model_dir, device)
        self.default_window_s = _recorded_window(self.extractor, Path(model_dir))

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
            samples = mono(block)
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
        arrays = self.prepare_clips(clips)
        return clip_results(self.score_arrays(arrays, window, batch_size, segments))

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
