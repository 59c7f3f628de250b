"""A classification model for the data's labels: from a checkpoint or from a config.

The project's own architectures register with transformers' Auto classes here, where a model
is built, so ``model.config.model_type`` may name them like any transformers model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf
from transformers import AutoConfig, AutoModelForAudioClassification

from audioclf.config import ConfigError
from audioclf.models.logmel_cnn import register_auto_classes

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def label_maps(label_names: Sequence[str]) -> tuple[dict[int, str], dict[str, int]]:
    """Integer-keyed maps: string ids only partly survive a saved config."""
    id2label = dict(enumerate(label_names))
    return id2label, {name: i for i, name in id2label.items()}


def build_model(model: DictConfig, label_names: Sequence[str]) -> PreTrainedModel:
    """A classification model with ``num_labels`` and label maps taken from the data."""
    register_auto_classes()
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
