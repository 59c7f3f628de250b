"""A classification model for the data's labels: from a checkpoint or from a config.

The project's own architectures register with transformers' Auto classes here, where a model
is built, so ``model.config.model_type`` may name them like any transformers model.

A checkpoint (a local folder, or a Hub repository at ``model.revision``) loads from safetensors
when it has them, else from ``pytorch_model.bin`` through torch's weights-only loading only: a
pickle holding anything but tensors is refused, never run. Many older Hub repositories hold
only the pickle. A Hub checkpoint is fetched here, at one commit, and loaded from that folder:
transformers then neither looks elsewhere (its safetensors conversion reads a pull-request
branch, not the pinned revision) nor runs repository code. Which file of which commit was
loaded is what :func:`pretrained_weights` says and the train run records
(:meth:`PretrainedWeights.tags`).
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huggingface_hub import snapshot_download
from omegaconf import DictConfig, OmegaConf
from transformers import AutoConfig, AutoModelForAudioClassification

from audioclf.config import ConfigError
from audioclf.models.logmel_cnn import register_auto_classes

if TYPE_CHECKING:
    from transformers import PreTrainedModel

SAFETENSORS_FILES = ("model.safetensors", "model.safetensors.index.json")
PICKLED_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
SAFETENSORS_PATTERNS = ("config.json", *SAFETENSORS_FILES, "model-*-of-*.safetensors")
PICKLED_PATTERNS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*.bin")


@dataclass(frozen=True)
class PretrainedWeights:
    """The weights a model starts from: which file, in which folder, of which Hub commit.

    ``revision`` is the commit the Hub resolved ``model.revision`` to; None for a local folder.
    """

    name_or_path: str
    folder: Path
    file: str
    revision: str | None

    @property
    def safetensors(self) -> bool:
        return self.file in SAFETENSORS_FILES

    def tags(self) -> dict[str, str]:
        """The run's record: ``model.weights_file`` and, from the Hub, ``model.revision``."""
        tags = {"model.weights_file": self.file}
        if self.revision is not None:
            tags["model.revision"] = self.revision
        return tags


def label_maps(label_names: Sequence[str]) -> tuple[dict[int, str], dict[str, int]]:
    """Integer-keyed maps: string ids only partly survive a saved config."""
    id2label = dict(enumerate(label_names))
    return id2label, {name: i for i, name in id2label.items()}


def weights_file(folder: Path) -> str | None:
    """The file of ``folder`` a model loads from: safetensors first, then the pickle."""
    return next((n for n in (*SAFETENSORS_FILES, *PICKLED_FILES) if (folder / n).is_file()), None)


@functools.cache
def hub_snapshot(repo_id: str, revision: str | None) -> Path:
    """The Hub cache's folder of ``repo_id`` at ``revision``, with its config and weights.

    The cache names each snapshot folder after its commit (``snapshots/<commit>``). Safetensors
    are fetched when the revision has them, the pickle only when it has none; the second
    download asks for the commit the first one resolved, so both read one revision. Resolved
    once per process: what a run records is what its model was built from, even while a branch
    moves on the Hub.
    """
    folder = Path(
        snapshot_download(repo_id, revision=revision, allow_patterns=SAFETENSORS_PATTERNS)
    )
    if weights_file(folder) is None:
        folder = Path(
            snapshot_download(repo_id, revision=folder.name, allow_patterns=PICKLED_PATTERNS)
        )
    return folder


def pretrained_weights(model: DictConfig) -> PretrainedWeights | None:
    """Where ``model.name_or_path`` (at ``model.revision``) has its weights; None: no checkpoint.

    A local folder is used as it is (its revision is whatever it holds); anything else names a
    Hub repository, downloaded into the Hub cache (or found there when offline).
    """
    name = model.get("name_or_path")
    if not name:
        return None
    local = Path(name).expanduser()
    if local.is_dir():
        folder, revision = local, None
    elif local.is_absolute() or name.startswith("."):
        raise ConfigError(f"model.name_or_path={name}: no such folder")
    else:
        folder = hub_snapshot(name, model.get("revision"))
        revision = folder.name
    file = weights_file(folder)
    if file is None:
        wanted = ", ".join((*SAFETENSORS_FILES, *PICKLED_FILES))
        raise ConfigError(f"model.name_or_path={name}: {folder} holds none of {wanted}")
    return PretrainedWeights(name_or_path=name, folder=folder, file=file, revision=revision)


def weights_tags(model: DictConfig) -> dict[str, str]:
    """The tags that record a checkpoint's weights file and commit ({} for a model from config)."""
    weights = pretrained_weights(model)
    return weights.tags() if weights else {}


def load_pretrained(weights: PretrainedWeights, **kwargs: Any) -> PreTrainedModel:
    """A model from ``weights``' folder: transformers' own code, a pickle read weights-only."""
    try:
        return AutoModelForAudioClassification.from_pretrained(
            weights.folder,
            use_safetensors=weights.safetensors,
            weights_only=True,
            trust_remote_code=False,
            **kwargs,
        )
    except pickle.UnpicklingError as error:
        raise ConfigError(
            f"model.name_or_path={weights.name_or_path}: {weights.file} holds more than tensors, "
            "and a checkpoint is never unpickled beyond them (torch's weights-only loading); "
            "save it as model.safetensors"
        ) from error


def build_model(model: DictConfig, label_names: Sequence[str]) -> PreTrainedModel:
    """A classification model with ``num_labels`` and label maps taken from the data."""
    register_auto_classes()
    id2label, label2id = label_maps(label_names)
    config = model.get("config")
    overrides: dict[str, Any] = OmegaConf.to_container(config, resolve=True) if config else {}
    labels = {"num_labels": len(label_names), "id2label": id2label, "label2id": label2id}
    weights = pretrained_weights(model)
    if weights is not None:
        overrides.pop("model_type", None)
        net = load_pretrained(weights, **labels, **overrides)
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
