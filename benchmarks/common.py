"""Helpers the in-process figures share: fresh Accelerate state, a throwaway MLflow store."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


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
