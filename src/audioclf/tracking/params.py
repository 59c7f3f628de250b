"""The composed config as MLflow params: dotted keys, values as text, the too long set apart."""

from __future__ import annotations

import json
from typing import Any

from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
from omegaconf import DictConfig, OmegaConf


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys (``train.learning_rate``) and their leaf values."""
    if not isinstance(node, dict):
        return {prefix[:-1]: node}
    flat: dict[str, Any] = {}
    for key, value in node.items():
        flat.update(flatten(value, f"{prefix}{key}."))
    return flat


def param_text(value: Any) -> str:
    """A config value as MLflow keeps it in a param (lists as JSON)."""
    return json.dumps(value) if isinstance(value, list) else str(value)


def flat_params(cfg: DictConfig) -> tuple[dict[str, str], dict[str, Any]]:
    """The composed config flattened to dotted keys; values too long for a param go apart.

    Returns ``(params, long_values)``: long values are logged as a JSON artifact instead.
    """
    params: dict[str, str] = {}
    long_values: dict[str, Any] = {}
    for key, value in flatten(OmegaConf.to_container(cfg, resolve=True)).items():
        text = param_text(value)
        if len(text) > MAX_PARAM_VAL_LENGTH:
            long_values[key] = value
        else:
            params[key] = text
    return params, long_values
