"""``dvc repro`` on a finished pipeline: the no-op time, and what reruns after a param change."""

from __future__ import annotations

import re
import time
from typing import Any

from omegaconf import OmegaConf

from benchmarks.measure import median
from benchmarks.workspace import STAGES, Workspace

TARGET_S = 3.0


def _stages(output: str, pattern: str) -> list[str]:
    return [s for s in STAGES if re.search(pattern.format(stage=re.escape(s)), output)]


def ran(output: str) -> list[str]:
    return _stages(output, r"Running stage '{stage}'")


def skipped(output: str) -> list[str]:
    return _stages(output, r"Stage '{stage}' didn't change, skipping")


def noop_repro(ws: Workspace, runs: int, until: str | None = None) -> dict[str, Any]:
    """Time ``dvc repro [until]`` with nothing changed, ``runs`` times."""
    times, outputs = [], []
    for _ in range(runs):
        start = time.perf_counter()
        result = ws.dvc("repro", *([until] if until else []))
        times.append(time.perf_counter() - start)
        outputs.append(result.stdout + result.stderr)
    return {
        "command": "dvc repro" + (f" {until}" if until else ""),
        "median_s": round(median(times), 3),
        "runs_s": [round(t, 3) for t in times],
        "n": runs,
        "target_s": TARGET_S,
        "met": median(times) < TARGET_S,
        "stages_ran": sorted({s for o in outputs for s in ran(o)}, key=STAGES.index),
        "stages_skipped_every_run": [s for s in STAGES if all(s in skipped(o) for o in outputs)],
    }


def after_param_change(ws: Workspace, key: str = "train.learning_rate") -> dict[str, Any]:
    """Change one train param in params.yaml, run ``dvc repro`` once: which stages ran."""
    value = float(OmegaConf.select(ws.cfg(), key))
    ws.write_params(f"{key}={value * 2:g}")
    start = time.perf_counter()
    result = ws.dvc("repro")
    wall = time.perf_counter() - start
    output = result.stdout + result.stderr
    return {
        "param": f"{key}: {value:g} -> {value * 2:g}",
        "ran": ran(output),
        "skipped": skipped(output),
        "expected": ["train", "evaluate"],
        "as_expected": ran(output) == ["train", "evaluate"],
        "wall_s": round(wall, 2),
    }
