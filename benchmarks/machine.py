"""What the figures were measured on: :mod:`audioclf.environment`'s description of a machine
(versions, CPU, threads, GPU) with the cores this process may use, memory and load average."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import psutil

from audioclf import environment
from benchmarks.measure import MB, loadavg

# What environment.describe() records of a run rather than of the machine it ran on.
RUN_SETTINGS = ("device", "num_processes", "mixed_precision")


def git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def describe_machine() -> dict[str, Any]:
    """What a training run records of its machine (:func:`audioclf.environment.describe`)."""
    return {k: v for k, v in environment.describe().items() if k not in RUN_SETTINGS}


def machine_info() -> dict[str, Any]:
    """The suite's ``machine``: the machine as a run records it, the cores this process may
    use, memory, and the load average at the start (the suite fills in the end)."""
    return {
        **describe_machine(),
        "cores_available": len(os.sched_getaffinity(0)),
        "memory_gb": round(psutil.virtual_memory().total / MB / 1024, 1),
        "loadavg_start": loadavg(),
        "loadavg_end": None,
    }


def source_info(repo: Path) -> dict[str, Any]:
    """The code and data the figures belong to."""
    return {
        "git_commit": git(repo, "rev-parse", "--short", "HEAD"),
        "git_dirty": bool(git(repo, "status", "--porcelain", "--", "src", "conf")),
        "embedded_commit": git(repo, "log", "-1", "--format=%h %s", "--", "data/embedded"),
    }
