"""Training throughput on the CPU: two processes of one thread each vs one process of two.

The train stage runs as ``dvc.yaml`` runs it, ``python -m audioclf.launch``, in a workspace whose
features are built (the suite's, or one of its own: ``python -m benchmarks.processes``), with
the launch configuration as value overrides:

- ``one_process``: ``launch=single``, ``train.num_threads=2``;
- ``two_processes``: ``launch.num_processes=2 launch.cpu=true`` (gloo), ``train.num_threads=1``.

Rounds alternate the two. Each process takes ``train.batch_size`` clips per step, so a step of
two processes trains twice the clips: the figure is samples/s, ``batch_size x processes`` over
the median time per optimizer step (between consecutive ``train/loss`` points, logged every
step, in the run's MLflow store; evaluations and checkpoints between epochs fall outside the
median). The ratio is two processes' samples/s over one's: above 1, the processes win.
Outputs (model, checkpoints, run) go to a scratch folder, not the workspace's pipeline.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from audioclf.threads import usable_cores
from benchmarks.common import show_figure
from benchmarks.measure import loadavg, median
from benchmarks.parallel_sweep import step_ms
from benchmarks.workspace import REPO_ROOT, Workspace, make_workspace

log = logging.getLogger("benchmarks")

ARMS = {"one_process": (1, 2), "two_processes": (2, 1)}  # (processes, threads each)


def train_once(
    ws: Workspace, scratch: Path, arm: str, epochs: int, timeout_s: float
) -> dict[str, Any]:
    """One train stage run of ``arm`` through the launcher; its step time and samples/s."""
    from mlflow.tracking import MlflowClient

    processes, threads = ARMS[arm]
    out = scratch / f"{arm}-{time.monotonic_ns()}"
    out.mkdir(parents=True)
    uri = f"sqlite:///{out / 'mlflow.db'}"
    overrides = [
        f"launch.num_processes={processes}",
        "launch.cpu=true",
        f"train.num_threads={threads}",
        f"train.epochs={epochs}",
        "train.log_every_n_steps=1",
        "train.resume=false",
        *(
            f"paths.{key}={out / name}"
            for key, name in {
                "checkpoints": "checkpoints",
                "model": "model",
                "run": "mlflow_run.json",
                "train_log": "train_log.csv",
                "validation": "validation.json",
            }.items()
        ),
    ]
    env = {**ws.env(), "MLFLOW_TRACKING_URI": uri}
    env.pop("OMP_NUM_THREADS", None)
    load_before = loadavg()[0]
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "audioclf.launch", *overrides],
        cwd=ws.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{arm}: the train stage failed:\n{done.stderr[-3000:]}")
    run_id = json.loads((out / "mlflow_run.json").read_text())["run_id"]
    client = MlflowClient(uri)
    ms = step_ms(client.get_metric_history(run_id, "train/loss"))
    if ms is None:
        raise RuntimeError(f"{arm}: too few logged steps for a step time (raise --epochs)")
    batch = int(ws.cfg().train.batch_size) * processes
    return {
        "processes": processes,
        "threads_each": int(client.get_run(run_id).data.tags["train.threads"]),
        "clips_per_step": batch,
        "step_ms": ms,
        "samples_per_s": round(1000 * batch / ms, 1),
        "wall_s": round(wall, 1),
        "load_1min": [load_before, loadavg()[0]],
    }


def processes_throughput(
    ws: Workspace, scratch: Path, *, rounds: int = 3, epochs: int = 2, timeout_s: float = 1800
) -> dict[str, Any]:
    """``rounds`` runs of each arm, alternating their order; the medians and their ratio."""
    ws.dvc("repro", "featurize")  # nothing to do when the suite built the pipeline already
    runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
    for round_ in range(rounds):
        for arm in ARMS if round_ % 2 == 0 else reversed(ARMS):
            runs[arm].append(train_once(ws, scratch, arm, epochs, timeout_s))
    rates = {arm: median([r["samples_per_s"] for r in done]) for arm, done in runs.items()}
    return {
        "cores": usable_cores(),
        "recipe": list(ws.overrides),
        "epochs": epochs,
        "samples_per_s": rates,
        "ratio_two_to_one": round(rates["two_processes"] / rates["one_process"], 3),
        "n": rounds,
        "runs": runs,
    }


def rows(figure: dict[str, Any] | None) -> list[tuple[str, str, str, str, str]]:
    """``bench.md`` row: the ratio and both samples/s (no target: a figure to read)."""
    if not figure:
        return []
    rates = figure["samples_per_s"]
    return [
        (
            "Training on the CPU, 2 processes x 1 thread / 1 process x 2 threads, samples/s",
            f"{figure['ratio_two_to_one']:.2f} ({rates['two_processes']:.0f} vs "
            f"{rates['one_process']:.0f} samples/s, {figure['cores']} cores)",
            "",
            "",
            str(figure["n"]),
        )
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.processes",
        description="CPU training samples/s, 2 processes x 1 thread vs 1 process x 2 threads, "
        "in a throwaway copy of this repository.",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny generated data")
    parser.add_argument("--epochs", type=int, default=2, help="train.epochs of each run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each arm")
    parser.add_argument("--out", default=None, help="write the figure as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="audioclf-processes-") as scratch:
        ws = make_workspace(REPO_ROOT, Path(scratch) / "repo", smoke=args.smoke)
        figure = processes_throughput(
            ws, Path(scratch) / "runs", rounds=args.rounds, epochs=args.epochs
        )
    show_figure(figure, rows, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
