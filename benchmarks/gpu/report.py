"""The GPU report's figures as lines for the terminal."""

from __future__ import annotations

from typing import Any

from benchmarks.gpu.settings import PRECISION_NAMES


def summary(result: dict[str, Any]) -> list[str]:
    """One line per figure."""
    lines = []
    m = result["machine"]
    where = f"{m['gpu_count']} x {m['gpu']}" if m["gpu_count"] else "CPU"
    lines.append(f"machine: {where}, torch {m['torch']}, CUDA {m['cuda']}")
    for key, label in (("single_gpu", "one process"), ("multi_gpu", "all processes")):
        arms = result.get(key) or {}
        for name in PRECISION_NAMES.values():
            arm = arms.get(name)
            if isinstance(arm, dict) and arm.get("samples_per_s"):
                memory = arm["peak_gpu_memory_mb"]
                lines.append(
                    f"{label} {name}: {arm['samples_per_s']} samples/s "
                    f"({arm['processes']} x batch {arm['batch_per_process']}), peak "
                    + (f"{memory / 1024:.1f} GiB" if memory is not None else "n/a (CPU)")
                )
        if isinstance(arms, dict) and arms.get("measured") is False:
            lines.append(f"{label}: not measured: {arms['reason']}")
    repro = result.get("flagship_repro") or {}
    if "test_accuracy" in repro:
        lines.append(
            f"flagship recipe, 1 epoch (dvc repro): {repro['wall_s']} s, test accuracy "
            f"{repro['test_accuracy']:.3f}, trained on {repro['train_device']}"
        )
    elif repro.get("ran") is False:
        lines.append(f"flagship recipe: not run: {repro['reason']}")
    return lines
