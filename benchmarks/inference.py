"""Inference on 3 s clips: ``audioclf.classifier.Classifier`` vs ``transformers.pipeline``.

Both load the same ``save_pretrained`` folder (the ``model`` config; the weights do not
change the cost) and get the same float32 arrays at the model's rate. Latency: one clip per
call, calls alternating between the two; throughput: batches of ``batch`` clips, alternating.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.measure import median, percentile

CLIP_S = 3.0


def _time(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def make_clips(arrays: list[np.ndarray], rate: int, count: int) -> list[np.ndarray]:
    """``count`` clips of exactly 3 s: test clips looped or cut to length."""
    length = int(CLIP_S * rate)
    return [
        np.resize(np.asarray(arrays[i % len(arrays)], dtype=np.float32), length)
        for i in range(count)
    ]


def inference(
    model_dir: Path,
    clips: list[np.ndarray],
    *,
    latency_calls: int,
    batch: int,
    throughput_rounds: int,
    warmup: int = 3,
) -> dict[str, Any]:
    from transformers import pipeline

    from audioclf.classifier import Classifier

    clf = Classifier(model_dir)
    rate = clf.sampling_rate
    pipe = pipeline("audio-classification", model=str(model_dir), device="cpu")
    batched = "batch_size" in inspect.signature(clf.classify).parameters

    def ours(items: list[np.ndarray], size: int) -> Any:
        pairs = [(a, rate) for a in items]
        if batched:
            return clf.classify(pairs, top_k=5, batch_size=size)
        return clf.classify(pairs, top_k=5)

    def theirs(items: list[np.ndarray], size: int) -> Any:
        return pipe(list(items), top_k=5, batch_size=size)

    for clip in clips[:warmup]:
        ours([clip], 1)
        theirs([clip], 1)
    lat: dict[str, list[float]] = {"ours": [], "pipeline": []}
    for i in range(latency_calls):
        clip = clips[i % len(clips)]
        lat["ours"].append(_time(lambda clip=clip: ours([clip], 1)))
        lat["pipeline"].append(_time(lambda clip=clip: theirs([clip], 1)))
    group = [clips[i % len(clips)] for i in range(batch)]
    ours(group, batch)
    theirs(group, batch)
    tput: dict[str, list[float]] = {"ours": [], "pipeline": []}
    for _ in range(throughput_rounds):
        tput["ours"].append(batch / _time(lambda: ours(group, batch)))
        tput["pipeline"].append(batch / _time(lambda: theirs(group, batch)))

    def side(key: str) -> dict[str, float]:
        return {
            "latency_p50_ms": round(1000 * median(lat[key]), 2),
            "latency_p95_ms": round(1000 * percentile(lat[key], 95), 2),
            "throughput_clips_per_s": round(median(tput[key]), 2),
        }

    result = {
        "clip_s": CLIP_S,
        "sampling_rate": rate,
        "ours": side("ours"),
        "pipeline": side("pipeline"),
        "latency_calls": latency_calls,
        "throughput_rounds": throughput_rounds,
        "batch": batch,
        "classifier_batching": "classify(batch_size=...)" if batched else "classify()",
    }
    o, p = result["ours"], result["pipeline"]
    result["ratio_latency_p50"] = round(o["latency_p50_ms"] / p["latency_p50_ms"], 3)
    key = "throughput_clips_per_s"
    result["ratio_throughput"] = round(o[key] / p[key], 3)
    return result
