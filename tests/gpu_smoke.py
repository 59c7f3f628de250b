"""What a ``--smoke`` measurement of the GPU check (``benchmarks.gpu``) on a CPU must hold,
for the in-process smoke test (tests/stages/test_gpu_bench.py) and the script's and the
multi-process runs (tests/system/test_gpu_bench.py)."""

from __future__ import annotations

import math

import pytest

from benchmarks.gpu.settings import SMOKE_MODEL_CONFIG


def tiny_parameter_counts() -> tuple[int, int]:
    from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification

    model = Wav2Vec2ForSequenceClassification(Wav2Vec2Config(**SMOKE_MODEL_CONFIG, num_labels=14))
    model.freeze_feature_encoder()
    total = sum(p.numel() for p in model.parameters())
    return total, sum(p.numel() for p in model.parameters() if p.requires_grad)


def check_smoke_arm(arm: dict, processes: int) -> None:
    assert arm["device"].startswith("cpu") and arm["processes"] == processes
    assert arm["global_batch"] == processes * arm["batch_per_process"]
    assert arm["elapsed_s"] > 0 and arm["samples_per_s"] > 0
    expected = arm["timed_steps"] * arm["global_batch"] / arm["elapsed_s"]
    assert arm["samples_per_s"] == pytest.approx(expected, rel=0.02)
    assert arm["peak_gpu_memory_mb"] is None  # a CPU has no CUDA allocator to read
    assert (arm["parameters"], arm["trainable_parameters"]) == tiny_parameter_counts()
    # a freshly initialised head guesses uniformly: the cross-entropy starts near ln 14
    assert arm["losses_finite"] and abs(arm["loss_first"] - math.log(14)) < 0.3
