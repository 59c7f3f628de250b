"""Both parts in order, into one JSON report that each part's figures reach as they come.

One part's failure is recorded in ``errors`` and never loses the others' figures.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from benchmarks.gpu.flagship import flagship_repro
from benchmarks.gpu.launch import multi_process, scaling
from benchmarks.gpu.machine import machine
from benchmarks.gpu.settings import NUM_LABELS, REPO_ROOT, mode_settings
from benchmarks.gpu.training import throughput
from benchmarks.machine import source_info

log = logging.getLogger("benchmarks.gpu")


def run(
    out: Path,
    *,
    smoke: bool,
    steps: int | None = None,
    warmup: int | None = None,
    repro: bool = True,
    repro_skipped: str | None = None,
    processes: int | None = None,
    keep: bool = False,
) -> dict[str, Any]:
    """Measure what this machine allows and write ``out``; each failure goes to ``errors``.

    ``processes``: how many processes the multi-process figure uses (default: every GPU; with
    ``--smoke``, CPU processes, and none unless asked).
    """
    settings = mode_settings(smoke, steps, warmup)
    info = machine()
    if not smoke and info["gpu_count"] == 0:
        raise SystemExit(
            f"benchmarks.gpu: error: torch sees no CUDA GPU (torch {torch.__version__}, "
            f"built for CUDA {torch.version.cuda}); use --smoke on a CPU"
        )
    processes = (processes or 0) if smoke else (processes or info["gpu_count"])
    result: dict[str, Any] = {
        "mode": "smoke" if smoke else "gpu",
        "command": "python -m benchmarks.gpu" + (" --smoke" if smoke else ""),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": info,
        "source": source_info(REPO_ROOT),
        "model": {
            "config": "transformers Wav2Vec2Config defaults (wav2vec2-base size), random init"
            if not smoke
            else f"tiny Wav2Vec2Config {dict(settings.model_config)} (--smoke)",
            "head": f"Wav2Vec2ForSequenceClassification, {NUM_LABELS} labels",
        },
        "settings": {
            **{k: v for k, v in asdict(settings).items() if k != "model_config"},
            "optimizer": "AdamW",
            "data": "seeded random audio batches (a step's cost depends on its shape only)",
            "from": "conf/train/wav2vec2_base.yaml, conf/model/wav2vec2_base.yaml",
        },
        "single_gpu": None,
        "multi_gpu": None,
        "flagship_repro": None,
        "errors": {},
        "timings_s": {},
    }
    scratch = Path(tempfile.mkdtemp(prefix="audioclf-gpu-"))

    def part(name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        log.info("gpu: %s ...", name)
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # one part's failure must not lose the others' figures
            log.exception("gpu: %s failed", name)
            result["errors"][name] = f"{type(err).__name__}: {err}"
            return None
        finally:
            result["timings_s"][name] = round(time.perf_counter() - started, 1)
            write(out, result)

    try:
        single = part("single_gpu", throughput, settings) or {}
        result["single_gpu"] = single or None
        if processes > 1:
            multi = part("multi_gpu", multi_process, processes, settings, scratch, smoke=smoke)
            if multi:
                multi["scaling_efficiency"] = scaling(single, multi, processes)
            result["multi_gpu"] = multi
        else:
            result["multi_gpu"] = {
                "measured": False,
                "reason": f"{info['gpu_count']} GPU on this machine: accelerate launch "
                "--multi_gpu needs at least 2"
                if not smoke
                else "--smoke measures several processes only with --processes N",
            }
        if repro and not repro_skipped:
            result["flagship_repro"] = part(
                "flagship_repro",
                flagship_repro,
                REPO_ROOT,
                scratch / "repro",
                settings,
                smoke=smoke,
            )
        else:
            result["flagship_repro"] = {"ran": False, "reason": repro_skipped or "--no-repro"}
    finally:
        if keep:
            log.info("gpu: kept %s", scratch)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
        write(out, result)
    return result


def write(out: Path, result: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
