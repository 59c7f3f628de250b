"""What an audit produces: the error it raises and one verified path or item."""

from __future__ import annotations

from dataclasses import dataclass, field

from audioclf.tracking.tags import MODEL_DIGEST_TAG, SWEEP_TAG

RUN_TAGS = ("git.", "dvc.", "data.", "accelerate.", SWEEP_TAG, MODEL_DIGEST_TAG)


class LineageError(RuntimeError):
    """The target cannot be resolved to an MLflow run, or the run lacks what an audit needs."""


@dataclass
class Check:
    """One verified path or audio item. ``status`` says where the run's version is intact:
    ``ok`` (the workspace), ``in cache`` (the DVC cache), ``in git`` (the run's experiment or
    commit); or a failure: ``changed``, ``missing``, ``unreadable``."""

    stage: str
    kind: str  # dep, out, source item, raw item
    path: str
    status: str
    detail: str = ""
    files: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "in cache", "in git", "skipped")
