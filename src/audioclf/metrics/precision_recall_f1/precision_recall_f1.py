"""Precision, recall and F1: per class and macro-averaged, in one pass."""

import datasets
import evaluate
from sklearn.metrics import precision_recall_fscore_support


class PrecisionRecallF1(evaluate.Metric):
    """Per-class lists (in ``labels`` order) and their macro averages."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=__doc__,
            citation="",
            inputs_description="predictions, references: lists of integer class ids; "
            "labels: the class ids to report (default: all seen)",
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, labels=None):
        per_class = precision_recall_fscore_support(
            references, predictions, labels=labels, average=None, zero_division=0
        )
        macro = precision_recall_fscore_support(
            references, predictions, labels=labels, average="macro", zero_division=0
        )
        names = ("precision", "recall", "f1")
        return {
            **{name: values.tolist() for name, values in zip(names, per_class[:3], strict=True)},
            **{f"{name}_macro": float(value) for name, value in zip(names, macro[:3], strict=True)},
            "support": per_class[3].tolist(),
        }
