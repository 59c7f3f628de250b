"""Classify audio with a pipeline model directory (a standard ``save_pretrained`` folder).

Scores match ``transformers.pipeline("audio-classification", model=DIR)`` on the same
array at the model's rate: same extractor, same model, softmax over the logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

from audioclf.data.audio import resample


class ModelError(ValueError):
    """A model directory cannot be used for classification."""


class Classifier:
    """A loaded model and its feature extractor."""

    def __init__(self, model_dir: Path):
        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise ModelError(f"{model_dir} is not a model directory (no config.json)")
        self.extractor = AutoFeatureExtractor.from_pretrained(model_dir)
        self.model = AutoModelForAudioClassification.from_pretrained(
            model_dir, use_safetensors=True
        ).eval()
        labels = self.model.config.id2label
        if not labels or all(name == f"LABEL_{i}" for i, name in labels.items()):
            raise ModelError(f"{model_dir} has no label names in config.json (id2label)")
        self.labels = [labels[i] for i in range(len(labels))]
        self.sampling_rate = int(self.extractor.sampling_rate)

    @torch.no_grad()
    def scores(self, samples: np.ndarray, rate: int) -> np.ndarray:
        """Class probabilities for one clip (resampled to the model's rate if needed)."""
        samples = resample(np.asarray(samples, dtype=np.float32), rate, self.sampling_rate)
        inputs = self.extractor(samples, sampling_rate=self.sampling_rate, return_tensors="pt")
        logits = self.model(**inputs).logits[0].float()
        return torch.softmax(logits, dim=-1).numpy()

    def classify(
        self, clips: Sequence[tuple[np.ndarray, int]], top_k: int = 5
    ) -> list[list[dict[str, float | str]]]:
        """Top-k labels with scores for each ``(samples, sampling_rate)`` clip."""
        results = []
        for samples, rate in clips:
            probs = self.scores(samples, rate)
            order = np.argsort(-probs)[: max(1, top_k)]
            results.append([{"label": self.labels[i], "score": float(probs[i])} for i in order])
        return results
