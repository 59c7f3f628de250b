"""The model group: from-scratch configs and checkpoints by name or local directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from audioclf.config import ConfigError, compose_conf
from audioclf.models.build import build_model
from audioclf.models.extractor import build_feature_extractor
from audioclf.testing import mini_wav2vec2_encoder

LABELS = ["abroad", "balance", "freeze"]


@pytest.fixture
def local_checkpoint(tmp_path: Path) -> Path:
    """A pretrained-style wav2vec2 folder (no classification head), like facebook/wav2vec2-base."""
    from transformers import Wav2Vec2FeatureExtractor

    folder = tmp_path / "wav2vec2-mini"
    mini_wav2vec2_encoder().save_pretrained(folder, safe_serialization=True)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, return_attention_mask=False).save_pretrained(
        folder
    )
    return folder


def test_checkpoint_from_local_directory_gets_labels_and_frozen_encoder(
    local_checkpoint: Path,
) -> None:
    cfg = compose_conf(
        [
            "model=wav2vec2_base",
            "train=wav2vec2_base",
            f"model.name_or_path={local_checkpoint}",
            "model.revision=null",
        ]
    )
    assert cfg.audio.sampling_rate == 16000
    model = build_model(cfg.model, LABELS)
    assert model.config.id2label == {0: "abroad", 1: "balance", 2: "freeze"}
    assert model.config.label2id == {"abroad": 0, "balance": 1, "freeze": 2}
    assert model.config.num_labels == 3
    encoder = model.wav2vec2.feature_extractor
    assert not any(p.requires_grad for p in encoder.parameters())
    assert all(p.requires_grad for p in model.classifier.parameters())
    extractor = build_feature_extractor(cfg.model)
    assert extractor.sampling_rate == 16000 and not extractor.return_attention_mask


@pytest.mark.parametrize(
    ("overrides", "model_type"),
    [([], "audioclf_logmel_cnn"), (["model=tiny", "train=tiny"], "wav2vec2")],
)
def test_from_scratch_models_are_built_from_config_with_random_weights(
    overrides: list[str], model_type: str
) -> None:
    cfg = compose_conf(overrides)
    model = build_model(cfg.model, LABELS)
    assert model.config.model_type == model_type
    for key, value in cfg.model.config.items():
        if key != "model_type":
            assert getattr(model.config, key) == value, key
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    extractor = build_feature_extractor(cfg.model)
    assert extractor.sampling_rate == cfg.audio.sampling_rate == 8000


def test_from_scratch_without_model_type_names_the_key() -> None:
    cfg = compose_conf(["~model.config.model_type"])
    with pytest.raises(ConfigError, match=r"model\.config\.model_type"):
        build_model(cfg.model, LABELS)
