"""Learning-rate sweep on the shipped data: does a sweep compare anything?

A benchmark figure, not a timed test (issue #19): on ``data/embedded`` the default recipe's
test accuracy should be high but not saturated, and a 3-point learning-rate sweep's
``val_best/accuracy`` (the train stage's best validation accuracy, ``reports/validation.json``)
should differ by at least :data:`TARGET_SPREAD` between its best and worst point. When every
point scores 1.0 the data, not the hyperparameters, decides the ranking.

Each point is a ``dvc repro`` of the default recipe (plus ``--override``) with
``train.learning_rate`` set, in a throwaway git + DVC copy of the repository
(:func:`audioclf.testing.copy_pipeline`): the data stages run once, train and evaluate once per
point. Run from the repository root::

    python -m benchmarks.lr_sweep --threads 1 --out reports/lr_sweep.json
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audioclf.cli import positive_int
from audioclf.config import compose_conf
from audioclf.testing import copy_pipeline
from benchmarks.workspace import REPO_ROOT, Workspace

log = logging.getLogger("benchmarks")

DEFAULT_LEARNING_RATES = (1e-3, 3e-3, 1e-2)
TARGET_SPREAD = 0.02  # val_best/accuracy, best minus worst point
TARGET_TEST_ACCURACY = (0.90, 0.97)  # the default recipe's point: high, not saturated
DEFAULT_DATA = "data/embedded"


@dataclass(frozen=True)
class Sweep:
    """What to run: the learning rates, the recipe's overrides and the data folder."""

    learning_rates: tuple[float, ...]
    overrides: tuple[str, ...]
    data: str

    def point_overrides(self, learning_rate: float) -> list[str]:
        """The Hydra overrides params.yaml is composed with for one point of the sweep."""
        data = [] if self.data == DEFAULT_DATA else [f"data.path={self.data}"]
        tracked = [] if self.data == DEFAULT_DATA else [f"data.tracked_path={self.data}"]
        return [*data, *tracked, *self.overrides, f"train.learning_rate={learning_rate:g}"]


def parse_learning_rates(text: str) -> tuple[float, ...]:
    """``1e-3,3e-3,1e-2`` -> distinct positive floats, in the order given (at least two)."""
    try:
        rates = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"learning rates: {error}") from None
    if len(rates) < 2:
        raise argparse.ArgumentTypeError("a sweep needs at least two learning rates")
    if any(not math.isfinite(r) or r <= 0 for r in rates):
        raise argparse.ArgumentTypeError(f"learning rates must be positive, got {text!r}")
    if len(set(rates)) != len(rates):
        raise argparse.ArgumentTypeError(f"learning rates must differ, got {text!r}")
    return rates


def override(text: str) -> str:
    """A ``key=value`` Hydra override that does not set the swept learning rate itself."""
    key, sep, _ = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"an override is key=value, got {text!r}")
    if key.strip().lstrip("+~") == "train.learning_rate":
        raise argparse.ArgumentTypeError("train.learning_rate is what the sweep sets")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.lr_sweep",
        description="Run the default recipe at several learning rates on the shipped data "
        "and report each point's val_best/accuracy and test accuracy.",
    )
    parser.add_argument(
        "--learning-rates",
        type=parse_learning_rates,
        default=DEFAULT_LEARNING_RATES,
        help="comma-separated, e.g. 1e-3,3e-3,1e-2 (the default)",
    )
    parser.add_argument(
        "--override",
        type=override,
        action="append",
        default=[],
        help="extra Hydra override for every point, e.g. model.config.n_mels=40 (repeatable)",
    )
    parser.add_argument("--data", default=DEFAULT_DATA, help="dataset folder (Hub layout)")
    parser.add_argument("--out", default="reports/lr_sweep.json", help="JSON figure path")
    parser.add_argument(
        "--threads", type=positive_int, default=None, help="OMP_NUM_THREADS for the stages"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy (debugging)")
    return parser


def sweep_from_args(args: argparse.Namespace) -> Sweep:
    return Sweep(tuple(args.learning_rates), tuple(args.override), args.data)


def summarize(
    sweep: Sweep, points: Sequence[dict[str, Any]], default_learning_rate: float
) -> dict[str, Any]:
    """The figure: the points, the spread of val_best/accuracy and whether targets are met.

    The test-accuracy band applies to the default recipe: the point at the configured
    learning rate, when no override changes the recipe."""
    val = [p["val_best_accuracy"] for p in points]
    spread = round(max(val) - min(val), 4)
    default = next(
        (
            p
            for p in points
            if math.isclose(p["learning_rate"], default_learning_rate) and not sweep.overrides
        ),
        None,
    )
    low, high = TARGET_TEST_ACCURACY
    return {
        "figure": "learning-rate sweep on the shipped data: val_best/accuracy spread",
        "data": sweep.data,
        "overrides": list(sweep.overrides),
        "points": list(points),
        "val_best_accuracy_spread": spread,
        "target_spread": TARGET_SPREAD,
        "spread_met": spread >= TARGET_SPREAD,
        "default_test_accuracy": default["test_accuracy"] if default else None,
        "target_test_accuracy": list(TARGET_TEST_ACCURACY),
        "test_accuracy_met": (low <= default["test_accuracy"] <= high) if default else None,
    }


def run_point(ws: Workspace, sweep: Sweep, learning_rate: float) -> dict[str, Any]:
    """``dvc repro`` at one learning rate; its validation and test figures."""
    ws.overrides = sweep.point_overrides(learning_rate)
    ws.write_params()
    began = time.perf_counter()
    ws.dvc("repro")
    seconds = time.perf_counter() - began
    validation = json.loads((ws.root / "reports" / "validation.json").read_text())
    metrics = json.loads((ws.root / "reports" / "metrics.json").read_text())
    point = {
        "learning_rate": learning_rate,
        "val_best_accuracy": validation["best_accuracy"],
        "val_best_epoch": validation["best_epoch"],
        "test_accuracy": metrics["accuracy"],
        "test_f1_macro": metrics["f1_macro"],
        "repro_s": round(seconds, 1),
    }
    log.info("lr %g: %s", learning_rate, point)
    return point


def run(repo: Path, sweep: Sweep, root: Path, threads: int | None) -> dict[str, Any]:
    copy_pipeline(root, repo)
    shutil.copytree(repo / sweep.data, root / sweep.data)
    ws = Workspace(root, threads=threads)
    default_learning_rate = float(compose_conf([], root=root).train.learning_rate)
    points = [run_point(ws, sweep, lr) for lr in sweep.learning_rates]
    return summarize(sweep, points, default_learning_rate)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sweep = sweep_from_args(args)
    if not (REPO_ROOT / sweep.data).is_dir():
        print(f"lr_sweep: error: no dataset folder {sweep.data}", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="audioclf-lr-sweep-"))
    try:
        figure = run(REPO_ROOT, sweep, tmp / "repo", args.threads)
    finally:
        if args.keep:
            log.info("kept %s", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figure, indent=2) + "\n")
    print(json.dumps(figure, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
