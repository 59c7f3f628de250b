"""Build feature extractors and models from the ``model`` config group.

Nothing outside this module and ``conf/model/`` knows which architecture is used: a checkpoint
(``name_or_path``, Hub id or local directory) or a from-scratch ``config`` with ``model_type``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForAudioClassification

from audioclf.config import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def build_feature_extractor(model: DictConfig) -> Any:
    """The checkpoint's own extractor, or one instantiated from ``model.feature_extractor``."""
    if model.get("name_or_path"):
        return AutoFeatureExtractor.from_pretrained(
            model.name_or_path, revision=model.get("revision")
        )
    if not model.get("feature_extractor"):
        raise ConfigError("model.feature_extractor must be set when model.name_or_path is null")
    return instantiate(model.feature_extractor)


def label_maps(label_names: Sequence[str]) -> tuple[dict[int, str], dict[str, int]]:
    """Integer-keyed maps: string ids only partly survive a saved config."""
    id2label = dict(enumerate(label_names))
    return id2label, {name: i for i, name in id2label.items()}


def build_model(model: DictConfig, label_names: Sequence[str]) -> PreTrainedModel:
    """A classification model with ``num_labels`` and label maps taken from the data."""
    id2label, label2id = label_maps(label_names)
    config = model.get("config")
    overrides: dict[str, Any] = OmegaConf.to_container(config, resolve=True) if config else {}
    labels = {"num_labels": len(label_names), "id2label": id2label, "label2id": label2id}
    if model.get("name_or_path"):
        overrides.pop("model_type", None)
        net = AutoModelForAudioClassification.from_pretrained(
            model.name_or_path,
            revision=model.get("revision"),
            use_safetensors=True,
            **labels,
            **overrides,
        )
    else:
        model_type = overrides.pop("model_type", None)
        if not model_type:
            raise ConfigError("model.config.model_type must be set when model.name_or_path is null")
        net = AutoModelForAudioClassification.from_config(
            AutoConfig.for_model(model_type, **overrides, **labels)
        )
    if model.get("freeze_feature_encoder") and hasattr(net, "freeze_feature_encoder"):
        net.freeze_feature_encoder()
    return net
