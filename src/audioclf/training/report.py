"""Files the train stage leaves for DVC plots and for people: the training curve."""

from __future__ import annotations

import csv
from pathlib import Path

from audioclf.training.checkpoints import TrainState


def write_train_log(state: TrainState, path: Path) -> None:
    """One row per logged step: the curve ``dvc plots`` draws (eval metrics are in MLflow)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "epoch", "loss", "learning_rate"])
        for row in state.history:
            writer.writerow(
                [row["step"], row["epoch"], f"{row['loss']:.6f}", f"{row['learning_rate']:.3e}"]
            )
