"""The environment a run trained in: versions, threads, hardware, processes.

The same data, code and config give byte-identical models only on the same machine, thread
count and library versions; across machines models and metrics agree approximately. Every
run records what it ran on, so that two runs that differ can be told apart, and a later audit
can say what differs from today's environment.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

PACKAGES = (
    "torch",
    "transformers",
    "accelerate",
    "datasets",
    "evaluate",
    "dvc",
    "mlflow",
    "numpy",
    "soundfile",
    "soxr",
)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` knows)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def describe(
    num_processes: int = 1, mixed_precision: str = "no", device: str = "cpu"
) -> dict[str, Any]:
    """What the run ran on: versions, torch threads, device, CPU, GPU and CUDA, processes."""
    cuda = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        **{package: _version(package) for package in PACKAGES},
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "cuda": torch.version.cuda if cuda else None,
        "num_processes": num_processes,
        "mixed_precision": mixed_precision,
        "platform": platform.platform(),
    }


def installed_packages() -> list[str]:
    """Every installed distribution as ``name==version``, sorted: the run's package list."""
    found = {
        f"{dist.metadata['Name']}=={dist.version}"
        for dist in metadata.distributions()
        if dist.metadata["Name"]
    }
    return sorted(found, key=str.lower)


def differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``key: recorded -> current`` for each entry that a later environment does not share.

    What the machine and installation decide, and that can change model bytes, is compared:
    versions, torch threads, CPU, GPU and CUDA (a run's own settings, like its number of
    processes or precision, are in its params and tags).
    """
    keys = ("python", *PACKAGES, "torch_threads", "cpu", "gpu", "cuda")
    return [
        f"{key}: {recorded.get(key)} -> {current.get(key)}"
        for key in keys
        if key in recorded and recorded.get(key) != current.get(key)
    ]
