"""The throughput arms on several processes at once, through ``accelerate launch``.

Each process runs ``python -m benchmarks.gpu --worker RESULT`` (:func:`benchmarks.gpu.__main__.
worker`): both precisions, each process on its own batches; the main process writes the arms to
``RESULT``. ``ACCELERATE_USE_CPU`` makes them CPU processes (gloo) for ``--smoke``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.gpu.settings import REPO_ROOT, Settings

log = logging.getLogger("benchmarks.gpu")


def launch_command(processes: int, settings: Settings, result: Path, smoke: bool) -> list[str]:
    """``accelerate launch`` of ``benchmarks.gpu --worker`` on ``processes`` processes."""
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",  # each arm sets its own on its Accelerator
        "--dynamo_backend",
        "no",
        "-m",
        "benchmarks.gpu",
        "--worker",
        str(result),
        "--warmup",
        str(settings.warmup_steps),
        "--steps",
        str(settings.timed_steps),
        *(["--smoke"] if smoke else []),
    ]


def python_path() -> list[str]:
    """The repository (for ``benchmarks``) and its ``src`` ahead of any inherited path."""
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return [str(REPO_ROOT), str(REPO_ROOT / "src"), *inherited]


def multi_process(
    processes: int, settings: Settings, scratch: Path, *, smoke: bool, timeout_s: float = 600
) -> dict[str, Any]:
    """Both precisions on ``processes`` processes; the launch's command and wall time too."""
    result = scratch / "multi_process.json"
    cmd = launch_command(processes, settings, result, smoke)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(python_path())}
    if settings.cpu:
        env["ACCELERATE_USE_CPU"] = "true"
    log.info("gpu: %s", " ".join(cmd[1:]))
    started = time.perf_counter()
    done = subprocess.run(
        cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    wall = round(time.perf_counter() - started, 1)
    if done.returncode != 0 or not result.is_file():
        tail = (done.stdout + done.stderr)[-3000:]
        raise RuntimeError(f"accelerate launch failed ({done.returncode}):\n{tail}")
    arms = json.loads(result.read_text(encoding="utf-8"))
    return {"command": " ".join(["accelerate launch", *cmd[3:]]), "wall_s": wall, **arms}


def scaling(single: dict[str, Any], multi: dict[str, Any], processes: int) -> dict[str, Any]:
    """Samples/s on all processes over ``processes`` x one process, per precision."""
    out = {}
    for name, arm in multi.items():
        one = single.get(name) or {}
        if isinstance(arm, dict) and arm.get("samples_per_s") and one.get("samples_per_s"):
            out[name] = round(arm["samples_per_s"] / (processes * one["samples_per_s"]), 3)
    return out
