"""Test-set metrics and the files DVC and people read: metrics JSON, predictions, confusion PNG."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from audioclf.metrics import load


def compute_metrics(
    predictions: np.ndarray, references: np.ndarray, label_names: Sequence[str]
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Headline metrics (for ``dvc metrics``) and per-class precision/recall/F1/support."""
    ids = list(range(len(label_names)))
    acc = load("accuracy").compute(predictions=predictions, references=references)
    prf = load("precision_recall_f1").compute(
        predictions=predictions, references=references, labels=ids
    )
    summary = {
        "accuracy": acc["accuracy"],
        "f1_macro": prf["f1_macro"],
        "precision_macro": prf["precision_macro"],
        "recall_macro": prf["recall_macro"],
        "num_test": len(references),
    }
    per_class = {
        name: {k: prf[k][i] for k in ("precision", "recall", "f1", "support")}
        for i, name in enumerate(label_names)
    }
    return summary, per_class


def confusion_matrix(
    predictions: np.ndarray, references: np.ndarray, num_labels: int
) -> np.ndarray:
    """Counts with rows = actual, columns = predicted."""
    matrix = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(matrix, (references, predictions), 1)
    return matrix


def write_predictions(
    path: Path,
    keys: Sequence[str],
    predictions: np.ndarray,
    references: np.ndarray,
    label_names: Sequence[str],
) -> None:
    """One row per test clip: the input of DVC's ``confusion`` plot template."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "actual", "predicted"])
        for key, pred, ref in zip(keys, predictions, references, strict=True):
            writer.writerow([key, label_names[ref], label_names[pred]])


def write_confusion_png(path: Path, matrix: np.ndarray, label_names: Sequence[str]) -> None:
    """A labelled confusion-matrix heat map."""
    import matplotlib  # drawing only here: the plotting stack stays out of other imports

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(5.0, 0.5 * len(label_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(label_names)), label_names, rotation=90)
    ax.set_yticks(range(len(label_names)), label_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    for (row, col), count in np.ndenumerate(matrix):
        if count:
            color = "white" if count > matrix.max() / 2 else "black"
            ax.text(col, row, str(count), ha="center", va="center", color=color, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def as_table(matrix: np.ndarray, label_names: Sequence[str]) -> dict[str, Any]:
    """The confusion matrix as JSON for MLflow (``log_dict``)."""
    return {"labels": list(label_names), "matrix": matrix.tolist()}
