"""``evaluate`` metric modules shipped in the package: ``evaluate.load("accuracy")`` needs the Hub.

Load one with :func:`load`, e.g. ``load("accuracy").compute(predictions=p, references=r)``.
"""

from __future__ import annotations

from pathlib import Path

import evaluate

MODULES = Path(__file__).parent


def load(name: str) -> evaluate.EvaluationModule:
    """One of the shipped modules by name: accuracy, precision_recall_f1."""
    path = MODULES / name
    if not (path / f"{name}.py").is_file():
        raise ValueError(f"no shipped metric module {name!r} in {MODULES}")
    return evaluate.load(str(path))
