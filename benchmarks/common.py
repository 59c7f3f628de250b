"""Helpers the figures share: fresh Accelerate state, a throwaway MLflow store, and how a
figure run on its own (``python -m benchmarks.NAME``) shows what it measured."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any


def reset_accelerate() -> None:
    """Forget the process-wide Accelerate state, so the next Accelerator/Trainer starts clean.

    One process builds several Accelerators here (our loop, then the HF Trainer's) with
    different settings; Accelerate keeps its state in class-level singletons and has no public
    reset: this is the one use of ``_reset_state`` (pyproject bounds accelerate below 2;
    tests/system/test_bench.py's smoke run goes through it).
    """
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


@contextlib.contextmanager
def mlflow_store(folder: Path) -> Iterator[str]:
    """Point MLflow (and the train stage's code) at a sqlite store in ``folder`` for a while."""
    import mlflow

    from audioclf.tracking.store import using_tracking_uri

    folder.mkdir(parents=True, exist_ok=True)
    with using_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}") as uri:
        try:
            yield uri
        finally:
            while mlflow.active_run() is not None:
                mlflow.end_run()


def start_mlflow(experiment: str):
    """An ``on_start`` for :func:`audioclf.training.loop.fit` that starts its MLflow tracker."""

    def on_start(accelerator, state) -> None:
        accelerator.init_trackers(experiment, config={"bench": True})

    return on_start


def show_figure(
    figure: dict[str, Any],
    rows: Callable[[dict[str, Any]], Iterable[Sequence[str]]],
    out: str | None,
) -> None:
    """Print ``figure`` as JSON (also written to ``out`` when given), then its ``bench.md``
    rows."""
    text = json.dumps(figure, indent=2)
    if out:
        Path(out).write_text(text + "\n", encoding="utf-8")
    print(text)
    for row in rows(figure):
        print(" | ".join(row))


def report_errors(prog: str, errors: dict[str, str]) -> int:
    """Each failed figure's first line on stderr (the report has it whole); the exit code."""
    for name, error in errors.items():
        first = error.splitlines()[0] if error else ""
        print(f"{prog}: error: {name}: {first}", file=sys.stderr)
    return 1 if errors else 0
