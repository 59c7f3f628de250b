"""What the throughput arms train: ``train=wav2vec2_base``'s optimisation, read without Hydra.

A GPU machine's stock PyTorch image may lack Hydra, so the recipe is read as plain YAML: the
recipe file over the files its ``defaults`` list names in its own group (``defaults: [base,
_self_]``), merged in that order as Hydra merges them. tests/stages/test_gpu_bench.py checks
that the result equals Hydra's composition.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from transformers import Wav2Vec2Config

REPO_ROOT = Path(__file__).resolve().parents[2]
NUM_LABELS = 14  # MInDS-14's intents
SEED = 42
PRECISIONS = ("no", "bf16")  # Accelerate's names; "no" is fp32
PRECISION_NAMES = {"no": "fp32", "bf16": "bf16"}
RECIPE = "wav2vec2_base"  # the flagship's model and train group options
# A wav2vec2 small enough to train a few steps on a CPU in seconds (--smoke only).
SMOKE_MODEL_CONFIG: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": (16, 16, 16, 16, 16, 16, 16),
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
    "classifier_proj_size": 16,
    "codevector_dim": 16,
    "proj_codevector_dim": 16,
}


@dataclass(frozen=True)
class Settings:
    """What one throughput arm trains: the recipe's optimisation, on random batches."""

    batch_size: int
    crop_s: float
    sampling_rate: int
    learning_rate: float
    weight_decay: float
    max_grad_norm: float
    freeze_feature_encoder: bool
    warmup_steps: int = 10
    timed_steps: int = 50
    model_config: tuple[tuple[str, Any], ...] = ()  # Wav2Vec2Config overrides; () = base size
    cpu: bool = False

    @property
    def samples_per_clip(self) -> int:
        return int(self.crop_s * self.sampling_rate)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        below = merged.get(key)
        both_maps = isinstance(below, dict) and isinstance(value, dict)
        merged[key] = _merge(below, value) if both_maps else value
    return merged


def read_option(group: Path, name: str) -> dict[str, Any]:
    """``group/name.yaml`` with the options of the same group that its ``defaults`` extends."""
    path = group / f"{name}.yaml"
    try:
        node = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise RuntimeError(f"cannot read {path}: {err}") from err
    defaults = node.pop("defaults", None) or []
    if "_self_" not in defaults:
        defaults = [*defaults, "_self_"]  # where Hydra puts it when unnamed
    merged: dict[str, Any] = {}
    for entry in defaults:
        if entry == "_self_":
            merged = _merge(merged, node)
        elif isinstance(entry, str) and "/" not in entry and ":" not in entry:
            merged = _merge(merged, read_option(group, entry))
        else:
            raise RuntimeError(f"{path}: defaults entry {entry!r} needs Hydra to compose")
    return merged


def recipe_settings(repo: Path = REPO_ROOT) -> Settings:
    """``train=wav2vec2_base`` and ``model=wav2vec2_base`` as configured in ``conf/``."""
    train = read_option(repo / "conf" / "train", RECIPE)
    model = read_option(repo / "conf" / "model", RECIPE)
    try:
        return Settings(
            batch_size=int(train["batch_size"]),
            crop_s=float(train["crop_s"]),
            sampling_rate=int(model["sampling_rate"]),
            learning_rate=float(train["learning_rate"]),
            weight_decay=float(train["weight_decay"]),
            max_grad_norm=float(train["max_grad_norm"] or 0.0),
            freeze_feature_encoder=bool(model["freeze_feature_encoder"]),
        )
    except KeyError as err:
        raise RuntimeError(f"conf/train or conf/model {RECIPE}.yaml lacks {err}") from err


def smoke_settings(repo: Path = REPO_ROOT) -> Settings:
    """The recipe's optimisation on a tiny model, 2 x 1 s batches, a few steps, on the CPU."""
    return replace(
        recipe_settings(repo),
        batch_size=2,
        crop_s=1.0,
        warmup_steps=1,
        timed_steps=3,
        model_config=tuple(SMOKE_MODEL_CONFIG.items()),
        cpu=True,
    )


def mode_settings(
    smoke: bool, steps: int | None = None, warmup: int | None = None, *, cpu: bool = False
) -> Settings:
    """The recipe's (or ``--smoke``'s) settings with the command line's step counts."""
    settings = smoke_settings() if smoke else recipe_settings()
    return replace(
        settings,
        timed_steps=steps or settings.timed_steps,
        warmup_steps=settings.warmup_steps if warmup is None else warmup,
        cpu=settings.cpu or cpu,
    )


def wav2vec2_config(settings: Settings, num_labels: int = NUM_LABELS) -> Any:
    """transformers' ``Wav2Vec2Config`` defaults (the base size), or ``--smoke``'s tiny one."""
    return Wav2Vec2Config(**dict(settings.model_config), num_labels=num_labels)
