"""Files the train stage leaves for DVC and for people: the training curve, the best validation."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from audioclf.data.store import atomic_path
from audioclf.training.checkpoints import TrainState


def write_train_log(state: TrainState, path: Path) -> None:
    """One row per logged step: the curve ``dvc plots`` draws (eval metrics are in MLflow).

    Written beside and moved into place: the file DVC cached may be a hard link to its cache.
    """
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "epoch", "loss", "learning_rate"])
        for row in state.history:
            writer.writerow(
                [row["step"], row["epoch"], f"{row['loss']:.6f}", f"{row['learning_rate']:.3e}"]
            )


def validation_summary(state: TrainState, manifest: Path | None = None) -> dict[str, Any]:
    """The best validation figures and when training stopped: DVC metrics beside test's.

    Choose among runs by these (``dvc exp show``); report the test figures of the one chosen.
    ``validation`` says what they measure, from the data manifest: whether validation holds
    speakers (groups) that train has heard, whose accuracy overstates that on new ones.
    """
    best = state.best or {}
    described = json.loads(manifest.read_text()).get("validation") if manifest else None
    return {
        **{f"best_{k}": v for k, v in best.items()},
        # samples each evaluation scored, gathered from every process: the split's size
        "num_validation": state.evals[-1].get("samples") if state.evals else None,
        "best_epoch": state.best_epoch,
        "epochs_trained": state.epoch,
        "stopped_early": state.stopped_early,
        "pruned": state.pruned,
        "validation": described,
    }
