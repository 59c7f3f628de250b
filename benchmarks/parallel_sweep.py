"""Parallel sweep: two queued experiments on two workers (``-j 2``) vs the same two on one.

In a committed git + DVC copy of the repository whose data stages are locked (the suite's
workspace, or one of its own: ``python -m benchmarks.parallel_sweep``), two experiments that
differ only in ``train.learning_rate`` are queued and run with ``dvc exp run --run-all -j N``:
the workers ``dvc queue start -j N`` starts, waited for. The figure is the wall time from the
start of the workers until both experiments are collected, for

- ``sequential``: one worker (``-j 1``), the experiments one after the other;
- ``parallel``: two workers, torch's threads (train and evaluate) by
  :mod:`audioclf.threads`;
- ``oversubscribed`` (``--oversubscribed``): two workers with ``OMP_NUM_THREADS`` = cores,
  i.e. torch's default of one thread per core in each: what ``-j 2`` cost before the rule.

With ``--search`` the same two experiments are the grid of an ``audioclf sweep`` instead
(``conf/hparams_search/``, each trial ``dvc exp run --temp``), on ``--jobs N`` workers.

Each scenario queues its own learning rates (DVC's run cache would otherwise restore the
second scenario's outputs instead of training), and the workers of one scenario have exited
before the next starts (a worker left idle would join the next one). ``OMP_NUM_THREADS`` and
``--threads`` of the suite do not apply here: the thread rule is what is measured. Per run:
its thread count and rule (run tags), its training step time (the median time between logged
``train/loss`` points, per step) and its training span.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from audioclf.testing import git
from audioclf.threads import usable_cores
from benchmarks.common import show_figure
from benchmarks.measure import loadavg, median
from benchmarks.workspace import REPO_ROOT, Workspace, make_workspace

log = logging.getLogger("benchmarks")

EXPERIMENTS = 2
TARGET_RATIO = 1.0  # two workers take no more wall time than one
WORKERS = {"sequential": 1, "parallel": 2, "oversubscribed": 2}
STOP_TIMEOUT_S = 90


def prepare(ws: Workspace) -> None:
    """Lock the data stages and commit the copy: queued experiments start from a commit."""
    ws.dvc("repro", "featurize")  # nothing to do when the suite built the pipeline already
    git(ws.root, "add", "-A")
    if git(ws.root, "status", "--porcelain").strip():
        git(ws.root, "commit", "-qm", "parallel sweep baseline")


def stop_workers(ws: Workspace) -> None:
    """Until no queue worker is left (an idle one waits ~10 s for more work before it exits)."""
    ws.dvc("queue", "stop", check=False)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while "0 active, 0 idle" not in ws.dvc("queue", "status").stdout:
        if time.monotonic() > deadline:
            raise RuntimeError("the queue workers did not stop")
        time.sleep(2)


def step_ms(history: list[Any]) -> float | None:
    """Milliseconds per optimizer step: the median over consecutive logged ``train/loss``
    points (evaluations between epochs fall in one interval, not in the median)."""
    points = sorted((m.step, m.timestamp) for m in history)
    rates = [(t1 - t0) / (s1 - s0) for (s0, t0), (s1, t1) in itertools.pairwise(points) if s1 > s0]
    return round(statistics.median(rates), 1) if rates else None


def run_figures(ws: Workspace, sweep: str) -> list[dict[str, Any]]:
    """The runs of ``sweep`` in the copy's store: status, threads, step time, training span."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(ws.env()["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name(ws.cfg().tracking.experiment_name)
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.sweep = '{sweep}'")
    out = []
    for run in sorted(runs, key=lambda r: r.info.start_time):
        if run.data.tags.get("sweep.role") == "parent":  # an audioclf sweep's parent run
            continue
        history = client.get_metric_history(run.info.run_id, "train/loss")
        stamps = [m.timestamp for m in history]
        out.append(
            {
                "learning_rate": run.data.params.get("train.learning_rate"),
                "status": run.info.status,
                "threads": run.data.tags.get("train.threads"),
                "threads_rule": run.data.tags.get("train.threads_rule"),
                "step_ms": step_ms(history),
                "train_span_s": round((max(stamps) - min(stamps)) / 1000, 1) if stamps else None,
            }
        )
    return out


def search_command(
    ws: Workspace, sweep: str, learning_rates: Sequence[str], jobs: int
) -> list[str]:
    """``audioclf sweep`` of a grid over ``learning_rates``, written to conf/hparams_search/."""
    import yaml

    recipe = [o for o in ws.overrides if not o.startswith("train.learning_rate=")]
    search = {
        "objective": "best_loss",
        "direction": "minimize",
        "n_trials": len(learning_rates),
        "sampler": {"name": "grid"},
        "overrides": recipe,
        "space": {
            "train.learning_rate": {
                "type": "categorical",
                "choices": [float(r) for r in learning_rates],
            }
        },
    }
    path = ws.root / "conf" / "hparams_search" / f"{sweep}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(search))
    return [sys.executable, "-m", "audioclf.cli", "sweep", sweep, "--jobs", str(jobs)]


def run_scenario(
    ws: Workspace, name: str, learning_rates: Sequence[str], timeout_s: float, search: bool = False
) -> dict[str, Any]:
    """Queue ``learning_rates`` as experiments and run them on ``WORKERS[name]`` workers
    (``search``: as the grid of an ``audioclf sweep`` on ``--jobs WORKERS[name]``)."""
    sweep = f"bench-{name}-{learning_rates[0]}"
    recipe = [o for o in ws.overrides if not o.startswith("train.learning_rate=")]
    sets = [arg for override in recipe for arg in ("-S", override)]
    grid = (
        "-S",
        f"train.learning_rate={','.join(learning_rates)}",
        "-S",
        f"tracking.sweep={sweep}",
    )
    if not search:
        ws.dvc("exp", "run", "--queue", *sets, *grid)
    env = ws.env()
    env.pop("OMP_NUM_THREADS", None)
    if name == "oversubscribed":
        env["OMP_NUM_THREADS"] = str(usable_cores())
    dvc = Path(sys.executable).parent / "dvc"
    workers = WORKERS[name]
    log.info("bench: parallel sweep, %s (%d worker(s)) ...", name, workers)
    # Output through a file: the workers keep it open after `--run-all` returns (a pipe
    # would end only with them, ~10 s idle later).
    output = ws.root.parent / "logs" / f"{sweep}.log"
    output.parent.mkdir(parents=True, exist_ok=True)
    load_before = loadavg()[0]
    with output.open("w") as out:
        start = time.perf_counter()
        command = [str(dvc), "exp", "run", "--run-all", "-j", str(workers)]
        if search:
            command = search_command(ws, sweep, learning_rates, workers)
        done = subprocess.run(
            command,
            cwd=ws.root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout_s,
            check=False,
        )
        wall = time.perf_counter() - start
    if not search:
        stop_workers(ws)
    runs = run_figures(ws, sweep)
    if done.returncode != 0 or [r for r in runs if r["status"] != "FINISHED"]:
        raise RuntimeError(f"{name}: {runs}\n{output.read_text()[-3000:]}")
    load = [load_before, loadavg()[0]]  # other jobs on the cores skew every figure
    return {"workers": workers, "wall_s": round(wall, 1), "load_1min": load, "runs": runs}


def parallel_sweep(
    ws: Workspace,
    rounds: int = 1,
    oversubscribed: bool = False,
    timeout_s: float = 3600,
    search: bool = False,
) -> dict[str, Any]:
    """``rounds`` times each scenario, alternating their order; the wall times' medians."""
    prepare(ws)
    names = ["sequential", "parallel", *(["oversubscribed"] if oversubscribed else [])]
    scenarios: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    serial = 0
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else reversed(names):
            rates = [f"{(serial + i + 1) * 1e-4:.4g}" for i in range(EXPERIMENTS)]
            serial += EXPERIMENTS
            scenarios[name].append(run_scenario(ws, name, rates, timeout_s, search=search))
    walls = {name: median([r["wall_s"] for r in runs]) for name, runs in scenarios.items()}
    ratio = walls["parallel"] / walls["sequential"]
    return {
        "experiments": EXPERIMENTS,
        "how": "audioclf sweep --jobs N" if search else "dvc exp run --run-all -j N",
        "cores": usable_cores(),
        "recipe": [o for o in ws.overrides if not o.startswith("train.learning_rate=")],
        "wall_s": walls,
        "ratio_parallel_to_sequential": round(ratio, 3),
        "target": TARGET_RATIO,
        "met": ratio <= TARGET_RATIO,
        "n": rounds,
        "scenarios": scenarios,
    }


def _runs_text(runs: list[dict[str, Any]]) -> str:
    threads = "+".join(str(r["threads"]) for r in runs)
    steps = "/".join(f"{r['step_ms']:.0f}" for r in runs if r["step_ms"] is not None)
    return f"threads {threads}, {steps} ms per step"


def rows(figure: dict[str, Any] | None) -> list[tuple[str, str, str, str, str]]:
    """``bench.md`` rows: the ratio, and the oversubscribed wall time when measured."""
    if not figure:
        return []
    walls, last = figure["wall_s"], {k: v[-1] for k, v in figure["scenarios"].items()}
    out = [
        (
            (
                f"Parallel search: {figure['experiments']} trials of `audioclf sweep`, "
                "`--jobs 2` / `--jobs 1` wall time"
                if figure.get("how", "").startswith("audioclf")
                else f"Parallel sweep: {figure['experiments']} queued experiments, `-j 2` / "
                "`-j 1` wall time"
            ),
            f"{figure['ratio_parallel_to_sequential']:.2f} ({walls['parallel']:.0f} s, "
            f"{_runs_text(last['parallel']['runs'])} vs {walls['sequential']:.0f} s, "
            f"{_runs_text(last['sequential']['runs'])})",
            f"<= {figure['target']:g}",
            "yes" if figure["met"] else "**no**",
            str(figure["n"]),
        )
    ]
    if "oversubscribed" in walls:
        out.append(
            (
                "Parallel sweep, `-j 2` with one torch thread per core each",
                f"{walls['oversubscribed']:.0f} s ({_runs_text(last['oversubscribed']['runs'])})",
                "",
                "",
                str(figure["n"]),
            )
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.parallel_sweep",
        description="Wall time of 2 queued experiments on `-j 2` vs `-j 1`, in a throwaway copy.",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny generated data")
    parser.add_argument("--epochs", type=int, default=1, help="train.epochs of each experiment")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each scenario")
    parser.add_argument(
        "--oversubscribed", action="store_true", help="also -j 2 with one thread per core each"
    )
    parser.add_argument(
        "--search", action="store_true", help="the experiments as an audioclf sweep's grid"
    )
    parser.add_argument("--out", default=None, help="write the figure as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="audioclf-parallel-") as scratch:
        ws = make_workspace(REPO_ROOT, Path(scratch) / "repo", smoke=args.smoke)
        ws.overrides = [o for o in ws.overrides if not o.startswith("train.epochs=")]
        ws.overrides.append(f"train.epochs={args.epochs}")
        ws.write_params()
        figure = parallel_sweep(
            ws, rounds=args.rounds, oversubscribed=args.oversubscribed, search=args.search
        )
    show_figure(figure, rows, args.out)
    return 0 if figure["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
