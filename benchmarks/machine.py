"""What the figures were measured on: cores, memory, library versions, load average."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

from benchmarks.measure import MB, loadavg


def git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine_info() -> dict[str, Any]:
    import datasets
    import torch
    import transformers

    return {
        "cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "memory_gb": round(psutil.virtual_memory().total / MB / 1024, 1),
        "cpu": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "datasets": datasets.__version__,
        "cuda_available": torch.cuda.is_available(),
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
