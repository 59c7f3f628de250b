"""Test-set scores and metrics, and the files DVC and people read: metrics JSON, predictions,
confusion PNG."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from audioclf.data.audio import AudioError, as_float32
from audioclf.metrics import load
from audioclf.windows import Window, WindowedClassifier

if TYPE_CHECKING:
    from datasets import Dataset


def score_split(
    classifier: WindowedClassifier,
    split: Dataset,
    rate: int,
    window: Window | None,
    batch_size: int,
    chunk: int = 256,
) -> np.ndarray:
    """Class probabilities (clips x labels) of a resampled split's ``array`` clips at ``rate``,
    scored as ``audioclf predict`` scores a file: whole, or in ``window`` when longer, the
    window probabilities averaged (:meth:`WindowedClassifier.score_arrays`). The clips are
    whole (not cut at ``audio.max_duration_s`` as the training features are) and read
    ``chunk`` at a time; stored 16-bit PCM or float32 both work. An unusable clip is an error
    naming it.
    """
    clips = split.with_format("numpy", columns=["array"])
    names = split["path"]
    rows: list[np.ndarray] = []
    for start in range(0, len(split), max(1, chunk)):
        arrays = []
        for n, values in enumerate(clips[start : start + chunk]["array"], start=start):
            try:
                arrays.append(classifier.prepare(as_float32(values), rate))
            except AudioError as err:
                raise AudioError(f"test clip {names[n]}: {err}") from err
        scored = classifier.score_arrays(arrays, window, batch_size)
        for n, result in enumerate(scored, start=start):
            if isinstance(result, Exception):
                raise AudioError(f"test clip {names[n]}: {result}") from result
            rows.append(result.probs)
    return np.stack(rows) if rows else np.zeros((0, len(classifier.labels)), dtype=np.float32)


def window_tags(window: Window | None) -> dict[str, str]:
    """MLflow tags saying how the test clips were scored (``window_s`` 0: whole clips)."""
    if window is None:
        return {"evaluate.window_s": "0"}
    return {"evaluate.window_s": f"{window.seconds:g}", "evaluate.hop_s": f"{window.hop_s:g}"}


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
