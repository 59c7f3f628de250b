"""What featurize stores, and how a stored row becomes exactly the model's input.

A waveform extractor (``Wav2Vec2FeatureExtractor``, which both recipes use) only converts a
clip to float32 and, with ``do_normalize``, scales it to zero mean and unit variance. Storing its
output would keep a second float32 copy of every waveform (twice the 16-bit PCM the resample
stage keeps), so featurize stores the clip itself, cut at ``audio.max_duration_s``, in the
resampled storage format, and :class:`ModelInput` applies the extractor when a row is read.
The model sees the same numbers as if the extractor's output had been stored: the same function
on the same samples. Any other extractor (spectrogram features) has its output stored as float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from transformers import Wav2Vec2FeatureExtractor

from audioclf.data.audio import as_float32


def stores_waveform(extractor: Any) -> bool:
    """Whether featurize keeps the waveform and defers ``extractor`` to reading time."""
    return isinstance(extractor, Wav2Vec2FeatureExtractor)


def featurize_arrays(
    arrays: Sequence[np.ndarray], extractor: Any, rate: int, max_samples: int
) -> list[np.ndarray]:
    """The stored model-input column for a batch of resampled clips (see the module doc)."""
    if stores_waveform(extractor):
        return [np.asarray(a)[:max_samples] for a in arrays]
    features = extractor([as_float32(a)[:max_samples] for a in arrays], sampling_rate=rate)
    return [np.asarray(f, dtype=np.float32) for f in features[extractor.model_input_names[0]]]


class ModelInput:
    """A stored model-input value as the model takes it: float32, through the extractor when
    featurize deferred it (:func:`stores_waveform`)."""

    def __init__(self, extractor: Any):
        self.extractor = extractor
        self.name = extractor.model_input_names[0]
        self.rate = int(extractor.sampling_rate)
        self.deferred = stores_waveform(extractor)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        if not self.deferred:
            return as_float32(values)
        out = self.extractor(as_float32(values), sampling_rate=self.rate)[self.name][0]
        return np.asarray(out, dtype=np.float32)

