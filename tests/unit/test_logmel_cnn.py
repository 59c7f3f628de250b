"""The log-mel 2-D CNN classifier: Auto classes, safetensors round trip, pipeline, masking."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    AutoConfig,
    AutoModelForAudioClassification,
    Wav2Vec2FeatureExtractor,
    pipeline,
)

from audioclf.models.logmel_cnn import (
    LogMelCNNConfig,
    LogMelCNNForAudioClassification,
    register_auto_classes,
)

RATE = 8000
LABELS = {0: "down", 1: "go", 2: "up"}


def make_config(**overrides: object) -> LogMelCNNConfig:
    register_auto_classes()
    config = AutoConfig.for_model(
        "audioclf_logmel_cnn",
        num_labels=3,
        id2label=LABELS,
        label2id={name: i for i, name in LABELS.items()},
        channels=[8, 16, 16, 32],
        n_mels=24,
        **overrides,
    )
    assert isinstance(config, LogMelCNNConfig)
    return config


def make_model(seed: int = 0, **overrides: object) -> LogMelCNNForAudioClassification:
    """Random weights with non-trivial norms, so padded frames would show if they leaked."""
    torch.manual_seed(seed)
    model = AutoModelForAudioClassification.from_config(make_config(**overrides))
    assert isinstance(model, LogMelCNNForAudioClassification)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.5)
                module.running_mean.normal_(0.0, 0.5)
                module.running_var.uniform_(0.5, 2.0)
        model.classifier.weight.normal_(0.0, 1.0)
        model.classifier.bias.normal_(0.0, 0.1)
    return model.eval()


def tone(seconds: float, freq: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    wave = 0.5 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(t.shape)
    return wave.astype(np.float32)


def extractor() -> Wav2Vec2FeatureExtractor:
    return Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=RATE,
        padding_value=0.0,
        do_normalize=False,
        return_attention_mask=True,
    )


def test_register_is_idempotent_and_auto_builds_the_model() -> None:
    register_auto_classes()
    register_auto_classes()
    config = make_config()
    assert config.model_type == "audioclf_logmel_cnn"
    assert config.sampling_rate == RATE and config.f_max is None
    assert config.mask_time_prob == 0.0 and config.mask_feature_prob == 0.0
    assert config.top_db == 30.0 and config.freq_pooling == "max"
    assert config.id2label == LABELS and config.num_labels == 3
    model = AutoModelForAudioClassification.from_config(config)
    assert isinstance(model, LogMelCNNForAudioClassification)
    assert model.main_input_name == "input_values"


def test_default_config_is_the_small_network() -> None:
    model = LogMelCNNForAudioClassification(LogMelCNNConfig(num_labels=10))
    n_params = sum(p.numel() for p in model.parameters())
    assert 100_000 < n_params < 200_000
    assert model.config.channels == [32, 64, 64, 128]
    assert model.config.n_mels == 32 and model.config.hop_length == 80
    assert model.config.time_pooling == "max" and model.config.active_db == 20.0


def test_forward_shapes_loss_and_hidden_states() -> None:
    model = make_model()
    waves = torch.from_numpy(np.stack([tone(1.0, 440, 0), tone(1.0, 880, 1)]))
    labels = torch.tensor([0, 2])
    out = model(waves, labels=labels, output_hidden_states=True)
    assert out.logits.shape == (2, 3)
    assert out.loss is not None and out.loss.ndim == 0 and torch.isfinite(out.loss)
    expected = torch.nn.functional.cross_entropy(out.logits, labels)
    torch.testing.assert_close(out.loss, expected)
    assert out.hidden_states is not None and len(out.hidden_states) == 5
    assert out.hidden_states[0].shape == (2, 1, 24, 1 + RATE // 80)
    assert out.hidden_states[-1].shape[:2] == (2, 32)
    loss, logits = model(waves, labels=labels, return_dict=False)
    torch.testing.assert_close(logits, out.logits)
    torch.testing.assert_close(loss, out.loss)

    model.train()
    model(waves, labels=labels).loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_front_end_stays_float32_under_autocast() -> None:
    model = make_model()
    waves = torch.from_numpy(tone(0.5, 300, 0))[None]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logmel = model.logmel_cnn.frontend(waves)
        logits = model(waves).logits
    assert logmel.dtype == torch.float32
    assert torch.isfinite(logits.float()).all()


def test_safetensors_round_trip_and_pipeline(tmp_path: Path) -> None:
    model = make_model()
    model.save_pretrained(tmp_path, safe_serialization=True)
    extractor().save_pretrained(tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    assert "model.safetensors" in files
    assert not [n for n in files if n.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))]
    keys = set(load_file(tmp_path / "model.safetensors"))
    assert not [k for k in keys if k.endswith(("window", "mel_filters"))]  # non-persistent

    loaded = AutoModelForAudioClassification.from_pretrained(tmp_path, use_safetensors=True)
    assert isinstance(loaded, LogMelCNNForAudioClassification) and not loaded.training
    assert loaded.config.id2label == LABELS
    frontend, loaded_frontend = model.logmel_cnn.frontend, loaded.logmel_cnn.frontend
    torch.testing.assert_close(loaded_frontend.mel_filters, frontend.mel_filters)
    torch.testing.assert_close(loaded_frontend.window, frontend.window)

    wave = tone(0.8, 523, 3)
    with torch.no_grad():
        logits = model(torch.from_numpy(wave)[None]).logits[0]
        loaded_logits = loaded(torch.from_numpy(wave)[None]).logits[0]
    torch.testing.assert_close(loaded_logits, logits, rtol=0, atol=0)

    classifier = pipeline("audio-classification", model=str(tmp_path))
    predictions = classifier({"raw": wave, "sampling_rate": RATE}, top_k=3)
    probs = torch.softmax(logits, -1)
    order = torch.argsort(probs, descending=True).tolist()
    assert [p["label"] for p in predictions] == [LABELS[i] for i in order]
    scores = [p["score"] for p in predictions]
    np.testing.assert_allclose(scores, probs[order].numpy(), atol=1e-5)


def test_spec_augment_only_in_training() -> None:
    masked = make_model(
        dropout=0.0,
        mask_time_prob=0.5,
        mask_time_length=5,
        mask_feature_prob=0.3,
        mask_feature_length=4,
    )
    plain = make_model(dropout=0.0)
    plain.load_state_dict(masked.state_dict())
    waves = torch.from_numpy(np.stack([tone(1.0, 300, 0), tone(1.0, 600, 1)]))

    masked.eval()
    with torch.no_grad():
        first, second = masked(waves).logits, masked(waves).logits
        reference = plain(waves).logits
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    torch.testing.assert_close(first, reference, rtol=0, atol=0)

    # Train mode without masks is deterministic (dropout 0, BatchNorm batch statistics)...
    plain.train()
    with torch.no_grad():
        torch.testing.assert_close(plain(waves).logits, plain(waves).logits, rtol=0, atol=0)
    # ... with masks the outputs change from call to call, but follow torch's global seed.
    masked.train()
    with torch.no_grad():
        torch.manual_seed(1)
        a = masked(waves).logits
        b = masked(waves).logits
        torch.manual_seed(1)
        a_again = masked(waves).logits
    assert not torch.allclose(a, b)
    torch.testing.assert_close(a, a_again, rtol=0, atol=0)


@pytest.mark.parametrize(
    "options",
    [
        {"top_db": 30.0, "freq_pooling": "max", "time_pooling": "max", "active_db": 10.0},
        {"top_db": None, "freq_pooling": "mean", "time_pooling": "mean", "active_db": None},
        {"freq_pooling": "max", "time_pooling": "meanmax", "pool_freq_first": True},
        {"time_pooling": "mean", "pool_freq_first": True, "normalize_per_band": True},
    ],
)
def test_clip_scores_the_same_alone_and_in_a_padded_batch(options: dict[str, Any]) -> None:
    model = make_model(**options)
    clips = [tone(1.0, 250, 0), tone(0.6137, 700, 1), tone(0.3, 1200, 2), tone(0.1, 400, 3)]
    batch = extractor()(clips, sampling_rate=RATE, padding=True, return_tensors="pt")
    assert batch["attention_mask"].shape == (4, RATE)
    with torch.no_grad():
        batched = model(batch["input_values"], attention_mask=batch["attention_mask"]).logits
        for i, clip in enumerate(clips):
            alone = model(torch.from_numpy(clip)[None]).logits[0]
            torch.testing.assert_close(batched[i], alone, rtol=0, atol=1e-4)
        # Without the mask the padding does change the scores of the short clips.
        unmasked = model(batch["input_values"]).logits
    assert not torch.allclose(unmasked[2], batched[2], atol=1e-3)


def test_silence_does_not_shift_the_normalized_features() -> None:
    """With active_db, normalization statistics come from the loud frames: silence appended
    to a clip leaves its normalized log-mel unchanged (all frames do shift it)."""
    clip = tone(0.8, 500, 0) * np.hanning(int(0.8 * RATE)).astype(np.float32)
    padded = np.concatenate([clip, np.zeros(RATE, dtype=np.float32)])
    frames = 40  # well inside the clip, away from the STFT windows that reach the silence

    def normalized(model: LogMelCNNForAudioClassification, wave: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            out = model(torch.from_numpy(wave)[None], output_hidden_states=True)
        return out.hidden_states[0][0, 0, :, 10:frames]

    active = make_model(active_db=10.0)
    torch.testing.assert_close(normalized(active, clip), normalized(active, padded))
    every_frame = make_model(active_db=None)
    assert not torch.allclose(normalized(every_frame, clip), normalized(every_frame, padded))


@pytest.mark.parametrize("samples", [1, 80, 800])
def test_very_short_clip_works(samples: int) -> None:
    model = make_model(mask_time_prob=0.5, mask_feature_prob=0.5)
    wave = torch.from_numpy(tone(1.0, 440, 0)[:samples])[None]
    with torch.no_grad():
        logits = model(wave).logits
        assert logits.shape == (1, 3) and torch.isfinite(logits).all()
        model.train()
        out = model(torch.cat([wave, wave]), labels=torch.tensor([0, 1]))
    assert torch.isfinite(out.loss)
