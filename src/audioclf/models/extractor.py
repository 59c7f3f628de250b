"""The feature extractor of the ``model`` config group, which featurize applies to every clip.

Apart from the model code: featurize runs the extractor only, so an edit to an architecture
does not rerun it.
"""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig
from transformers import AutoFeatureExtractor

from audioclf.config import ConfigError


def build_feature_extractor(model: DictConfig) -> Any:
    """The checkpoint's own extractor, or one instantiated from ``model.feature_extractor``."""
    if model.get("name_or_path"):
        return AutoFeatureExtractor.from_pretrained(
            model.name_or_path, revision=model.get("revision")
        )
    if not model.get("feature_extractor"):
        raise ConfigError("model.feature_extractor must be set when model.name_or_path is null")
    return instantiate(model.feature_extractor)
